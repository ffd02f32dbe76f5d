"""Property-based fuzzing of the whole API from its own OpenAPI document, auth switched on.

Schemathesis generates valid and invalid requests for every operation and runs all its checks:
no server errors, every status and body documented, invalid input refused, auth not ignored.
Bounded: fifteen examples per operation and a two-minute budget, against the real service.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import ServiceProcesses
from tests.test_auth import create_key

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SCHEMATHESIS = Path(sys.executable).parent / "st"

# Only what the schema cannot say: a page_token is opaque, so any string fits its schema, but
# only tokens this API returned name a page (400 otherwise); and rows to predict must hold the
# columns of that run's model, which its schema cannot know (422 naming them otherwise). Every
# other check runs unchanged.
CONFIG = """
[[operations]]
include-name = "GET /workflows"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429", "5xx"]

[[operations]]
include-name = "POST /workflow/{workflow_id}/predict"
checks.positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "422", "429", "5xx"]
"""


@pytest.fixture(scope="module")
def admin_service(
    dev_server_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcesses, str]]:
    data_dir = tmp_path_factory.mktemp("fuzzed")
    key, entry = create_key("fuzzer", "admin")
    (data_dir / "keys.json").write_text(json.dumps([entry]))
    processes = ServiceProcesses(
        dev_server_env.client.service_client.config.target_host,
        data_dir,
        AUTH_MODE="api_key",
        API_KEYS_FILE=str(data_dir / "keys.json"),
        # Runs the fuzzer starts fail at intake (made-up datasets) and use no sandbox.
        ALLOW_LOCAL_DATASETS="false",
        # An upload that happens to parse as a table makes a real run; one at a time (a 429,
        # which the schema documents, for the rest) keeps a two-core machine answering within
        # the fuzzer's response-time limit.
        MAX_ACTIVE_RUNS_PER_PRINCIPAL="1",
    )
    processes.start_worker()
    processes.start_api()
    processes.wait_until_worker_polls()
    try:
        yield processes, key
    finally:
        processes.stop()


def test_schemathesis_finds_no_failure_in_any_operation(
    admin_service: tuple[ServiceProcesses, str], tmp_path: Path
) -> None:
    service, key = admin_service
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    result = subprocess.run(
        [
            str(SCHEMATHESIS), "--config-file", str(config),
            "run", f"{service.base_url}/openapi.json",
            "--checks", "all",
            "--header", f"Authorization: Bearer {key}",
            "--max-examples", "15",
            "--max-time", "120",
            "--workers", "1",
            "--request-timeout", "30",
            "--seed", "20261129",
            "--generation-database", "none",
            "--no-color",
        ],
        cwd=tmp_path, capture_output=True, text=True, timeout=420,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout[-20000:] + result.stderr[-2000:]
