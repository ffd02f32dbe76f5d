"""The artifact store keeps each run's files in place and never serves anything outside them."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from activities.artifacts import ArtifactNotFound, ArtifactStore
from workflows.models import Step

RUN = "wf-abc123"


@pytest.fixture
def store(tmp_path: Path) -> ArtifactStore:
    return ArtifactStore(tmp_path / "artifacts")


def test_written_files_round_trip_through_resolve(store: ArtifactStore) -> None:
    ref = store.write_bytes(RUN, Step.ML_WORKER, 1, "model.joblib", b"\x00model")
    text_ref = store.write_text(RUN, Step.ML_WORKER, 1, "plots/roc.txt", "auc 0.9")

    assert ref.name == "ml_worker/v1/model.joblib"
    assert ref.size_bytes == 6
    assert ref.content_type == "application/octet-stream"
    assert store.resolve(RUN, ref.name).read_bytes() == b"\x00model"
    assert store.resolve(RUN, text_ref.name).read_text() == "auc 0.9"
    assert (
        store.resolve(RUN, ref.name) == (store.root / RUN / "ml_worker/v1/model.joblib").resolve()
    )


def test_rewriting_a_file_replaces_it_without_leaving_temporary_files(store: ArtifactStore) -> None:
    store.write_text(RUN, Step.BROWSER_AGENT, 1, "eda_summary.json", '{"rows": 1}')
    store.write_text(RUN, Step.BROWSER_AGENT, 1, "eda_summary.json", '{"rows": 2}')

    folder = store.root / RUN / "browser_agent" / "v1"
    assert sorted(os.listdir(folder)) == ["eda_summary.json"]
    assert store.resolve(RUN, "browser_agent/v1/eda_summary.json").read_text() == '{"rows": 2}'


def test_listing_names_sizes_and_content_types(store: ArtifactStore) -> None:
    files = {
        "code.py": "text/x-python",
        "metrics.json": "application/json",
        "stdout.log": "text/plain",
        "notes.txt": "text/plain",
        "model.pkl": "application/octet-stream",
        "plots/hist.png": "image/png",
        "sample.csv": "text/csv",
        "blob.weird": "application/octet-stream",
    }
    for name in files:
        store.write_bytes(RUN, Step.ML_WORKER, 2, name, b"x" * len(name))
    store.write_text(RUN, Step.BROWSER_AGENT, 1, "code.py", "print(1)")
    # Leftovers of an interrupted write are not artifacts.
    (store.root / RUN / "ml_worker" / "v2" / ".tmp-123").write_text("half")

    listed = store.list(RUN)

    assert [ref.name for ref in listed] == sorted(
        ["browser_agent/v1/code.py", *(f"ml_worker/v2/{name}" for name in files)]
    )
    by_name = {ref.name: ref for ref in listed}
    for name, content_type in files.items():
        assert by_name[f"ml_worker/v2/{name}"].content_type == content_type
        assert by_name[f"ml_worker/v2/{name}"].size_bytes == len(name)
    assert [r.name for r in store.list(RUN, Step.BROWSER_AGENT, 1)] == ["browser_agent/v1/code.py"]
    assert store.list("wf-unknown") == []
    assert store.list("../escape") == []


def test_replacing_a_version_keeps_only_the_new_attempts_files(store: ArtifactStore) -> None:
    store.write_text(RUN, Step.ML_WORKER, 1, "old.txt", "first attempt")

    with store.replace_version(RUN, Step.ML_WORKER, 1) as stage:
        (stage / "new.txt").write_text("second attempt")

    assert [r.name for r in store.list(RUN)] == ["ml_worker/v1/new.txt"]
    assert os.listdir(store.root / RUN / "ml_worker") == ["v1"]


def test_a_failed_replacement_leaves_the_previous_version_untouched(store: ArtifactStore) -> None:
    store.write_text(RUN, Step.ML_WORKER, 1, "kept.txt", "good")

    with pytest.raises(RuntimeError), store.replace_version(RUN, Step.ML_WORKER, 1) as stage:
        (stage / "partial.txt").write_text("half")
        raise RuntimeError("crashed while staging")

    assert [r.name for r in store.list(RUN)] == ["ml_worker/v1/kept.txt"]
    assert os.listdir(store.root / RUN / "ml_worker") == ["v1"]


def test_importing_a_folder_copies_regular_files_and_skips_symlinks(
    store: ArtifactStore, tmp_path: Path
) -> None:
    outputs = tmp_path / "outputs"
    (outputs / "plots").mkdir(parents=True)
    (outputs / "metrics.json").write_text('{"accuracy": 0.9}')
    (outputs / "plots" / "a.png").write_bytes(b"\x89PNG")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not serve")
    (outputs / "link.txt").symlink_to(secret)

    refs = store.import_dir(RUN, Step.ML_WORKER, 1, outputs)

    assert [r.name for r in refs] == ["ml_worker/v1/metrics.json", "ml_worker/v1/plots/a.png"]
    assert store.resolve(RUN, "ml_worker/v1/plots/a.png").read_bytes() == b"\x89PNG"


@pytest.mark.parametrize(
    "name",
    [
        "../x",
        "../../etc/passwd",
        "/etc/passwd",
        "%2e%2e/%2e%2e/etc/passwd",
        "..%2f..%2fetc%2fpasswd",
        "ml_worker/v1/../../../other-run/ml_worker/v1/model.joblib",
        "ml_worker/v1/./model.joblib",
        "ml_worker//v1/model.joblib",
        "ml_worker\\v1\\model.joblib",
        "ml_worker/v1/model.joblib\x00.png",
        "..",
        ".",
        "",
        "ml_worker/v1",  # a folder, not a file
        "ml_worker/v1/missing.txt",
    ],
)
def test_unknown_and_escaping_names_are_not_found(store: ArtifactStore, name: str) -> None:
    store.write_bytes(RUN, Step.ML_WORKER, 1, "model.joblib", b"m")
    store.write_bytes("other-run", Step.ML_WORKER, 1, "model.joblib", b"other")

    with pytest.raises(ArtifactNotFound):
        store.resolve(RUN, name)


@pytest.mark.parametrize("workflow_id", ["..", ".", "", "../wf-abc123", "wf/../wf-abc123", "/tmp"])
def test_bad_workflow_ids_are_not_found(store: ArtifactStore, workflow_id: str) -> None:
    store.write_bytes(RUN, Step.ML_WORKER, 1, "model.joblib", b"m")

    with pytest.raises(ArtifactNotFound):
        store.resolve(workflow_id, "ml_worker/v1/model.joblib")


def test_symlinks_that_leave_the_run_folder_are_not_found(
    store: ArtifactStore, tmp_path: Path
) -> None:
    store.write_bytes(RUN, Step.ML_WORKER, 1, "model.joblib", b"m")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.txt").write_text("secret")
    version_dir = store.root / RUN / "ml_worker" / "v1"
    (version_dir / "leak.txt").symlink_to(outside / "secret.txt")
    (version_dir / "leakdir").symlink_to(outside, target_is_directory=True)
    (version_dir / "passwd").symlink_to("/etc/passwd")
    (version_dir / "inside.joblib").symlink_to(version_dir / "model.joblib")

    for name in ("leak.txt", "leakdir/secret.txt", "passwd"):
        with pytest.raises(ArtifactNotFound):
            store.resolve(RUN, f"ml_worker/v1/{name}")
    # A link that stays inside the run is harmless and resolves to its target...
    assert store.resolve(RUN, "ml_worker/v1/inside.joblib").read_bytes() == b"m"
    # ...but listings show only real files.
    assert [r.name for r in store.list(RUN)] == ["ml_worker/v1/model.joblib"]


@pytest.mark.parametrize("name", ["../x", "/abs", "a/../../b", ".hidden", "", "a//b"])
def test_writes_refuse_names_outside_the_version(store: ArtifactStore, name: str) -> None:
    with pytest.raises(ValueError):
        store.write_text(RUN, Step.ML_WORKER, 1, name, "x")


@pytest.mark.parametrize(
    ("workflow_id", "step", "version"),
    [("../x", Step.ML_WORKER, 1), (RUN, "../x", 1), (RUN, ".hidden", 1), (RUN, Step.ML, -1)],
)
def test_writes_refuse_bad_addresses(
    store: ArtifactStore, workflow_id: str, step: str, version: int
) -> None:
    with pytest.raises(ValueError):
        store.write_text(workflow_id, step, version, "a.txt", "x")
