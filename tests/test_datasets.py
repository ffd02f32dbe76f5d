"""Dataset intake against a local HTTP server: what is stored, what is refused, and how."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import socket
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from temporalio.exceptions import ApplicationError
from temporalio.testing import ActivityEnvironment

from activities.artifacts import ArtifactStore
from activities.datasets import DatasetActivities, redact_url
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
    assert "***@127.0.0.1" in error.message and "token=%2A%2A%2A" in error.message


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


async def test_a_missing_local_file_and_other_schemes_are_refused(settings: Settings) -> None:
    missing = await fetch_error(settings, "/nonexistent/churn.csv")
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


def test_redaction_keeps_what_locates_the_file() -> None:
    url = "https://user:pw@bucket.s3.amazonaws.com/data/churn.csv?X-Amz-Signature=abc&v=2"

    assert redact_url(url) == (
        "https://***@bucket.s3.amazonaws.com/data/churn.csv?X-Amz-Signature=%2A%2A%2A&v=%2A%2A%2A"
    )
