"""The ML agent: a scikit-learn training script for this dataset, revised on critic findings."""

from __future__ import annotations

from activities.offline.selection import (
    SEED,
    SMALL_DATA_ROWS,
    TEST_SIZE,
    ColumnPlan,
    choose_metric,
    class_count,
    cv_folds,
    is_imbalanced,
    plan_columns,
)
from activities.offline.snippets import (
    JSON_SAFE,
    LOAD_DATASET,
    call,
    check_size,
    constants_block,
    docstring,
    literal,
)
from workflows.models import AgentContext, GeneratedCode

MAX_CATEGORIES = 20  # one-hot columns per categorical feature; rarer levels are pooled
# (rows used at all, rows used for cross-validation): bounds on the run time, and the tighter
# ones used after a run failed.
ROW_LIMITS = (300_000, 50_000)
LIGHT_ROW_LIMITS = (50_000, 20_000)

_IMPORTS = """
import csv
import json
import math
import os
import time
from pathlib import Path

# One thread for native code: the sandbox shares its cores. Must precede the numpy import.
os.environ.setdefault("OMP_NUM_THREADS", "1")

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    get_scorer,
    mean_absolute_error,
    r2_score,
    root_mean_squared_error,
)
from sklearn.model_selection import KFold, StratifiedKFold, cross_val_score, train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

DATASET_PATH = os.environ.get("DATASET_PATH", "dataset.csv")
OUTPUT_DIR = Path(os.environ.get("OUTPUT_DIR", "."))
"""

