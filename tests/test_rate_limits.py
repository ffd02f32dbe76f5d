"""Abuse limits over real HTTP: per principal, stricter on start, shared by replicas via Redis."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import ServiceProcesses, free_port
from tests.test_auth import create_key

pytestmark = pytest.mark.integration

START_BODY = {"user_goal": "g", "dataset_url": "missing.csv"}


def create_keys(path: Path, *names: str) -> dict[str, str]:
    """Admin keys from the real key command, written to a key file at `path`."""
    keys, entries = {}, []
    for name in names:
        keys[name], entry = create_key(name, "admin")
        entries.append(entry)
    path.write_text(json.dumps(entries))
    return keys


def assert_too_many(response: httpx.Response, what: str) -> None:
    assert response.status_code == 429, response.text
    assert 1 <= int(response.headers["Retry-After"]) <= 60
    assert what in response.json()["detail"]


@pytest.fixture(scope="module")
def limited_api(
    dev_server_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, dict[str, str]]]:
    """An API (no worker: started runs just wait in their queue) with small limits."""
    data_dir = tmp_path_factory.mktemp("limits")
    keys = create_keys(data_dir / "keys.json", "reader", "starter", "other")
    processes = ServiceProcesses(
        dev_server_env.client.service_client.config.target_host,
        data_dir,
        AUTH_MODE="api_key",
        API_KEYS_FILE=str(data_dir / "keys.json"),
        RATE_LIMIT_DEFAULT="6/minute",
        RATE_LIMIT_START="2/minute",
    )
    processes.start_api()
    try:
        yield processes.base_url, keys
    finally:
        processes.stop()


def test_a_principal_past_the_limit_gets_429_with_retry_after_and_others_do_not(
    limited_api: tuple[str, dict[str, str]],
) -> None:
    base_url, keys = limited_api
    for _ in range(6):
        ok = httpx.get(f"{base_url}/workflows", headers={"X-API-Key": keys["reader"]}, timeout=30)
        assert ok.status_code == 200, ok.text
    refused = httpx.get(f"{base_url}/workflows", headers={"X-API-Key": keys["reader"]}, timeout=30)
    assert_too_many(refused, "principal reader")
    # A limit per principal: someone else is not punished for it.
    other = httpx.get(f"{base_url}/workflows", headers={"X-API-Key": keys["other"]}, timeout=30)
    assert other.status_code == 200


def test_starting_runs_has_a_stricter_limit(limited_api: tuple[str, dict[str, str]]) -> None:
    base_url, keys = limited_api
    headers = {"X-API-Key": keys["starter"]}
    for _ in range(2):
        started = httpx.post(f"{base_url}/workflow/start", json=START_BODY, headers=headers)
        assert started.status_code == 200, started.text
    refused = httpx.post(f"{base_url}/workflow/start", json=START_BODY, headers=headers)
    assert_too_many(refused, "run starts")
    # Three of the six calls a minute are used; reading still works.
    assert httpx.get(f"{base_url}/workflows", headers=headers, timeout=30).status_code == 200


def test_guessing_keys_is_limited_per_client_address(
    limited_api: tuple[str, dict[str, str]],
) -> None:
    base_url, _ = limited_api
    statuses = [
        httpx.get(
            f"{base_url}/workflows", headers={"X-API-Key": f"orc_guess-{n}"}, timeout=30
        ).status_code
        for n in range(8)
    ]
    assert statuses[:6] == [401] * 6
    refused = httpx.get(f"{base_url}/workflows", headers={"X-API-Key": "orc_guess"}, timeout=30)
    assert_too_many(refused, "address 127.0.0.1")


class RedisServer:
    """Debian's redis-server on a free loopback port, nothing written to disk."""

    def __init__(self, directory: Path) -> None:
        binary = shutil.which("redis-server")
        assert binary, "redis-server is missing: make test installs it (scripts/system-packages)"
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.process = subprocess.Popen(
            [binary, "--bind", "127.0.0.1", "--port", str(self.port), "--save", "",
             "--appendonly", "no", "--dir", str(directory), "--protected-mode", "yes"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while (
            subprocess.run(
                ["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True
            ).stdout.strip()
            != "PONG"
        ):
            assert self.process.poll() is None and time.monotonic() < deadline, "no redis"
            time.sleep(0.1)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=15)


def test_two_api_replicas_share_one_limit_through_redis(
    dev_server_env: WorkflowEnvironment, tmp_path: Path
) -> None:
    redis = RedisServer(tmp_path)
    keys = create_keys(tmp_path / "keys.json", "shared")
    replicas = [
        ServiceProcesses(
            dev_server_env.client.service_client.config.target_host,
            tmp_path,
            AUTH_MODE="api_key",
            API_KEYS_FILE=str(tmp_path / "keys.json"),
            RATE_LIMIT_DEFAULT="6/minute",
            RATE_LIMIT_STORAGE=redis.url,
        )
        for _ in range(2)
    ]
    try:
        for replica in replicas:
            replica.start_api()
        headers = {"X-API-Key": keys["shared"]}
        # Alternate replicas: each sees only three of the six calls, yet the seventh is refused.
        for n in range(6):
            response = httpx.get(
                f"{replicas[n % 2].base_url}/workflows", headers=headers, timeout=30
            )
            assert response.status_code == 200, response.text
        for replica in replicas:
            assert_too_many(
                httpx.get(f"{replica.base_url}/workflows", headers=headers, timeout=30),
                "principal shared",
            )
        # Without its store the API says so, rather than silently dropping the limit.
        redis.stop()
        down = httpx.get(f"{replicas[0].base_url}/workflows", headers=headers, timeout=30)
        assert down.status_code == 503
        assert "Redis" in down.json()["detail"]
    finally:
        for replica in replicas:
            replica.stop()
        redis.stop()
