"""Attacks on the sandbox, delivered as a model would: generated EDA code, approved, run.

One service (the real dev server, `python worker.py`, the API) whose LLM-backed agents talk to a
local stand-in. The stand-in's Data Engineering agent answers with attacker code
(tests/sandbox_attack_script.py) that tries every attack from issue 8 and records what happened;
each attack has its own test over that record and over what the host sees afterwards. Attacks
that need the worker killed or reconfigured get their own runs. Every run must go on or fail
with a clear reason, and the service must stay healthy with normal runs completing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from temporalio.testing import WorkflowEnvironment

from tests.conftest import ROOT, ServiceProcesses
from tests.host_processes import live_processes_with, new_marker
from tests.llm_standin import FakeLlmServer, Recorded, Scripted, openai_ok, service_using
from tests.sample_data import make_churn
from tests.test_llm_whole_run import ANSWERS, EDA_CODE, MODEL, recognise
from tests.test_service_integration import awaiting_approval, start, wait_until

pytestmark = pytest.mark.integration

API_KEY = f"sk-attack-canary-{uuid.uuid4().hex}"  # the worker's secret the code must not find
TEMPORAL_DB_CANARY = "TEMPORAL-DB-CANARY"
MAX_PROCESSES = 64
DISK_MB = 64
SCRIPT = Path(__file__).with_name("sandbox_attack_script.py")
PARAMS_LINE = "PARAMS: dict[str, Any] = {}  # filled in by the test"
FINISHED = {"completed", "failed", "cancelled", "timed_out"}


# --- The stand-in model and the service -----------------------------------------------------------


class AttackerStandIn:
    """Answers each agent as a good model would, except Data Engineering: that is eda_code."""

    def __init__(self) -> None:
        self.eda_code = EDA_CODE

    def __call__(self, request: Recorded) -> Scripted:
        agent = recognise(request)
        if agent == "data_engineering":
            return openai_ok(json.dumps({"code": self.eda_code, "summary": "Profiles the data."}))
        return openai_ok(json.dumps(ANSWERS[agent]))


@pytest.fixture(scope="module")
def model(llm: FakeLlmServer) -> Iterator[AttackerStandIn]:
    llm.reset()
    standin = AttackerStandIn()
    llm.responder = standin
    try:
        yield standin
    finally:
        llm.reset()


@pytest.fixture(scope="module")
def attacked(dev_server_env: WorkflowEnvironment, llm: FakeLlmServer) -> Iterator[ServiceProcesses]:
    # Outside /tmp, like a real DATA_DIR: under /tmp, the sandbox's private /tmp would hide it,
    # and writes "into" it would land there, proving nothing.
    data_dir = ROOT / "data" / f"attack-tests-{uuid.uuid4().hex[:8]}"
    data_dir.mkdir(parents=True)
    # Where `make dev` keeps Temporal's database; the in-memory test server has none, so a canary.
    (data_dir / "temporal.db").write_text(TEMPORAL_DB_CANARY)
    try:
        with service_using(
            llm,
            dev_server_env.client.service_client.config.target_host,
            data_dir,
            OPENAI_API_KEY=API_KEY,
            OPENAI_MODEL=MODEL,
            EXECUTION_TIMEOUT_SECONDS="60",
            EXECUTION_MAX_PROCESSES=str(MAX_PROCESSES),
            EXECUTION_DISK_MB=str(DISK_MB),
        ) as processes:
            yield processes
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="module")
def api(attacked: ServiceProcesses) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=attacked.base_url, timeout=30) as client:
        yield client


@pytest.fixture(scope="module")
def churn_csv(tmp_path_factory: pytest.TempPathFactory) -> str:
    path = tmp_path_factory.mktemp("attack-datasets") / "churn.csv"
    make_churn(rows=300).to_csv(path, index=False)
    return str(path)


def run_to_the_end(
    api: httpx.Client, model: AttackerStandIn, churn_csv: str, eda_code: str
) -> tuple[str, dict[str, Any]]:
    """Start a run, approve the code the stand-in wrote, wait until it ends; its id and state."""
    model.eda_code = eda_code
    workflow_id = start(api, churn_csv)
    try:
        wait_until(api, workflow_id, awaiting_approval, timeout=60)
        approved = api.post(f"/workflow/{workflow_id}/approve", json={"version": 1})
        assert approved.status_code == 200, approved.text
        wait_until(api, workflow_id, lambda body: body["status"] in FINISHED, timeout=120)
    except BaseException:
        with contextlib.suppress(httpx.HTTPError):
            api.post(f"/workflow/{workflow_id}/cancel")
        raise
    return workflow_id, api.get(f"/workflow/{workflow_id}").json()


# --- A normal run first (the victim), then the attacks --------------------------------------------


@dataclass
class Victim:
    workflow_id: str
    summary: bytes
    artifacts: Path


@pytest.fixture(scope="module")
def victim(
    api: httpx.Client, model: AttackerStandIn, churn_csv: str, attacked: ServiceProcesses
) -> Victim:
    workflow_id, state = run_to_the_end(api, model, churn_csv, EDA_CODE)
    assert state["status"] == "completed", state["last_error"]
    summary = api.get(f"/workflow/{workflow_id}/artifacts/browser_agent/v1/eda_summary.json")
    assert summary.status_code == 200
    artifacts = attacked.data_dir / "artifacts" / workflow_id / "browser_agent" / "v1"
    assert (artifacts / "eda_summary.json").is_file()
    return Victim(workflow_id, summary.content, artifacts)


@dataclass
class AttackRun:
    params: dict[str, Any]
    workflow_id: str
    state: dict[str, Any]
    verdicts: dict[str, dict[str, Any]]


@pytest.fixture(scope="module")
def attacks(
    api: httpx.Client,
    model: AttackerStandIn,
    churn_csv: str,
    attacked: ServiceProcesses,
    victim: Victim,
) -> AttackRun:
    assert attacked.worker is not None
    params = {
        "temporal_db": str(attacked.data_dir / "temporal.db"),
        "victim_artifacts": str(victim.artifacts),
        "daemon_marker": _marker(),
        "worker_pid": attacked.worker.pid,
        "big_file_name": f"attack-{uuid.uuid4().hex}.bin",
        "data_dir": str(attacked.data_dir),
        "ports": sorted(service_ports(attacked)),
        "host_addresses": host_addresses(),
        "api_url": attacked.base_url,
    }
    source = SCRIPT.read_text()
    assert PARAMS_LINE in source
    code = source.replace(PARAMS_LINE, f"PARAMS: dict[str, Any] = {params!r}")
    workflow_id, state = run_to_the_end(api, model, churn_csv, code)
    response = api.get(f"/workflow/{workflow_id}/artifacts/browser_agent/v1/verdicts.json")
    assert response.status_code == 200, (state["last_error"], state["code_context"])
    return AttackRun(params, workflow_id, state, response.json())


def test_the_attacked_run_goes_on_to_completion_and_records_its_isolation(
    attacks: AttackRun,
) -> None:
    state = attacks.state
    assert state["status"] == "completed", state["last_error"]
    eda = state["code_context"]["eda_result"]
    assert eda["exit_code"] == 0, eda["stderr_tail"]
    assert eda["isolation"] == "bubblewrap"
    assert state["code_context"]["training_result"]["isolation"] == "bubblewrap"
    assert set(attacks.verdicts) == {
        "read_etc_shadow",
        "read_temporal_db",
        "write_other_runs_artifact",
        "spawn_daemons",
        "signal_worker",
        "visible_processes",
        "fork_300",
        "write_100mb_outside",
        "read_worker_environ",
        "connect_service_ports",
        "write_data_dir",
        "fork_storm",
    }
    assert all(v["seconds"] < 20 for v in attacks.verdicts.values()), attacks.verdicts


def test_reading_etc_shadow_is_stopped(attacks: AttackRun) -> None:
    assert attacks.verdicts["read_etc_shadow"]["error"] == "FileNotFoundError"


def test_reading_the_temporal_database_is_stopped(attacks: AttackRun) -> None:
    verdict = attacks.verdicts["read_temporal_db"]
    assert verdict["error"] == "FileNotFoundError"
    assert TEMPORAL_DB_CANARY not in json.dumps(attacks.verdicts)


def test_writing_into_another_runs_artifacts_is_stopped(
    attacks: AttackRun, victim: Victim, api: httpx.Client
) -> None:
    verdict = attacks.verdicts["write_other_runs_artifact"]
    if not victim.artifacts.is_relative_to("/tmp"):
        assert verdict["error"] == "PermissionError", verdict  # raised when every write failed
    # A checkout under /tmp (a CI clone): the path exists inside only in the sandbox's private
    # /tmp, so the write "succeeds" there; what matters is the host, checked below.
    served = api.get(f"/workflow/{victim.workflow_id}/artifacts/browser_agent/v1/eda_summary.json")
    assert served.content == victim.summary
    planted = api.get(f"/workflow/{victim.workflow_id}/artifacts/browser_agent/v1/planted.txt")
    assert planted.status_code == 404
    assert not (victim.artifacts / "planted.txt").exists()


def test_daemons_spawned_by_the_code_do_not_outlive_the_step(attacks: AttackRun) -> None:
    assert attacks.verdicts["spawn_daemons"] == {
        "spawned": 10,
        **_seconds(attacks, "spawn_daemons"),
    }
    assert _host_processes_with(attacks.params["daemon_marker"]) == []


def test_signalling_the_worker_is_stopped(attacks: AttackRun, attacked: ServiceProcesses) -> None:
    assert attacks.verdicts["signal_worker"]["error"] == "ProcessLookupError"
    seen = attacks.verdicts["visible_processes"]
    assert seen["count"] < 20  # the sandbox's own few, not the host's
    assert not any("worker.py" in command or "uvicorn" in command for command in seen["commands"])
    assert attacked.worker is not None and attacked.worker.poll() is None


def test_forking_300_processes_is_stopped_at_the_process_limit(attacks: AttackRun) -> None:
    verdict = attacks.verdicts["fork_300"]
    assert verdict["error"] == "BlockingIOError", verdict
    assert 0 < verdict["started"] < MAX_PROCESSES


def test_writing_100mb_outside_the_work_folder_is_stopped_and_leaves_nothing(
    attacks: AttackRun, attacked: ServiceProcesses
) -> None:
    verdict = attacks.verdicts["write_100mb_outside"]
    name = attacks.params["big_file_name"]
    assert len(verdict) == 6 + 1  # six places, and the timing
    for place, outcome in verdict.items():
        if place == "seconds":
            continue
        assert outcome["written"] <= DISK_MB * 1024 * 1024, (place, outcome)
        assert outcome["error"] in {"OSError", "FileNotFoundError", "PermissionError"}, outcome
    for folder in ("/tmp", str(attacked.data_dir), "/", "/dev/shm", "/usr"):
        assert not (Path(folder) / name).exists(), folder
    assert not (Path(attacks.params["victim_artifacts"]) / name).exists()


def test_the_workers_environment_and_secrets_are_out_of_reach(attacks: AttackRun) -> None:
    verdict = attacks.verdicts["read_worker_environ"]
    assert verdict[str(attacks.params["worker_pid"])] == "FileNotFoundError"
    everything = json.dumps(attacks.verdicts)
    assert API_KEY not in everything
    assert "OPENAI_API_KEY" not in everything and "TEMPORAL_ADDRESS" not in everything
    assert "DATASET_PATH=/workspace/dataset.csv" in verdict["self"]  # it did read its own


def test_no_port_the_service_listens_on_is_reachable(
    attacks: AttackRun, attacked: ServiceProcesses
) -> None:
    ports = attacks.params["ports"]
    api_port = attacked.port
    temporal_port = int(attacked.env["TEMPORAL_ADDRESS"].rsplit(":", 1)[1])
    assert {api_port, temporal_port} <= set(ports)
    for port in (api_port, temporal_port):  # they really listen, seen from the host
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    verdict = attacks.verdicts["connect_service_ports"]
    assert verdict["connected"] == []
    assert len(verdict["refused"]) == len(ports) * (1 + len(attacks.params["host_addresses"]))
    assert verdict["http"] == "URLError"


def test_writing_into_data_dir_is_stopped(attacks: AttackRun, attacked: ServiceProcesses) -> None:
    assert attacks.verdicts["write_data_dir"]["error"] in {"FileNotFoundError", "OSError"}
    assert not (attacked.data_dir / "pwned.txt").exists()


def test_a_fork_storm_is_stopped_and_the_service_stays_healthy(
    attacks: AttackRun, api: httpx.Client
) -> None:
    verdict = attacks.verdicts["fork_storm"]
    assert verdict["refused"] > 0, verdict
    assert verdict["started"] < MAX_PROCESSES
    assert api.get("/health").status_code == 200


# --- Attacks that need their own run --------------------------------------------------------------

DAEMONS_THEN_WAIT = """\
import json, os, time
DATASET_PATH = os.environ.get("DATASET_PATH", "dataset.csv")
OUTPUT_DIR = os.environ.get("OUTPUT_DIR", ".")
for _ in range(10):
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", "{marker}"])
        os._exit(0)
    os.wait()