_BODY = '''
def prepare(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The feature frame and the target, cleaned the same way for training and for scoring."""
    needed = [TARGET, *NUMERIC_FEATURES, *CATEGORICAL_FEATURES]
    absent = [c for c in needed if c not in df.columns]
    if absent:
        raise SystemExit(f"columns missing from the dataset: {absent}")
    df = df[df[TARGET].notna()]  # rows without a label can be neither learned nor scored
    X = df[NUMERIC_FEATURES + CATEGORICAL_FEATURES].copy()
    for col in NUMERIC_FEATURES:
        # Parses numbers stored as text; infinities (say, from a division by zero) become
        # missing values, which the imputer can fill and the models would choke on.
        X[col] = pd.to_numeric(X[col], errors="coerce").replace([np.inf, -np.inf], np.nan)
    for col in CATEGORICAL_FEATURES:
        # One type per column so the encoder can sort its levels; missing stays missing.
        X[col] = X[col].astype(str).where(X[col].notna(), np.nan)
    y = df[TARGET]
    if TASK_TYPE == "classification":
        if not (pd.api.types.is_numeric_dtype(y) or pd.api.types.is_bool_dtype(y)):
            # Labels as text: a column of mixed Python objects (True/False with blanks, say)
            # is not a label type scikit-learn accepts.
            y = y.astype(str)
        counts = y.value_counts()
        rare = counts[counts < 2].index
        if len(rare):
            print(f"Dropping {len(rare)} class(es) with a single row: they cannot be split.")
            X, y = X[~y.isin(rare)], y[~y.isin(rare)]
        if y.nunique() < 2:
            raise SystemExit("the target has a single class: there is nothing to learn")
    else:
        y = pd.to_numeric(y, errors="coerce")
        X, y = X[y.notna()], y[y.notna()]
    if len(X) > MAX_ROWS:
        print(f"Using a random sample of {MAX_ROWS:,} of {len(X):,} rows to bound the run time.")
        X = X.sample(n=MAX_ROWS, random_state=SEED)
        y = y.loc[X.index]
    return X, y


def make_preprocessor() -> ColumnTransformer:
    """Imputation, scaling and encoding, fitted inside each training fold only."""
    transformers = []
    if NUMERIC_FEATURES:
        numeric = Pipeline([
            ("impute", SimpleImputer(strategy="median")),
            ("scale", StandardScaler()),
        ])
        transformers.append(("numeric", numeric, NUMERIC_FEATURES))
    if CATEGORICAL_FEATURES:
        categorical = Pipeline([
            ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
            ("encode", OneHotEncoder(
                handle_unknown="ignore", max_categories=MAX_CATEGORIES, sparse_output=False
            )),
        ])
        transformers.append(("categorical", categorical, CATEGORICAL_FEATURES))
    return ColumnTransformer(transformers, remainder="drop")


def can_stratify(y: pd.Series, test_share: float) -> bool:
    counts = y.value_counts()
    return counts.min() >= 2 and int(len(y) * test_share) >= len(counts)


def cross_validator(y: pd.Series) -> KFold | StratifiedKFold:
    if TASK_TYPE == "classification":
        folds = max(2, min(CV_FOLDS, int(y.value_counts().min())))
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    return KFold(n_splits=CV_FOLDS, shuffle=True, random_state=SEED)


def top_features(model: Pipeline, limit: int = 10) -> list[tuple[str, float]]:
    """The features the fitted model leans on most (importances or coefficient sizes)."""
    estimator = model.named_steps["model"]
    names = model.named_steps["preprocess"].get_feature_names_out()
    if hasattr(estimator, "feature_importances_"):
        weights = np.asarray(estimator.feature_importances_)
    elif hasattr(estimator, "coef_"):
        weights = np.abs(np.atleast_2d(estimator.coef_)).mean(axis=0)
    else:
        return []
    order = np.argsort(weights)[::-1][:limit]
    return [(str(names[i]), float(weights[i])) for i in order]


def main() -> None:
    started = time.perf_counter()
    X, y = prepare(load_dataset(DATASET_PATH))
    classification = TASK_TYPE == "classification"
    stratify = y if classification and can_stratify(y, TEST_SIZE) else None
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, random_state=SEED, stratify=stratify
    )
    print(f"{TASK_TYPE} of {TARGET!r}: {len(X_train):,} training rows, {len(X_test):,} test rows, "
          f"{X.shape[1]} features")

    # Cross-validation picks the model, on the training part only (subsampled when large).
    X_cv, y_cv = X_train, y_train
    if len(X_train) > MAX_CV_ROWS:
        X_cv, _, y_cv, _ = train_test_split(
            X_train, y_train, train_size=MAX_CV_ROWS, random_state=SEED,
            stratify=y_train if classification and can_stratify(y_train, 0.5) else None,
        )
    cv = cross_validator(y_cv)
    print(f"\\nCross-validation ({cv.get_n_splits()} folds, {len(X_cv):,} rows, {METRIC}):")
    cv_scores: dict[str, np.ndarray] = {}
    for name, estimator in candidate_models().items():
        pipeline = Pipeline([("preprocess", make_preprocessor()), ("model", estimator)])
        cv_scores[name] = cross_val_score(pipeline, X_cv, y_cv, cv=cv, scoring=METRIC, n_jobs=1)
        print(f"  {name:<30} {cv_scores[name].mean():.4f} +/- {cv_scores[name].std():.4f}")
    best = max(cv_scores, key=lambda n: cv_scores[n].mean())

    # The chosen model is refit on the whole training part and scored once on the test part.
    model = Pipeline([("preprocess", make_preprocessor()), ("model", candidate_models()[best])])
    model.fit(X_train, y_train)
    scorer = get_scorer(METRIC)
    score = float(scorer(model, X_test, y_test))

    # The trivial baseline, scored exactly like the model.
    baseline = (DummyClassifier(strategy="most_frequent") if classification
                else DummyRegressor(strategy="mean"))
    baseline_cv = cross_val_score(baseline, X_cv, y_cv, cv=cv, scoring=METRIC, n_jobs=1)
    baseline.fit(X_train, y_train)
    baseline_score = float(scorer(baseline, X_test, y_test))

    predictions = model.predict(X_test)
    extra: dict[str, float] = {}
    if classification:
        extra["accuracy"] = accuracy_score(y_test, predictions)
        extra["balanced_accuracy"] = balanced_accuracy_score(y_test, predictions)
        extra["f1_macro"] = f1_score(y_test, predictions, average="macro")
        extra["baseline_accuracy"] = accuracy_score(y_test, baseline.predict(X_test))
        extra["n_classes"] = float(y.nunique())
    else:
        extra["r2"] = r2_score(y_test, predictions)
        extra["rmse"] = root_mean_squared_error(y_test, predictions)
        extra["mae"] = mean_absolute_error(y_test, predictions)
        extra["baseline_rmse"] = root_mean_squared_error(y_test, baseline.predict(X_test))

    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    joblib.dump(model, OUTPUT_DIR / "model.joblib")
    metrics: dict[str, object] = {
        "task_type": TASK_TYPE,
        "target": TARGET,
        "metric": METRIC,
        "model": best,
        "score": score,
        "baseline_score": baseline_score,
        "beats_baseline": 1.0 if score > baseline_score else 0.0,  # 1.0 = yes, 0.0 = no
        "improvement": score - baseline_score,
        "higher_is_better": 1.0,
        "cv_mean": float(cv_scores[best].mean()),
        "cv_std": float(cv_scores[best].std()),
        "baseline_cv_mean": float(baseline_cv.mean()),
        "n_train": float(len(X_train)),
        "n_test": float(len(X_test)),
        "n_features": float(X.shape[1]),
        "class_weight": str(CLASS_WEIGHT),
        "seed": float(SEED),
        **{k: float(v) for k, v in extra.items()},
        **{f"cv_{name}": float(s.mean()) for name, s in cv_scores.items()},
        "duration_seconds": round(time.perf_counter() - started, 2),
    }
    flat = json_safe(metrics)
    flat = {k: v for k, v in flat.items() if v is not None}  # a flat object of numbers and text
    with open(OUTPUT_DIR / "metrics.json", "w", encoding="utf-8") as handle:
        json.dump(flat, handle, indent=2, allow_nan=False)

    verdict = "beats" if score > baseline_score else "does NOT beat"
    print(f"\\nChosen model: {best}")
    print(f"Test {METRIC}: {score:.4f} vs baseline {baseline_score:.4f} -> the model {verdict} "
          f"the trivial baseline (by {score - baseline_score:+.4f}).")
    for key, value in extra.items():
        print(f"  {key}: {value:.4f}")
    features = top_features(model)
    if features:
        print("Strongest features:")
        for name, weight in features:
            print(f"  {name:<40} {weight:.4f}")
    print(f"Wrote metrics.json and model.joblib to {OUTPUT_DIR} in {metrics['duration_seconds']} s")


if __name__ == "__main__":
    main()
'''


