"""Dataset intake against a local HTTP server: what is stored, what is refused, and how."""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import json
import logging
import socket
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from fastapi import FastAPI, Request, Response
from fastapi.responses import RedirectResponse
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.artifacts import ArtifactStore
from activities.datasets import DatasetActivities
from json_logging import JsonFormatter
from settings import Settings
from tests.standins import FileServerState, Route, ServerThread, file_server_app
from workflows.models import DatasetRequest

RUN = "wf-intake"
CHURN = (
    "customer_id,age,monthly_charges,contract,churned\n"
    + "".join(
        f"{1000 + i},{20 + i % 50},{30 + (i * 7) % 90}.5,{('monthly', 'yearly')[i % 2]},"
        f"{i % 3 == 0}\n"
        for i in range(300)
    )
).encode()


@pytest.fixture
def server() -> Iterator[tuple[ServerThread, FileServerState]]:
    state = FileServerState()
    with ServerThread(file_server_app(state)) as running:
        yield running, state


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        max_dataset_bytes=100_000,
        dataset_timeout_seconds=0.5,
        allow_local_datasets=True,
        dataset_roots=str(tmp_path),
        # The stand-in servers listen on loopback, which intake refuses unless allowed.
        dataset_allowed_hosts="127.0.0.1",
    )


def dataset_dir(settings: Settings) -> Path:
    return settings.datasets_dir / RUN


def leftovers(settings: Settings) -> list[str]:
    """Everything in the run's dataset folder: after a failure there must be nothing."""
    folder = dataset_dir(settings)
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


async def fetch(settings: Settings, url: str, goal: str = "predict churn") -> object:
    activities = DatasetActivities(settings)
    return await activities.fetch_dataset(
        DatasetRequest(workflow_id=RUN, dataset_url=url, user_goal=goal)
    )


async def fetch_error(settings: Settings, url: str) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await fetch(settings, url)
    return caught.value


async def test_a_csv_is_stored_checksummed_and_profiled(
    server: tuple[ServerThread, FileServerState], settings: Settings, tmp_path: Path
) -> None:
    running, state = server
    state.routes["churn.csv"] = Route(CHURN)
    store = ArtifactStore(tmp_path / "artifacts")

    info = await DatasetActivities(settings, store).fetch_dataset(
        DatasetRequest(
            workflow_id=RUN, dataset_url=f"{running.url}/churn.csv", user_goal="predict churned"
        )
    )

    stored = dataset_dir(settings) / "dataset.csv"
    assert info.file_path == str(stored.absolute())
    assert stored.read_bytes() == CHURN
    assert info.size_bytes == len(CHURN)
    assert info.sha256 == hashlib.sha256(CHURN).hexdigest()
    assert info.source_url == f"{running.url}/churn.csv"
    assert info.profile.rows == 300
    assert [c.name for c in info.profile.columns] == [
        "customer_id",
        "age",
        "monthly_charges",
        "contract",
        "churned",
    ]
    assert info.profile.target == "churned"
    assert info.profile.task_type == "classification"
    assert leftovers(settings) == ["dataset.csv", "dataset.csv.meta.json"]
    meta = json.loads((dataset_dir(settings) / "dataset.csv.meta.json").read_text())
    assert meta["sha256"] == info.sha256
    assert [r.name for r in store.list(RUN)] == ["dataset/v1/profile.json"]


async def test_a_retry_reuses_the_stored_file_instead_of_downloading_again(
    server: tuple[ServerThread, FileServerState], settings: Settings
) -> None:
    running, state = server
    state.routes["churn.csv"] = Route(CHURN)
    url = f"{running.url}/churn.csv"

    first = await fetch(settings, url)
    second = await fetch(settings, url)

    assert state.requests["churn.csv"] == 1
    assert first == second


async def test_a_changed_stored_file_is_downloaded_again(
    server: tuple[ServerThread, FileServerState], settings: Settings
) -> None:
    running, state = server
    state.routes["churn.csv"] = Route(CHURN)
    url = f"{running.url}/churn.csv"
    await fetch(settings, url)
    (dataset_dir(settings) / "dataset.csv").write_bytes(CHURN.replace(b"monthly", b"MONTHLY"))

    info = await fetch(settings, url)

    assert state.requests["churn.csv"] == 2
    assert info.sha256 == hashlib.sha256(CHURN).hexdigest()


