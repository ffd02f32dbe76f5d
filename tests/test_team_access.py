"""Sharing the service safely, over real HTTP with API keys: who sees and acts on which run,
four eyes on approval, and the cap on active runs per principal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import ServiceProcesses
from tests.sample_data import make_churn
from tests.test_auth import create_key
from tests.test_service_integration import wait_until

pytestmark = pytest.mark.integration

PEOPLE = {
    "alice": ("operator", "approver"),  # starts runs and approves others'
    "bob": ("approver",),
    "carol": ("operator",),
    "vic": ("viewer",),
    "root": ("admin",),
}
GOAL = "Build a customer churn prediction model"


@pytest.fixture(scope="module")
def team(
    dev_server_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServiceProcesses, dict[str, httpx.Client], str]]:
    data_dir = tmp_path_factory.mktemp("team-service")
    keys, entries = {}, []
    for name, roles in PEOPLE.items():
        keys[name], entry = create_key(name, *roles)
        entries.append(entry)
    (data_dir / "keys.json").write_text(json.dumps(entries))
    dataset = Path(str(data_dir.parent)) / "team-churn.csv"
    make_churn(rows=400).to_csv(dataset, index=False)
    processes = ServiceProcesses(
        dev_server_env.client.service_client.config.target_host,
        data_dir,
        AUTH_MODE="api_key",
        API_KEYS_FILE=str(data_dir / "keys.json"),
        REQUIRE_SEPARATE_APPROVER="true",
        MAX_ACTIVE_RUNS_PER_PRINCIPAL="1",
    )
    processes.start_worker()
    processes.start_api()
    clients = {
        name: httpx.Client(
            base_url=processes.base_url, timeout=60, headers={"Authorization": f"Bearer {key}"}
        )
        for name, key in keys.items()
    }
    try:
        yield processes, clients, str(dataset)
    finally:
        for client in clients.values():
            client.close()
        processes.stop()


def listed(client: httpx.Client, **params: str) -> set[str]:
    response = client.get("/workflows", params=params)
    assert response.status_code == 200, response.text
    return {run["workflow_id"] for run in response.json()["workflows"]}


def test_owners_four_eyes_visibility_and_the_active_run_cap(team):
    _, people, dataset = team
    alice, bob, carol, vic, root = (people[n] for n in ("alice", "bob", "carol", "vic", "root"))

    started = alice.post("/workflow/start", json={"user_goal": GOAL, "dataset_url": dataset})
    assert started.status_code == 200, started.text
    run = started.json()["workflow_id"]
    waiting = wait_until(alice, run, lambda b: b["status"] == "awaiting_approval")
    assert waiting["owner"] == "alice"

    # One active run each: alice's second start is refused, naming the limit.
    second = alice.post("/workflow/start", json={"user_goal": GOAL, "dataset_url": dataset})
    assert second.status_code == 429
    assert "MAX_ACTIVE_RUNS_PER_PRINCIPAL" in second.json()["detail"]
    assert "Retry-After" in second.headers

    # Who sees it: the owner, approvers (it awaits approval), viewers and admins; not carol.
    assert run in listed(alice) and run in listed(alice, owner="me")
    assert run in listed(bob) and run in listed(vic) and run in listed(root)
    assert run not in listed(bob, owner="me")
    assert run not in listed(carol)
    assert carol.get(f"/workflow/{run}").status_code == 404
    assert carol.get(f"/workflow/{run}/status").status_code == 404
    assert carol.get(f"/workflow/{run}/artifacts").status_code == 404
    assert carol.post(f"/workflow/{run}/cancel").status_code == 404
    assert vic.get(f"/workflow/{run}").status_code == 200

    # Four eyes: alice may not approve her own run; bob may.
    own = alice.post(f"/workflow/{run}/approve")
    assert own.status_code == 403
    assert "REQUIRE_SEPARATE_APPROVER" in own.json()["detail"]
    approved = bob.post(f"/workflow/{run}/approve", json={"version": 1})
    assert approved.status_code == 200, approved.text
    assert approved.json()["run"]["human_approval"] == "APPROVED"

    state = vic.get(f"/workflow/{run}").json()
    trail = [(e["action"], e["by"], e["authenticated"], e["version"]) for e in state["audit"]]
    assert trail == [("started", "alice", True, None), ("approved", "bob", True, 1)]
    wait_until(root, run, lambda b: b["status"] in ("completed", "failed"), timeout=300)


def test_an_operator_cancels_only_their_own_runs(team):
    _, people, dataset = team
    carol, alice, root = people["carol"], people["alice"], people["root"]
    started = carol.post("/workflow/start", json={"user_goal": GOAL, "dataset_url": dataset})
    assert started.status_code == 200, started.text
    run = started.json()["workflow_id"]
    wait_until(carol, run, lambda b: b["status"] == "awaiting_approval")

    # alice reads it (she is an approver) but does not own it.
    refused = alice.post(f"/workflow/{run}/cancel")
    assert refused.status_code == 403 and "carol" in refused.json()["detail"]
    assert carol.post(f"/workflow/{run}/cancel").status_code == 200
    final = wait_until(root, run, lambda b: b["status"] == "cancelled")
    audit = root.get(f"/workflow/{run}").json()["audit"]
    assert (audit[-1]["action"], audit[-1]["by"]) == ("cancelled", "carol")
    assert final["last_error"] == "Cancelled by carol by request."
