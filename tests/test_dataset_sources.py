"""Where a dataset may come from: each way to reach what a run must not read is an attack here.

Local paths must stay inside DATASET_ROOTS and out of the service's own storage; http(s) URLs
must not reach internal addresses in any spelling, through a redirect, or by DNS rebinding;
uploads belong to whoever sent them. The first tests call intake directly; the last ones go
through the real API and worker and read the refusal in the run's /status.
"""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import httpx
import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from activities.dataset_network import refusal_reason
from activities.datasets import DatasetActivities
from api.keys import hash_key, new_key
from settings import Settings
from tests.conftest import ROOT, ServiceProcesses
from tests.standins import FileServerState, Route, ServerThread, file_server_app
from workflows.models import DatasetInfo, DatasetRequest
from workflows.redaction import redact_dataset_url

RUN = "wf-sources"
GOAL = "Predict which customers churn"
CHURN = (ROOT / "examples" / "churn.csv").read_bytes()


@pytest.fixture
def root(tmp_path: Path) -> Path:
    folder = tmp_path / "root"
    folder.mkdir()
    (folder / "churn.csv").write_bytes(CHURN)
    return folder


@pytest.fixture
def outside(tmp_path: Path) -> Path:
    """A perfectly good CSV that is simply not in a dataset root."""
    folder = tmp_path / "outside"
    folder.mkdir()
    (folder / "x.csv").write_bytes(CHURN)
    return folder / "x.csv"


@pytest.fixture
def settings(tmp_path: Path, root: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        dataset_roots=str(root),
        dataset_timeout_seconds=2.0,
        dataset_allowed_hosts="",
    )


@pytest.fixture
def file_server() -> Iterator[tuple[ServerThread, FileServerState]]:
    state = FileServerState(routes={"churn.csv": Route(CHURN)})
    with ServerThread(file_server_app(state)) as running:
        yield running, state


async def fetch(settings: Settings, url: str) -> DatasetInfo:
    return await DatasetActivities(settings).fetch_dataset(
        DatasetRequest(workflow_id=RUN, dataset_url=url, user_goal=GOAL)
    )