async def test_a_missing_file_is_not_found_and_not_retried(
    server: tuple[ServerThread, FileServerState], settings: Settings
) -> None:
    running, _ = server

    error = await fetch_error(settings, f"{running.url}/nope.csv")

    assert error.type == "DatasetNotFound"
    assert error.non_retryable
    assert "HTTP 404" in error.message and f"{running.url}/nope.csv" in error.message
    assert leftovers(settings) == []


async def test_credentials_in_the_url_never_appear_in_errors(
    server: tuple[ServerThread, FileServerState], settings: Settings
) -> None:
    running, _ = server
    url = running.url.replace("http://", "http://alice:hunter2@") + "/nope.csv?token=s3cr3t&x=1"

    error = await fetch_error(settings, url)

    assert "hunter2" not in error.message and "s3cr3t" not in error.message
    assert "***@127.0.0.1" in error.message and "token=***&x=***" in error.message


async def test_a_server_error_is_retryable(
    server: tuple[ServerThread, FileServerState], settings: Settings
) -> None:
    running, state = server
    state.routes["churn.csv"] = Route(CHURN, fail_first=1)
    url = f"{running.url}/churn.csv"

    error = await fetch_error(settings, url)
    info = await fetch(settings, url)  # what Temporal's retry would do

    assert error.type == "DatasetUnreachable"
    assert not error.non_retryable
    assert "HTTP 503" in error.message
    assert info.size_bytes == len(CHURN)


async def test_an_unreachable_host_is_retryable(settings: Settings) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]  # nothing listens here once the socket is closed

    error = await fetch_error(settings, f"http://127.0.0.1:{port}/churn.csv")

    assert error.type == "DatasetUnreachable"
    assert not error.non_retryable
    assert "ConnectError" in error.message
    assert leftovers(settings) == []


@pytest.mark.parametrize("chunked", [False, True], ids=["content-length", "streamed"])
async def test_a_file_over_the_size_limit_is_refused(
    server: tuple[ServerThread, FileServerState], settings: Settings, chunked: bool
) -> None:
    running, state = server
    big = b"a,b\n" + b"1,2\n" * 30_000  # 120 KB against a 100 KB limit
    state.routes["big.csv"] = Route(big, chunked=chunked, chunk_size=16 * 1024)

    error = await fetch_error(settings, f"{running.url}/big.csv")

    assert error.type == "DatasetTooLarge"
    assert error.non_retryable
    assert "0.1 MB limit" in error.message
    assert leftovers(settings) == []


@pytest.mark.parametrize(
    ("body", "content_type", "reason"),
    [
        (b"<!doctype html><html><body>Log in</body></html>", "text/html", "serves text/html"),
        (b"<!DOCTYPE html>\n<html><body>a,b\n1,2</body></html>\n", "text/csv", "HTML/XML page"),
        (b'[{"a": 1, "b": 2}, {"a": 3, "b": 4}]', "text/plain", "looks like JSON"),
        (b'{"a": 1}', "application/json", "serves application/json"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + bytes(range(256)), "text/csv", "binary file"),
        (b"a,b,c\n1,2,3\n4,5\n6,7,8,9\n", "text/csv", "different numbers of columns"),
        (b"Just some prose.\nNothing tabular here.\n", "text/plain", "no ',', ';', tab"),
    ],
    ids=[
        "html-content-type",
        "html-body",
        "json-body",
        "json-content-type",
        "png",
        "ragged",
        "prose",
    ],
)
async def test_what_is_not_a_csv_is_refused(
    server: tuple[ServerThread, FileServerState],
    settings: Settings,
    body: bytes,
    content_type: str,
    reason: str,
) -> None:
    running, state = server
    state.routes["data"] = Route(body, content_type=content_type)

    error = await fetch_error(settings, f"{running.url}/data")

    assert error.type == "DatasetNotCsv"
    assert error.non_retryable
    assert reason in error.message
    assert leftovers(settings) == []


@pytest.mark.parametrize("body", [b"", b"  \n\n", b"a,b,c\n"], ids=["zero", "blank", "header"])
async def test_an_empty_file_is_refused(
    server: tuple[ServerThread, FileServerState], settings: Settings, body: bytes
) -> None:
    running, state = server
    state.routes["empty.csv"] = Route(body)

    error = await fetch_error(settings, f"{running.url}/empty.csv")

    assert error.type == "DatasetEmpty"
    assert error.non_retryable
    assert leftovers(settings) == []


