"""The ML agent: a scikit-learn training script for this dataset, revised on critic findings.

The script is templates/training.py (a real module) with this dataset's plan filled in: the
constants and the candidate models, written here.
"""

from __future__ import annotations

import os
import pprint

from activities import script_rules
from activities.offline.critic_requests import critic_request_outcomes
from activities.offline.feedback import latest, not_done_text
from activities.offline.selection import (
    FOREST_MAX_ROWS,
    SEED,
    TEST_SIZE,
    ColumnPlan,
    choose_metric,
    class_count,
    cv_folds,
    decision_metric,
    is_imbalanced,
    plan_columns,
)
from activities.offline.snippets import (
    call,
    check_size,
    constants_block,
    csv_dialect,
    docstring,
    literal,
)
from activities.offline.templates import template_source
from workflows.models import AgentContext, GeneratedCode

MAX_CATEGORIES = 20  # one-hot columns per categorical feature; rarer levels are pooled
# (rows used at all, rows used for cross-validation): bounds on the run time, and the tighter
# ones used after a run failed.
ROW_LIMITS = (300_000, 50_000)
LIGHT_ROW_LIMITS = (50_000, 20_000)
# Seconds of light tuning after the default candidates; the script reads
# TRAINING_TUNING_SECONDS at run time too, so a run can be given less or more.
DEFAULT_TUNING_SECONDS = 60.0

# The settings tried within the tuning budget, per model family.
LINEAR_C: list[object] = [0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0]
RIDGE_ALPHA: list[object] = [0.01, 0.1, 1.0, 3.0, 10.0, 30.0, 100.0]
FOREST_SEARCH: dict[str, list[object]] = {
    "min_samples_leaf": [1, 2, 3, 5, 10],
    "max_features": ["sqrt", 0.33, 0.5, 0.8],
}
# Tried first: a slow, regularised learner (weak signals, many features) and a roomier one
# (interactions, many rows).
BOOSTING_STARTS: list[dict[str, object]] = [
    {
        "learning_rate": 0.05,
        "max_iter": 400,
        "max_leaf_nodes": 15,
        "min_samples_leaf": 20,
        "l2_regularization": 1.0,
        "max_features": 0.5,
        "early_stopping": True,  # stops when a held-out tenth stops improving: cheaper
    },
    {
        "learning_rate": 0.1,
        "max_iter": 400,
        "max_leaf_nodes": 63,
        "min_samples_leaf": 10,
        "l2_regularization": 0.1,
        "max_features": 0.8,
        "early_stopping": True,
    },
]
FOREST_STARTS: list[dict[str, object]] = [{"min_samples_leaf": 3, "max_features": 0.5}]
BOOSTING_SEARCH: dict[str, list[object]] = {
    "learning_rate": [0.02, 0.05, 0.1, 0.2],
    "max_iter": [100, 200, 400],
    "max_leaf_nodes": [7, 15, 31, 63],
    "min_samples_leaf": [5, 10, 20, 50, 100],
    "l2_regularization": [0.0, 0.1, 1.0, 10.0],
    "max_features": [0.5, 0.8, 1.0],
}

# Set before numpy is first imported (by the included templates): the sandbox shares its cores.
_PREAMBLE = """
import os

# One thread for native code: the sandbox shares its cores. Must precede the numpy import.
os.environ.setdefault("OMP_NUM_THREADS", "1")
"""


def tuning_seconds() -> float:
    """The tuning budget written into new scripts (TRAINING_TUNING_SECONDS, default 60)."""
    value = os.environ.get("TRAINING_TUNING_SECONDS", "")
    try:
        return max(0.0, float(value)) if value.strip() else DEFAULT_TUNING_SECONDS
    except ValueError:
        return DEFAULT_TUNING_SECONDS


def _candidate(
    name: str,
    why: str,
    class_name: str,
    args: list[str],
    encoding: str,
    search: dict[str, list[object]],
    starts: list[dict[str, object]],
    weighted: bool,
) -> list[str]:
    """One entry of candidate_models(), wrapped under 100 characters."""

    def keyword(key: str, value: object) -> str:
        prefix = f"            {key}="
        text = pprint.pformat(value, width=99 - len(prefix), compact=True, sort_dicts=False)
        return prefix + text.replace("\n", "\n" + " " * len(prefix)) + ","

    return [
        f"        # {why}",
        f'        "{name}": Candidate(',
        call(class_name, args, indent=12) + ",",
        f'            "{encoding}",',
        keyword("search", search),
        *([keyword("starts", starts)] if starts else []),
        *(["            weighted=True,"] if weighted else []),
        "        ),",
    ]


