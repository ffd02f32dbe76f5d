"""An EDA script's work, the same for every dataset: shape, types, missing values, the
target, each feature, their association with the target, suspicious columns, plots, and
OUTPUT_DIR/eda_summary.json for the agents that follow.

What the agent decided for one dataset (target, columns by kind, drops) is the plan block.
"""

import json
import math
import os
from pathlib import Path

import numpy as np
import pandas as pd

# <template-imports>
from activities.offline.templates.dataset_reader import load_dataset
from activities.offline.templates.json_values import json_safe
from activities.offline.templates.plots import (
    draw_plots,
    plot_correlation_heatmap,
    plot_distributions,
    plot_missing_values,
    plot_target_balance,
)

# </template-imports>

DATASET_PATH = os.environ.get("DATASET_PATH", "dataset.csv")
OUTPUT_DIR = Path(os.environ.get("OUTPUT_DIR", "."))

# <plan>
TARGET = "target"
TASK_TYPE = "classification"
SAMPLE_ROWS: int | None = None
CSV_DELIMITER = ","
CSV_ENCODING = "utf-8"
DROP_COLUMNS: list[str] = []
ID_COLUMNS: list[str] = []
NUMERIC_COLUMNS: list[str] = []
CATEGORICAL_COLUMNS: list[str] = []
OTHER_COLUMNS: list[str] = []
TEXT_NUMERIC_COLUMNS: list[str] = []
NOT_FEATURES: dict[str, str] = {}
# </plan>

# Feature-target relations at or above this strength are suspiciously strong (possible leakage).
LEAKAGE_SUSPICION = 0.95
MAX_PRINTED_ROWS = 60


def section(title: str) -> None:
    print(f"\n=== {title} ===")


def correlation_ratio(groups: pd.Series, values: pd.Series) -> float:
    """Eta: the share of a numeric column's spread explained by groups, on a 0..1 scale."""
    frame = pd.DataFrame({"group": groups, "value": values}).dropna()
    if len(frame) < 3 or frame["value"].var() == 0:
        return float("nan")
    overall = frame["value"].mean()
    stats = frame.groupby("group", observed=True)["value"].agg(["mean", "size"])
    between = float((stats["size"] * (stats["mean"] - overall) ** 2).sum())
    total = float(((frame["value"] - overall) ** 2).sum())
    return math.sqrt(between / total) if total > 0 else float("nan")


def cramers_v(a: pd.Series, b: pd.Series) -> float:
    """Association between two categorical columns on a 0..1 scale (chi-squared based)."""
    table = pd.crosstab(a, b)
    if min(table.shape) < 2:
        return float("nan")
    observed = table.to_numpy(dtype=float)
    n = observed.sum()
    expected = observed.sum(axis=1, keepdims=True) @ observed.sum(axis=0, keepdims=True) / n
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    return math.sqrt(chi2 / n / (min(observed.shape) - 1))