async def test_a_stalled_server_hits_the_timeout_and_is_retryable(
    server: tuple[ServerThread, FileServerState], settings: Settings
) -> None:
    running, state = server
    state.routes["slow.csv"] = Route(CHURN, chunk_size=2048, pause_after_first_chunk=3)

    error = await fetch_error(settings, f"{running.url}/slow.csv")

    assert error.type == "DatasetTimeout"
    assert not error.non_retryable
    assert "within 0.5 s" in error.message
    assert leftovers(settings) == []


async def test_a_windows_encoded_file_is_stored_as_utf8(
    server: tuple[ServerThread, FileServerState], settings: Settings
) -> None:
    running, state = server
    text = "city,price\n" + "".join(f"Zürich {i},{i}.5\n" for i in range(20)) + "Besançon,9\n"
    state.routes["cp1252.csv"] = Route(text.encode("cp1252"))

    info = await fetch(settings, f"{running.url}/cp1252.csv")

    stored = (dataset_dir(settings) / "dataset.csv").read_bytes()
    assert stored == text.encode("utf-8")
    assert info.sha256 == hashlib.sha256(stored).hexdigest()


async def test_a_file_that_stops_being_utf8_is_unreadable(
    server: tuple[ServerThread, FileServerState], settings: Settings
) -> None:
    running, state = server
    body = b"name,value\n" + b"plain,1\n" * 10_000 + b"caf\xe9,2\n"  # past the sniffed head
    state.routes["mixed.csv"] = Route(body)

    error = await fetch_error(settings, f"{running.url}/mixed.csv")

    assert error.type == "DatasetUnreadable"
    assert error.non_retryable
    assert "not valid UTF-8" in error.message
    assert leftovers(settings) == []