async def refused(settings: Settings, url: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await fetch(settings, url)
    error = caught.value
    assert error.type == "DatasetNotAllowed", error.message
    assert error.non_retryable
    assert not (settings.datasets_dir / RUN / "dataset.csv").exists()
    return error


# --- Local paths ------------------------------------------------------------------------------


async def test_a_file_inside_a_root_is_read_by_path_and_by_file_url(
    settings: Settings, root: Path
) -> None:
    by_path = await fetch(settings, str(root / "churn.csv"))
    by_url = await fetch(settings, (root / "churn.csv").as_uri())

    assert by_path.sha256 == by_url.sha256 == hashlib.sha256(CHURN).hexdigest()


async def test_a_path_outside_the_roots_is_refused_naming_the_setting(
    settings: Settings, outside: Path
) -> None:
    error = await refused(settings, str(outside))

    assert "DATASET_ROOTS" in error.message and "POST /datasets" in error.message


async def test_a_missing_file_outside_the_roots_is_refused_without_saying_it_is_missing(
    settings: Settings, outside: Path
) -> None:
    present = await refused(settings, str(outside))
    absent = await refused(settings, str(outside.with_name("nothing-here.csv")))

    # The same refusal either way: a caller cannot probe which files exist on the worker.
    assert present.message.split(" (")[0] == absent.message.split(" (")[0]


async def test_file_urls_obey_the_roots(settings: Settings) -> None:
    error = await refused(settings, "file:///etc/passwd")

    assert "DATASET_ROOTS" in error.message


async def test_a_file_url_naming_another_host_is_refused(settings: Settings) -> None:
    await refused(settings, "file://fileserver.internal/share/churn.csv")


async def test_dot_dot_traversal_out_of_a_root_is_refused(
    settings: Settings, root: Path, outside: Path
) -> None:
    await refused(settings, f"{root}/../outside/x.csv")
    await refused(settings, f"{root}/{'../' * 30}etc/passwd")


async def test_a_symlink_inside_a_root_pointing_outside_is_refused(
    settings: Settings, root: Path, outside: Path
) -> None:
    (root / "innocent.csv").symlink_to(outside)
    (root / "linked-folder").symlink_to(outside.parent, target_is_directory=True)

    await refused(settings, str(root / "innocent.csv"))
    await refused(settings, str(root / "linked-folder" / "x.csv"))


async def test_a_symlink_that_stays_inside_the_root_is_fine(settings: Settings, root: Path) -> None:
    (root / "alias.csv").symlink_to(root / "churn.csv")

    info = await fetch(settings, str(root / "alias.csv"))

    assert info.size_bytes == len(CHURN)


@pytest.mark.parametrize(
    "stored",
    ["datasets/wf-victim/dataset.csv", "artifacts/wf-victim/ml_worker/v1/metrics.json",
     "uploads/ds-0123456789abcdef01234567/dataset.csv", "temporal.db"],
)  # fmt: skip
async def test_the_services_own_storage_is_refused_even_under_a_root(
    settings: Settings, tmp_path: Path, stored: str
) -> None:
    victim = settings.data_dir / stored
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_bytes(CHURN)
    # A root configured above DATA_DIR (here: the folder holding it) must not open it.
    wide = settings.model_copy(update={"dataset_roots": str(tmp_path)})

    error = await refused(wide, str(victim))

    assert "DATA_DIR" in error.message and "dataset_id" in error.message


async def test_a_file_beside_the_services_storage_under_a_root_is_fine(
    settings: Settings, tmp_path: Path
) -> None:
    beside = settings.data_dir / "my-own.csv"
    beside.parent.mkdir(parents=True)
    beside.write_bytes(CHURN)
    wide = settings.model_copy(update={"dataset_roots": str(tmp_path)})

    assert (await fetch(wide, str(beside))).size_bytes == len(CHURN)


async def test_allow_local_datasets_false_refuses_even_inside_a_root(
    settings: Settings, root: Path
) -> None:
    locked = settings.model_copy(update={"allow_local_datasets": False})

    error = await refused(locked, str(root / "churn.csv"))

    assert "ALLOW_LOCAL_DATASETS" in error.message


# --- http(s) to internal addresses --------------------------------------------------------------


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "localhost", "2130706433", "0177.0.0.1", "0x7f000001", "127.1",
     "[::ffff:127.0.0.1]", "[::ffff:7f00:1]"],
)  # fmt: skip
async def test_loopback_in_every_spelling_is_refused_before_connecting(
    settings: Settings, file_server: tuple[ServerThread, FileServerState], host: str
) -> None:
    running, state = file_server

    error = await refused(settings, f"http://{host}:{running.port}/churn.csv")

    assert "loopback" in error.message and "DATASET_ALLOWED_HOSTS" in error.message
    assert state.requests["churn.csv"] == 0, "the server was contacted"


async def test_ipv6_loopback_is_refused_before_connecting(settings: Settings) -> None:
    state = FileServerState(routes={"churn.csv": Route(CHURN)})
    with ServerThread(file_server_app(state), host="::1") as running:
        error = await refused(settings, f"{running.url}/churn.csv")
        allowed = settings.model_copy(update={"dataset_allowed_hosts": "::1"})
        info = await fetch(allowed, f"{running.url}/churn.csv")

    assert "loopback" in error.message
    assert info.size_bytes == len(CHURN)
    assert state.requests["churn.csv"] == 1, "only the allowed fetch reached the server"


@pytest.mark.parametrize("allowed", ["127.0.0.1", "127.0.0.0/8", "localhost"])
async def test_an_allowed_internal_host_is_fetched(
    settings: Settings, file_server: tuple[ServerThread, FileServerState], allowed: str
) -> None:
    running, state = file_server
    allowing = settings.model_copy(update={"dataset_allowed_hosts": f"data.internal,{allowed}"})
    host = "localhost" if allowed == "localhost" else "2130706433"

    info = await fetch(allowing, f"http://{host}:{running.port}/churn.csv")

    assert info.size_bytes == len(CHURN)
    assert state.requests["churn.csv"] == 1