time.sleep(50)  # the step is still running when the worker is killed
with open(os.path.join(OUTPUT_DIR, "eda_summary.json"), "w") as out:
    json.dump({{"rows": len(open(DATASET_PATH).readlines()) - 1}}, out)
"""


def test_children_of_a_step_die_with_a_sigkilled_worker(
    api: httpx.Client,
    model: AttackerStandIn,
    churn_csv: str,
    attacked: ServiceProcesses,
    attacks: AttackRun,  # after the shared run, which needs the first worker alive
) -> None:
    marker = _marker()
    model.eda_code = DAEMONS_THEN_WAIT.format(marker=marker)
    workflow_id = start(api, churn_csv)
    try:
        wait_until(api, workflow_id, awaiting_approval, timeout=60)
        assert api.post(f"/workflow/{workflow_id}/approve", json={"version": 1}).status_code == 200
        deadline = time.monotonic() + 60
        while len(_host_processes_with(marker)) < 10 and time.monotonic() < deadline:
            time.sleep(0.2)
        assert len(_host_processes_with(marker)) == 10, "the daemons never started"

        assert attacked.worker is not None
        attacked.worker.send_signal(signal.SIGKILL)
        attacked.worker.wait(timeout=10)

        deadline = time.monotonic() + 5
        while _host_processes_with(marker) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert _host_processes_with(marker) == []
    finally:
        if attacked.worker is None or attacked.worker.poll() is not None:
            attacked.start_worker()
        with contextlib.suppress(httpx.HTTPError):
            api.post(f"/workflow/{workflow_id}/cancel")
    ended = wait_until(api, workflow_id, lambda body: body["status"] in FINISHED, timeout=90)
    assert ended["status"] == "cancelled"
    assert api.get("/health").status_code == 200


def test_without_bubblewrap_generated_code_is_refused_with_what_to_do(
    api: httpx.Client, model: AttackerStandIn, churn_csv: str, attacked: ServiceProcesses
) -> None:
    _restart_worker(attacked, PATH=str(attacked.data_dir / "no-bwrap-here"))
    try:
        _, state = run_to_the_end(api, model, churn_csv, EDA_CODE)
    finally:
        _restart_worker(attacked, PATH=os.environ.get("PATH", ""))
    assert state["status"] == "failed"
    error = state["last_error"]
    assert "cannot isolate it" in error and "bubblewrap (bwrap) is not installed" in error, error
    assert "apt-get install bubblewrap" in error and "SANDBOX=unisolated" in error
    assert state["code_context"]["eda_result"] is None  # nothing ran


def test_after_the_attacks_the_service_is_healthy_and_a_normal_run_completes(
    api: httpx.Client,
    model: AttackerStandIn,
    churn_csv: str,
    attacks: AttackRun,
) -> None:
    assert api.get("/health").status_code == 200
    _, state = run_to_the_end(api, model, churn_csv, EDA_CODE)
    assert state["status"] == "completed", state["last_error"]
    assert state["code_context"]["eda_result"]["isolation"] == "bubblewrap"


# --- What the host sees ---------------------------------------------------------------------------


def _seconds(attacks: AttackRun, name: str) -> dict[str, Any]:
    return {"seconds": attacks.verdicts[name]["seconds"]}


def _marker() -> str:
    return new_marker(5000)


_host_processes_with = live_processes_with


def _listening_sockets() -> dict[int, int]:
    """Socket inode -> port, for every TCP socket listening in the host's network namespace."""
    sockets = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(FileNotFoundError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                if fields[3] == "0A":  # LISTEN
                    sockets[int(fields[9])] = int(fields[1].rsplit(":", 1)[1], 16)
    return sockets


def _ports_of(pid: int, sockets: dict[int, int]) -> set[int]:
    ports = set()
    with contextlib.suppress(OSError):
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                link = os.readlink(fd)
                if link.startswith("socket:["):
                    inode = int(link[8:-1])
                    if inode in sockets:
                        ports.add(sockets[inode])
    return ports


def service_ports(attacked: ServiceProcesses) -> set[int]:
    """Every port the worker, the API and the Temporal server listen on."""
    assert attacked.worker is not None and attacked.api is not None
    sockets = _listening_sockets()
    temporal_port = int(attacked.env["TEMPORAL_ADDRESS"].rsplit(":", 1)[1])
    ports = _ports_of(attacked.worker.pid, sockets) | _ports_of(attacked.api.pid, sockets)
    for entry in Path("/proc").iterdir():  # the Temporal server: whoever listens on its port
        if entry.name.isdigit():
            owned = _ports_of(int(entry.name), sockets)
            if temporal_port in owned:
                ports |= owned
    return ports | {attacked.port, temporal_port}


def host_addresses() -> list[str]:
    """The host's own non-loopback IPv4 address, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect(("192.0.2.1", 9))
        except OSError:
            return []
        address = str(probe.getsockname()[0])
    return [] if address.startswith("127.") else [address]


def _restart_worker(attacked: ServiceProcesses, **env: str) -> None:
    assert attacked.worker is not None
    attacked.worker.terminate()
    attacked.worker.wait(timeout=20)
    attacked.env.update(env)
    attacked.start_worker()
