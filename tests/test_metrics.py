"""Prometheus metrics and health probes of the real worker and API processes.

A whole run goes through the service as a user drives it; the API's and the worker's /metrics
are scraped before and after and read with prometheus_client's own parser, so a counter that
does not move, a label that is wrong or a series that is missing fails the test.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families
from temporalio.testing import WorkflowEnvironment

from tests.conftest import ROOT, TEMPORAL_CLI, ServiceProcesses, free_port
from tests.test_service_integration import awaiting_approval, start, wait_until
from workflows.contract import SEARCH_ATTRIBUTES

pytestmark = pytest.mark.integration

WORKFLOW = "DataScienceRun"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]  # by metric name and labels


class Observed(ServiceProcesses):
    """The service with the worker's metrics port on."""

    def __init__(self, temporal_address: str, data_dir: Path, **settings: str) -> None:
        self.worker_metrics_port = free_port()
        super().__init__(
            temporal_address,
            data_dir,
            WORKER_METRICS_PORT=str(self.worker_metrics_port),
            APPROVAL_TIMEOUT_SECONDS="600",
            **settings,
        )
        self.worker_url = f"http://127.0.0.1:{self.worker_metrics_port}"

    def wait_for_worker(self, path: str = "/health/ready", timeout: float = 90) -> None:
        """Until the worker's probe answers 200 (importing the data stack takes a while)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.worker is not None and self.worker.poll() is None, "the worker exited"
            if probe(self.worker_url, path) == 200:
                return
            time.sleep(0.2)
        raise AssertionError(f"the worker's {path} did not answer 200 within {timeout:g} s")


@pytest.fixture(scope="module")
def observed(
    dev_server_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Observed]:
    processes = Observed(
        dev_server_env.client.service_client.config.target_host,
        tmp_path_factory.mktemp("metrics-data"),
    )
    processes.start_worker()
    processes.start_api()
    try:
        processes.wait_for_worker()
        yield processes
    finally:
        processes.stop()


def probe(base_url: str, path: str) -> int | None:
    try:
        return httpx.get(f"{base_url}{path}", timeout=5).status_code
    except httpx.TransportError:
        return None


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def scrape(url: str) -> Samples:
    """Every sample of a Prometheus text page, keyed by name and labels."""
    response = httpx.get(url, timeout=10)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("text/plain")
    samples = {}
    for family in text_string_to_metric_families(response.text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def total(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over every series whose labels include `labels`; 0 when none does."""
    wanted = set(labels.items())
    return sum(
        value
        for (sample_name, sample_labels), value in samples.items()
        if sample_name == name and wanted <= sample_labels
    )


def run_to_completion(processes: Observed) -> str:
    with httpx.Client(base_url=processes.base_url, timeout=30) as api:
        workflow_id = start(api, "examples/churn.csv")
        wait_until(api, workflow_id, awaiting_approval)
        assert api.post(f"/workflow/{workflow_id}/approve").status_code == 200
        wait_until(api, workflow_id, lambda body: body["status"] == "completed", timeout=240)
    return workflow_id


@dataclass
class Scrapes:
    """The API's and the worker's metrics before and after one completed run."""

    api_before: Samples
    api_after: Samples
    worker_before: Samples
    worker_after: Samples

    def api_moved(self, name: str, **labels: str) -> float:
        return total(self.api_after, name, **labels) - total(self.api_before, name, **labels)

    def worker_moved(self, name: str, **labels: str) -> float:
        return total(self.worker_after, name, **labels) - total(self.worker_before, name, **labels)


@pytest.fixture(scope="module")
def one_run(observed: Observed) -> Scrapes:
    api_before = scrape(f"{observed.base_url}/metrics")
    worker_before = scrape(f"{observed.worker_url}/metrics")
    run_to_completion(observed)
    return Scrapes(
        api_before,
        scrape(f"{observed.base_url}/metrics"),
        worker_before,
        scrape(f"{observed.worker_url}/metrics"),
    )