@pytest.mark.parametrize(
    "url",
    ["http://169.254.169.254/latest/meta-data/iam/security-credentials/",
     "http://[fd00:ec2::254]/latest/meta-data/", "http://100.100.100.200/latest/meta-data/",
     "http://metadata.google.internal/computeMetadata/v1/", "http://[::ffff:169.254.169.254]/"],
)  # fmt: skip
async def test_cloud_metadata_is_refused_even_when_its_network_is_allowed(
    settings: Settings, url: str
) -> None:
    allowing = settings.model_copy(
        update={"dataset_allowed_hosts": "169.254.0.0/16,fd00::/8,100.64.0.0/10,::/0"}
    )

    error = await refused(allowing, url)

    assert "metadata" in error.message


@pytest.mark.parametrize(
    ("address", "reason"),
    [("10.1.2.3", "private"), ("192.168.0.10", "private"), ("172.16.5.4", "private"),
     ("169.254.1.1", "link-local"), ("fe80::1", "link-local"), ("224.0.0.251", "multicast"),
     ("ff02::1", "multicast"), ("0.0.0.0", "unspecified"), ("::", "unspecified"),
     ("240.0.0.1", "reserved"), ("100.64.0.1", "non-public"), ("fc00::1", "private"),
     ("64:ff9b::7f00:1", "loopback"), ("2002:7f00:1::", "loopback"), ("8.8.8.8", None),
     ("2606:4700:4700::1111", None)],
)  # fmt: skip
def test_each_kind_of_internal_address_has_its_reason(address: str, reason: str | None) -> None:
    found = refusal_reason(ipaddress.ip_address(address))

    assert (found is None) if reason is None else (found is not None and reason in found)


def redirecting_app(target: str, hops: int = 1) -> FastAPI:
    """Redirects /churn.csv to target, through `hops - 1` hops on itself first."""
    app = FastAPI()

    @app.get("/hop/{n}")
    @app.get("/churn.csv")
    async def redirect(n: int = 0) -> Response:
        following = target if n + 1 >= hops else f"/hop/{n + 1}"
        return RedirectResponse(following, status_code=302)

    return app


async def test_a_redirect_from_an_allowed_host_to_loopback_is_refused(
    settings: Settings, file_server: tuple[ServerThread, FileServerState]
) -> None:
    victim, state = file_server
    only_first = settings.model_copy(update={"dataset_allowed_hosts": "127.0.0.2"})
    with ServerThread(redirecting_app(f"{victim.url}/churn.csv"), host="127.0.0.2") as first:
        error = await refused(only_first, f"{first.url}/churn.csv")
        both = only_first.model_copy(update={"dataset_allowed_hosts": "127.0.0.2,127.0.0.1"})
        followed = await fetch(both, f"{first.url}/churn.csv")

    assert "127.0.0.1" in error.message and "loopback" in error.message
    assert followed.size_bytes == len(CHURN)
    assert state.requests["churn.csv"] == 1, "only the allowed redirect reached the victim"


async def test_a_redirect_to_metadata_is_refused(settings: Settings) -> None:
    first_allowed = settings.model_copy(update={"dataset_allowed_hosts": "127.0.0.2"})
    with ServerThread(redirecting_app("http://169.254.169.254/"), host="127.0.0.2") as first:
        error = await refused(first_allowed, f"{first.url}/churn.csv")

    assert "metadata" in error.message


async def test_more_than_five_redirects_are_not_followed(settings: Settings) -> None:
    allowed = settings.model_copy(update={"dataset_allowed_hosts": "127.0.0.1"})
    with ServerThread(redirecting_app("/hop/99", hops=7)) as running:
        with pytest.raises(ApplicationError) as caught:
            await fetch(allowed, f"{running.url}/churn.csv")

    assert "too many redirects" in caught.value.message


