"""POST /workflow/{id}/predict over real HTTP against the real worker, API and Temporal dev
server: rows in, predictions out, bad columns named, and a malicious model kept in the sandbox."""

from __future__ import annotations

import csv
import io
import json
import pickle
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import joblib
import pandas as pd
import pytest

from tests.conftest import ServiceProcesses
from tests.sample_data import make_churn

pytestmark = pytest.mark.integration

GOAL = "Build a customer churn prediction model"
REPORT_CSP = "sandbox; default-src 'none'; img-src data:; style-src 'unsafe-inline'"


@pytest.fixture(scope="module")
def api(service: ServiceProcesses) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=service.base_url, timeout=180) as client:
        yield client


@pytest.fixture(scope="module")
def churn_csv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("predict-data") / "churn.csv"
    make_churn(rows=800, seed=21).to_csv(path, index=False)
    return path


def start(api: httpx.Client, dataset: Path) -> str:
    response = api.post("/workflow/start", json={"user_goal": GOAL, "dataset_url": str(dataset)})
    assert response.status_code == 200, response.text
    return str(response.json()["workflow_id"])


def wait_until(
    api: httpx.Client, workflow_id: str, ready: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    body: dict[str, Any] = {}
    while time.monotonic() < deadline:
        body = api.get(f"/workflow/{workflow_id}/status").json()
        if ready(body):
            return body
        assert body.get("status") not in ("failed", "cancelled", "timed_out"), body
        time.sleep(0.5)
    raise AssertionError(f"{workflow_id} never got there; last status: {body}")


@pytest.fixture(scope="module")
def finished_run(api: httpx.Client, churn_csv: Path) -> str:
    workflow_id = start(api, churn_csv)
    wait_until(api, workflow_id, lambda b: b["status"] == "awaiting_approval", 120)
    assert api.post(f"/workflow/{workflow_id}/approve").status_code == 200
    wait_until(api, workflow_id, lambda b: b["status"] == "completed", 420)
    return workflow_id


def raw_rows(path: Path, count: int) -> list[dict[str, str]]:
    """Rows exactly as the file has them: every value the text between the commas."""
    with path.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    blank = [r for r in rows if r["TotalCharges"].strip() == ""]
    assert blank, "the sample must hold a blank TotalCharges"
    return blank[:2] + rows[: count - 2]


def model_path(api: httpx.Client, service: ServiceProcesses, workflow_id: str) -> Path:
    state = api.get(f"/workflow/{workflow_id}").json()
    names = [a["name"] for a in state["code_context"]["training_result"]["artifacts"]]
    [name] = [n for n in names if n.endswith("/model.joblib")]
    return service.data_dir / "artifacts" / workflow_id / name


def test_json_rows_get_predictions_and_probabilities(
    api: httpx.Client, service: ServiceProcesses, finished_run: str, churn_csv: Path
):
    rows = raw_rows(churn_csv, 8)
    response = api.post(f"/workflow/{finished_run}/predict", json={"rows": rows})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["n_rows"] == 8 and len(body["predictions"]) == 8
    assert set(body["classes"]) == {"No", "Yes"}
    for prediction, probabilities in zip(body["predictions"], body["probabilities"], strict=True):
        assert prediction in {"No", "Yes"}
        assert set(probabilities) == {"No", "Yes"}
        assert abs(sum(probabilities.values()) - 1.0) < 1e-6
    # The same answers as the saved model gives here (this test process may load it).
    model = joblib.load(model_path(api, service, finished_run))
    expected = model.predict(pd.read_csv(io.StringIO(pd.DataFrame(rows).to_csv(index=False))))
    assert body["predictions"] == list(expected)
    assert body["model"].endswith("/model.joblib")


def test_csv_upload_gets_predictions(api: httpx.Client, finished_run: str, churn_csv: Path):
    data = churn_csv.read_bytes()
    head = b"\n".join(data.splitlines()[:31]) + b"\n"  # the header and 30 rows, as uploaded
    response = api.post(
        f"/workflow/{finished_run}/predict", files={"file": ("rows.csv", head, "text/csv")}
    )
    assert response.status_code == 200, response.text
    assert response.json()["n_rows"] == 30 and len(response.json()["predictions"]) == 30


def test_a_form_with_fields_besides_the_file_is_422_naming_them(
    api: httpx.Client, finished_run: str, churn_csv: Path
):
    head = b"\n".join(churn_csv.read_bytes().splitlines()[:3]) + b"\n"
    response = api.post(
        f"/workflow/{finished_run}/predict",
        data={"note": "x"},
        files={"file": ("rows.csv", head, "text/csv")},
    )
    assert response.status_code == 422, response.text
    assert "'note'" in response.json()["detail"]


def test_unknown_and_missing_columns_are_422_naming_them(
    api: httpx.Client, finished_run: str, churn_csv: Path
):
    rows = raw_rows(churn_csv, 3)
    unknown = api.post(
        f"/workflow/{finished_run}/predict", json={"rows": [{**r, "shoe_size": "44"} for r in rows]}
    )
    assert unknown.status_code == 422, unknown.text
    assert unknown.json()["unknown_columns"] == ["shoe_size"]
    assert "shoe_size" in unknown.json()["detail"]

    missing = api.post(
        f"/workflow/{finished_run}/predict",
        json={"rows": [{k: v for k, v in r.items() if k != "tenure"} for r in rows]},
    )
    assert missing.status_code == 422, missing.text
    assert missing.json()["missing_columns"] == ["tenure"]
    assert "'tenure'" in missing.json()["detail"]


def test_scored_rows_are_not_kept_after_the_answer(
    api: httpx.Client, service: ServiceProcesses, finished_run: str, churn_csv: Path
):
    rows = raw_rows(churn_csv, 3)
    scored = api.post(f"/workflow/{finished_run}/predict", json={"rows": rows})
    refused = api.post(
        f"/workflow/{finished_run}/predict", json={"rows": [{**r, "shoe_size": "44"} for r in rows]}
    )
    listed = [a["name"] for a in api.get(f"/workflow/{finished_run}/artifacts").json()["artifacts"]]
    folder = service.data_dir / "artifacts" / finished_run / "predictions"

    assert scored.status_code == 200 and refused.status_code == 422
    assert not [name for name in listed if name.startswith("predictions/")], listed
    assert not folder.exists() or not any(folder.iterdir()), list(folder.iterdir())


def test_bad_requests_are_refused_before_any_scoring(api: httpx.Client, finished_run: str):
    assert (
        api.post("/workflow/wf-doesnotexist/predict", json={"rows": [{"a": 1}]}).status_code == 404
    )
    empty = api.post(f"/workflow/{finished_run}/predict", json={"rows": []})
    assert empty.status_code == 422 and "rows" in empty.text
    too_many = api.post(
        f"/workflow/{finished_run}/predict", json={"rows": [{"tenure": 1}] * 10_001}
    )
    assert too_many.status_code == 422 and "PREDICT_MAX_ROWS" in too_many.text
    text = api.post(
        f"/workflow/{finished_run}/predict",
        content=b"a,b\n1,2\n",
        headers={"content-type": "text/plain"},
    )
    assert text.status_code == 422 and "multipart/form-data" in text.text


def test_a_run_still_working_is_409(api: httpx.Client, churn_csv: Path):
    workflow_id = start(api, churn_csv)
    wait_until(api, workflow_id, lambda b: b["status"] == "awaiting_approval", 120)
    try:
        response = api.post(f"/workflow/{workflow_id}/predict", json={"rows": [{"tenure": 1}]})
        assert response.status_code == 409, response.text
        assert "awaiting_approval" in response.json()["detail"]
    finally:
        api.post(f"/workflow/{workflow_id}/cancel")


def test_report_and_plots_open_inline_but_cannot_run_script(api: httpx.Client, finished_run: str):
    listing = api.get(f"/workflow/{finished_run}/artifacts").json()["artifacts"]
    names = {a["name"] for a in listing}
    assert "critic_agent/v1/report.html" in names
    assert {"browser_agent/v1/correlation_heatmap.png", "ml_worker/v1/roc_curve.png"} <= names

    report = api.get(f"/workflow/{finished_run}/artifacts/critic_agent/v1/report.html")
    assert report.status_code == 200
    assert report.headers["content-type"].startswith("text/html")
    assert report.headers["content-security-policy"] == REPORT_CSP
    assert report.headers["x-content-type-options"] == "nosniff"
    assert report.headers["content-disposition"].startswith("inline")
    assert "data:image/png;base64," in report.text and "roc_auc" in report.text

    plot = api.get(f"/workflow/{finished_run}/artifacts/ml_worker/v1/roc_curve.png")
    assert plot.headers["content-disposition"].startswith("inline")
    assert plot.content.startswith(b"\x89PNG")
    model = api.get(f"/workflow/{finished_run}/artifacts/ml_worker/v1/model.joblib")
    assert model.headers["content-disposition"].startswith("attachment")
    assert model.headers["content-security-policy"] == REPORT_CSP


class _Payload:
    """A "model" whose unpickling runs code: what generated code could have saved."""

    def __init__(self, source: str) -> None:
        self.source = source

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (self.source,))


