"""The column plan's first decisions: which column the goal asks to predict, and the task.

Intake decides them once, from the goal and the dataset's profile; both brains read the
result from the profile (or revise it in their plan) instead of guessing again. The wording
rules (goal words, concepts, conventional target names) moved here from
activities/offline/target.py, which re-exports them.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from activities.column_names import name_words, normalize, text_words
from activities.profiling import class_counts, profile_dataset
from workflows.models import ColumnProfile, DatasetProfile, TaskType


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Words after which a goal stops naming the target and starts naming the inputs
# ("predict churn *from* tenure and contract").
_INPUT_MARKERS = _words("using from based given with via by")

# Goal words that carry no hint about the target, so they never match a column on their own.
_STOPWORDS = _words(
    "a an the of to for and or in on is are be will build create train make develop predict "
    "prediction predicting forecast estimate classify classifier classification regression "
    "model data dataset column value mean number customer user which what whether who how much "
    "many it that this my our their per"
)

# Concepts a goal may name in other words than the column does: (goal words, column names).
# Goal words are stemmed ("prices" -> "price"); those of five letters or more also match as
# prefixes ("churn" -> "churned"). Column names are compared without separators.
_CONCEPTS: list[tuple[frozenset[str], frozenset[str]]] = [
    (
        _words(
            "churn attrition leave left cancel cancellation retention retain exit quit defect "
            "unsubscribe stay"
        ),
        _words(
            "churn churned ischurn churnflag exited exit attrition left hasleft cancelled "
            "canceled retained leave stayed"
        ),
    ),
    (
        _words("price cost valuation worth sale house housing home"),
        _words(
            "price saleprice salesprice medhouseval medianhousevalue housevalue value cost "
            "listprice amount"
        ),
    ),
    (
        _words("default repay repayment delinquency credit loan"),
        _words(
            "default defaulted isdefault loanstatus defaultpaymentnextmonth badloan "
            "delinquent seriousdlqin2yrs"
        ),
    ),
    (_words("fraud fraudulent"), _words("fraud isfraud fraudulent class label")),
    (
        _words("survive survival survived die death"),
        _words("survived survival died death dead status"),
    ),
    (
        _words("diagnosis disease malignant benign cancer tumor tumour diabete"),
        _words("diagnosis malignant outcome disease hasdisease target class"),
    ),
    (_words("species flower iris variety"), _words("species variety class")),
    (_words("income salary wage earning"), _words("income salary wage earnings")),
    (_words("sale revenue demand sold"), _words("sales revenue demand unitssold quantity count")),
    (_words("quality rating grade score"), _words("quality rating grade score")),
    (_words("progression"), _words("progression target")),
    (_words("spam"), _words("spam isspam label class")),
    (
        _words("click convert conversion purchase buy"),
        _words("clicked click converted conversion purchased purchase"),
    ),
    (_words("sentiment polarity"), _words("sentiment polarity label")),
]

# Names data sets conventionally give their target; the fallback before "the last column".
GENERIC_TARGET_NAMES = _words("target label labels y class outcome response")

# Goal words that settle a numeric target with few distinct values as a regression.
_REGRESSION_HINTS = _words(
    "regression price cost amount revenue sale income salary value continuous"
)
_REGRESSION_PHRASES = ("how much", "how many")
_CLASSIFICATION_HINTS = _words("classify classification classifier whether category")

MAX_CLASSES_FOR_INTEGER_TARGET = 20


def _goal_parts(goal: str) -> tuple[list[str], list[str]]:
    """The goal's words naming the target (before "using", "from", ...) and the rest."""
    words = text_words(goal)
    for i, word in enumerate(words):
        if word in _INPUT_MARKERS and i > 0:
            return words[:i], words[i:]
    return words, []


def _phrases(words: Sequence[str], longest: int = 4) -> set[str]:
    """Runs of up to `longest` consecutive words, glued: "house value" -> "housevalue".

    Runs made only of filler words ("a", "the model") are left out, or a goal like "fit a
    model" would name a column called "a".
    """
    out: set[str] = set()
    for size in range(1, longest + 1):
        for start in range(len(words) - size + 1):
            run = words[start : start + size]
            if any(w not in _STOPWORDS for w in run):
                out.add("".join(run))
    return out