async def test_the_connection_goes_to_the_address_that_was_checked(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DNS rebinding: the name answers 127.0.0.1 (allowed) once, then a different address.

    If anything resolved the name a second time to connect, it would get the other answer; the
    fetch succeeding with one lookup shows the checked address is the one connected to.
    """
    real_getaddrinfo = socket.getaddrinfo
    lookups: list[str] = []

    def rebinding(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.example":
            lookups.append(host)
            answer = "127.0.0.1" if len(lookups) == 1 else "10.255.255.1"
            return real_getaddrinfo(answer, *args, **kwargs)
        return real_getaddrinfo(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    state = FileServerState(routes={"churn.csv": Route(CHURN)})
    app = file_server_app(state)
    seen_hosts: list[str] = []

    @app.middleware("http")
    async def record_host(request: Request, call_next: Callable[..., Any]) -> Any:
        seen_hosts.append(request.headers["host"])
        return await call_next(request)

    with ServerThread(app) as running:
        allowed = settings.model_copy(update={"dataset_allowed_hosts": "127.0.0.1"})
        info = await fetch(allowed, f"http://rebind.example:{running.port}/churn.csv")

    assert info.size_bytes == len(CHURN)
    assert lookups == ["rebind.example"], "the name was resolved again after the check"
    assert seen_hosts == [f"rebind.example:{running.port}"], "the server saw its own name"
    assert info.source_url == f"http://rebind.example:{running.port}/churn.csv"


async def test_a_host_with_one_internal_address_among_public_ones_is_refused(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    def two_answers(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "mixed.example":
            return [
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
                (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.5", port)),
            ]
        raise socket.gaierror("unexpected lookup")

    monkeypatch.setattr(socket, "getaddrinfo", two_answers)

    error = await refused(settings, "http://mixed.example/churn.csv")

    assert "10.0.0.5" in error.message and "private" in error.message


# --- Redaction --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("https://user:pa%40ss@host.example:8443/d/churn.csv?token=abc&sig=x%2By&v=2#frag=secret",
         "https://***@host.example:8443/d/churn.csv?token=***&sig=***&v=***"),
        ("https://token@host.example/churn.csv", "https://***@host.example/churn.csv"),
        ("https://u:p@ss@host.example/x.csv", "https://***@host.example/x.csv"),
        ("https://host.example/x.csv?AbCsecret", "https://host.example/x.csv?***"),
        ("https://host.example/x.csv", "https://host.example/x.csv"),
        ("/data/roots/churn.csv", "/data/roots/churn.csv"),
        ("upload://ds-0123456789abcdef01234567", "upload://ds-0123456789abcdef01234567"),
        ("http://host.example:99999999/x.csv?k=v", "<unparseable URL>"),
    ],
)  # fmt: skip
def test_redaction_keeps_what_locates_the_file_and_nothing_secret(url: str, shown: str) -> None:
    assert redact_dataset_url(url) == shown
    assert redact_dataset_url(url) == redact_dataset_url(url)  # deterministic, for replay


# --- Through the API and the worker -----------------------------------------------------------


class LoggedService(ServiceProcesses):
    """The service with the worker's log lines kept in a file, to look for secrets in."""

    log: IO[bytes] | None = None

    def start_worker(self) -> subprocess.Popen[bytes]:
        self.log = open(self.data_dir.parent / "worker.log", "ab")
        self.worker = subprocess.Popen(
            [sys.executable, "worker.py"], cwd=ROOT, env=self.env, stdout=self.log, stderr=self.log
        )
        return self.worker

    def worker_log(self) -> str:
        return (self.data_dir.parent / "worker.log").read_text()

    def stop(self) -> None:
        super().stop()
        if self.log is not None:
            self.log.close()


class Team:
    """The service, its roots, and a client per principal."""

    def __init__(self, service: LoggedService, roots: Path, keys: dict[str, str]) -> None:
        self.service = service
        self.roots = roots
        self.keys = keys

    def client(self, who: str) -> httpx.Client:
        return httpx.Client(
            base_url=self.service.base_url,
            headers={"X-API-Key": self.keys[who]},
            timeout=30,
        )


@pytest.fixture(scope="module")
def team(
    dev_server_env: WorkflowEnvironment, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Team]:
    folder = tmp_path_factory.mktemp("sources-service")
    keys: dict[str, str] = {}
    entries = []
    for name, roles in (("alice", ["operator", "approver"]), ("bob", ["operator"]),
                        ("root", ["admin"])):  # fmt: skip
        keys[name] = new_key()
        entries.append({"name": name, "roles": roles, "key_sha256": hash_key(keys[name])})
    (folder / "keys.json").write_text(json.dumps(entries))
    service = LoggedService(
        dev_server_env.client.service_client.config.target_host,
        folder / "data",
        AUTH_MODE="api_key",
        API_KEYS_FILE=str(folder / "keys.json"),
        # The root holds DATA_DIR: the service's own storage must stay closed all the same.
        DATASET_ROOTS=str(folder),
        # A second loopback address stands for "an internal host allowed on purpose".
        DATASET_ALLOWED_HOSTS="127.0.0.2",
        MAX_DATASET_BYTES="200000",
        LOG_LEVEL="INFO",
        APPROVAL_TIMEOUT_SECONDS="600",
    )
    service.start_worker()
    service.start_api()
    try:
        yield Team(service, folder, keys)
    finally:
        service.stop()


def upload(client: httpx.Client, body: bytes, name: str = "churn.csv") -> httpx.Response:
    return client.post("/datasets", files={"file": (name, body, "text/csv")})


def start(client: httpx.Client, **source: str) -> str:
    response = client.post("/workflow/start", json={"user_goal": GOAL, **source})
    assert response.status_code == 200, response.text
    return str(response.json()["workflow_id"])


def wait_for(
    client: httpx.Client, workflow_id: str, statuses: set[str], timeout: float = 120
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = client.get(f"/workflow/{workflow_id}/status").json()
        if body["status"] in statuses:
            return body
        time.sleep(0.3)
    raise AssertionError(f"{workflow_id} never reached {statuses}; last: {body}")


def test_an_upload_is_stored_checksummed_and_owned(team: Team) -> None:
    with team.client("alice") as alice:
        response = upload(alice, CHURN, name="../../etc/Q3 churn.csv")

    assert response.status_code == 201, response.text
    body = response.json()
    assert body["dataset_id"].startswith("ds-")
    assert body["size_bytes"] == len(CHURN)
    assert body["sha256"] == hashlib.sha256(CHURN).hexdigest()
    assert body["filename"] == "Q3 churn.csv", "the client's name is a label, never a path"
    folder = team.service.data_dir / "uploads" / body["dataset_id"]
    assert (folder / "dataset.csv").read_bytes() == CHURN
    assert json.loads((folder / "upload.json").read_text())["owner"] == "alice"


def test_a_run_on_an_uploaded_dataset_completes(team: Team) -> None:
    with team.client("alice") as alice:
        uploaded = upload(alice, CHURN).json()
        workflow_id = start(alice, dataset_id=uploaded["dataset_id"])
        waiting = wait_for(alice, workflow_id, {"awaiting_approval", "failed"})
        assert waiting["status"] == "awaiting_approval", waiting
        assert alice.post(f"/workflow/{workflow_id}/approve").status_code == 200
        done = wait_for(alice, workflow_id, {"completed", "failed"}, timeout=240)
        state = alice.get(f"/workflow/{workflow_id}").json()

    assert done["status"] == "completed", done
    assert state["dataset_url"] == f"upload://{uploaded['dataset_id']}"
    assert state["dataset_info"]["sha256"] == uploaded["sha256"]


def test_someone_elses_upload_does_not_exist_for_you_unless_you_are_admin(team: Team) -> None:
    with team.client("alice") as alice, team.client("bob") as bob, team.client("root") as admin:
        dataset_id = upload(alice, CHURN).json()["dataset_id"]
        stolen = bob.post("/workflow/start", json={"user_goal": GOAL, "dataset_id": dataset_id})
        unknown_id = "ds-" + "0" * 24
        unknown = bob.post("/workflow/start", json={"user_goal": GOAL, "dataset_id": unknown_id})
        by_admin = admin.post("/workflow/start", json={"user_goal": GOAL, "dataset_id": dataset_id})
        if by_admin.status_code == 200:
            admin.post(f"/workflow/{by_admin.json()['workflow_id']}/cancel")

    assert stolen.status_code == 404
    assert unknown.status_code == 404
    # Word for word the same but for the id: the answer does not reveal that it exists.
    assert stolen.json()["detail"].replace(dataset_id, "ID") == unknown.json()["detail"].replace(
        unknown_id, "ID"
    )
    assert "POST /datasets" in stolen.json()["detail"]
    assert by_admin.status_code == 200, by_admin.text


def test_a_runs_upload_reference_starts_a_new_run_for_its_owner_only(team: Team) -> None:
    """`upload://ds-…` (what a run's dataset_url shows) passes the same owner check as dataset_id."""
    with team.client("alice") as alice, team.client("bob") as bob:
        reference = "upload://" + upload(alice, CHURN).json()["dataset_id"]
        rerun = alice.post("/workflow/start", json={"user_goal": GOAL, "dataset_url": reference})
        if rerun.status_code == 200:
            rerun_id = rerun.json()["workflow_id"]
            rerun_state = alice.get(f"/workflow/{rerun_id}").json()
            alice.post(f"/workflow/{rerun_id}/cancel")
        stolen = bob.post("/workflow/start", json={"user_goal": GOAL, "dataset_url": reference})
        forged = [
            bob.post("/workflow/start", json={"user_goal": GOAL, "dataset_url": url})
            for url in ("upload://../../uploads/x", "UPLOAD://ds-" + "0" * 24, "upload://")
        ]

    assert rerun.status_code == 200, rerun.text
    assert rerun_state["dataset_url"] == reference
    assert stolen.status_code == 404, stolen.text
    assert "POST /datasets" in stolen.json()["detail"]
    assert [response.status_code for response in forged] == [404, 404, 404]


def uploads_now(team: Team) -> set[str]:
    folder = team.service.data_dir / "uploads"
    return {p.name for p in folder.iterdir()} if folder.exists() else set()


def test_an_upload_over_the_size_limit_is_413_and_leaves_nothing(team: Team) -> None:
    big = b"a,b\n" + b"1,2\n" * 60_000  # 240 KB against MAX_DATASET_BYTES=200000
    before = uploads_now(team)
    with team.client("alice") as alice:
        declared = upload(alice, big)
        # Without a Content-Length the limit is found while streaming.
        boundary = "xyzBOUNDARY"
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="b.csv"\r\n'
            "Content-Type: text/csv\r\n\r\n"
        ).encode()

        def chunks() -> Iterator[bytes]:
            yield head
            for index in range(0, len(big), 16_384):
                yield big[index : index + 16_384]
            yield f"\r\n--{boundary}--\r\n".encode()

        streamed = alice.post(
            "/datasets",
            content=chunks(),
            headers={"Content-Type": f"multipart/form-data; boundary={boundary}"},
        )

    for response in (declared, streamed):
        assert response.status_code == 413, response.text
        assert "MAX_DATASET_BYTES" in response.json()["detail"]
    assert uploads_now(team) == before, "a refused upload left files behind"


def test_an_upload_must_be_a_multipart_file(team: Team) -> None:
    with team.client("alice") as alice:
        as_json = alice.post("/datasets", json={"file": "a,b\n1,2\n"})
        no_file = alice.post("/datasets", data={"comment": "forgot the file"}, files={})
        no_file_form = alice.post(
            "/datasets", files={"other": ("x.csv", b"a,b\n1,2\n", "text/csv")}
        )
        empty = upload(alice, b"")

    assert as_json.status_code == 415 and "multipart/form-data" in as_json.json()["detail"]
    assert no_file.status_code in (415, 422)
    assert no_file_form.status_code == 422 and "'file'" in no_file_form.json()["detail"]
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]