def main() -> None:
    df = load_dataset(
        DATASET_PATH,
        sample_rows=SAMPLE_ROWS,
        stratify_by=TARGET if TASK_TYPE == "classification" else None,
        delimiter=CSV_DELIMITER,
        encoding=CSV_ENCODING,
    )
    dropped = [c for c in DROP_COLUMNS if c in df.columns]
    df = df.drop(columns=dropped)
    if TARGET not in df.columns:
        raise SystemExit(f"target column {TARGET!r} is not in the dataset")
    # Numbers stored as text (blanks for missing values, say) are parsed into numbers.
    for col in TEXT_NUMERIC_COLUMNS + NUMERIC_COLUMNS:
        if col in df.columns and not pd.api.types.is_numeric_dtype(df[col]):
            df[col] = pd.to_numeric(df[col], errors="coerce")
    numeric = [c for c in NUMERIC_COLUMNS if c in df.columns]
    categorical = [c for c in CATEGORICAL_COLUMNS if c in df.columns]
    issues: list[str] = []

    section("Shape")
    print(f"{len(df):,} rows x {df.shape[1]} columns")
    if dropped:
        print("Dropped at the reviewer's request:", ", ".join(dropped))
    duplicates = int(df.duplicated().sum())
    print(f"Duplicate rows: {duplicates:,}")
    if duplicates:
        issues.append(f"{duplicates} duplicate rows")

    section("Column types")
    print(df.dtypes.astype(str).to_string())

    section("Missing values")
    missing = df.isna().sum()
    missing = missing[missing > 0].sort_values(ascending=False)
    if missing.empty:
        print("No missing values.")
    else:
        table = pd.DataFrame({"missing": missing, "share": (missing / len(df)).round(3)})
        print(table.head(MAX_PRINTED_ROWS).to_string())
        for col, share in (missing / len(df)).items():
            if share > 0.3:
                issues.append(f"{col!r} is {share:.0%} missing")

    section(f"Target: {TARGET} ({TASK_TYPE})")
    y = df[TARGET]
    if y.isna().any():
        issues.append(f"{int(y.isna().sum())} rows have no target value and cannot be used")
    y_numeric = pd.to_numeric(y, errors="coerce")
    if TASK_TYPE == "classification":
        counts = y.value_counts()
        print(pd.DataFrame({"rows": counts, "share": (counts / counts.sum()).round(3)}).to_string())
        ratio = float(counts.min() / counts.max()) if len(counts) > 1 else 1.0
        print(f"Smallest class / largest class: {ratio:.2f}")
        if ratio < 0.5:
            issues.append(f"imbalanced target (smallest/largest class = {ratio:.2f})")
        target_summary = {
            "classes": {str(k): int(v) for k, v in counts.items()},
            "imbalance_ratio": ratio,
        }
    else:
        description = y_numeric.describe()
        skew = float(y_numeric.skew())
        print(description.to_string())
        print(f"skew: {skew:.2f}")
        if abs(skew) > 1:
            issues.append(f"target is skewed ({skew:.2f}); a log transform may help")
        target_summary = {**description.to_dict(), "skew": skew}

    section("Numeric features")
    numeric_summary: dict[str, dict[str, object]] = {}
    if numeric:
        stats = df[numeric].describe().T
        stats["skew"] = df[numeric].skew()
        stats["missing"] = df[numeric].isna().sum()
        print(stats.round(3).head(MAX_PRINTED_ROWS).to_string())
        numeric_summary = stats.to_dict(orient="index")
        for col in numeric:
            if df[col].nunique() == 1:
                issues.append(f"{col!r} is constant")
            infinite = int(np.isinf(df[col]).sum())
            if infinite:
                issues.append(f"{col!r} has {infinite} infinite values (treated as missing)")
    else:
        print("No numeric features.")

    section("Categorical features")
    categorical_summary: dict[str, dict[str, object]] = {}
    for col in categorical:
        counts = df[col].value_counts(dropna=False)
        top = {str(k): int(v) for k, v in counts.head(5).items()}
        categorical_summary[col] = {"unique": int(df[col].nunique()), "top": top}
        print(f"{col}: {df[col].nunique()} distinct; top: {top}")
        if df[col].nunique() == 1:
            issues.append(f"{col!r} is constant")
        if df[col].nunique() > 50:
            issues.append(f"{col!r} has {df[col].nunique()} categories (high cardinality)")
    if not categorical:
        print("No categorical features.")

    for col in OTHER_COLUMNS:
        if col in df.columns:
            print(f"{col}: {df[col].nunique()} distinct values (text/date, described only)")

    section("Association with the target")
    associations: dict[str, float] = {}
    if TASK_TYPE == "regression":
        method = "Pearson correlation (numeric); correlation ratio eta (categorical)"
        for col in numeric:
            associations[col] = float(df[col].corr(y_numeric))
        for col in categorical:
            associations[col] = correlation_ratio(df[col], y_numeric)
    else:
        labels = sorted(y.dropna().unique(), key=str)
        if len(labels) == 2:
            # Point-biserial correlation: Pearson against the target coded 0/1.
            method = (
                f"correlation with {TARGET} == {labels[-1]!r} (numeric); Cramer's V (categorical)"
            )
            positive = (y == labels[-1]).astype(float).where(y.notna())
            for col in numeric:
                associations[col] = float(df[col].corr(positive))
        else:
            method = "correlation ratio eta (numeric); Cramer's V (categorical)"
            for col in numeric:
                associations[col] = correlation_ratio(y, df[col])
        for col in categorical:
            associations[col] = cramers_v(df[col], y)
    ranked = sorted(
        ((c, v) for c, v in associations.items() if not math.isnan(v)),
        key=lambda item: abs(item[1]),
        reverse=True,
    )
    print(f"Method: {method}")
    for col, value in ranked[:20]:
        print(f"  {col:<40} {value:+.3f}")
        if abs(value) >= LEAKAGE_SUSPICION:
            issues.append(f"{col!r} is almost perfectly related to the target: possible leakage")

    section("Strongly correlated feature pairs")
    pairs: list[list[object]] = []
    if 2 <= len(numeric) <= 200:
        corr = df[numeric].corr().abs()
        upper = corr.where(np.triu(np.ones(corr.shape, dtype=bool), k=1)).stack()
        for (a, b), value in upper[upper > 0.95].sort_values(ascending=False).head(20).items():
            pairs.append([a, b, float(value)])
            print(f"  {a} ~ {b}: {value:.3f}")
    if not pairs:
        print("None above 0.95.")

    section("Columns the model will not use")
    present_ids = [c for c in ID_COLUMNS if c in df.columns]
    for col, reason in NOT_FEATURES.items():
        if col in df.columns:
            print(f"  {col}: {reason}")
    if not any(c in df.columns for c in NOT_FEATURES):
        print("None.")

    section("Issues")
    print("\n".join(f"- {issue}" for issue in issues) if issues else "None found.")

    section("Plots")
    heatmap_columns = numeric + ([TARGET] if TASK_TYPE == "regression" else [])
    plots, plot_errors = draw_plots(
        OUTPUT_DIR,
        {
            "missing values": lambda: plot_missing_values(df, OUTPUT_DIR),
            "target balance": lambda: plot_target_balance(y, TASK_TYPE, OUTPUT_DIR),
            "distributions": lambda: plot_distributions(df, numeric, categorical, OUTPUT_DIR),
            "correlation heatmap": lambda: plot_correlation_heatmap(
                df.assign(**{TARGET: y_numeric}), heatmap_columns, OUTPUT_DIR
            ),
        },
    )
    print("Wrote " + (", ".join(plots) if plots else "no plots"))

    summary = {
        "plots": plots,
        "plot_errors": plot_errors,
        "rows": len(df),
        "n_columns": df.shape[1],
        "columns": list(df.columns),
        "dtypes": df.dtypes.astype(str).to_dict(),
        "missing": {col: int(n) for col, n in df.isna().sum().items()},
        "duplicate_rows": duplicates,
        "target": TARGET,
        "task_type": TASK_TYPE,
        "target_summary": target_summary,
        "numeric_summary": numeric_summary,
        "categorical_summary": categorical_summary,
        "target_associations": dict(ranked),
        "association_method": method,
        "correlated_pairs": pairs,
        "id_columns": present_ids,
        "dropped_columns": dropped,
        "not_features": {c: r for c, r in NOT_FEATURES.items() if c in df.columns},
        "issues": issues,
    }
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    with open(OUTPUT_DIR / "eda_summary.json", "w", encoding="utf-8") as handle:
        json.dump(json_safe(summary), handle, indent=2, allow_nan=False)
    print(f"\nWrote {OUTPUT_DIR / 'eda_summary.json'}")


if __name__ == "__main__":
    main()