def _candidates_source(cols: ColumnPlan, rows: int) -> tuple[str, list[str]]:
    """The source of `candidate_models()` for this data, and the candidates' names."""
    classification = cols.task_type == "classification"
    critic = cols.critic
    leaf = 5 if critic.overfitting else 1
    trees = 100 if critic.run_failed else 200
    kind = "Classifier" if classification else "Regressor"
    weight = ["class_weight=CLASS_WEIGHT"] if classification else []
    regularised = ["l2_regularization=1.0", "max_leaf_nodes=15"] if critic.overfitting else []

    lines = [
        "def candidate_models() -> dict[str, Candidate]:",
        '    """The models compared by cross-validation; the best one is tuned, refit and tested."""',
        "    return {",
    ]
    names = []
    linear_why = "A regularised linear model: strong when effects are roughly additive."
    if classification:
        names.append("logistic_regression")
        lines += _candidate(
            "logistic_regression",
            linear_why,
            "LogisticRegression",
            ["max_iter=2000", *weight, "random_state=SEED"],
            "one_hot",
            {"C": LINEAR_C},
            [{"C": 0.1}, {"C": 0.01}],
            True,
        )
    else:
        names.append("ridge")
        lines += _candidate(
            "ridge",
            linear_why,
            "Ridge",
            ["alpha=1.0", "random_state=SEED"],
            "one_hot",
            {"alpha": RIDGE_ALPHA},
            [{"alpha": 10.0}],
            False,
        )
    # A failed run (time, memory) drops the forests, the heaviest models here.
    use_forest = (rows < FOREST_MAX_ROWS or critic.beat_baseline) and not critic.run_failed
    if use_forest:
        names.append("random_forest")
        lines += _candidate(
            "random_forest",
            "Averaged deep trees: capture interactions and thresholds, hard to overfit.",
            f"RandomForest{kind}",
            [
                f"n_estimators={trees}",
                f"min_samples_leaf={leaf}",
                *weight,
                "random_state=SEED",
                "n_jobs=1",
            ],
            "ordinal",
            FOREST_SEARCH,
            FOREST_STARTS,
            classification,
        )
    if critic.beat_baseline and not critic.run_failed:
        names.append("extra_trees")
        lines += _candidate(
            "extra_trees",
            "Randomised trees: another view of the data when the first models were weak.",
            f"ExtraTrees{kind}",
            [
                f"n_estimators={trees}",
                f"min_samples_leaf={max(leaf, 2)}",
                *weight,
                "random_state=SEED",
                "n_jobs=1",
            ],
            "ordinal",
            FOREST_SEARCH,
            [],
            classification,
        )
    names.append("hist_gradient_boosting")
    lines += _candidate(
        "hist_gradient_boosting",
        "Boosted trees on binned features: fast and usually the strongest on tabular data.",
        f"HistGradientBoosting{kind}",
        [
            "max_iter=200",
            "learning_rate=0.1",
            *weight,
            *regularised,
            "categorical_features=tree_categorical_mask()",
            "random_state=SEED",
        ],
        "ordinal",
        BOOSTING_SEARCH,
        BOOSTING_STARTS,
        classification,
    )
    lines.append("    }")
    return "\n".join(lines), names