def test_api_counts_and_times_requests_by_route_template_and_status(one_run: Scrapes):
    start_labels = {"handler": "/workflow/start", "method": "POST", "status": "200"}
    assert one_run.api_moved("http_requests_total", **start_labels) == 1
    assert one_run.api_moved("http_request_duration_seconds_count", **start_labels) == 1
    approve = {"handler": "/workflow/{workflow_id}/approve", "method": "POST", "status": "200"}
    assert one_run.api_moved("http_requests_total", **approve) == 1
    polls = {"handler": "/workflow/{workflow_id}/status", "method": "GET", "status": "200"}
    assert one_run.api_moved("http_requests_total", **polls) >= 1
    # No series carries a raw run id: that would be one series per run.
    assert not any("wf-" in dict(labels).get("handler", "") for _, labels in one_run.api_after)


def test_worker_reports_sdk_step_llm_and_sandbox_metrics(one_run: Scrapes):
    # The Temporal SDK's own runtime metrics.
    assert one_run.worker_moved("temporal_workflow_completed_total", workflow_type=WORKFLOW) == 1
    assert total(one_run.worker_after, "temporal_num_pollers") > 0
    # Every step's duration, by activity type and outcome.
    for step in (
        "fetch_dataset",
        "research_agent",
        "data_engineering_agent",
        "execute_eda",
        "ml_agent",
        "train_model",
        "critic_agent",
    ):
        assert (
            one_run.worker_moved(
                "orchestrator_step_duration_seconds_count", activity_type=step, outcome="succeeded"
            )
            >= 1
        ), step
    assert (
        one_run.worker_moved("orchestrator_step_duration_seconds_sum", activity_type="train_model")
        > 0
    )
    # The agents' LLM usage (the offline brain reports itself as a provider, with no tokens).
    usage_series = [
        dict(labels)
        for name, labels in one_run.worker_after
        if name == "orchestrator_llm_tokens_total" and ("activity_type", "research_agent") in labels
    ]
    assert {series["direction"] for series in usage_series} == {"input", "output"}
    assert all(series["provider"] == "offline" for series in usage_series)
    # Both executions ran in the local sandbox and succeeded, within every limit.
    assert (
        one_run.worker_moved(
            "orchestrator_sandbox_executions_total",
            backend="local",
            outcome="succeeded",
            limit="none",
        )
        >= 2
    )


def test_the_worker_counts_runs_by_final_status_and_approval_waits(one_run: Scrapes):
    assert one_run.worker_moved("orchestrator_runs_started_total", workflow_type=WORKFLOW) == 1
    assert one_run.worker_moved("orchestrator_runs_finished_total", status="completed") == 1
    assert one_run.worker_moved("orchestrator_runs_finished_total", status="failed") == 0
    assert (
        one_run.worker_moved("orchestrator_approval_wait_seconds_count", decision="approved") == 1
    )


# Series that exist only once their event happened (a retry, a failure); a completed run has none.
EVENT_ONLY = {
    "orchestrator_step_retries_total",
    "orchestrator_step_failures_total",
    "temporal_workflow_failed_total",
}


