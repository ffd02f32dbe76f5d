"""Big data: every format through intake, bombs refused, bounded memory and agent context.

Formats are CSV, gzip-compressed CSV, a zip holding one CSV, and Parquet; the stored copy
keeps its format (a zip's CSV is stored unpacked) and the generated code reads it whatever
it is. Profiling streams the whole file in bounded memory, and what agents see of the profile
is bounded however many rows or columns the table has.
"""

from __future__ import annotations

import gzip
import io
import json
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest
from temporalio.exceptions import ApplicationError

from activities.agent_profile import profile_for_agents
from activities.artifacts import ArtifactStore
from activities.datasets import DatasetActivities
from activities.offline.templates import template_source
from settings import Settings
from tests.conftest import ROOT, ServiceProcesses
from tests.sample_data import make_churn
from workflows.models import (
    AgentContext,
    ColumnProfile,
    DatasetInfo,
    DatasetProfile,
    DatasetRequest,
)

RUN = "wf-bigdata"
GOAL = "predict whether the customer churned"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        max_dataset_bytes=2_000_000,
        allow_local_datasets=True,
        dataset_roots=str(tmp_path),
    )


def churn_frame(rows: int = 400) -> pd.DataFrame:
    return make_churn(rows=rows)


def churn_csv_bytes(rows: int = 400) -> bytes:
    return churn_frame(rows).to_csv(index=False).encode()


async def intake(
    settings: Settings, source: Path, store: ArtifactStore | None = None
) -> DatasetInfo:
    return await DatasetActivities(settings, store).fetch_dataset(
        DatasetRequest(workflow_id=RUN, dataset_url=str(source), user_goal=GOAL)
    )


async def intake_error(settings: Settings, source: Path) -> ApplicationError:
    with pytest.raises(ApplicationError) as caught:
        await intake(settings, source)
    return caught.value


def run_folder(settings: Settings) -> list[str]:
    folder = settings.datasets_dir / RUN
    return sorted(p.name for p in folder.iterdir()) if folder.exists() else []