def _candidates_source(cols: ColumnPlan, rows: int) -> tuple[str, list[str]]:
    """The source of `candidate_models()` for this data, and the candidates' names."""
    classification = cols.task_type == "classification"
    critic = cols.critic
    leaf = 5 if critic.overfitting else 2
    trees = 100 if critic.run_failed else 200
    forest = "RandomForestClassifier" if classification else "RandomForestRegressor"
    boosting = (
        "HistGradientBoostingClassifier" if classification else "HistGradientBoostingRegressor"
    )
    weight = ["class_weight=CLASS_WEIGHT"] if classification else []
    regularised = ["l2_regularization=1.0", "max_leaf_nodes=15"] if critic.overfitting else []
    linear_why = "A regularised linear model: strong when effects are roughly additive."

    entries: list[tuple[str, str, str, list[str]]] = []
    if classification:
        entries.append(
            (
                "logistic_regression",
                linear_why,
                "LogisticRegression",
                ["max_iter=2000", *weight, "random_state=SEED"],
            )
        )
    else:
        entries.append(("ridge", linear_why, "Ridge", ["alpha=1.0", "random_state=SEED"]))
    # Small data affords a forest; large data gets boosting; a weak result earns both, and
    # a failed run (time, memory) drops the forest, the heavier of the two.
    use_forest = (rows < SMALL_DATA_ROWS or critic.beat_baseline) and not critic.run_failed
    use_boosting = rows >= SMALL_DATA_ROWS or critic.beat_baseline or critic.run_failed
    if use_forest:
        entries.append(
            (
                "random_forest",
                "Averaged deep trees: capture interactions and thresholds, hard to overfit.",
                forest,
                [
                    f"n_estimators={trees}",
                    f"min_samples_leaf={leaf}",
                    *weight,
                    "random_state=SEED",
                    "n_jobs=1",
                ],
            )
        )
    if use_boosting:
        entries.append(
            (
                "hist_gradient_boosting",
                "Boosted trees on binned features: fast and usually the strongest on tabular data.",
                boosting,
                ["max_iter=200", "learning_rate=0.1", *weight, *regularised, "random_state=SEED"],
            )
        )
    lines = [
        "def candidate_models() -> dict[str, object]:",
        '    """The models compared by cross-validation; the best one is refit and tested."""',
        "    return {",
    ]
    for name, why, class_name, args in entries:
        lines += [f"        # {why}", call(f'"{name}": {class_name}', args, indent=8) + ","]
    lines.append("    }")
    return "\n".join(lines), [entry[0] for entry in entries]


