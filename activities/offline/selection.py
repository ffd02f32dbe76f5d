"""Deciding, from the profile, the plan and the feedback, which columns a model may use and how."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

from activities.offline.critic_requests import CriticRequests, parse_critic_findings
from activities.offline.feedback import HumanRequests, parse_human_feedback
from activities.offline.names import name_words
from activities.offline.target import infer_target, infer_task_type
from workflows.models import ColumnProfile, DatasetProfile, Feedback, ResearchPlan, TaskType

# Smallest class / largest class below which a classifier needs help with the minority...
IMBALANCE_RATIO = 0.5
# ...and below which ignoring that is an error rather than a warning.
SEVERE_IMBALANCE_RATIO = 0.2
# Columns missing in more than this share of rows carry too little to impute from.
MAX_MISSING_SHARE = 0.95
# Below this many rows a random forest is affordable next to histogram gradient boosting
# (a candidate at every size); above it, a forest on one core would take minutes.
FOREST_MAX_ROWS = 10_000
SEED = 42
TEST_SIZE = 0.2


@dataclass(frozen=True)
class Metric:
    name: str  # the scikit-learn scorer name, also what metrics.json reports
    label: str  # how people call it
    why: str


@dataclass
class ColumnPlan:
    """The columns of one model: the target, the features by kind, the rest with reasons."""

    target: str
    task_type: TaskType
    numeric: list[str]
    categorical: list[str]
    excluded: dict[str, str]  # column -> why it is not a feature
    human: HumanRequests = field(default_factory=HumanRequests)
    critic: CriticRequests = field(default_factory=CriticRequests)
    text_numeric: list[str] = field(default_factory=list)  # numbers stored as text

    @property
    def features(self) -> list[str]:
        return self.numeric + self.categorical


def imbalance_ratio(profile: DatasetProfile, target: str) -> float | None:
    """Smallest over largest class count, or None when there is no class balance to judge.

    The profile's balance describes its own target only, so another target has none.
    """
    if target != profile.target:
        return None
    counts = list((profile.class_balance or {}).values())
    if len(counts) < 2 or max(counts) == 0:
        return None
    return min(counts) / max(counts)


def is_imbalanced(profile: DatasetProfile, target: str) -> bool:
    ratio = imbalance_ratio(profile, target)
    return ratio is not None and ratio < IMBALANCE_RATIO


def class_count(profile: DatasetProfile, target: str) -> int:
    """How many classes the target has (its distinct values when the profile has no balance)."""
    if target == profile.target and profile.class_balance:
        return len(profile.class_balance)
    column = profile.column(target)
    return column.unique if column is not None else 0


def choose_metric(task_type: TaskType, n_classes: int) -> Metric:
    """One higher-is-better metric per task, so "score > baseline_score" always means better."""
    if task_type == "regression":
        return Metric("r2", "R²", "share of the target's variance explained; 0 is the mean")
    if n_classes <= 2:
        return Metric(
            "roc_auc", "ROC AUC", "threshold-free, unaffected by the class balance; 0.5 is chance"
        )
    return Metric(
        "f1_macro", "macro F1", "averages the classes equally, so small classes count as much"
    )


def decision_metric(profile: DatasetProfile, target: str) -> Metric:
    """What a binary classifier's decision threshold is tuned for on validation data.

    The plan's metric (ROC AUC) ranks and has no threshold; decisions need one. Balanced
    classes: accuracy. Imbalanced ones: F1 of the minority class, since accuracy there rewards
    never predicting it (the run then says when accuracy falls below the majority baseline).
    """
    if is_imbalanced(profile, target):
        return Metric("f1", "F1 of the minority class", "accuracy would reward never predicting it")
    return Metric("accuracy", "accuracy", "the classes are balanced enough")


def leaky_by_name(column: str, target: str) -> bool:
    """Whether a column's name contains the target's ("Churn Reason" for "Churn")."""
    target_words = set(name_words(target))
    if column == target or not target_words or len("".join(target_words)) < 4:
        return False
    return target_words <= set(name_words(column))


def _reason_to_exclude(column: ColumnProfile, profile: DatasetProfile, target: str) -> str | None:
    if column.name in profile.id_columns:
        return "identifier: unique per row, carries no signal and invites memorising"
    if column.kind == "datetime":
        return "date/time: not used as a raw feature"
    if column.kind == "text":
        return f"free text / very high cardinality: {column.unique} distinct values"
    if profile.rows and column.missing > MAX_MISSING_SHARE * profile.rows:
        return f"almost entirely missing: {column.missing} of {profile.rows} rows"
    if column.unique <= 1:
        return "constant: a single value"
    if leaky_by_name(column.name, target):
        return f"name derived from the target {target!r}: likely leaks the outcome"
    return None


def _numeric_dtype(column: ColumnProfile) -> bool:
    return column.dtype.lower().startswith(("int", "uint", "float"))


def is_numeric_feature(column: ColumnProfile) -> bool:
    """Numbers (and 0/1 flags) are scaled; yes/no and True/False flags are one-hot encoded."""
    return column.kind == "numeric" or (column.kind == "boolean" and _numeric_dtype(column))


def stored_as_text(column: ColumnProfile) -> bool:
    """A numeric column the CSV reader sees as text (blanks or stray characters in it)."""
    return column.kind == "numeric" and not _numeric_dtype(column)


def plan_columns(
    profile: DatasetProfile,
    plan: ResearchPlan | None = None,
    feedback: Sequence[Feedback] = (),
    goal: str = "",
) -> ColumnPlan:
    """The model's columns: the plan's choices, corrected by what people and the critic said."""
    names = [c.name for c in profile.columns]
    human = parse_human_feedback(feedback, profile)

    # The critic's target check compares with the goal; the plan's own target is the default.
    planned_target = plan.target if plan is not None and plan.target in names else None
    critic = parse_critic_findings(feedback, names, planned_target or profile.target or "")
    if human.target is not None:
        target = human.target
    elif critic.target is not None:
        target = critic.target
    elif planned_target is not None:
        target = planned_target
    else:
        target = profile.target or infer_target(goal, profile.columns, profile.id_columns)
    target_profile = profile.column(target)
    assert target_profile is not None  # every branch above picks a real column
    if plan is not None and plan.target == target:
        task_type: TaskType = plan.task_type
    elif profile.target == target and profile.task_type is not None:
        task_type = profile.task_type
    else:
        task_type = infer_task_type(target_profile, goal)

    critic.leakage_columns = [c for c in critic.leakage_columns if c != target]

    excluded: dict[str, str] = {}
    for column in profile.columns:
        if column.name == target:
            continue
        reason = _reason_to_exclude(column, profile, target)
        if reason is not None:
            excluded[column.name] = reason
    if plan is not None:
        for name in plan.excluded_columns:
            if name in names and name != target:
                excluded.setdefault(name, "excluded by the research plan")
    for name in critic.leakage_columns:
        excluded.setdefault(name, "flagged by the critic as possible leakage")
    if target in human.drop:  # dropping the target would leave nothing to predict
        human.drop.remove(target)
        human.refused.append(target)
    for name in human.drop:
        excluded[name] = "dropped at the reviewer's request"

    # The plan's feature list wins when it names real columns; otherwise everything left over.
    planned = [f for f in (plan.features if plan else []) if f in names]
    candidates = planned or names
    features = [n for n in candidates if n != target and n not in excluded]
    by_name = {c.name: c for c in profile.columns}
    numeric = [n for n in features if is_numeric_feature(by_name[n])]
    categorical = [n for n in features if not is_numeric_feature(by_name[n])]
    text_numeric = [n for n in numeric if stored_as_text(by_name[n])]
    return ColumnPlan(
        target=target,
        task_type=task_type,
        numeric=numeric,
        categorical=categorical,
        excluded=excluded,
        human=human,
        critic=critic,
        text_numeric=text_numeric,
    )


def model_names(task_type: TaskType, rows: int) -> tuple[str, str]:
    """The candidate models the training code compares: a linear one and tree ensembles."""
    linear = "logistic regression" if task_type == "classification" else "ridge regression"
    boosting = "histogram gradient boosting (lightly tuned within a time budget)"
    trees = f"a random forest and {boosting}" if rows < FOREST_MAX_ROWS else boosting
    return linear, trees


def cv_folds(rows: int) -> int:
    return 5 if rows <= 10_000 else 3