def test_a_malicious_model_cannot_touch_the_worker_or_the_api(
    api: httpx.Client, service: ServiceProcesses, finished_run: str, churn_csv: Path
):
    path = model_path(api, service, finished_run)
    original = path.read_bytes()
    metrics_path = path.parent / "metrics.json"
    metrics_before = metrics_path.read_bytes()
    marker = service.data_dir / f"pwned-{uuid.uuid4().hex}"
    source = f"""
import json, os
for target, text in (({str(marker)!r}, "pwned"), ({str(metrics_path)!r}, "{{}}")):
    try:
        with open(target, "w") as handle:
            handle.write(text)
    except OSError:
        pass
try:
    secret = open("/etc/shadow").read()
except OSError as error:
    secret = "refused: " + type(error).__name__
with open(os.path.join(os.environ.get("OUTPUT_DIR", "."), "predictions.json"), "w") as out:
    out.write(json.dumps({{"predictions": [secret]}}))
os._exit(0)
"""
    path.write_bytes(pickle.dumps(_Payload(source)))
    try:
        response = api.post(
            f"/workflow/{finished_run}/predict", json={"rows": raw_rows(churn_csv, 3)}
        )
        assert not marker.exists(), "the model's code wrote into DATA_DIR"
        assert metrics_path.read_bytes() == metrics_before, "the model's code rewrote an artifact"
        assert "root:" not in response.text, "the model's code read /etc/shadow"
        assert api.get("/health").status_code == 200
    finally:
        path.write_bytes(original)
    # The service still scores with the real model.
    again = api.post(f"/workflow/{finished_run}/predict", json={"rows": raw_rows(churn_csv, 3)})
    assert again.status_code == 200, again.text
    assert json.loads(again.text)["n_rows"] == 3