async def test_local_paths_and_file_urls_are_read_when_allowed(
    settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "local churn.csv"
    source.write_bytes(CHURN)

    by_path = await fetch(settings, str(source))
    by_url = await fetch(settings, source.as_uri())

    assert by_path.sha256 == by_url.sha256 == hashlib.sha256(CHURN).hexdigest()


async def test_local_paths_are_refused_when_disabled(settings: Settings, tmp_path: Path) -> None:
    source = tmp_path / "churn.csv"
    source.write_bytes(CHURN)
    locked = settings.model_copy(update={"allow_local_datasets": False})

    error = await fetch_error(locked, str(source))

    assert error.type == "DatasetNotAllowed"
    assert error.non_retryable


async def test_a_table_wider_than_the_column_limit_is_refused_clearly(
    settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "wide.csv"
    header = ",".join(f"f{i}" for i in range(12)) + ",churn\n"
    source.write_text(header + "".join(",".join(["1"] * 12) + f",{i % 2}\n" for i in range(20)))
    narrow = settings.model_copy(update={"max_dataset_columns": 10})

    error = await fetch_error(narrow, str(source))
    fine = await fetch(settings, str(source))

    assert error.type == "DatasetTooLarge" and error.non_retryable
    assert "13 columns; the limit is 10 (MAX_DATASET_COLUMNS)" in error.message
    assert len(fine.profile.columns) == 13


async def test_a_missing_local_file_and_other_schemes_are_refused(
    settings: Settings, tmp_path: Path
) -> None:
    missing = await fetch_error(settings, str(tmp_path / "nonexistent" / "churn.csv"))
    ftp = await fetch_error(settings, "ftp://example.com/churn.csv")

    assert missing.type == "DatasetNotFound"
    assert ftp.type == "DatasetNotAllowed"
    assert "unsupported URL scheme 'ftp'" in ftp.message


async def test_heartbeats_are_sent_while_a_slow_download_runs(
    server: tuple[ServerThread, FileServerState], settings: Settings
) -> None:
    running, state = server
    state.routes["drip.csv"] = Route(CHURN, chunk_size=1024, chunk_delay=0.1)  # about 1 s
    patient = settings.model_copy(update={"dataset_timeout_seconds": 5.0})
    beats: list[object] = []
    env = ActivityEnvironment()
    # A short heartbeat timeout makes the activity beat more often than every 2 s.
    env.info = dataclasses.replace(env.info, heartbeat_timeout=timedelta(seconds=0.3))
    env.on_heartbeat = lambda *details: beats.append(details)

    info = await env.run(
        DatasetActivities(patient).fetch_dataset,
        DatasetRequest(workflow_id=RUN, dataset_url=f"{running.url}/drip.csv"),
    )

    assert info.size_bytes == len(CHURN)
    assert len(beats) >= 3, "too few heartbeats during a download of about a second"


async def test_a_trickling_server_hits_the_download_deadline_and_is_not_retried(
    server: tuple[ServerThread, FileServerState], settings: Settings
) -> None:
    running, state = server
    # One byte every 0.2 s: never quiet long enough for the 0.5 s read timeout to fire.
    state.routes["trickle.csv"] = Route(CHURN, chunk_size=1, chunk_delay=0.2)
    strict = settings.model_copy(update={"dataset_download_deadline_seconds": 1.5})

    started = time.monotonic()
    error = await fetch_error(strict, f"{running.url}/trickle.csv")
    elapsed = time.monotonic() - started

    assert error.type == "DatasetTimeout"
    assert error.non_retryable, "the same server would trickle again, for the whole deadline"
    assert "within 1.5 s (DATASET_DOWNLOAD_DEADLINE_SECONDS)" in error.message
    assert elapsed < 4, f"the deadline did not bound the download ({elapsed:.1f} s)"
    assert leftovers(settings) == []


def credential_checking_app(user: str, password: str, token: str) -> FastAPI:
    """A file server that answers only with basic auth and the right token in the query."""
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


async def test_credentials_in_the_url_are_used_but_only_the_redacted_url_is_shown(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    with ServerThread(credential_checking_app("alice", "hunter2", "s3cr3t")) as running:
        netloc = running.url.removeprefix("http://")
        url = f"http://alice:hunter2@{netloc}/private/churn.csv?token=s3cr3t&sig=xyzzy"
        with caplog.at_level(logging.DEBUG):
            info = await fetch(settings, url)

    assert info.size_bytes == len(CHURN), "the credentials were not sent"
    shown = f"http://***@{netloc}/private/churn.csv?token=***&sig=***"
    assert info.source_url == shown
    # The lines as the worker writes them (JSON, with the extra fields).
    logged = "\n".join(JsonFormatter().format(record) for record in caplog.records)
    assert shown in logged, "intake logs which (redacted) URL it fetched"
    assert "token=***&sig=***" in logged and "HTTP Request" in logged, "httpx's line, redacted"
    for secret in ("hunter2", "s3cr3t", "xyzzy"):
        assert secret not in logged
        assert secret not in info.model_dump_json()


async def test_credentials_are_not_sent_to_another_host_after_a_redirect(
    settings: Settings,
) -> None:
    seen: list[str | None] = []
    target = FastAPI()

    @target.get("/churn.csv")
    async def churn(request: Request) -> Response:
        seen.append(request.headers.get("authorization"))
        return Response(CHURN, media_type="text/csv")

    with ServerThread(target, host="127.0.0.2") as other:
        hop = FastAPI()

        @hop.get("/churn.csv")
        async def redirect() -> Response:
            return RedirectResponse(f"{other.url}/churn.csv", status_code=302)

        with ServerThread(hop) as first:
            url = first.url.replace("http://", "http://alice:hunter2@") + "/churn.csv"
            both = settings.model_copy(update={"dataset_allowed_hosts": "127.0.0.1,127.0.0.2"})
            info = await fetch(both, url)

    assert info.size_bytes == len(CHURN)
    assert seen == [None], "basic auth must stay with the origin it was written for"


def write_table(path: Path, target_values: list[str]) -> str:
    rows = "".join(f"{i},{i * 3 % 7},{value}\n" for i, value in enumerate(target_values))
    path.write_text("customer_id,tenure,churned\n" + rows)
    return str(path)


async def test_an_empty_target_column_fails_intake_instead_of_a_run_without_a_model(
    settings: Settings, tmp_path: Path
) -> None:
    source = write_table(tmp_path / "no-labels.csv", [""] * 50)

    error = await fetch_error(settings, source)

    assert error.type == "DatasetEmpty" and error.non_retryable
    assert "target column 'churned'" in error.message and "has no values" in error.message


@pytest.mark.parametrize(("usable", "refused"), [(9, True), (10, False)])
async def test_too_few_rows_with_a_target_value_fail_intake(
    settings: Settings, tmp_path: Path, usable: int, refused: bool
) -> None:
    labels = [("yes", "no")[i % 2] for i in range(usable)] + [""] * 30
    source = write_table(tmp_path / "sparse.csv", labels)

    if refused:
        error = await fetch_error(settings, source)
        assert error.type == "DatasetEmpty" and error.non_retryable
        assert f"only {usable} row(s) have a value in the target column 'churned'" in error.message
        assert "at least 10" in error.message
    else:
        info = await fetch(settings, source)
        assert info.profile.target == "churned"