def zipped(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return buffer.getvalue()


def parquet_bytes(frame: pd.DataFrame) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


def read_as_generated_code_does(path: Path, **options: Any) -> pd.DataFrame:
    """The loader every offline script includes, run on the stored file."""
    namespace: dict[str, Any] = {}
    exec(template_source("dataset_reader"), namespace)
    frame: pd.DataFrame = namespace["load_dataset"](str(path), **options)
    return frame


# --- Formats ----------------------------------------------------------------------------------


FORMATS = {
    "csv": ("churn.csv", lambda: churn_csv_bytes(), "dataset.csv"),
    "gzip": ("churn.csv.gz", lambda: gzip.compress(churn_csv_bytes()), "dataset.csv.gz"),
    "zip": ("churn.zip", lambda: zipped({"churn.csv": churn_csv_bytes()}), "dataset.csv"),
    "parquet": ("churn.parquet", lambda: parquet_bytes(churn_frame()), "dataset.parquet"),
}


@pytest.mark.parametrize("fmt", list(FORMATS))
async def test_each_format_round_trips_through_intake_with_the_right_profile(
    settings: Settings, tmp_path: Path, fmt: str
) -> None:
    name, make, stored_name = FORMATS[fmt]
    source = tmp_path / name
    source.write_bytes(make())
    expected = churn_frame()

    info = await intake(settings, source, ArtifactStore(tmp_path / "artifacts"))

    assert Path(info.file_path).name == stored_name
    assert run_folder(settings) == [stored_name, stored_name + ".meta.json"]
    profile = info.profile
    assert profile.rows == len(expected)
    assert [c.name for c in profile.columns] == list(expected.columns)
    assert profile.target == "Churn" and profile.task_type == "classification"
    assert profile.class_balance == {
        str(k): int(v) for k, v in expected["Churn"].value_counts().items()
    }
    assert "customerID" in profile.id_columns
    tenure = profile.column("tenure")
    assert tenure is not None and tenure.kind == "numeric"
    assert tenure.mean == pytest.approx(expected["tenure"].mean())
    # The generated scripts read the stored file whatever its format.
    read_back = read_as_generated_code_does(Path(info.file_path))
    assert read_back.shape == expected.shape
    assert list(read_back.columns) == list(expected.columns)


async def test_a_windows_encoded_gzip_csv_is_stored_as_utf8_still_compressed(
    settings: Settings, tmp_path: Path
) -> None:
    text = "city,price\n" + "".join(f"Zürich {i},{i}.5\n" for i in range(40))
    source = tmp_path / "prices.csv.gz"
    source.write_bytes(gzip.compress(text.encode("cp1252")))

    info = await intake(settings, source)

    stored = Path(info.file_path)
    assert stored.name == "dataset.csv.gz"
    assert gzip.decompress(stored.read_bytes()) == text.encode("utf-8")


async def test_a_zip_bomb_is_refused_while_it_is_unpacked(
    settings: Settings, tmp_path: Path
) -> None:
    # 20 MB of rows against a 2 MB limit; the archive itself is a few KB.
    bomb = tmp_path / "bomb.zip"
    bomb.write_bytes(zipped({"rows.csv": b"a,b\n" + b"1,2\n" * 5_000_000}))
    assert bomb.stat().st_size < settings.max_dataset_bytes

    error = await intake_error(settings, bomb)

    assert error.type == "DatasetTooLarge" and error.non_retryable
    assert "unpacks to more than the 2 MB limit (MAX_DATASET_BYTES)" in error.message
    assert run_folder(settings) == []


async def test_a_gzip_bomb_is_refused_while_it_is_unpacked(
    settings: Settings, tmp_path: Path
) -> None:
    bomb = tmp_path / "bomb.csv.gz"
    bomb.write_bytes(gzip.compress(b"a,b\n" + b"1,2\n" * 5_000_000))

    error = await intake_error(settings, bomb)

    assert error.type == "DatasetTooLarge"
    assert "unpacks to more than" in error.message
    assert run_folder(settings) == []


@pytest.mark.parametrize(
    ("members", "count"),
    [({"a.csv": b"x,y\n1,2\n", "b.csv": b"x,y\n3,4\n"}, 2), ({}, 0)],
    ids=["two-files", "empty"],
)
async def test_a_zip_without_exactly_one_file_is_refused(
    settings: Settings, tmp_path: Path, members: dict[str, bytes], count: int
) -> None:
    archive = tmp_path / "several.zip"
    archive.write_bytes(zipped(members))

    error = await intake_error(settings, archive)

    assert error.type == "DatasetNotCsv" and error.non_retryable
    assert f"exactly one CSV file; this one holds {count} file(s)" in error.message
    assert run_folder(settings) == []


async def test_a_damaged_parquet_file_is_refused_clearly(
    settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "broken.parquet"
    source.write_bytes(parquet_bytes(churn_frame())[:-100])

    error = await intake_error(settings, source)

    assert error.type == "DatasetUnreadable" and error.non_retryable
    assert "Parquet file could not be read" in error.message
    assert run_folder(settings) == []


async def test_a_file_named_parquet_that_is_not_is_refused_as_misnamed(
    settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "table.parquet"
    source.write_bytes(churn_csv_bytes())

    error = await intake_error(settings, source)

    assert error.type == "DatasetNotCsv"
    assert "name says parquet" in error.message


def test_intake_does_not_import_the_offline_brain() -> None:
    script = (
        "import sys, activities.datasets\n"
        "loaded = sorted(m for m in sys.modules if m.startswith('activities.offline'))\n"
        "print(loaded)\n"
        "sys.exit(1 if loaded else 0)\n"
    )
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 0, f"intake imports {done.stdout.strip()} {done.stderr[-500:]}"


# --- Memory -------------------------------------------------------------------------------------


# The child's own high-water mark from /proc: getrusage's ru_maxrss would start from the
# pytest process's size at fork, which exec does not reset.
PROFILE_IN_CHILD = """
import json, sys
from activities.column_plan import profile_for_goal
profile = profile_for_goal(sys.argv[1], sys.argv[2])
with open("/proc/self/status") as status:
    peak = next(int(line.split()[1]) for line in status if line.startswith("VmHWM:"))
print(json.dumps({"peak_kb": peak, "rows": profile.rows, "target": profile.target}))
"""


def test_profiling_a_50_mb_csv_stays_under_300_mb_of_memory(tmp_path: Path) -> None:
    from bench.big_table import write_big_csv

    path = tmp_path / "big.csv"
    rows = write_big_csv(path, 50 * 1024 * 1024)
    assert path.stat().st_size > 45 * 1024 * 1024

    done = subprocess.run(
        [sys.executable, "-c", PROFILE_IN_CHILD, str(path), GOAL],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    measured = json.loads(done.stdout.strip().splitlines()[-1])

    assert measured["rows"] == rows, "the whole file was profiled"
    assert measured["target"] == "churned"
    # pandas alone needs several times the file's size to read it; the profiler must not.
    assert measured["peak_kb"] < 300 * 1024, f"peak RSS {measured['peak_kb'] / 1024:.0f} MB"


# --- What agents see ----------------------------------------------------------------------------

# Every agent call carries this; the cap holds for any width and any length of table.
AGENT_PROFILE_CAP_BYTES = 48 * 1024


def wide_csv(path: Path, columns: int, rows: int) -> Path:
    header = ",".join(f"feature_{i:05d}" for i in range(columns)) + ",churned\n"
    lines = [
        ",".join(str((r * 7 + c) % 13) for c in range(columns)) + f",{('yes', 'no')[r % 2]}\n"
        for r in range(rows)
    ]
    path.write_text(header + "".join(lines))
    return path


def agent_context_bytes(info: DatasetInfo) -> int:
    context = AgentContext(workflow_id=RUN, user_goal=GOAL, dataset=info)
    return len(context.model_dump_json().encode())


async def test_intake_hands_agents_a_bounded_profile_whatever_the_row_count(
    settings: Settings, tmp_path: Path
) -> None:
    columns = 1_000
    wide = settings.model_copy(update={"max_dataset_columns": 10_000})
    short = await intake(wide, wide_csv(tmp_path / "short.csv", columns, rows=30))
    long = await intake(wide, wide_csv(tmp_path / "long.csv", columns, rows=300))

    assert short.profile.other_columns is not None
    assert short.profile.other_columns.count == columns + 1 - wide.agent_profile_columns
    assert len(short.profile.columns) == wide.agent_profile_columns
    assert short.profile.target == "churned"
    assert short.profile.column("churned") is not None, "the target is always described"
    sizes = [agent_context_bytes(short), agent_context_bytes(long)]
    assert max(sizes) < AGENT_PROFILE_CAP_BYTES, sizes
    assert abs(sizes[0] - sizes[1]) < 0.05 * sizes[0], f"grows with rows: {sizes}"


def full_profile(columns: int, rows: int) -> DatasetProfile:
    """A profile as intake computes it before bounding: every column described in full."""
    described = [
        ColumnProfile(
            name=f"measurement_{i:05d}_{'x' * 20}",
            kind="categorical" if i % 3 else "numeric",
            dtype="object" if i % 3 else "float64",
            missing=rows // 10,
            unique=min(rows, 1_000 + i),
            sample_values=[f"value {i} {'y' * 70}"] * 5,
            mean=123.456 if i % 3 == 0 else None,
        )
        for i in range(columns)
    ]
    return DatasetProfile(
        rows=rows,
        columns=described,
        target=described[-1].name,
        task_type="classification",
        id_columns=[c.name for c in described[: columns // 2]],  # pathological, on purpose
        class_balance={f"class {i}": rows // 100 for i in range(100)},
    )


@pytest.mark.parametrize("columns", [1_000, 5_000])
def test_the_agent_context_is_bounded_at_any_width_and_length(columns: int) -> None:
    sizes = []
    for rows in (1_000, 1_000_000_000):
        profile = profile_for_agents(full_profile(columns, rows), max_columns=100)
        info = DatasetInfo(
            source_url="upload://ds-0", file_path="/d/dataset.csv", size_bytes=1, sha256="0",
            profile=profile,
        )  # fmt: skip
        sizes.append(agent_context_bytes(info))
        assert profile.target in {c.name for c in profile.columns}
        assert profile.other_columns is not None
        assert profile.other_columns.count == columns - 100

    unbounded = len(full_profile(columns, 1_000).model_dump_json())
    assert max(sizes) < AGENT_PROFILE_CAP_BYTES < unbounded, (sizes, unbounded)
    assert abs(sizes[0] - sizes[1]) < 0.05 * sizes[0], f"grows with rows: {sizes}"


async def test_the_whole_profile_is_kept_as_an_artifact(settings: Settings, tmp_path: Path) -> None:
    wide = settings.model_copy(update={"max_dataset_columns": 10_000})
    store = ArtifactStore(tmp_path / "artifacts")
    await intake(wide, wide_csv(tmp_path / "wide.csv", 300, rows=30), store)

    (ref,) = store.list(RUN)
    whole = json.loads(store.resolve(RUN, ref.name).read_text())
    assert len(whole["columns"]) == 301


# --- Training on a sample ---------------------------------------------------------------------


async def test_past_the_training_sample_size_the_profile_says_training_samples(
    settings: Settings, tmp_path: Path
) -> None:
    source = tmp_path / "churn.csv"
    source.write_bytes(churn_csv_bytes(1_500))

    small = await intake(settings.model_copy(update={"training_sample_rows": 2_000}), source)
    large = await intake(settings.model_copy(update={"training_sample_rows": 1_000}), source)

    assert small.profile.training_sample_rows is None
    assert large.profile.training_sample_rows == 1_000


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_the_generated_code_reads_a_stratified_sample_in_chunks(tmp_path: Path, fmt: str) -> None:
    rows = 250_000  # more than two read chunks
    frame = pd.DataFrame(
        {
            "x": range(rows),
            "label": ["rare" if i % 50 == 0 else "common" for i in range(rows)],
        }
    )
    path = tmp_path / "table"
    if fmt == "csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)

    sample = read_as_generated_code_does(path, sample_rows=10_000, stratify_by="label")

    assert sample["label"].value_counts().to_dict() == {"common": 9_800, "rare": 200}
    assert sample["x"].is_monotonic_increasing, "rows keep the file's order"
    assert sample["x"].max() > 200_000, "rows come from the whole file, not its head"
    again = read_as_generated_code_does(path, sample_rows=10_000, stratify_by="label")
    assert sample.equals(again), "the sample is deterministic"


# --- A whole run ---------------------------------------------------------------------------------


def test_a_whole_run_on_an_uploaded_parquet_file_completes(service: ServiceProcesses) -> None:
    frame = make_churn(rows=1_200)
    with httpx.Client(base_url=service.base_url, timeout=30) as api:
        upload = api.post(
            "/datasets",
            files={"file": ("churn.parquet", parquet_bytes(frame), "application/octet-stream")},
        )
        assert upload.status_code in (200, 201), upload.text
        started = api.post(
            "/workflow/start",
            json={"user_goal": "Build a customer churn prediction model",
                  "dataset_id": upload.json()["dataset_id"]},
        )  # fmt: skip
        assert started.status_code == 200, started.text
        workflow_id = started.json()["workflow_id"]

        status = wait_for(api, workflow_id, {"awaiting_approval"})
        approved = api.post(f"/workflow/{workflow_id}/approve", json={"version": 1})
        assert approved.status_code == 200, approved.text
        status = wait_for(api, workflow_id, {"completed"}, timeout=300)
        assert status["current_step"] == "complete"

        state = api.get(f"/workflow/{workflow_id}").json()
        assert state["dataset_info"]["file_path"].endswith("dataset.parquet")
        assert state["dataset_info"]["profile"]["rows"] == 1_200
        assert state["code_context"]["eda_result"]["exit_code"] == 0
        metrics = state["code_context"]["training_result"]["metrics"]
        assert float(metrics["score"]) > float(metrics["baseline_score"])


def wait_for(
    api: httpx.Client, workflow_id: str, wanted: set[str], timeout: float = 180
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = api.get(f"/workflow/{workflow_id}/status").json()
        if body["status"] in wanted:
            return body
        assert body["status"] not in ("failed", "cancelled", "timed_out"), body
        time.sleep(0.5)
    raise AssertionError(f"{workflow_id} never reached {wanted}; last status: {body}")
