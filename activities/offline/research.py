"""The Research agent: a modelling plan written for this dataset and this goal.

The target comes from reading the goal (activities/column_plan.py): when that reading is
unsure, the plan says so, lists the candidates, and the reviewer must choose at approval.
A target the reviewer chose is planned for exactly, and everything that depends on it
(features, exclusions, the class balance and its weighting) is worked out again for it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from activities.column_plan import ClassCounter, TargetReading, read_goal, retarget_profile
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
from activities.profiling import class_counts
from workflows.models import DatasetProfile, Feedback, ResearchPlan


def _names(columns: list[str], limit: int = 6) -> str:
    shown = ", ".join(repr(c) for c in columns[:limit])
    return shown + (f" and {len(columns) - limit} more" if len(columns) > limit else "")


def _number(value: float) -> str:
    """Large numbers in full with separators, small ones to four significant digits."""
    return f"{value:,.0f}" if abs(value) >= 10_000 else f"{value:.4g}"


def _balance_text(profile: DatasetProfile, limit: int = 4) -> str:
    counts = profile.class_balance or {}
    if not counts:
        return "counted by the EDA (this worker could not read the file to count them)"
    total = sum(counts.values()) or 1
    parts = [f"{label} {n:,} ({n / total:.0%})" for label, n in list(counts.items())[:limit]]
    more = f", {len(counts) - limit} more classes" if len(counts) > limit else ""
    return ", ".join(parts) + more


def _candidates_text(reading: TargetReading, target: str) -> str:
    others = [c for c in reading.candidates if c.column != target]
    return ", ".join(f"{c.column!r} ({c.task_type}, score {c.score:.2f})" for c in others)


def _exclusion_steps(cols: ColumnPlan) -> list[str]:
    by_reason: dict[str, list[str]] = {}
    for name, reason in cols.excluded.items():
        by_reason.setdefault(reason, []).append(name)
    return [f"Exclude {_names(names)} ({reason})." for reason, names in by_reason.items()]


def plan_research(
    user_goal: str,
    profile: DatasetProfile,
    target_choice: str | None = None,
    feedback: Sequence[Feedback] = (),
    dataset_path: str | Path | None = None,
    counter: ClassCounter = class_counts,
) -> ResearchPlan:
    """A plan for this data: target, cleaning, encoding, imbalance, models and metric.

    `target_choice` is the column a reviewer chose: the plan predicts exactly it.
    """
    reading = read_goal(user_goal, profile.columns, profile.id_columns)
    chosen = target_choice is not None
    if target_choice is not None:
        profile = retarget_profile(profile, target_choice, user_goal, dataset_path, counter)
    cols = plan_columns(profile, goal=user_goal, feedback=feedback)
    if target_choice is not None and cols.target != target_choice:
        # Older feedback named another target in words; the reviewer's latest choice stands.
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
    unsure = not chosen and (reading.needs_choice or reading.target != target)
    if unsure:
        steps.append(
            f"Choose the target before anything runs: {reading.reason}. This plan assumes "
            f"{target!r}; other candidates: {_candidates_text(reading, target) or 'none'}. "
            "Approve with the column to predict."
        )

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

    if chosen:
        why_target = "the reviewer chose it"
    elif unsure:
        why_target = f"it is the likeliest reading of the goal, but unsure ({reading.reason})"
    else:
        why_target = reading.reason.split(": ", 1)[-1]
    rationale = (
        f"Target {target!r} because {why_target}; "
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
    if chosen:
        confidence, candidates = 1.0, []
    elif reading.target == target:
        confidence, candidates = reading.confidence, reading.runners_up
    else:  # the profile was decided otherwise (an older intake): offer the reading's choice
        confidence = 0.0
        candidates = [c.column for c in reading.candidates if c.column != target]
    return ResearchPlan(
        steps=steps,
        target=target,
        task_type=cols.task_type,
        features=cols.features,
        excluded_columns=list(cols.excluded),
        rationale=rationale,
        target_confidence=confidence,
        target_candidates=candidates,
        needs_target_choice=unsure,
        chosen_by_reviewer=chosen,
        class_balance=profile.class_balance if chosen and classification else None,
    )
