"""A training script's work, the same for every dataset.

Split off a test set; compare the candidate models by cross-validation on the training part;
within a time budget, try the other class weighting, tune the leading models and a blend of the
best two (a change is kept only when it wins by more than a tie margin); fit the winner, tune a
binary classifier's decision threshold on validation folds, score it once on the test set next
to a trivial baseline, and hand over the model with its metrics, schema, card and plots. The
metrics also say how well each single feature predicts the target on its own, so the critic can
see a column that leaks the answer.

What the agent decided for one dataset lives in the plan block: constants and candidate_models().
"""

import json
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.compose import ColumnTransformer
from sklearn.dummy import DummyClassifier, DummyRegressor
from sklearn.ensemble import (
    ExtraTreesClassifier,
    ExtraTreesRegressor,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
    VotingClassifier,
    VotingRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.inspection import permutation_importance
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.metrics import (
    accuracy_score,
    balanced_accuracy_score,
    f1_score,
    get_scorer,
    make_scorer,
    mean_absolute_error,
    r2_score,
    root_mean_squared_error,
)
from sklearn.model_selection import (
    KFold,
    StratifiedKFold,
    TunedThresholdClassifierCV,
    cross_val_score,
    train_test_split,
)
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor

# <template-imports>
from activities.offline.templates.dataset_reader import load_dataset
from activities.offline.templates.json_values import json_safe
from activities.offline.templates.model_package import (
    input_schema,
    model_card,
    save_model_package,
)
from activities.offline.templates.plots import (
    draw_plots,
    plot_confusion_matrix,
    plot_feature_importance,
    plot_regression_diagnostics,
    plot_roc_pr_curves,
)
from activities.offline.templates.raw_rows import RawRowCleaner

# </template-imports>

DATASET_PATH = os.environ.get("DATASET_PATH", "dataset.csv")
OUTPUT_DIR = Path(os.environ.get("OUTPUT_DIR", "."))
# Histogram boosting bins a categorical feature into at most 255 values; rarer levels pool.
MAX_TREE_CATEGORIES = 250
# A tuned setting, the other class weighting or a blend replaces the current choice only when
# its cross-validated score is higher by more than this: smaller gains are noise.
TIE_MARGIN = 0.002
MAX_TRIALS_PER_MODEL = 40
# Single-feature scores: rows and features looked at (a leak shows on a sample too).
SINGLE_FEATURE_ROWS = 5_000
MAX_SINGLE_FEATURES = 200
IMPORTANCE_ROWS = 5_000


@dataclass
class Candidate:
    """A model family: its estimator with default settings, how it wants its features, and
    the values of its settings worth trying when there is time."""

    estimator: Any
    encoding: str  # "one_hot": imputed, scaled, one-hot (linear models); "ordinal": trees
    search: dict[str, list[Any]] = field(default_factory=dict)
    weighted: bool = False  # takes class_weight
    starts: list[dict[str, Any]] = field(default_factory=list)  # tried first, in order


def tree_categorical_mask() -> list[bool] | None:
    """Which columns of the ordinal encoding are categories (numeric ones come first)."""
    if not CATEGORICAL_FEATURES:
        return None
    return [False] * len(NUMERIC_FEATURES) + [True] * len(CATEGORICAL_FEATURES)


# <plan>
SEED = 42
TARGET = "target"
TASK_TYPE = "classification"
SAMPLE_ROWS: int | None = None
CSV_DELIMITER = ","
CSV_ENCODING = "utf-8"
METRIC = "roc_auc"
NUMERIC_FEATURES: list[str] = []
CATEGORICAL_FEATURES: list[str] = []
EXCLUDED_COLUMNS: dict[str, str] = {}
CLASS_WEIGHT: str | None = None
THRESHOLD_METRIC = "accuracy"
TEST_SIZE = 0.2
CV_FOLDS = 5
MAX_CV_ROWS = 50_000
MAX_ROWS = 300_000
MAX_CATEGORIES = 20
TUNING_SECONDS = float(os.environ.get("TRAINING_TUNING_SECONDS", "60"))


def candidate_models() -> dict[str, Candidate]:
    """The models compared by cross-validation (the writer decides them per dataset)."""
    if TASK_TYPE == "classification":
        return {
            "logistic_regression": Candidate(
                LogisticRegression(max_iter=2000, class_weight=CLASS_WEIGHT, random_state=SEED),
                "one_hot",
                {"C": [0.01, 0.1, 1.0, 10.0]},
                weighted=True,
            ),
            "extra_trees": Candidate(
                ExtraTreesClassifier(n_estimators=200, random_state=SEED, n_jobs=1), "ordinal"
            ),
            "random_forest": Candidate(
                RandomForestClassifier(n_estimators=200, random_state=SEED, n_jobs=1), "ordinal"
            ),
            "hist_gradient_boosting": Candidate(
                HistGradientBoostingClassifier(
                    categorical_features=tree_categorical_mask(), random_state=SEED
                ),
                "ordinal",
                weighted=True,
            ),
        }
    return {
        "ridge": Candidate(Ridge(random_state=SEED), "one_hot", {"alpha": [0.1, 1.0, 10.0]}),
        "extra_trees": Candidate(
            ExtraTreesRegressor(n_estimators=200, random_state=SEED, n_jobs=1), "ordinal"
        ),
        "random_forest": Candidate(
            RandomForestRegressor(n_estimators=200, random_state=SEED, n_jobs=1), "ordinal"
        ),
        "hist_gradient_boosting": Candidate(
            HistGradientBoostingRegressor(
                categorical_features=tree_categorical_mask(), random_state=SEED
            ),
            "ordinal",
        ),
    }


# </plan>


def prepare(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.Series]:
    """The raw feature columns and the cleaned target (labels are not the model's input)."""
    needed = [TARGET, *NUMERIC_FEATURES, *CATEGORICAL_FEATURES]
    absent = [c for c in needed if c not in df.columns]
    if absent:
        raise SystemExit(f"columns missing from the dataset: {absent}")
    df = df[df[TARGET].notna()]  # rows without a label can be neither learned nor scored
    # The feature columns exactly as the file has them: cleaning (numbers stored as text,
    # blanks, infinities) is the pipeline's first step, so the saved model takes raw rows too.
    X = df[NUMERIC_FEATURES + CATEGORICAL_FEATURES].copy()
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


def make_preprocessor(
    encoding: str, numeric: list[str], categorical: list[str]
) -> ColumnTransformer:
    """Imputation, scaling and encoding, fitted inside each training fold only."""
    transformers: list[tuple[str, Any, list[str]]] = []
    if encoding == "one_hot":
        if numeric:
            steps = [("impute", SimpleImputer(strategy="median")), ("scale", StandardScaler())]
            transformers.append(("numeric", Pipeline(steps), numeric))
        if categorical:
            encoder = OneHotEncoder(
                handle_unknown="ignore", max_categories=MAX_CATEGORIES, sparse_output=False
            )
            steps = [
                ("impute", SimpleImputer(strategy="constant", fill_value="missing")),
                ("encode", encoder),
            ]
            transformers.append(("categorical", Pipeline(steps), categorical))
    else:
        # Trees split on raw numbers and on category codes; they handle missing values.
        if numeric:
            transformers.append(("numeric", "passthrough", numeric))
        if categorical:
            encoder = OrdinalEncoder(
                handle_unknown="use_encoded_value",
                unknown_value=np.nan,
                encoded_missing_value=np.nan,
                max_categories=MAX_TREE_CATEGORIES,
            )
            transformers.append(("categorical", encoder, categorical))
    return ColumnTransformer(transformers, remainder="drop")


def make_pipeline(
    candidate: Candidate,
    params: dict[str, Any] | None = None,
    numeric: list[str] | None = None,
    categorical: list[str] | None = None,
) -> Pipeline:
    """Raw rows in, predictions out: cleaning, imputation, encoding and the model in one."""
    numeric = NUMERIC_FEATURES if numeric is None else numeric
    categorical = CATEGORICAL_FEATURES if categorical is None else categorical
    estimator = clone(candidate.estimator).set_params(**(params or {}))
    return Pipeline(
        [
            ("clean", RawRowCleaner(numeric, categorical)),
            ("preprocess", make_preprocessor(candidate.encoding, numeric, categorical)),
            ("model", estimator),
        ]
    )


def can_stratify(y: pd.Series, test_share: float) -> bool:
    counts = y.value_counts()
    return counts.min() >= 2 and int(len(y) * test_share) >= len(counts)


def cross_validator(y: pd.Series, folds: int = 0) -> KFold | StratifiedKFold:
    folds = folds or CV_FOLDS
    if TASK_TYPE == "classification":
        folds = max(2, min(folds, int(y.value_counts().min())))
        return StratifiedKFold(n_splits=folds, shuffle=True, random_state=SEED)
    return KFold(n_splits=folds, shuffle=True, random_state=SEED)


def mean_score(scores: np.ndarray) -> float:
    """The cross-validated mean; a setting that failed in any fold never wins."""
    return float(np.mean(scores)) if np.all(np.isfinite(scores)) else float("-inf")


@dataclass
class Choice:
    """The best settings found so far for one model family, their fold scores, and how long
    one cross-validation of the family took (to tell whether another fits in the budget)."""

    params: dict[str, Any]
    scores: np.ndarray
    seconds: float
    trials: int = 1

    @property
    def mean(self) -> float:
        return mean_score(self.scores)


class Search:
    """Cross-validated trials of settings on the CV rows, within the tuning time budget."""

    def __init__(self, X: pd.DataFrame, y: pd.Series) -> None:
        self.X, self.y = X, y
        self.cv = cross_validator(y)
        self.deadline = float("inf")
        self.log: list[str] = []

    def evaluate(self, estimator: Any) -> tuple[np.ndarray, float]:
        """The fold scores of `estimator`, and the seconds they took."""
        started = time.perf_counter()
        scores = cross_val_score(
            estimator, self.X, self.y, cv=self.cv, scoring=METRIC, n_jobs=1, error_score=np.nan
        )
        return np.asarray(scores, dtype=float), time.perf_counter() - started

    def fits(self, seconds: float, deadline: float | None = None) -> bool:
        """Whether a trial that long still ends before the deadline."""
        return time.perf_counter() + seconds < (self.deadline if deadline is None else deadline)

    def try_settings(
        self, name: str, candidate: Candidate, choice: Choice, params: dict[str, Any]
    ) -> Choice:
        """The better of the current choice and `params`, by more than the tie margin."""
        trial = {**choice.params, **params}
        scores, seconds = self.evaluate(make_pipeline(candidate, trial))
        if mean_score(scores) > choice.mean + TIE_MARGIN:
            self.log.append(f"{name}: {params} -> {mean_score(scores):.4f}")
            return Choice(trial, scores, seconds, choice.trials + 1)
        choice.trials += 1
        choice.seconds = max(choice.seconds, seconds)
        return choice


def settings_to_try(candidate: Candidate, rng: np.random.Generator) -> Iterator[dict[str, Any]]:
    """The candidate's starting points first, then random draws from its search space."""
    yield from candidate.starts
    if not candidate.search:
        return
    space = 1
    for values in candidate.search.values():
        space *= len(values)
    seen = {repr(sorted(start.items())) for start in candidate.starts}
    while len(seen) < space:
        params = {k: v[int(rng.integers(len(v)))] for k, v in candidate.search.items()}
        key = repr(sorted(params.items()))
        if key not in seen:
            seen.add(key)
            yield params


def tune(
    candidates: dict[str, Candidate],
    choices: dict[str, Choice],
    search: Search,
    deadline: float,
) -> dict[str, Choice]:
    """Class weighting, then settings of the two leading families in turns, until `deadline`."""
    rng = np.random.default_rng(SEED)
    ranked = sorted(choices, key=lambda n: choices[n].mean, reverse=True)
    if TASK_TYPE == "classification":
        # Class weighting, chosen by validation: the other option for the leading family.
        leader = ranked[0]
        if candidates[leader].weighted and search.fits(choices[leader].seconds, deadline):
            current = choices[leader].params.get("class_weight", CLASS_WEIGHT)
            other = None if current == "balanced" else "balanced"
            choices[leader] = search.try_settings(
                leader, candidates[leader], choices[leader], {"class_weight": other}
            )
    queues = {n: settings_to_try(candidates[n], rng) for n in ranked[:2]}
    while queues:
        for name in list(queues):
            choice = choices[name]
            params = next(queues[name], None)
            if (
                params is None
                or choice.trials >= MAX_TRIALS_PER_MODEL
                or not search.fits(choice.seconds, deadline)
            ):
                del queues[name]
                continue
            choices[name] = search.try_settings(name, candidates[name], choice, params)
    return choices


def blend(pipelines: list[tuple[str, Pipeline]]) -> Any:
    """The average of the models' predictions (class probabilities for a classifier)."""
    if TASK_TYPE == "classification":
        return VotingClassifier(pipelines, voting="soft", n_jobs=1)
    return VotingRegressor(pipelines, n_jobs=1)


def guarded_f1(y_true: pd.Series, y_pred: np.ndarray, pos_label: object) -> float:
    """F1 of the minority class among thresholds that keep accuracy at the majority's level.

    Plain F1 happily trades accuracy for recall; a decision rule less accurate than always
    predicting the majority class is worse than no model for many readers, so it loses.
    """
    majority = float(pd.Series(y_true).value_counts(normalize=True).max())
    accuracy = accuracy_score(y_true, y_pred)
    f1 = f1_score(y_true, y_pred, pos_label=pos_label, zero_division=0.0)
    return float(f1) if accuracy >= majority else float(f1) - 1.0 - (majority - accuracy)


def tune_threshold(
    model: Any, X_train: pd.DataFrame, y_train: pd.Series, positive: object
) -> TunedThresholdClassifierCV:
    """The model refit on all training rows, deciding at the threshold that maximised
    THRESHOLD_METRIC on validation folds of the training part (never on the test set)."""
    if THRESHOLD_METRIC == "f1":
        scoring = make_scorer(guarded_f1, pos_label=positive)
    else:
        scoring = get_scorer(THRESHOLD_METRIC)
    cv = (
        StratifiedKFold(n_splits=3, shuffle=True, random_state=SEED)
        if len(X_train) <= MAX_CV_ROWS
        else 0.25
    )
    tuned = TunedThresholdClassifierCV(model, scoring=scoring, cv=cv, random_state=SEED, n_jobs=1)
    return tuned.fit(X_train, y_train)


def single_feature_scores(X: pd.DataFrame, y: pd.Series) -> dict[str, float]:
    """How well each feature alone predicts the target (a small tree, cross-validated).

    A score close to perfect from one column means that column almost is the answer: a
    leak (derived from the target, recorded after the outcome) more often than a discovery.
    """
    if len(X) > SINGLE_FEATURE_ROWS:
        X = X.sample(n=SINGLE_FEATURE_ROWS, random_state=SEED)
        y = y.loc[X.index]
    tree_class = DecisionTreeClassifier if TASK_TYPE == "classification" else DecisionTreeRegressor
    tree = Candidate(
        tree_class(max_leaf_nodes=32, min_samples_leaf=10, random_state=SEED), "ordinal"
    )
    cv = cross_validator(y, folds=3)
    scores: dict[str, float] = {}
    for column in (NUMERIC_FEATURES + CATEGORICAL_FEATURES)[:MAX_SINGLE_FEATURES]:
        numeric = [column] if column in NUMERIC_FEATURES else []
        categorical = [] if numeric else [column]
        pipeline = make_pipeline(tree, None, numeric, categorical)
        result = cross_val_score(
            pipeline, X, y, cv=cv, scoring=METRIC, n_jobs=1, error_score=np.nan
        )
        if np.all(np.isfinite(result)):
            scores[column] = float(np.mean(result))
    return dict(sorted(scores.items(), key=lambda item: item[1], reverse=True))


def top_features(
    model: Any, X_test: pd.DataFrame, y_test: pd.Series, limit: int = 15
) -> list[tuple[str, float]]:
    """The raw columns whose shuffling costs the most test score (permutation importance)."""
    if len(X_test) > IMPORTANCE_ROWS:
        X_test = X_test.sample(n=IMPORTANCE_ROWS, random_state=SEED)
        y_test = y_test.loc[X_test.index]
    result = permutation_importance(
        model, X_test, y_test, scoring=METRIC, n_repeats=3, random_state=SEED, n_jobs=1
    )
    ranked = sorted(
        zip(X_test.columns, result.importances_mean, strict=True),
        key=lambda item: item[1],
        reverse=True,
    )
    return [(str(name), float(weight)) for name, weight in ranked[:limit]]


def main() -> None:
    started = time.perf_counter()
    raw = load_dataset(
        DATASET_PATH,
        sample_rows=SAMPLE_ROWS,
        stratify_by=TARGET if TASK_TYPE == "classification" else None,
        delimiter=CSV_DELIMITER,
        encoding=CSV_ENCODING,
    )
    X, y = prepare(raw)
    classification = TASK_TYPE == "classification"
    stratify = y if classification and can_stratify(y, TEST_SIZE) else None
    X_train, X_test, y_train, y_test = train_test_split(
        X, y, test_size=TEST_SIZE, random_state=SEED, stratify=stratify
    )
    print(
        f"{TASK_TYPE} of {TARGET!r}: {len(X_train):,} training rows, {len(X_test):,} test rows, "
        f"{X.shape[1]} features"
    )

    # Cross-validation picks the model, on the training part only (subsampled when large).
    X_cv, y_cv = X_train, y_train
    if len(X_train) > MAX_CV_ROWS:
        X_cv, _, y_cv, _ = train_test_split(
            X_train,
            y_train,
            train_size=MAX_CV_ROWS,
            random_state=SEED,
            stratify=y_train if classification and can_stratify(y_train, 0.5) else None,
        )
    candidates = candidate_models()
    search = Search(X_cv, y_cv)
    print(f"\nCross-validation ({search.cv.get_n_splits()} folds, {len(X_cv):,} rows, {METRIC}):")
    choices: dict[str, Choice] = {}
    for name, candidate in candidates.items():
        scores, seconds = search.evaluate(make_pipeline(candidate))
        choices[name] = Choice({}, scores, seconds)
        print(f"  {name:<30} {mean_score(scores):.4f} +/- {np.std(scores):.4f} ({seconds:.1f} s)")
    defaults = {name: choice.mean for name, choice in choices.items()}

    # Light tuning within the time budget; every change must win by more than the tie margin.
    # The last part of the budget is kept for a blend of the two best models.
    tuning_started = time.perf_counter()
    search.deadline = tuning_started + TUNING_SECONDS
    ranked = sorted(choices, key=lambda n: choices[n].mean, reverse=True)
    blend_seconds = sum(choices[n].seconds for n in ranked[:2]) if len(ranked) > 1 else 0.0
    choices = tune(candidates, choices, search, deadline=search.deadline - blend_seconds)
    ranked = sorted(choices, key=lambda n: choices[n].mean, reverse=True)
    best = ranked[0]
    best_scores = choices[best].scores
    chosen: Any = make_pipeline(candidates[best], choices[best].params)
    if len(ranked) > 1 and search.fits(blend_seconds):
        second = ranked[1]
        pair = [(n, make_pipeline(candidates[n], choices[n].params)) for n in (best, second)]
        blend_scores, _ = search.evaluate(blend(pair))
        if mean_score(blend_scores) > choices[best].mean + TIE_MARGIN:
            search.log.append(f"blend of {best} and {second} -> {mean_score(blend_scores):.4f}")
            best, best_scores, chosen = f"blend_{best}_{second}", blend_scores, blend(pair)
    tuning_seconds = time.perf_counter() - tuning_started
    print(f"\nTuning ({tuning_seconds:.1f} s of {TUNING_SECONDS:g}):")
    for line in search.log or ["no change beat the defaults by the tie margin"]:
        print(f"  {line}")

    # The chosen model is refit on the whole training part and scored once on the test part.
    # A binary classifier also gets its decision threshold tuned on validation folds.
    binary = classification and y.nunique() == 2
    positive = y_train.value_counts().idxmin() if binary else None  # the minority class
    if binary:
        model = tune_threshold(chosen, X_train, y_train, positive)
    else:
        model = chosen.fit(X_train, y_train)
    scorer = get_scorer(METRIC)
    score = float(scorer(model, X_test, y_test))

    # The trivial baseline, scored exactly like the model.
    baseline = (
        DummyClassifier(strategy="most_frequent")
        if classification
        else DummyRegressor(strategy="mean")
    )
    baseline_cv = cross_val_score(baseline, X_cv, y_cv, cv=search.cv, scoring=METRIC, n_jobs=1)
    baseline.fit(X_train, y_train)
    baseline_score = float(scorer(baseline, X_test, y_test))

    predictions = model.predict(X_test)
    extra: dict[str, float] = {}
    notes: dict[str, str] = {}
    if classification:
        accuracy = accuracy_score(y_test, predictions)
        majority = accuracy_score(y_test, baseline.predict(X_test))
        extra["accuracy"] = accuracy
        extra["majority_baseline_accuracy"] = majority
        extra["accuracy_below_majority"] = 1.0 if accuracy < majority else 0.0
        extra["balanced_accuracy"] = balanced_accuracy_score(y_test, predictions)
        extra["f1_macro"] = f1_score(y_test, predictions, average="macro")
        extra["n_classes"] = float(y.nunique())
        if binary:
            extra["threshold"] = float(model.best_threshold_)
            extra["threshold_validation_score"] = float(model.best_score_)
            extra["f1_positive"] = f1_score(y_test, predictions, pos_label=positive)
            notes["threshold_metric"] = THRESHOLD_METRIC
            notes["positive_label"] = str(positive)
        if accuracy < majority:
            notes["accuracy_note"] = (
                f"accuracy {accuracy:.4f} is BELOW the majority-class baseline {majority:.4f}: "
                f"the threshold favours {THRESHOLD_METRIC} on the minority class over accuracy"
            )
    else:
        extra["r2"] = r2_score(y_test, predictions)
        extra["rmse"] = root_mean_squared_error(y_test, predictions)
        extra["mae"] = mean_absolute_error(y_test, predictions)
        extra["baseline_rmse"] = root_mean_squared_error(y_test, baseline.predict(X_test))

    # What the model leans on, and what each feature can do alone (the critic's leak check).
    features = top_features(model, X_test, y_test)
    alone = single_feature_scores(X_train, y_train)
    strongest = next(iter(alone), None)

    # Evaluation plots of the test set.
    jobs: dict[str, object] = {
        "feature importance": lambda: plot_feature_importance(features, OUTPUT_DIR)
    }
    if classification:
        classes = list(model.classes_)
        jobs["ROC and PR curves"] = lambda: plot_roc_pr_curves(
            y_test, model.predict_proba(X_test), classes, OUTPUT_DIR
        )
        jobs["confusion matrix"] = lambda: plot_confusion_matrix(
            y_test, predictions, classes, OUTPUT_DIR
        )
    else:
        jobs["residuals"] = lambda: plot_regression_diagnostics(y_test, predictions, OUTPUT_DIR)
    plots, plot_errors = draw_plots(OUTPUT_DIR, jobs)

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
        "cv_mean": mean_score(best_scores),
        "cv_std": float(np.std(best_scores)),
        "baseline_cv_mean": float(np.mean(baseline_cv)),
        "n_train": float(len(X_train)),
        "n_test": float(len(X_test)),
        "n_features": float(X.shape[1]),
        "class_weight": str(choices[ranked[0]].params.get("class_weight", CLASS_WEIGHT)),
        "seed": float(SEED),
        **{k: float(v) for k, v in extra.items()},
        **notes,
        **{f"cv_{name}": value for name, value in defaults.items()},
        **{f"cv_tuned_{name}": choice.mean for name, choice in choices.items() if choice.params},
        "tuned_params": "; ".join(f"{n}: {c.params}" for n, c in choices.items() if c.params),
        "tuning_seconds": round(tuning_seconds, 2),
        "tuning_budget_seconds": float(TUNING_SECONDS),
        "top_feature": features[0][0] if features else "",
        "single_feature_best": strongest or "",
        "single_feature_score": alone[strongest] if strongest else float("nan"),
        "single_feature_scores": ", ".join(f"{c}={s:.4f}" for c, s in list(alone.items())[:10]),
        "plots": ", ".join(plots),
        **(
            {"plot_errors": "; ".join(f"{k}: {v}" for k, v in plot_errors.items())}
            if plot_errors
            else {}
        ),
        "duration_seconds": round(time.perf_counter() - started, 2),
    }
    flat = json_safe(metrics)
    assert isinstance(flat, dict)
    flat = {k: v for k, v in flat.items() if v is not None}  # a flat object of numbers and text
    OUTPUT_DIR.mkdir(parents=True, exist_ok=True)
    with open(OUTPUT_DIR / "metrics.json", "w", encoding="utf-8") as handle:
        json.dump(flat, handle, indent=2, allow_nan=False)
    schema = input_schema(raw, TARGET, NUMERIC_FEATURES, CATEGORICAL_FEATURES)
    save_model_package(model, OUTPUT_DIR, schema, model_card(flat, DATASET_PATH, len(raw), schema))

    verdict = "beats" if score > baseline_score else "does NOT beat"
    print(f"\nChosen model: {best}")
    print(
        f"Test {METRIC}: {score:.4f} vs baseline {baseline_score:.4f} -> the model {verdict} "
        f"the trivial baseline (by {score - baseline_score:+.4f})."
    )
    for key, value in extra.items():
        print(f"  {key}: {value:.4f}")
    for key, note in notes.items():
        print(f"  {key}: {note}")
    if features:
        print("Strongest features (test score lost when shuffled):")
        for name, weight in features[:10]:
            print(f"  {name:<40} {weight:.4f}")
    if strongest:
        print(f"Best single feature: {strongest} ({METRIC} {alone[strongest]:.4f} on its own)")
    print(
        f"Wrote metrics.json, model.joblib, input_schema.json, model_card.json/.md and "
        f"{len(plots)} plot(s) to {OUTPUT_DIR} in {metrics['duration_seconds']} s"
    )


if __name__ == "__main__":
    main()