def test_uploading_needs_the_operator_role(team: Team) -> None:
    anonymous = httpx.post(
        f"{team.service.base_url}/datasets", files={"file": ("c.csv", CHURN, "text/csv")}
    )

    assert anonymous.status_code == 401


@pytest.mark.parametrize(
    ("body", "field"),
    [({"user_goal": "churn\x00", "dataset_url": "x.csv"}, "body.user_goal"),
     ({"user_goal": "churn\x1b[31m", "dataset_url": "x.csv"}, "body.user_goal"),
     ({"user_goal": "churn", "dataset_url": "x\x00.csv"}, "body.dataset_url"),
     ({"user_goal": "churn", "dataset_url": "http://h/x.csv\r\nX-Injected: 1"}, "body.dataset_url"),
     ({"user_goal": "churn", "dataset_url": "x.csv", "dataset_id": "ds-" + "0" * 24}, "body"),
     ({"user_goal": "churn"}, "body"),
     ({"user_goal": "churn", "dataset_id": "../../etc/passwd"}, "body.dataset_id"),
     ({"user_goal": "churn", "dataset_url": "gopher://h/x.csv"}, "body.dataset_url")],
)  # fmt: skip
def test_control_characters_and_ambiguous_sources_are_422_naming_the_field(
    team: Team, body: dict[str, str], field: str
) -> None:
    with team.client("alice") as alice:
        response = alice.post("/workflow/start", json=body)

    assert response.status_code == 422, response.text
    assert any(error["field"] == field for error in response.json()["errors"])
    if field == "body":
        assert "dataset_url" in response.json()["detail"]
        assert "dataset_id" in response.json()["detail"]