def test_the_grafana_dashboard_queries_only_metrics_the_service_exports(one_run: Scrapes):
    dashboard = json.loads((ROOT / "deploy/grafana/dashboards/orchestrator.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel.get("targets", [])]
    assert exprs, "the dashboard has no queries"
    queried = {
        name
        for expr in exprs
        for name in re.findall(r"\b((?:orchestrator|temporal|http)_\w+)", expr)
    }
    exported = {name for name, _ in one_run.api_after} | {name for name, _ in one_run.worker_after}
    missing = queried - exported - EVENT_ONLY
    assert not missing, f"the dashboard queries metrics nobody exports: {sorted(missing)}"


def test_prometheus_scrapes_the_ports_the_compose_file_gives(tmp_path: Path):
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus/prometheus.yml").read_text())
    targets = {
        job["job_name"]: job["static_configs"][0]["targets"] for job in prometheus["scrape_configs"]
    }
    worker_env = compose["services"]["worker"]["environment"]
    assert targets["orchestrator-worker"] == [f"worker:{worker_env['WORKER_METRICS_PORT']}"]
    assert worker_env["WORKER_METRICS_HOST"] == "0.0.0.0"  # reachable from Prometheus's container
    assert targets["orchestrator-api"] == ["api:8000"]
    for service in ("prometheus", "grafana", "otel-collector", "jaeger", "minio"):
        assert "observability" in compose["services"][service]["profiles"], service
    # The default `docker compose up` starts none of them; MinIO is also in `storage`.
    assert compose["services"]["minio"]["profiles"] == ["observability", "storage"]


def test_runs_awaiting_approval_is_a_gauge_of_open_runs(observed: Observed):
    with httpx.Client(base_url=observed.base_url, timeout=30) as api:
        workflow_id = start(api, "examples/churn.csv")
        wait_until(api, workflow_id, awaiting_approval)

        def waiting_runs() -> float:
            return total(
                scrape(f"{observed.base_url}/metrics"), "orchestrator_runs_awaiting_approval"
            )

        # Visibility is eventually consistent and the count is cached for a few seconds.
        wait_for(lambda: waiting_runs() >= 1, "the gauge to count the waiting run")
        counted = waiting_runs()
        assert api.post(f"/workflow/{workflow_id}/cancel").status_code == 200
        wait_for(lambda: waiting_runs() == counted - 1, "the gauge to drop the cancelled run")


def test_health_probes_of_the_api_and_the_worker(observed: Observed):
    for base_url in (observed.base_url, observed.worker_url):
        live = httpx.get(f"{base_url}/health/live", timeout=5)
        assert live.status_code == 200
        assert live.json()["status"] == "alive"
        ready = httpx.get(f"{base_url}/health/ready", timeout=5)
        assert ready.status_code == 200, ready.text
        assert ready.json()["status"] == "ready"
    assert httpx.get(f"{observed.worker_url}/nowhere", timeout=5).status_code == 404


async def test_ready_is_503_when_temporal_goes_away_while_live_stays_200(tmp_path: Path):
    # A Temporal server of this test's own, so stopping it disturbs no other test.
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=str(TEMPORAL_CLI),
        search_attributes=SEARCH_ATTRIBUTES,
        ip="127.0.0.1",
        port=free_port(),
        dev_server_extra_args=["--http-port", str(free_port()), "--metrics-port", str(free_port())],
    )
    processes = Observed(env.client.service_client.config.target_host, tmp_path)
    try:
        processes.start_worker()
        processes.start_api()
        processes.wait_for_worker()
        assert probe(processes.base_url, "/health/ready") == 200

        await env.shutdown()

        wait_for(lambda: probe(processes.worker_url, "/health/ready") == 503, "worker not ready")
        wait_for(lambda: probe(processes.base_url, "/health/ready") == 503, "API not ready")
        async with httpx.AsyncClient(timeout=30) as client:
            body = (await client.get(f"{processes.base_url}/health/ready")).json()
        assert body["temporal"] == "unreachable"
        assert "Temporal at" in body["detail"]
        assert probe(processes.worker_url, "/health/live") == 200
        assert probe(processes.base_url, "/health/live") == 200
    finally:
        processes.stop()
        await env.shutdown()


def test_metrics_token_guards_both_metrics_endpoints(tmp_path: Path, dev_server_env):
    processes = Observed(
        dev_server_env.client.service_client.config.target_host, tmp_path, METRICS_TOKEN="s3cret"
    )
    processes.start_worker()
    processes.start_api()
    try:
        processes.wait_for_worker("/health/live")
        for base_url in (processes.base_url, processes.worker_url):
            assert httpx.get(f"{base_url}/metrics", timeout=10).status_code == 401
            wrong = {"Authorization": "Bearer guess"}
            assert httpx.get(f"{base_url}/metrics", headers=wrong, timeout=10).status_code == 401
            right = {"Authorization": "Bearer s3cret"}
            response = httpx.get(f"{base_url}/metrics", headers=right, timeout=10)
            assert response.status_code == 200
            assert "process_cpu_seconds_total" in response.text
            # The probes stay open: load balancers carry no token.
            assert httpx.get(f"{base_url}/health/live", timeout=10).status_code == 200
    finally:
        processes.stop()