def write_training_code(ctx: AgentContext, tuning_budget: float | None = None) -> GeneratedCode:
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
    decision = decision_metric(profile, cols.target)
    if cols.critic.guard_accuracy:
        decision_name, decision_why = "accuracy", "the critic found accuracy below the majority"
    else:
        decision_name, decision_why = decision.name, f"{decision.label}: {decision.why}"
    balanced = classification and (
        is_imbalanced(profile, cols.target) or cols.critic.handle_imbalance
    )
    if not classification:
        weight_note = "Not used for regression."
    elif balanced:
        weight_note = (
            "The classes are imbalanced: weight them inversely to their frequency (the "
            "script also tries unweighted, and keeps what validates better)."
        )
    else:
        weight_note = "Balanced enough to train unweighted (the script also tries 'balanced')."
    # After a failed run (most likely time or memory), the next version works on less data.
    failed = cols.critic.run_failed
    max_rows, max_cv_rows = LIGHT_ROW_LIMITS if failed else ROW_LIMITS
    budget = tuning_seconds() if tuning_budget is None else tuning_budget
    if failed:
        budget = min(budget, 15.0)
    elif cols.critic.beat_baseline:
        budget *= 2
    candidates, names = _candidates_source(cols, profile.rows)

    header = docstring(
        [
            f"Model training for: {ctx.user_goal.strip() or 'the uploaded dataset'}",
            f"Written by the offline ML agent (version {ctx.version}). Reads DATASET_PATH, "
            f"compares {', '.join(names)} by cross-validation on a {1 - TEST_SIZE:.0%} "
            "training split, tunes the leading ones within TUNING_SECONDS, scores the best on "
            f"the held-out {TEST_SIZE:.0%} against a trivial baseline, and writes "
            "OUTPUT_DIR/metrics.json, OUTPUT_DIR/model.joblib (the fitted Pipeline: it takes "
            "rows exactly as they appear in the dataset and cleans them itself), "
            "input_schema.json, model_card.json/.md and evaluation plots (PNG).",
            "metrics.json: task_type, target, metric, model, score, baseline_score, "
            "beats_baseline (1.0 or 0.0), improvement, higher_is_better (always 1.0), cv_mean, "
            "cv_std, baseline_cv_mean, n_train, n_test, n_features, class_weight, seed, "
            "per-task extras (classification: accuracy next to majority_baseline_accuracy, and "
            "for two classes the tuned threshold), cv_<candidate> for each candidate, the "
            "tuning done, and single_feature_best / single_feature_score: the feature that "
            "predicts the target best on its own, and how well.",
        ]
    )
    constants = [
        literal("SEED", SEED),
        literal("TARGET", cols.target),
        literal("TASK_TYPE", cols.task_type),
        literal(
            "SAMPLE_ROWS",
            profile.training_sample_rows,
            "Rows read from a larger file (a random sample, stratified by class); None: all.",
        ),
        *csv_dialect(profile),
        literal("METRIC", metric.name, f"{metric.label}: {metric.why}."),
        literal("NUMERIC_FEATURES", cols.numeric, "Imputed with the median, then standardised."),
        literal(
            "CATEGORICAL_FEATURES",
            cols.categorical,
            "One-hot encoded for linear models, ordinal codes for trees; missing kept apart.",
        ),
        literal("EXCLUDED_COLUMNS", cols.excluded, "Never used as features, and why."),
        literal("CLASS_WEIGHT", "balanced" if balanced else None, weight_note),
        literal(
            "THRESHOLD_METRIC",
            decision_name,
            "Two classes: the decision threshold maximises this on validation folds "
            f"({decision_why}).",
        ),
        literal("TEST_SIZE", TEST_SIZE),
        literal("CV_FOLDS", 3 if failed else cv_folds(profile.rows)),
        literal("MAX_CV_ROWS", max_cv_rows, "Rows used for cross-validation."),
        literal("MAX_ROWS", max_rows, "Rows used at all."),
        literal("MAX_CATEGORIES", MAX_CATEGORIES, "One-hot columns per categorical feature."),
        "# Seconds of tuning after the default candidates (TRAINING_TUNING_SECONDS overrides).\n"
        f'TUNING_SECONDS = float(os.environ.get("TRAINING_TUNING_SECONDS", "{budget:g}"))',
    ]
    plan = constants_block(constants) + "\n\n\n" + candidates + "\n"
    code = "\n".join(
        [
            header,
            _PREAMBLE,
            template_source("dataset_reader"),
            template_source("json_values"),
            template_source("raw_rows"),
            template_source("plots"),
            template_source("model_package"),
            template_source("training", plan=plan),
        ]
    )
    script_rules.enforce(code, "training")

    summary = (
        f"Trains {', '.join(n.replace('_', ' ') for n in names)} on {len(cols.features)} "
        f"features to predict {cols.target!r} ({cols.task_type}), picks by cross-validated "
        f"{metric.label} with up to {budget:g} s of tuning, against a "
        f"{'most-frequent-class' if classification else 'mean'} baseline"
        + (", with class_weight='balanced' unless unweighted validates better" if balanced else "")
        + "."
    )
    if cols.excluded:
        summary += " Excluded: " + ", ".join(cols.excluded) + "."
    if cols.critic.has_changes:
        summary += " Addresses the critic: " + "; ".join(cols.critic.addressed) + "."
    review = latest(ctx.feedback, "critic")
    names_in_data = [c.name for c in profile.columns]
    addressed = (
        critic_request_outcomes(review, cols.critic, names_in_data) if review is not None else []
    )
    summary += not_done_text(addressed)
    return GeneratedCode(
        code=check_size(code), summary=summary, version=ctx.version, addressed=addressed
    )