def test_a_goal_with_newlines_and_tabs_is_accepted(team: Team) -> None:
    with team.client("alice") as alice:
        response = alice.post(
            "/workflow/start",
            json={"user_goal": "Predict churn.\n\tUse tenure.", "dataset_url": "missing.csv"},
        )
        if response.status_code == 200:
            alice.post(f"/workflow/{response.json()['workflow_id']}/cancel")

    assert response.status_code == 200, response.text


@pytest.fixture(scope="module")
def outside_tmp() -> Iterator[Path]:
    """A real CSV directly in /tmp, outside the service's root."""
    handle, name = tempfile.mkstemp(suffix=".csv", dir=tempfile.gettempdir())
    os.write(handle, CHURN)
    os.close(handle)
    try:
        yield Path(name)
    finally:
        Path(name).unlink(missing_ok=True)


def bad_sources(team: Team, outside: Path, port: int) -> dict[str, tuple[str, str]]:
    """Each attack: the dataset_url, and what the run's last_error must say."""
    victim = team.service.data_dir / "datasets" / "wf-victim" / "dataset.csv"
    victim.parent.mkdir(parents=True, exist_ok=True)
    victim.write_bytes(CHURN)
    link = team.roots / "innocent-looking.csv"
    if not link.is_symlink():
        link.symlink_to(victim)
    return {
        "outside-roots": (str(outside), "DATASET_ROOTS"),
        "etc-passwd": ("file:///etc/passwd", "DATASET_ROOTS"),
        "traversal": (f"{team.roots}/{'../' * 30}etc/passwd", "DATASET_ROOTS"),
        "other-runs-dataset": (str(victim), "DATA_DIR"),
        "symlink-to-other-run": (str(link), "DATA_DIR"),
        "decimal-loopback": (f"http://2130706433:{port}/churn.csv", "DATASET_ALLOWED_HOSTS"),
        "metadata": ("http://169.254.169.254/latest/meta-data/", "metadata"),
    }


