"""Storage backends: the same behaviour from a folder and from S3 (moto's server on loopback),
the artifact store's name checks in front of object storage, and the checksum-keyed cache."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import boto3
import httpx
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from moto.server import ThreadedMotoServer

from activities.artifacts import ArtifactNotFound, ArtifactStore
from activities.dataset_cache import DatasetCache, DatasetChecksumMismatch
from activities.storage import (
    ARTIFACTS_PREFIX,
    LocalStorage,
    S3Storage,
    Storage,
    StorageKeyMissing,
    publish_dataset,
    storage_from_settings,
    stored_dataset_sha256,
)
from api.artifact_responses import artifact_response
from settings import Settings
from tests.conftest import free_port
from workflows.models import Step

RUN = "wf-storage1"
ACCESS_KEY, SECRET_KEY, REGION = "test-key", "test-secret", "us-east-1"


@dataclass(frozen=True)
class S3Server:
    """moto's S3 server, as any S3-compatible store the service would talk to."""

    endpoint_url: str

    def new_bucket(self) -> str:
        name = f"bucket-{uuid.uuid4().hex[:12]}"
        self.client().create_bucket(Bucket=name)
        return name

    def client(self):  # type: ignore[no-untyped-def]
        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY,
            aws_secret_access_key=SECRET_KEY,
        )

    def environment(self, bucket: str, prefix: str = "runs") -> dict[str, str]:
        """The settings a process needs to use this bucket, as environment variables."""
        return {
            "STORAGE_URL": f"s3://{bucket}/{prefix}",
            "STORAGE_ENDPOINT_URL": self.endpoint_url,
            "STORAGE_REGION": REGION,
            "STORAGE_ACCESS_KEY_ID": ACCESS_KEY,
            "STORAGE_SECRET_ACCESS_KEY": SECRET_KEY,
        }


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield S3Server(f"http://127.0.0.1:{port}")
    finally:
        server.stop()


def s3_settings(server: S3Server, bucket: str, data_dir: Path, **extra: object) -> Settings:
    env = server.environment(bucket)
    return Settings(
        data_dir=data_dir,
        storage_url=env["STORAGE_URL"],
        storage_endpoint_url=server.endpoint_url,
        storage_region=REGION,
        storage_access_key_id=ACCESS_KEY,  # type: ignore[arg-type]
        storage_secret_access_key=SECRET_KEY,  # type: ignore[arg-type]
        **extra,  # type: ignore[arg-type]
    )


