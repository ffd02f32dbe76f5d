"""Scores rows with a saved model inside the sandbox, the only place a model file is loaded.

The model was written by generated (untrusted) code, and loading a pickle runs code, so the
worker and the API never load it: they run this script in the sandbox instead.

Input: DATASET_PATH is a zip archive holding model.joblib, input_schema.json, input.csv and
request.json ({"max_rows": n}). Output, in OUTPUT_DIR: predictions.json
({"predictions": [...], "classes": [...] or null, "probabilities": [{class: p}, ...] or null}),
or error.json ({"error": kind, "message": ..., "missing_columns": [...], "unknown_columns":
[...]}) with exit code 3 when the rows do not fit the model.
"""

import csv
import io
import json
import math
import os
import sys
import zipfile
from pathlib import Path
from typing import Any, NoReturn

BUNDLE_PATH = os.environ.get("DATASET_PATH", "dataset.csv")
OUTPUT_DIR = Path(os.environ.get("OUTPUT_DIR", "."))
INVALID_ROWS_EXIT = 3


def fail(kind: str, message: str, **details: Any) -> NoReturn:
    """Report why the rows cannot be scored, in a form the API turns into a 422."""
    (OUTPUT_DIR / "error.json").write_text(
        json.dumps({"error": kind, "message": message, **details}), encoding="utf-8"
    )
    print(message, file=sys.stderr)
    sys.exit(INVALID_ROWS_EXIT)


def read_rows(data: bytes) -> Any:
    """The rows as pandas reads a dataset: UTF-8 (or Latin-1), comma, ; tab or | separated."""
    import pandas as pd

    for encoding in ("utf-8-sig", "latin-1"):
        try:
            text = data.decode(encoding)
        except UnicodeDecodeError:
            continue
        header = text.split("\n", 1)[0]
        counts = {sep: len(next(csv.reader([header], delimiter=sep), [])) for sep in ",;\t|"}
        sep = max(counts, key=lambda s: counts[s]) if max(counts.values()) > 1 else ","
        try:
            return pd.read_csv(io.StringIO(text), sep=sep, low_memory=False)
        except (pd.errors.ParserError, pd.errors.EmptyDataError) as error:
            fail("unreadable_rows", f"the rows are not a readable CSV table: {error}")
    fail("unreadable_rows", "the rows could not be decoded as text")


def plain(value: Any) -> Any:
    """A JSON value: numpy scalars become Python ones, NaN and infinities become null."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def check_columns(columns: list[str], schema: dict[str, Any]) -> None:
    known = [str(c.get("name")) for c in schema.get("columns", []) if isinstance(c, dict)]
    required = [str(c) for c in schema.get("required", [])]
    missing = [c for c in required if c not in columns]
    unknown = [c for c in columns if c not in known and c not in required]
    if missing or unknown:
        parts = []
        if missing:
            parts.append("missing required column(s): " + ", ".join(repr(c) for c in missing))
        if unknown:
            parts.append("unknown column(s): " + ", ".join(repr(c) for c in unknown))
        fail(
            "invalid_columns",
            "; ".join(parts) + f". The model expects the dataset's columns; required: {required}",
            missing_columns=missing,
            unknown_columns=unknown,
        )


def main() -> None:
    with zipfile.ZipFile(BUNDLE_PATH) as bundle:
        schema = json.loads(bundle.read("input_schema.json"))
        request = json.loads(bundle.read("request.json"))
        rows = read_rows(bundle.read("input.csv"))
        model_bytes = bundle.read("model.joblib")
    if not isinstance(schema, dict):
        fail("invalid_schema", "the run's input_schema.json is not a JSON object")
    columns = [str(c) for c in rows.columns]
    check_columns(columns, schema)
    max_rows = int(request.get("max_rows", 10_000))
    if len(rows) == 0:
        fail("no_rows", "there are no rows to score")
    if len(rows) > max_rows:
        fail("too_many_rows", f"{len(rows):,} rows; at most {max_rows:,} per request")

    import joblib

    model = joblib.load(io.BytesIO(model_bytes))
    try:
        predictions = model.predict(rows)
        probabilities = None
        classes = None
        if hasattr(model, "predict_proba") and hasattr(model, "classes_"):
            classes = [plain(c) for c in model.classes_]
            matrix = model.predict_proba(rows)
            names = [str(c) for c in classes]
            probabilities = [
                {name: plain(p) for name, p in zip(names, row, strict=True)} for row in matrix
            ]
    except (ValueError, TypeError, KeyError) as error:
        fail("prediction_failed", f"the model could not score these rows: {error}")
    result = {
        "predictions": [plain(p) for p in predictions],
        "classes": classes,
        "probabilities": probabilities,
        "n_rows": len(rows),
    }
    (OUTPUT_DIR / "predictions.json").write_text(json.dumps(result), encoding="utf-8")
    print(f"Scored {len(rows)} rows")


if __name__ == "__main__":
    main()