ATTACKS = ["outside-roots", "etc-passwd", "traversal", "other-runs-dataset",
           "symlink-to-other-run", "decimal-loopback", "metadata"]  # fmt: skip


@pytest.mark.parametrize("attack", ATTACKS)
def test_a_run_on_a_forbidden_source_fails_with_the_reason_in_its_status(
    team: Team,
    outside_tmp: Path,
    file_server: tuple[ServerThread, FileServerState],
    attack: str,
) -> None:
    running, state = file_server
    url, reason = bad_sources(team, outside_tmp, running.port)[attack]

    with team.client("alice") as alice:
        workflow_id = start(alice, dataset_url=url)
        failed = wait_for(alice, workflow_id, {"failed", "awaiting_approval", "completed"}, 90)

    assert failed["status"] == "failed", failed
    assert reason in failed["last_error"], failed["last_error"]
    assert state.requests["churn.csv"] == 0
    stored = team.service.data_dir / "datasets" / workflow_id / "dataset.csv"
    assert not stored.exists(), "the forbidden file was copied into the run's folder"


def test_a_redirect_to_loopback_through_the_service_fails_the_run(
    team: Team, file_server: tuple[ServerThread, FileServerState]
) -> None:
    victim, state = file_server
    with ServerThread(redirecting_app(f"{victim.url}/churn.csv"), host="127.0.0.2") as first:
        with team.client("alice") as alice:
            workflow_id = start(alice, dataset_url=f"{first.url}/churn.csv")
            failed = wait_for(alice, workflow_id, {"failed", "awaiting_approval"}, 90)

    assert failed["status"] == "failed", failed
    assert "loopback" in failed["last_error"] and "DATASET_ALLOWED_HOSTS" in failed["last_error"]
    assert state.requests["churn.csv"] == 0


