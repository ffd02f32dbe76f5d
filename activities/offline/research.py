"""The Research agent: a modelling plan written for this dataset and this goal."""

from __future__ import annotations

from activities.offline.names import normalize
from activities.offline.selection import (
    SEED,
    TEST_SIZE,
    ColumnPlan,
    choose_metric,
    class_count,
    cv_folds,
    imbalance_ratio,
    is_imbalanced,
    model_names,
    plan_columns,
)
from activities.offline.target import GENERIC_TARGET_NAMES
from workflows.models import DatasetProfile, ResearchPlan


def _names(columns: list[str], limit: int = 6) -> str:
    shown = ", ".join(repr(c) for c in columns[:limit])
    return shown + (f" and {len(columns) - limit} more" if len(columns) > limit else "")


def _number(value: float) -> str:
    """Large numbers in full with separators, small ones to four significant digits."""
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.4g}"


def _balance_text(profile: DatasetProfile, limit: int = 4) -> str:
    counts = profile.class_balance or {}
    total = sum(counts.values()) or 1
    parts = [f"{label} {n:,} ({n / total:.0%})" for label, n in list(counts.items())[:limit]]
    more = f", {len(counts) - limit} more classes" if len(counts) > limit else ""
    return ", ".join(parts) + more


def _why_target(goal: str, profile: DatasetProfile, target: str) -> str:
    if normalize(target) and normalize(target) in normalize(goal):
        return "the goal names it"
    if normalize(target) in GENERIC_TARGET_NAMES:
        return "it is the dataset's conventionally named target column"
    if profile.columns and profile.columns[-1].name == target:
        return "no column matched the goal's wording, and the last column is the usual target"
    return "it is the column that best matches the goal's wording"


def _exclusion_steps(cols: ColumnPlan) -> list[str]:
    by_reason: dict[str, list[str]] = {}
    for name, reason in cols.excluded.items():
        by_reason.setdefault(reason, []).append(name)
    return [f"Exclude {_names(names)} ({reason})." for reason, names in by_reason.items()]


def plan_research(user_goal: str, profile: DatasetProfile) -> ResearchPlan:
    """A plan for this data: target, cleaning, encoding, imbalance, models and metric."""
    cols = plan_columns(profile, goal=user_goal)
    target = cols.target
    target_profile = profile.column(target)
    assert target_profile is not None
    classification = cols.task_type == "classification"
    n_classes = class_count(profile, target) if classification else 0
    metric = choose_metric(cols.task_type, n_classes)
    linear, trees = model_names(cols.task_type, profile.rows)
    by_name = {c.name: c for c in profile.columns}
    steps: list[str] = []

    if classification:
        kind = "binary" if n_classes <= 2 else f"{n_classes}-class"
        steps.append(
            f"Predict {target!r} as {kind} classification; classes: {_balance_text(profile)}."
        )
    else:
        t = target_profile
        spread = ""
        if t.mean is not None and t.std is not None and t.min is not None and t.max is not None:
            spread = (
                f" (mean {_number(t.mean)}, std {_number(t.std)}, "
                f"range {_number(t.min)} to {_number(t.max)})"
            )
        steps.append(f"Predict {target!r} as a regression{spread}.")
    if target_profile.missing:
        steps.append(
            f"Drop the {target_profile.missing:,} rows without a {target!r} value: they can be "
            "neither learned from nor scored."
        )
    steps.extend(_exclusion_steps(cols))
    if cols.text_numeric:
        steps.append(
            f"Convert {_names(cols.text_numeric)} from text to numbers; blanks become missing."
        )

    missing_numeric = [c for c in cols.numeric if by_name[c].missing]
    missing_categorical = [c for c in cols.categorical if by_name[c].missing]
    if missing_numeric:
        steps.append(f"Impute missing values of {_names(missing_numeric)} with the median.")
    if missing_categorical:
        steps.append(
            f"Fill missing values of {_names(missing_categorical)} with an explicit 'missing' "
            "category, since absence itself may be informative."
        )
    if cols.categorical:
        wide = [c for c in cols.categorical if by_name[c].unique > 20]
        steps.append(
            f"One-hot encode the {len(cols.categorical)} categorical feature(s) "
            f"({_names(cols.categorical)}), ignoring levels unseen in training"
            + (f"; group rare levels of {_names(wide)} (over 20 levels)" if wide else "")
            + "."
        )
    if cols.numeric:
        steps.append(
            f"Standardise the {len(cols.numeric)} numeric feature(s) so the {linear} weighs "
            "them on one scale (the tree model is indifferent to it)."
        )
    if classification and is_imbalanced(profile, target):
        ratio = imbalance_ratio(profile, target) or 0.0
        steps.append(
            f"Counter the class imbalance (smallest class {ratio:.0%} the size of the largest) "
            "with class_weight='balanced' and a stratified split."
        )
    folds = cv_folds(profile.rows)
    split = "stratified " if classification else ""
    steps.append(
        f"Hold out {TEST_SIZE:.0%} of rows as a {split}test set (random_state={SEED}); compare "
        f"{linear} with {trees} by {folds}-fold cross-validation on the training part."
    )
    baseline = "most-frequent-class" if classification else "predict-the-mean"
    steps.append(
        f"Score with {metric.label} ({metric.why}) on the test set and compare with a "
        f"{baseline} baseline scored the same way; the model must beat it clearly."
    )
    if profile.sampled:
        steps.append(
            f"The profile read a sample of an estimated {profile.rows:,} rows; the EDA should "
            "confirm these choices on the whole file."
        )
    steps.append("Report the strongest features and any sign of leakage or overfitting.")

    rationale = (
        f"Target {target!r} because {_why_target(user_goal, profile, target)}; "
        f"{cols.task_type} because "
        + (
            "its values are labels or a few whole numbers"
            if classification
            else "its values are a continuous quantity"
        )
        + f". {len(cols.features)} feature(s) kept"
        + (f", {len(cols.excluded)} excluded as listed in the steps" if cols.excluded else "")
        + f". {metric.label} is the metric: {metric.why}."
    )
    return ResearchPlan(
        steps=steps,
        target=target,
        task_type=cols.task_type,
        features=cols.features,
        excluded_columns=list(cols.excluded),
        rationale=rationale,
    )
