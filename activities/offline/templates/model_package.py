"""What a generated training script hands over with its model: the pipeline, the input schema
the scoring service checks rows against, and a model card saying how the model came to be.

Files (in OUTPUT_DIR): model.joblib (cloudpickle; joblib.load or pickle.load reads it),
input_schema.json, model_card.json and model_card.md.
"""

import hashlib
import json
import platform
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

import cloudpickle
import pandas as pd

LIBRARIES = ("scikit-learn", "pandas", "numpy", "cloudpickle", "joblib", "matplotlib")


def file_sha256(path: str) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def library_versions() -> dict[str, str]:
    versions = {"python": platform.python_version()}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def input_schema(
    raw: pd.DataFrame, target: str, numeric: list[str], categorical: list[str]
) -> dict[str, object]:
    """Every column of the dataset with its dtype and role; the features are required."""
    columns = []
    for name in raw.columns:
        if name in numeric:
            role = "numeric feature"
        elif name in categorical:
            role = "categorical feature"
        elif name == target:
            role = "target"
        else:
            role = "not used"
        columns.append({"name": str(name), "dtype": str(raw[name].dtype), "role": role})
    return {
        "target": target,
        "required": [*numeric, *categorical],
        "columns": columns,
        "note": "Rows may hold every column of the dataset as it appears in the CSV; the "
        "target and unused columns are ignored, required ones may hold blanks.",
    }


def model_card(
    metrics: dict[str, object], dataset_path: str, rows: int, schema: dict[str, object]
) -> dict[str, object]:
    keys = (
        "task_type",
        "target",
        "metric",
        "model",
        "score",
        "baseline_score",
        "threshold",
        "threshold_metric",
        "accuracy",
        "majority_baseline_accuracy",
        "r2",
        "rmse",
    )
    return {
        **{k: metrics[k] for k in keys if k in metrics},
        "features": schema["required"],
        "data_fingerprint": {"sha256": file_sha256(dataset_path), "rows": rows},
        "trained_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "library_versions": library_versions(),
    }


def model_card_markdown(card: dict[str, object]) -> str:
    lines = [f"# Model card: {card.get('target')} ({card.get('task_type')})", ""]
    for key, value in card.items():
        if isinstance(value, dict):
            lines.append(f"- **{key}**: " + ", ".join(f"{k} {v}" for k, v in value.items()))
        elif isinstance(value, list):
            lines.append(f"- **{key}**: " + ", ".join(str(v) for v in value))
        else:
            lines.append(f"- **{key}**: {value}")
    return "\n".join(lines) + "\n"


def save_model_package(
    model: object,
    out_dir: Path,
    schema: dict[str, object],
    card: dict[str, object],
) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    # cloudpickle stores classes defined in this script (the cleaner) by value.
    with open(out_dir / "model.joblib", "wb") as handle:
        cloudpickle.dump(model, handle)
    (out_dir / "input_schema.json").write_text(json.dumps(schema, indent=2), encoding="utf-8")
    (out_dir / "model_card.json").write_text(
        json.dumps(card, indent=2, default=str), encoding="utf-8"
    )
    (out_dir / "model_card.md").write_text(model_card_markdown(card), encoding="utf-8")
