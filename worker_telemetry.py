"""The worker's metrics port: Prometheus `/metrics`, and `/health/live` and `/health/ready`.

Metrics come from the Temporal SDK runtime's own Prometheus exporter: the SDK's metrics (task
latencies, slots, pollers, workflow completions) and ours, which workflow and activity code
record through the SDK's metric meters (workflows/run_metrics.py, activities/telemetry.py),
so workflow metrics stay silent during replay. That exporter answers only `/metrics` on a port
of its own, so it listens on a private loopback port and this server, on WORKER_METRICS_PORT,
relays it, adds the process's own metrics and answers the health probes beside it.

The server runs in a thread, apart from the event loop: readiness is a fact the loop must keep
renewing, so a worker whose loop is stuck stops being ready instead of reporting a stale answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
import socket
import threading
import time
import urllib.request
from dataclasses import dataclass
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from prometheus_client import REGISTRY, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from temporalio.client import Client
from temporalio.runtime import PrometheusConfig, Runtime, TelemetryConfig
from temporalio.service import RPCError
from temporalio.worker import Worker

from activities.telemetry import LLM_COST, LLM_COST_BUCKETS, STEP_DURATION, STEP_DURATION_BUCKETS
from settings import Settings
from workflows.run_metrics import APPROVAL_WAIT, APPROVAL_WAIT_BUCKETS

logger = logging.getLogger("orchestrator.worker.telemetry")

READINESS_CHECK_SECONDS = 2.0
# Ready means "checked recently"; three missed checks in a row and the worker is not ready.
READINESS_VALID_SECONDS = 3 * READINESS_CHECK_SECONDS
_SDK_SCRAPE_TIMEOUT_SECONDS = 5.0

_BUCKETS: dict[str, list[float]] = {
    APPROVAL_WAIT: list(APPROVAL_WAIT_BUCKETS),
    STEP_DURATION: [float(b) for b in STEP_DURATION_BUCKETS],
    LLM_COST: list(LLM_COST_BUCKETS),
}


@dataclass
class WorkerTelemetry:
    """The Temporal runtime to connect with, and the server answering on the metrics port."""

    runtime: Runtime | None
    server: WorkerStatusServer | None

    @classmethod
    def start(cls, settings: Settings) -> WorkerTelemetry:
        """Bind the metrics port (before connecting, so probes answer during start-up)."""
        if settings.worker_metrics_port == 0:
            return cls(runtime=None, server=None)
        runtime, sdk_metrics_url = None, None
        if settings.metrics_enabled:
            sdk_port = _free_loopback_port()
            runtime = Runtime(
                telemetry=TelemetryConfig(
                    metrics=PrometheusConfig(
                        bind_address=f"127.0.0.1:{sdk_port}",
                        counters_total_suffix=True,  # Prometheus naming: counters end in _total
                        durations_as_seconds=True,
                        histogram_bucket_overrides=_BUCKETS,
                    )
                )
            )
            sdk_metrics_url = f"http://127.0.0.1:{sdk_port}/metrics"
        server = WorkerStatusServer(
            settings.worker_metrics_host,
            settings.worker_metrics_port,
            sdk_metrics_url,
            settings.metrics_token.get_secret_value() if settings.metrics_token else "",
        )
        server.start()
        logger.info(
            "Worker metrics and health probes listening",
            extra={"host": settings.worker_metrics_host, "port": server.port},
        )
        return cls(runtime=runtime, server=server)

    async def watch_readiness(self, worker: Worker, client: Client) -> None:
        """Renew readiness while the worker runs and Temporal answers, until cancelled."""
        if self.server is None:
            return
        try:
            while True:
                self.server.mark_ready(await _is_polling(worker, client))
                await asyncio.sleep(READINESS_CHECK_SECONDS)
        finally:
            self.server.mark_ready(False)  # stopping: out of rotation at once

    def stop(self) -> None:
        if self.server is not None:
            self.server.stop()


async def _is_polling(worker: Worker, client: Client) -> bool:
    if not worker.is_running or worker.is_shutdown:
        return False
    # The worker keeps retrying its polls while Temporal is away; it is not serving then.
    try:
        return await client.service_client.check_health(
            timeout=timedelta(seconds=READINESS_CHECK_SECONDS)
        )
    except (RPCError, RuntimeError):
        return False


class WorkerStatusServer:
    """A small threaded HTTP server: /metrics, /health/live, /health/ready."""

    def __init__(self, host: str, port: int, sdk_metrics_url: str | None, token: str) -> None:
        self.host = host
        self.requested_port = port
        self.sdk_metrics_url = sdk_metrics_url
        self.token = token
        self._ready_until = 0.0
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        assert self._httpd is not None, "the server is not started"
        return int(self._httpd.server_address[1])

    def mark_ready(self, ready: bool) -> None:
        self._ready_until = time.monotonic() + READINESS_VALID_SECONDS if ready else 0.0

    @property
    def ready(self) -> bool:
        return time.monotonic() < self._ready_until

    def start(self) -> None:
        try:
            self._httpd = ThreadingHTTPServer((self.host, self.requested_port), _handler_for(self))
        except OSError as err:
            raise SystemExit(
                f"Cannot listen on WORKER_METRICS_HOST:WORKER_METRICS_PORT "
                f"{self.host}:{self.requested_port} ({err}). Pick a free port for each worker "
                "on this host, or WORKER_METRICS_PORT=0 to turn the endpoint off."
            ) from err
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="worker-metrics", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()

    def metrics_text(self) -> bytes:
        """The SDK exporter's text followed by the process collectors' (distinct names)."""
        parts = []
        if self.sdk_metrics_url is not None:
            with urllib.request.urlopen(
                self.sdk_metrics_url, timeout=_SDK_SCRAPE_TIMEOUT_SECONDS
            ) as response:
                parts.append(response.read())
        parts.append(generate_latest(REGISTRY))
        return b"".join(part if part.endswith(b"\n") else part + b"\n" for part in parts)

    def authorized(self, header: str | None) -> bool:
        if not self.token:  # none set (an empty METRICS_TOKEN= means none too)
            return True
        expected = f"Bearer {self.token}"
        return header is not None and secrets.compare_digest(header.encode(), expected.encode())


def _handler_for(server: WorkerStatusServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/health/live":
                self._json(200, {"status": "alive"})
            elif path == "/health/ready":
                if server.ready:
                    self._json(200, {"status": "ready"})
                else:
                    self._json(
                        503,
                        {
                            "status": "not_ready",
                            "detail": "The worker is not polling: it is starting, stopping, "
                            "or cannot reach Temporal.",
                        },
                    )
            elif path == "/metrics":
                self._metrics()
            else:
                self._json(404, {"detail": "Not found: try /metrics, /health/live, /health/ready"})

        def _metrics(self) -> None:
            if server.sdk_metrics_url is None:
                self._json(404, {"detail": "Metrics are off (METRICS_ENABLED=false)."})
                return
            if not server.authorized(self.headers.get("Authorization")):
                self._json(401, {"detail": "Send Authorization: Bearer <METRICS_TOKEN>."})
                return
            try:
                body = server.metrics_text()
            except OSError as err:
                self._json(503, {"detail": f"The Temporal SDK's exporter did not answer: {err}"})
                return
            self._send(200, body, CONTENT_TYPE_LATEST)

        def _json(self, status: int, body: dict[str, str]) -> None:
            self._send(status, json.dumps(body).encode(), "application/json")

        def _send(self, status: int, body: bytes, content_type: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass  # scrapes and probes every few seconds would drown the worker's own log

    return Handler


def _free_loopback_port() -> int:
    # The SDK's exporter cannot report the port it bound, so it is given one known to be free.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