def write_training_code(ctx: AgentContext) -> GeneratedCode:
    """Training code for the run's dataset and plan, revised for the critic's earlier findings."""
    profile = ctx.dataset.profile
    cols = plan_columns(profile, ctx.plan, ctx.feedback, ctx.user_goal)
    if not cols.features:
        raise ValueError(
            f"no usable feature columns remain for target {cols.target!r}: "
            + "; ".join(f"{c}: {r}" for c, r in cols.excluded.items())
        )
    classification = cols.task_type == "classification"
    n_classes = class_count(profile, cols.target) if classification else 0
    metric = choose_metric(cols.task_type, n_classes)
    balanced = classification and (
        is_imbalanced(profile, cols.target) or cols.critic.handle_imbalance
    )
    if not classification:
        weight_note = "Not used for regression."
    elif balanced:
        weight_note = "The classes are imbalanced: weight them inversely to their frequency."
    else:
        weight_note = "The classes are balanced enough to train unweighted."
    # After a failed run (most likely time or memory), the next version works on less data.
    failed = cols.critic.run_failed
    max_rows, max_cv_rows = LIGHT_ROW_LIMITS if failed else ROW_LIMITS
    candidates, names = _candidates_source(cols, profile.rows)

    header = docstring(
        [
            f"Model training for: {ctx.user_goal.strip() or 'the uploaded dataset'}",
            f"Written by the offline ML agent (version {ctx.version}). Reads DATASET_PATH, "
            f"compares {', '.join(names)} by cross-validation on a {1 - TEST_SIZE:.0%} "
            f"training split, scores the best on the held-out {TEST_SIZE:.0%} against a trivial "
            "baseline, and writes OUTPUT_DIR/metrics.json and OUTPUT_DIR/model.joblib (the "
            "fitted Pipeline; it expects the feature columns below, categorical values as text).",
            "metrics.json: task_type, target, metric, model, score, baseline_score, "
            "beats_baseline (1.0 or 0.0), improvement, higher_is_better (always 1.0), cv_mean, "
            "cv_std, baseline_cv_mean, n_train, n_test, n_features, class_weight, seed, "
            "per-task extras and cv_<candidate> for each candidate.",
        ]
    )
    constants = [
        literal("SEED", SEED),
        literal("TARGET", cols.target),
        literal("TASK_TYPE", cols.task_type),
        literal("METRIC", metric.name, f"{metric.label}: {metric.why}."),
        literal("NUMERIC_FEATURES", cols.numeric, "Imputed with the median, then standardised."),
        literal(
            "CATEGORICAL_FEATURES",
            cols.categorical,
            "Missing filled with 'missing', then one-hot encoded.",
        ),
        literal("EXCLUDED_COLUMNS", cols.excluded, "Never used as features, and why."),
        literal("CLASS_WEIGHT", "balanced" if balanced else None, weight_note),
        literal("TEST_SIZE", TEST_SIZE),
        literal("CV_FOLDS", 3 if failed else cv_folds(profile.rows)),
        literal("MAX_CV_ROWS", max_cv_rows, "Rows used for cross-validation."),
        literal("MAX_ROWS", max_rows, "Rows used at all."),
        literal("MAX_CATEGORIES", MAX_CATEGORIES, "One-hot columns per categorical feature."),
    ]
    code = "\n".join(
        [
            header,
            _IMPORTS,
            constants_block(constants),
            "\n" + LOAD_DATASET,
            JSON_SAFE,
            "\n" + candidates + "\n",
            _BODY,
        ]
    )

    summary = (
        f"Trains {' vs '.join(n.replace('_', ' ') for n in names)} on {len(cols.features)} "
        f"features to predict {cols.target!r} ({cols.task_type}), scored by {metric.label} "
        f"against a {'most-frequent-class' if classification else 'mean'} baseline"
        + (", with class_weight='balanced'" if balanced else "")
        + "."
    )
    if cols.excluded:
        summary += " Excluded: " + ", ".join(cols.excluded) + "."
    if cols.critic.has_changes:
        summary += " Addresses the critic: " + "; ".join(cols.critic.addressed) + "."
    return GeneratedCode(code=check_size(code), summary=summary, version=ctx.version)