@pytest.fixture(params=["local", "s3"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Storage:
    if request.param == "local":
        return LocalStorage(tmp_path / "store")
    server: S3Server = request.getfixturevalue("s3_server")
    return storage_from_settings(s3_settings(server, server.new_bucket(), tmp_path / "data"))


# --- The interface, the same on both backends ------------------------------------------------


def test_bytes_and_files_round_trip(storage: Storage, tmp_path: Path) -> None:
    source = tmp_path / "source.bin"
    source.write_bytes(b"\x00" * 10 + b"model")
    storage.put_file("artifacts/wf-1/ml_worker/v1/model.joblib", source)
    storage.put_bytes("artifacts/wf-1/ml_worker/v1/metrics.json", b'{"score": 1}')

    with storage.open_read("artifacts/wf-1/ml_worker/v1/model.joblib") as handle:
        assert handle.read() == source.read_bytes()
    target = tmp_path / "copy" / "metrics.json"
    storage.get_to_path("artifacts/wf-1/ml_worker/v1/metrics.json", target)
    assert target.read_bytes() == b'{"score": 1}'
    stat = storage.stat("artifacts/wf-1/ml_worker/v1/model.joblib")
    assert stat is not None and stat.size_bytes == 15
    assert [(o.key, o.size_bytes) for o in storage.list("artifacts/wf-1")] == [
        ("artifacts/wf-1/ml_worker/v1/metrics.json", 12),
        ("artifacts/wf-1/ml_worker/v1/model.joblib", 15),
    ]
    # A prefix is a folder: "wf-1" does not list "wf-10".
    storage.put_bytes("artifacts/wf-10/x.txt", b"x")
    assert len(storage.list("artifacts/wf-1")) == 2

    storage.delete("artifacts/wf-1/ml_worker/v1/metrics.json")
    assert not storage.exists("artifacts/wf-1/ml_worker/v1/metrics.json")
    with pytest.raises(StorageKeyMissing):
        storage.open_read("artifacts/wf-1/ml_worker/v1/metrics.json")
    with pytest.raises(StorageKeyMissing):
        storage.get_to_path("artifacts/wf-1/missing", tmp_path / "missing")
    assert not (tmp_path / "missing").exists()


@pytest.mark.parametrize("key", ["../x", "/etc/passwd", "a//b", "a/./b", "a\\b", "", "a/../../b"])
def test_keys_that_climb_or_are_malformed_are_refused(storage: Storage, key: str) -> None:
    with pytest.raises(ValueError):
        storage.put_bytes(key, b"x")


def test_replacing_a_prefix_keeps_only_the_new_files(storage: Storage) -> None:
    storage.put_bytes("artifacts/wf-1/ml_worker/v1/old.txt", b"first attempt")
    storage.put_bytes("artifacts/wf-1/ml_worker/v1/kept-name.txt", b"first")

    with storage.replace_prefix("artifacts/wf-1/ml_worker/v1") as stage:
        (stage / "kept-name.txt").write_bytes(b"second")
        (stage / "plots").mkdir()
        (stage / "plots" / "a.png").write_bytes(b"\x89PNG")

    assert [o.key for o in storage.list("artifacts/wf-1")] == [
        "artifacts/wf-1/ml_worker/v1/kept-name.txt",
        "artifacts/wf-1/ml_worker/v1/plots/a.png",
    ]
    with storage.open_read("artifacts/wf-1/ml_worker/v1/kept-name.txt") as handle:
        assert handle.read() == b"second"


def test_deleting_a_prefix_removes_that_folder_only(storage: Storage) -> None:
    storage.put_bytes("artifacts/wf-1/predictions/aa/input.csv", b"rows")
    storage.put_bytes("artifacts/wf-1/predictions/aa/deep/predictions.json", b"[]")
    storage.put_bytes("artifacts/wf-1/predictions/aab/input.csv", b"other request")

    storage.delete_prefix("artifacts/wf-1/predictions/aa")
    storage.delete_prefix("artifacts/wf-1/nothing-here")

    assert [o.key for o in storage.list("artifacts/wf-1")] == [
        "artifacts/wf-1/predictions/aab/input.csv"
    ]


def test_a_failed_replacement_leaves_the_prefix_untouched(storage: Storage) -> None:
    storage.put_bytes("artifacts/wf-1/ml_worker/v1/kept.txt", b"good")

    with pytest.raises(RuntimeError), storage.replace_prefix("artifacts/wf-1/ml_worker/v1") as s:
        (s / "partial.txt").write_bytes(b"half")
        raise RuntimeError("crashed while staging")

    assert [o.key for o in storage.list("artifacts/wf-1")] == [
        "artifacts/wf-1/ml_worker/v1/kept.txt"
    ]


# --- The artifact store in front of object storage -------------------------------------------


@pytest.fixture
def s3_store(s3_server: S3Server, tmp_path: Path) -> ArtifactStore:
    settings = s3_settings(s3_server, s3_server.new_bucket(), tmp_path / "data")
    return ArtifactStore(storage_from_settings(settings), ARTIFACTS_PREFIX)


def test_artifacts_live_in_the_bucket_not_on_the_disk(
    s3_store: ArtifactStore, s3_server: S3Server, tmp_path: Path
) -> None:
    s3_store.write_bytes(RUN, Step.ML_WORKER, 1, "model.joblib", b"\x00model")
    with s3_store.replace_version(RUN, Step.BROWSER_AGENT, 1) as stage:
        (stage / "eda_summary.json").write_text('{"rows": 2}')

    assert [r.name for r in s3_store.list(RUN)] == [
        "browser_agent/v1/eda_summary.json",
        "ml_worker/v1/model.joblib",
    ]
    assert s3_store.read_bytes(RUN, "ml_worker/v1/model.joblib") == b"\x00model"
    assert isinstance(s3_store.storage, S3Storage)
    bucket = s3_store.storage.location.bucket
    listed = s3_server.client().list_objects_v2(Bucket=bucket)["Contents"]
    assert {o["Key"] for o in listed} == {
        f"runs/artifacts/{RUN}/browser_agent/v1/eda_summary.json",
        f"runs/artifacts/{RUN}/ml_worker/v1/model.joblib",
    }
    assert not list((tmp_path / "data").rglob("*.joblib"))  # nothing kept locally


@pytest.mark.parametrize(
    "name",
    [
        "../other-run/ml_worker/v1/model.joblib",
        "ml_worker/v1/../../../other-run/ml_worker/v1/model.joblib",
        "%2e%2e/other-run/ml_worker/v1/model.joblib",
        "..%2fother-run%2fml_worker%2fv1%2fmodel.joblib",
        "/other-run/ml_worker/v1/model.joblib",
        "ml_worker//v1/model.joblib",
        "ml_worker/v1/.tmp-hidden",
    ],
)
def test_names_cannot_reach_another_runs_objects(s3_store: ArtifactStore, name: str) -> None:
    # In S3 "../" is just characters in a key; the store must refuse it before the bucket sees it.
    s3_store.write_bytes("other-run", Step.ML_WORKER, 1, "model.joblib", b"other")
    s3_store.storage.put_bytes(f"{ARTIFACTS_PREFIX}/{RUN}/ml_worker/v1/.tmp-hidden", b"staging")

    with pytest.raises(ArtifactNotFound):
        s3_store.read_bytes(RUN, name)
    with pytest.raises(ArtifactNotFound):
        s3_store.presigned_url(RUN, name)


def _served(store: ArtifactStore, name: str, presign: bool = False) -> httpx.Response:
    app = FastAPI()

    @app.get("/a/{name:path}")
    async def download(name: str):  # type: ignore[no-untyped-def]
        return await artifact_response(store, RUN, name, presign=presign)

    with TestClient(app) as client:
        return client.get(f"/a/{name}", follow_redirects=False)


def test_the_api_streams_artifacts_from_object_storage_with_the_security_headers(
    s3_store: ArtifactStore,
) -> None:
    page = b"<html><script>alert(document.cookie)</script></html>"
    s3_store.write_bytes(RUN, Step.CRITIC, 1, "report.html", page)
    s3_store.write_bytes(RUN, Step.ML_WORKER, 1, "model.joblib", b"\x00" * 300_000)

    report = _served(s3_store, "critic_agent/v1/report.html")
    assert report.status_code == 200
    assert report.content == page
    assert report.headers["content-type"].startswith("text/html")
    assert report.headers["content-security-policy"].startswith("sandbox;")
    assert report.headers["x-content-type-options"] == "nosniff"
    assert report.headers["content-disposition"] == 'inline; filename="report.html"'

    model = _served(s3_store, "ml_worker/v1/model.joblib")
    assert model.content == b"\x00" * 300_000
    assert model.headers["content-length"] == "300000"
    assert model.headers["content-disposition"] == 'attachment; filename="model.joblib"'


def test_presigned_downloads_redirect_to_the_store(s3_store: ArtifactStore) -> None:
    s3_store.write_bytes(RUN, Step.ML_WORKER, 1, "model.joblib", b"weights")

    response = _served(s3_store, "ml_worker/v1/model.joblib", presign=True)

    assert response.status_code == 307
    direct = httpx.get(response.headers["location"])
    assert direct.status_code == 200 and direct.content == b"weights"
    # What the redirect gives up, and why it is off by default: the store's answer has no CSP.
    assert "content-security-policy" not in direct.headers


# --- Datasets: published once, cached by checksum --------------------------------------------


def test_a_worker_without_the_dataset_downloads_it_once_and_verifies_it(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket()
    fetching = storage_from_settings(s3_settings(s3_server, bucket, tmp_path / "a"))
    other = storage_from_settings(s3_settings(s3_server, bucket, tmp_path / "b"))
    dataset = tmp_path / "a" / "datasets" / RUN / "dataset.csv"
    dataset.parent.mkdir(parents=True)
    dataset.write_bytes(b"x,y\n1,2\n" * 1000)
    sha256 = hashlib.sha256(dataset.read_bytes()).hexdigest()

    key = publish_dataset(fetching, RUN, dataset, sha256)
    assert key == f"datasets/{RUN}/dataset.csv"
    assert stored_dataset_sha256(other, key) == sha256

    cache = DatasetCache(other, tmp_path / "b" / "cache", max_bytes=10**9)
    with cache.lease(key, sha256) as local:
        assert local == tmp_path / "b" / "cache" / sha256 / "dataset.csv"
        assert local.read_bytes() == dataset.read_bytes()
    # The second step on this worker reads the cached copy, not the store.
    s3_server.client().delete_object(Bucket=bucket, Key=f"runs/{key}")
    with cache.lease(key, sha256) as again:
        assert again == local


def test_a_dataset_changed_in_storage_is_refused_and_not_cached(
    s3_server: S3Server, tmp_path: Path
) -> None:
    bucket = s3_server.new_bucket()
    storage = storage_from_settings(s3_settings(s3_server, bucket, tmp_path / "data"))
    dataset = tmp_path / "dataset.csv"
    dataset.write_bytes(b"x,y\n1,2\n")
    sha256 = hashlib.sha256(dataset.read_bytes()).hexdigest()
    key = publish_dataset(storage, RUN, dataset, sha256)
    # Someone with write access to the bucket swaps the data under a finished intake.
    s3_server.client().put_object(Bucket=bucket, Key=f"runs/{key}", Body=b"x,y\n6,6\n")

    cache = DatasetCache(storage, tmp_path / "data" / "cache", max_bytes=10**9)
    with pytest.raises(DatasetChecksumMismatch, match=sha256):
        cache.lease(key, sha256)
    assert cached(tmp_path / "data" / "cache") == set()


def publish_datasets(
    s3_server: S3Server, tmp_path: Path, count: int
) -> tuple[Storage, list[tuple[str, str]]]:
    """A worker's storage on a new bucket holding `count` distinct 1,000-byte datasets, and
    their keys and checksums."""
    storage = storage_from_settings(s3_settings(s3_server, s3_server.new_bucket(), tmp_path / "w"))
    published = []
    for index in range(count):
        path = tmp_path / "intake" / f"wf-cache{index}" / "dataset.csv"
        path.parent.mkdir(parents=True)
        path.write_bytes(f"{index:09d}\n".encode() * 100)
        sha256 = hashlib.sha256(path.read_bytes()).hexdigest()
        published.append((publish_dataset(storage, f"wf-cache{index}", path, sha256), sha256))
    return storage, published


def cached(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir() if not p.name.startswith(".")}


def test_the_cache_keeps_its_size_by_evicting_the_least_recently_used(
    s3_server: S3Server, tmp_path: Path
) -> None:
    storage, [(a, sha_a), (b, sha_b), (c, sha_c)] = publish_datasets(s3_server, tmp_path, 3)
    folder = tmp_path / "w" / "cache"
    cache = DatasetCache(storage, folder, max_bytes=2500)  # room for two

    for key, sha256 in ((a, sha_a), (b, sha_b), (a, sha_a)):  # a is used again after b
        cache.lease(key, sha256).release()
    cache.lease(c, sha_c).release()

    assert cached(folder) == {sha_a, sha_c}, "b was the least recently used"


def test_a_dataset_in_use_is_never_evicted_even_by_another_process(
    s3_server: S3Server, tmp_path: Path
) -> None:
    storage, [(a, sha_a), (b, sha_b), (c, sha_c)] = publish_datasets(s3_server, tmp_path, 3)
    folder = tmp_path / "w" / "cache"
    # Two caches over one folder: two worker processes sharing a DATA_DIR.
    running, other = (DatasetCache(storage, folder, max_bytes=1500) for _ in range(2))

    with running.lease(a, sha_a) as in_use:
        other.lease(b, sha_b).release()
        other.lease(c, sha_c).release()
        assert in_use.read_bytes() == b"000000000\n" * 100, "evicted while a step read it"
        assert cached(folder) == {sha_a, sha_c}
    other.lease(b, sha_b).release()

    assert cached(folder) == {sha_b}, "once released, it goes like any other"


def test_a_shared_folder_needs_no_cache(tmp_path: Path) -> None:
    storage = LocalStorage(tmp_path)
    dataset = tmp_path / "datasets" / RUN / "dataset.csv"
    dataset.parent.mkdir(parents=True)
    dataset.write_bytes(b"x,y\n1,2\n")
    sha256 = hashlib.sha256(dataset.read_bytes()).hexdigest()

    key = publish_dataset(storage, RUN, dataset, sha256)

    with DatasetCache(storage, tmp_path / "cache", max_bytes=0).lease(key, sha256) as local:
        assert local == dataset.resolve()
    assert not (tmp_path / "cache").exists()
    assert not (dataset.parent / "dataset.csv.meta.json").exists()  # intake's own record stays


def test_storage_url_must_be_s3_or_empty(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="s3://bucket"):
        Settings(data_dir=tmp_path, storage_url="gs://bucket/x")
    with pytest.raises(ValueError, match="s3://bucket"):
        Settings(data_dir=tmp_path, storage_url="s3://")
    assert isinstance(storage_from_settings(Settings(data_dir=tmp_path)), LocalStorage)