def credential_app(user: str, password: str, token: str) -> FastAPI:
    app = FastAPI()
    expected = "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()

    @app.get("/private/churn.csv")
    async def private(request: Request) -> Response:
        if request.headers.get("authorization") != expected:
            return Response("who are you?", status_code=401)
        if request.query_params.get("token") != token:
            return Response("bad token", status_code=403)
        return Response(CHURN, media_type="text/csv")

    return app


async def test_credentials_in_the_dataset_url_never_leave_the_worker(
    team: Team, dev_server_env: WorkflowEnvironment
) -> None:
    secrets = ("hunter2", "s3cr3tTOKEN", "sigVALUE")
    with ServerThread(credential_app("alice", "hunter2", "s3cr3tTOKEN"), host="127.0.0.2") as srv:
        netloc = srv.url.removeprefix("http://")
        url = f"http://alice:hunter2@{netloc}/private/churn.csv?token=s3cr3tTOKEN&sig=sigVALUE"
        with team.client("alice") as alice:
            workflow_id = start(alice, dataset_url=url)
            waiting = wait_for(alice, workflow_id, {"awaiting_approval", "failed"})
            seen = [
                alice.get(f"/workflow/{workflow_id}/status").text,
                alice.get(f"/workflow/{workflow_id}").text,
                alice.get("/workflows", params={"limit": 200}).text,
            ]
            alice.post(f"/workflow/{workflow_id}/cancel")

    assert waiting["status"] == "awaiting_approval", "the fetch must still use the credentials"
    shown = f"http://***@{netloc}/private/churn.csv?token=***&sig=***"
    state = json.loads(seen[1])
    assert state["dataset_url"] == shown
    assert state["dataset_info"]["source_url"] == shown
    description = await dev_server_env.client.get_workflow_handle(workflow_id).describe()
    seen.append(repr(await description.memo()))
    seen.append(repr(description.typed_search_attributes))
    log = team.service.worker_log()
    assert shown in log, "the worker logs which (redacted) URL it fetched"
    for text in [*seen, log]:
        for secret in secrets:
            assert secret not in text
