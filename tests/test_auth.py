"""Who may call what, over real HTTP: API keys, roles on every route, and the bind refusal."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml
from temporalio.testing import WorkflowEnvironment

from tests.conftest import ROOT, ServiceProcesses

pytestmark = pytest.mark.integration

ROLES = ("viewer", "operator", "approver", "admin")
MISSING_RUN = "wf-nosuchrun"
# Which roles each required role lets through; written out, not derived from the code under test.
ALLOWED = {
    "viewer": {"viewer", "operator", "approver", "admin"},
    "operator": {"operator", "admin"},
    "approver": {"approver", "admin"},
}
# (method, path, role it needs, JSON body)
ENDPOINTS: list[tuple[str, str, str, object]] = [
    # A dataset that does not exist: the run ends at intake without work for the sandbox.
    ("POST", "/workflow/start", "operator", {"user_goal": "g", "dataset_url": "missing.csv"}),
    ("GET", f"/workflow/{MISSING_RUN}/status", "viewer", None),
    ("GET", f"/workflow/{MISSING_RUN}", "viewer", None),
    ("POST", f"/workflow/{MISSING_RUN}/approve", "approver", {}),
    ("POST", f"/workflow/{MISSING_RUN}/reject", "approver", {"feedback": "no"}),
    ("POST", f"/workflow/{MISSING_RUN}/cancel", "operator", None),
    ("GET", f"/workflow/{MISSING_RUN}/artifacts", "viewer", None),
    ("GET", f"/workflow/{MISSING_RUN}/artifacts/eda/v1/code.py", "viewer", None),
    ("GET", "/workflows", "viewer", None),
]
OPEN_PATHS = {"/health", "/health/live", "/health/ready", "/docs", "/redoc", "/openapi.json"}


def create_key(name: str, *roles: str) -> tuple[str, dict[str, object]]:
    """Run the key command as an operator would; return the key and the entry it printed."""
    role_args = [arg for role in roles for arg in ("--role", role)]
    output = subprocess.run(
        [sys.executable, "-m", "api.keys", "create", name, *role_args],
        cwd=ROOT, capture_output=True, text=True, check=True,
    ).stdout.splitlines()  # fmt: skip
    return output[1], json.loads(output[-1])


@pytest.fixture(scope="module")
def keyed_service(
    dev_server_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcesses, dict[str, str]]]:
    data_dir = tmp_path_factory.mktemp("auth-service")
    key_by_role: dict[str, str] = {}
    entries = []
    for role in ROLES:
        key, entry = create_key(f"{role}-user", role)
        key_by_role[role] = key
        entries.append(entry)
    keys_file = data_dir / "keys.json"
    keys_file.write_text(json.dumps(entries))
    processes = ServiceProcesses(
        dev_server_env.client.service_client.config.target_host,
        data_dir,
        AUTH_MODE="api_key",
        API_KEYS_FILE=str(keys_file),
    )
    processes.start_worker()
    processes.start_api()
    try:
        yield processes, key_by_role
    finally:
        processes.stop()


def call(
    base_url: str, method: str, path: str, body: object, headers: dict[str, str]
) -> httpx.Response:
    return httpx.request(
        method, base_url + path, json=body, headers=headers, timeout=30, follow_redirects=False
    )


@pytest.mark.parametrize("role", ROLES)
@pytest.mark.parametrize(("method", "path", "needs", "body"), ENDPOINTS)
def test_each_role_reaches_exactly_the_routes_its_role_allows(
    keyed_service: tuple[ServiceProcesses, dict[str, str]],
    role: str,
    method: str,
    path: str,
    needs: str,
    body: object,
) -> None:
    service, keys = keyed_service
    response = call(service.base_url, method, path, body, {"Authorization": f"Bearer {keys[role]}"})
    if role in ALLOWED[needs]:
        assert response.status_code not in (401, 403), response.text
    else:
        assert response.status_code == 403, response.text
        detail = response.json()["detail"]
        assert f"'{needs}'" in detail and f"{role}-user" in detail


@pytest.mark.parametrize(("method", "path", "needs", "body"), ENDPOINTS)
def test_calls_without_or_with_a_wrong_key_get_401_with_a_challenge(
    keyed_service: tuple[ServiceProcesses, dict[str, str]],
    method: str,
    path: str,
    needs: str,
    body: object,
) -> None:
    service, keys = keyed_service
    for headers in (
        {},
        {"X-API-Key": "orc_not-a-key-anyone-issued"},
        {"Authorization": "Bearer orc_not-a-key-anyone-issued"},
        # Someone who read the key file holds hashes, not keys: a hash is no key.
        {"X-API-Key": "0" * 64},
        {"Authorization": f"Basic {keys['admin']}"},  # not the bearer scheme
    ):
        response = call(service.base_url, method, path, body, headers)
        assert response.status_code == 401, (headers, response.text)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        assert response.json()["detail"]


def test_every_route_in_the_openapi_document_refuses_anonymous_callers(
    keyed_service: tuple[ServiceProcesses, dict[str, str]],
) -> None:
    """Routes added later (by anyone) are covered too: each must demand credentials."""
    service, _ = keyed_service
    document = httpx.get(f"{service.base_url}/openapi.json", timeout=10).json()
    checked = 0
    for path, operations in document["paths"].items():
        if path in OPEN_PATHS:
            continue
        concrete = path.replace("{workflow_id}", MISSING_RUN).replace("{name}", "x.json")
        for method, operation in operations.items():
            schemes = {name for requirement in operation["security"] for name in requirement}
            assert {"HTTPBearer", "APIKeyHeader"} <= schemes, (method, path)
            response = call(service.base_url, method.upper(), concrete, None, {})
            assert response.status_code == 401, (method, path, response.text)
            checked += 1
    assert checked >= len(ENDPOINTS)


def test_health_and_docs_stay_open(
    keyed_service: tuple[ServiceProcesses, dict[str, str]],
) -> None:
    service, _ = keyed_service
    for path in ("/health", "/docs", "/redoc", "/openapi.json"):
        assert httpx.get(service.base_url + path, timeout=10).status_code == 200, path


def test_a_key_is_accepted_as_bearer_as_x_api_key_and_as_the_session_cookie(
    keyed_service: tuple[ServiceProcesses, dict[str, str]],
) -> None:
    service, keys = keyed_service
    for headers in (
        {"Authorization": f"Bearer {keys['viewer']}"},
        {"X-API-Key": keys["viewer"]},
        {"Cookie": f"orchestrator_session={keys['viewer']}"},
    ):
        response = httpx.get(f"{service.base_url}/workflows", headers=headers, timeout=30)
        assert response.status_code == 200, (headers, response.text)


def test_a_viewers_cookie_does_not_lend_an_attacker_the_admins_rights(
    keyed_service: tuple[ServiceProcesses, dict[str, str]],
) -> None:
    """A bad explicit key is refused even when a valid cookie rides along."""
    service, keys = keyed_service
    response = httpx.post(
        f"{service.base_url}/workflow/{MISSING_RUN}/cancel",
        headers={"X-API-Key": "orc_forged", "Cookie": f"orchestrator_session={keys['admin']}"},
        timeout=30,
    )
    assert response.status_code == 401


def test_an_operator_starts_a_run_and_a_viewer_may_not_cancel_it(
    keyed_service: tuple[ServiceProcesses, dict[str, str]],
) -> None:
    service, keys = keyed_service
    started = httpx.post(
        f"{service.base_url}/workflow/start",
        json={"user_goal": "g", "dataset_url": "missing.csv"},
        headers={"X-API-Key": keys["operator"]},
        timeout=30,
    )
    assert started.status_code == 200, started.text
    workflow_id = started.json()["workflow_id"]
    refused = httpx.post(
        f"{service.base_url}/workflow/{workflow_id}/cancel",
        headers={"X-API-Key": keys["viewer"]},
        timeout=30,
    )
    assert refused.status_code == 403
    assert "'operator'" in refused.json()["detail"]


def test_a_yaml_key_file_works_like_json(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    key, entry = create_key("yaml-user", "viewer", "approver")
    keys_file = tmp_path / "keys.yaml"
    keys_file.write_text(yaml.safe_dump([entry]))
    processes = ServiceProcesses(
        dev_server_env.client.service_client.config.target_host,
        tmp_path,
        AUTH_MODE="api_key",
        API_KEYS_FILE=str(keys_file),
    )
    processes.start_api()
    try:
        ok = httpx.get(f"{processes.base_url}/workflows", headers={"X-API-Key": key}, timeout=30)
        assert ok.status_code == 200, ok.text
        refused = httpx.post(
            f"{processes.base_url}/workflow/start",
            json={"user_goal": "g", "dataset_url": "missing.csv"},
            headers={"X-API-Key": key},
            timeout=30,
        )
        assert refused.status_code == 403
        assert "'operator'" in refused.json()["detail"]
    finally:
        processes.stop()


def test_the_key_command_stores_only_the_hash() -> None:
    key, entry = create_key("alice", "approver")
    assert key not in json.dumps(entry)
    assert entry["name"] == "alice" and entry["roles"] == ["approver"]
    assert len(str(entry["key_sha256"])) == 64


def run_api_until_exit(processes: ServiceProcesses, command: list[str]) -> tuple[int, str]:
    """Exit code and everything printed (the JSON logs go to stdout)."""
    result = subprocess.run(
        command, cwd=ROOT, env=processes.env, capture_output=True, text=True, timeout=60
    )
    return result.returncode, result.stdout + result.stderr


def test_a_broken_key_file_stops_the_api_at_start_with_the_reason(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    keys_file.write_text(json.dumps([{"name": "bob", "roles": ["boss"], "key_sha256": "ab"}]))
    processes = ServiceProcesses(
        "127.0.0.1:1", tmp_path, AUTH_MODE="api_key", API_KEYS_FILE=str(keys_file)
    )
    code, output = run_api_until_exit(processes, processes.api_command())
    assert code != 0
    assert "API_KEYS_FILE" in output and str(keys_file) in output


@pytest.mark.parametrize("host", ["0.0.0.0", "::"])
def test_without_auth_the_api_refuses_a_non_loopback_address(tmp_path: Path, host: str) -> None:
    """The check runs inside the real uvicorn start-up and exits before binding anything."""
    processes = ServiceProcesses("127.0.0.1:1", tmp_path)
    code, output = run_api_until_exit(processes, processes.api_command(host))
    assert code != 0
    assert f"Refusing to serve the API on {host} with AUTH_MODE=none" in output
    assert "ALLOW_INSECURE_BIND" in output


def test_uvicorn_host_from_its_environment_variable_is_checked_too(tmp_path: Path) -> None:
    processes = ServiceProcesses("127.0.0.1:1", tmp_path, UVICORN_HOST="0.0.0.0")
    command = [part for part in processes.api_command() if part not in ("--host", "127.0.0.1")]
    code, output = run_api_until_exit(processes, command)
    assert code != 0
    assert "Refusing to serve the API on 0.0.0.0" in output


def test_the_bind_check_allows_loopback_auth_or_an_explicit_override() -> None:
    from api.bind_check import InsecureBind, check_bind_address
    from settings import Settings

    check_bind_address(Settings(auth_mode="none"), "127.0.0.1")
    check_bind_address(Settings(auth_mode="none"), "::1")
    check_bind_address(Settings(auth_mode="none"), "localhost")
    check_bind_address(Settings(auth_mode="api_key"), "0.0.0.0")
    check_bind_address(Settings(auth_mode="none", allow_insecure_bind=True), "0.0.0.0")
    for host in ("0.0.0.0", "10.1.2.3", "api.example.com"):
        with pytest.raises(InsecureBind):
            check_bind_address(Settings(auth_mode="none"), host)