def _triggered(trigger: str, words: Collection[str]) -> bool:
    if len(trigger) >= 5:
        return any(w.startswith(trigger) for w in words)
    return trigger in words


def _score(column: str, focus: list[str], rest: list[str]) -> float:
    """How strongly the goal points at `column`; 0 when it does not at all."""
    norm = normalize(column)
    stemmed_norm = "".join(name_words(column))
    words = set(name_words(column))
    score = 0.0
    # The goal names the column outright ("predict Churn", "predict median house value").
    if norm in _phrases(focus) or stemmed_norm in _phrases(focus):
        score = max(score, 100.0)
    elif norm in _phrases(rest) or stemmed_norm in _phrases(rest):
        score = max(score, 10.0)
    # The goal names the concept in other words ("customers who leave" -> Exited).
    for triggers, names in _CONCEPTS:
        if any(_triggered(t, focus) for t in triggers):
            if norm in names or stemmed_norm in names:
                score = max(score, 80.0)
            elif words & names:
                score = max(score, 50.0)
    if norm in GENERIC_TARGET_NAMES:
        score = max(score, 25.0)
    # Partial overlap ("predict house prices" vs "SalePrice") counts, but less than a
    # conventional target name, because feature names often share words with the goal.
    overlap = (words & set(focus)) - _STOPWORDS
    if overlap:
        score = max(score, 20.0 * len(overlap) / max(len(words), 1))
    return score


def choose_target(goal: str, columns: Sequence[ColumnProfile], id_columns: Collection[str]) -> str:
    """The column the goal most plausibly asks to predict; the last non-id column otherwise."""
    if not columns:
        raise ValueError("a dataset without columns has no target")
    candidates = [c for c in columns if c.name not in id_columns] or list(columns)
    focus, rest = _goal_parts(goal)
    best_score, best_name = 0.0, candidates[-1].name
    # Ties go to the later column: data sets usually put the target last.
    for col in candidates:
        score = _score(col.name, focus, rest)
        if score > 0 and score >= best_score:
            best_score, best_name = score, col.name
    return best_name


def _looks_integer(column: ColumnProfile) -> bool:
    if column.dtype.lower().startswith(("int", "uint")):
        return True
    try:
        samples = column.sample_values
        return bool(samples) and all(float(v).is_integer() for v in samples)
    except ValueError:
        return False


def infer_task_type(
    column: ColumnProfile, goal: str = "", integer_valued: bool | None = None
) -> TaskType:
    """Classification for labels and small sets of whole numbers, regression for quantities."""
    if column.kind != "numeric":
        return "classification"
    goal_text = goal.lower()
    goal_words = set(text_words(goal))
    wants_regression = bool(goal_words & _REGRESSION_HINTS) or any(
        phrase in goal_text for phrase in _REGRESSION_PHRASES
    )
    wants_classes = bool(goal_words & _CLASSIFICATION_HINTS)
    whole = _looks_integer(column) if integer_valued is None else integer_valued
    if whole and column.unique <= MAX_CLASSES_FOR_INTEGER_TARGET:
        return "regression" if wants_regression and not wants_classes else "classification"
    if whole and wants_classes and column.unique <= 50:
        return "classification"
    return "regression"


def infer_target(profile: DatasetProfile, goal: str) -> DatasetProfile:
    """The profile with the target the goal asks for and its task type filled in.

    Identifier columns stay candidates only when nothing else is; the target is never listed
    among the identifiers afterwards. The class balance needs the data and is added by
    `profile_for_goal`.
    """
    target = choose_target(goal, profile.columns, profile.id_columns)
    column = profile.column(target)
    assert column is not None  # choose_target picks one of the profile's columns
    return profile.model_copy(
        update={
            "target": target,
            "task_type": infer_task_type(column, goal),
            "id_columns": [c for c in profile.id_columns if c != target],
        }
    )


ClassCounter = Callable[[Path, str], dict[str, int]]


def profile_for_goal(
    path: str | Path, goal: str, counter: ClassCounter = class_counts
) -> DatasetProfile:
    """Profile the stored dataset (any supported format) and decide its target and task.

    For a classification the rows per class are counted over the whole file, so the balance
    describes the data and not its first rows.
    """
    path = Path(path)
    profile = infer_target(profile_dataset(path), goal)
    if profile.task_type == "classification" and profile.target is not None:
        profile.class_balance = counter(path, profile.target)
    return profile
