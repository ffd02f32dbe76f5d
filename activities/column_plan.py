"""The column plan's first decisions: which column the goal asks to predict, and the task.

Intake reads the goal once, against the dataset's profile, and both brains read the result
(`TargetReading`) instead of guessing again. The reading is honest about doubt: it scores
every column, says how sure it is, and lists the runners-up; when no column clearly matches,
or another comes close, it says so (`needs_choice`) and the reviewer chooses the target at
approval. It never quietly takes the last column.

How a column scores (0..1): the goal names it (1.0), names most of its words, or names its
concept in other words ("earn" for `Salary`, "leaving" for `Churn`; activities/goal_vocabulary.py),
times how well the column's values fit the question's shape ("how much" wants a quantity,
"at risk of" a yes or no). A column the words do not reach scores at most
`UNMATCHED_CEILING`, by plausibility alone, so it can be offered but never be sure.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from activities.column_names import name_roots, normalize, root, text_tokens
from activities.goal_vocabulary import (
    ABBREVIATIONS,
    CLASSIFICATION_SHAPES,
    COLUMN_FILLER,
    CONCEPTS,
    GENERIC_TARGET_NAMES,
    GOAL_FILLER,
    REGRESSION_SHAPES,
    WEAK_CLASSIFICATION_SHAPES,
    WEAK_REGRESSION_SHAPES,
    Concept,
)
from activities.profiling import class_counts, profile_dataset
from workflows.models import ColumnProfile, DatasetProfile, TaskType

__all__ = [
    "GENERIC_TARGET_NAMES",
    "MAX_CLASSES_FOR_INTEGER_TARGET",
    "TargetCandidate",
    "TargetReading",
    "choose_target",
    "infer_target",
    "infer_task_type",
    "profile_for_goal",
    "read_goal",
    "retarget_profile",
]

MAX_CLASSES_FOR_INTEGER_TARGET = 20

# The reading is unsure when its best column scores below SURE_SCORE, or when the runner-up
# is within SURE_MARGIN of it. `confidence` is built so that exactly then it is below
# SURE_SCORE: confidence = min(best, SURE_SCORE + 2 * (margin - SURE_MARGIN)).
SURE_SCORE = 0.6
SURE_MARGIN = 0.1
# A column the goal's words do not reach is scored by plausibility alone, below this.
UNMATCHED_CEILING = 0.3
MAX_CANDIDATES = 6

# How strongly each kind of evidence points at a column.
NAMED_OUTRIGHT = 1.0  # "predict Churn", "predict the total charges"
NAMED_AMONG_INPUTS = 0.3  # "predict churn from tenure": tenure is an input, not the target
WORDS_BASE, WORDS_SPAN = 0.45, 0.35  # some of its words: 0.45, all of them: 0.8
CONCEPT_NAME = 0.75  # the family's own name for it ("Exited" for "leaving")
CONCEPT_WORD = 0.65  # one of its words belongs to the family ("is_canceled" for "cancel")
CONCEPT_AND_WORDS = 0.15  # both the words and the family point at it
GENERIC_NAME = 0.4  # "target", "label", "class": plausible, never sure on its own
GENERIC_IN_CONCEPT = 0.62  # a generic name the family uses ("Class" for fraud)
# Multipliers for a column whose values do not fit what the question asks.
MISFIT = 0.6
WEAK_MISFIT = 0.85  # when only a weak phrase ("which", "will the") says what is asked
UNUSABLE = 0.4  # free text or dates: rarely a target

# Words after which a goal stops naming the target and starts naming the inputs
# ("predict churn *from* tenure and contract").
# "by" is not one: "score applicants by their probability of default" names the target after it.
_INPUT_MARKERS = frozenset("using from based given with via".split())


@dataclass(frozen=True)
class TargetCandidate:
    """One column the goal might ask for: its score (0..1), its task, and why."""

    column: str
    score: float
    task_type: TaskType
    why: str
    concept: str | None = None  # the concept family that points at it, if one does


@dataclass(frozen=True)
class TargetReading:
    """What the goal asks to predict, how sure that is, and what else it could be."""

    target: str
    task_type: TaskType
    confidence: float  # 0..1; below SURE_SCORE means "ask the reviewer"
    candidates: list[TargetCandidate]  # best first; the first is `target`
    reason: str
    shape: TaskType | None = None  # what the question's wording asks for, if it says
    concepts: list[str] = field(default_factory=list)  # the concept families the goal names

    @property
    def needs_choice(self) -> bool:
        return self.confidence < SURE_SCORE

    @property
    def runners_up(self) -> list[str]:
        return [c.column for c in self.candidates[1:]]


# --- The goal ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Goal:
    text: str  # lower-case words joined by single spaces, padded: " how much does "
    focus: list[str]  # roots naming the target (before "using", "from", ...)
    rest: list[str]  # roots after that
    concepts: list[Concept]
    shape: TaskType | None
    strong_shape: bool  # said by a strong phrase ("how much"), not a weak one ("which")
    content: set[str]  # focus roots that may name a column word (no filler, no phrase words)
    focus_runs: set[str]  # runs of focus words, glued, as roots and as written
    rest_runs: set[str]


def _shape(text: str) -> tuple[TaskType | None, bool]:
    """The task the question's wording asks for, and whether strongly: strong phrases outweigh
    weak ones."""

    def found(phrases: Sequence[str]) -> bool:
        return any(f" {p} " in text for p in phrases)

    for regression, classification, strong in (
        (REGRESSION_SHAPES, CLASSIFICATION_SHAPES, True),
        (WEAK_REGRESSION_SHAPES, WEAK_CLASSIFICATION_SHAPES, False),
    ):
        wants_regression, wants_classes = found(regression), found(classification)
        if wants_regression != wants_classes:
            return ("regression" if wants_regression else "classification"), strong
        if wants_regression:
            return None, False  # both at the same strength: the wording does not settle it
    return None, False


def _read_words(goal: str) -> _Goal:
    tokens = text_tokens(goal)
    text = " " + " ".join(tokens) + " "
    roots = [root(t) for t in tokens]
    split = next((i for i, t in enumerate(tokens) if t in _INPUT_MARKERS and i > 0), len(tokens))
    focus, rest = roots[:split], roots[split:]
    focus_text = " " + " ".join(tokens[:split]) + " "
    # A word inside a family's phrase means what the phrase means, and nothing on its own:
    # the "pay" of "pay back" is about repaying, not about money.
    phrase_words = {root(w) for c in CONCEPTS for w in c.phrase_words(focus_text)}
    single = set(focus) - phrase_words
    concepts = [c for c in CONCEPTS if c.named_by(single, focus_text)]
    content = {r for r in focus if r not in GOAL_FILLER and r not in phrase_words}
    focus_runs = _glued_runs(focus) | _glued_runs(tokens[:split])
    rest_runs = _glued_runs(rest) | _glued_runs(tokens[split:])
    shape, strong = _shape(text)
    return _Goal(text, focus, rest, concepts, shape, strong, content, focus_runs, rest_runs)


def _glued_runs(roots: Sequence[str], longest: int = 5) -> set[str]:
    """Runs of consecutive roots, glued: ["total", "charg"] -> "totalcharg"."""
    runs: set[str] = set()
    for size in range(1, longest + 1):
        for start in range(len(roots) - size + 1):
            run = roots[start : start + size]
            if any(r not in GOAL_FILLER for r in run):
                runs.add("".join(run))
    return runs


# --- The columns ------------------------------------------------------------------------------


def _column_roots(name: str) -> list[str]:
    """A column name's roots, abbreviations spelled out ("adr" -> average daily rate)."""
    roots: list[str] = []
    for part in name_roots(name):
        roots.extend(root(w) for w in ABBREVIATIONS.get(part, (part,)))
    return roots


def _looks_integer(column: ColumnProfile) -> bool:
    if column.dtype.lower().startswith(("int", "uint")):
        return True
    try:
        samples = column.sample_values
        return bool(samples) and all(float(v).is_integer() for v in samples)
    except ValueError:
        return False


def _values(column: ColumnProfile, integer_valued: bool | None = None) -> str:
    """What the column's values can answer: "binary", "labels", "either", "quantity", "none"."""
    if column.kind in ("text", "datetime") or column.unique == 1:
        return "none"
    if column.kind == "boolean" or column.unique == 2:
        return "binary"
    if column.kind != "numeric":
        return "labels"
    whole = _looks_integer(column) if integer_valued is None else integer_valued
    return "either" if whole and column.unique <= MAX_CLASSES_FOR_INTEGER_TARGET else "quantity"


def _task_for(
    column: ColumnProfile, wanted: TaskType | None, integer_valued: bool | None = None
) -> TaskType:
    """Classification for labels and small sets of whole numbers, regression for quantities;
    a question that asks for the other settles the columns that could be either."""
    values = _values(column, integer_valued)
    if column.kind != "numeric" or values == "binary":
        return "classification"
    if values == "either":
        return "regression" if wanted == "regression" else "classification"
    whole = _looks_integer(column) if integer_valued is None else integer_valued
    if wanted == "classification" and whole and column.unique <= 50:
        return "classification"
    return "regression"


def _fit(values: str, wanted: TaskType | None, strongly: bool = True) -> float:
    """How well a column's values answer a question asking for `wanted` (1.0: fully)."""
    if values == "none":
        return UNUSABLE
    if wanted is None or values == "either":
        return 1.0
    misfit = MISFIT if strongly else WEAK_MISFIT
    if wanted == "classification":
        return 1.0 if values in ("binary", "labels") else misfit
    return 1.0 if values == "quantity" else misfit


# Plausibility of a column no word of the goal reaches, by what the question asks for.
_PLAUSIBLE: dict[TaskType | None, dict[str, float]] = {
    "classification": {"binary": 0.28, "labels": 0.24, "either": 0.2, "quantity": 0.08},
    "regression": {"quantity": 0.28, "either": 0.2, "binary": 0.06, "labels": 0.06},
    None: {"binary": 0.22, "labels": 0.2, "either": 0.18, "quantity": 0.18},
}


def infer_task_type(
    column: ColumnProfile, goal: str = "", integer_valued: bool | None = None
) -> TaskType:
    """The task for predicting `column`, as the goal's wording asks when the values allow both."""
    return _task_for(column, _wanted(_read_words(goal)), integer_valued)


def _wanted(goal: _Goal, concept: Concept | None = None) -> TaskType | None:
    """The task the goal asks for: the matched family's, else the question's shape, else the
    one every family the goal names agrees on."""
    return _wanted_and_how_strongly(goal, concept)[0]


def _wanted_and_how_strongly(
    goal: _Goal, concept: Concept | None = None
) -> tuple[TaskType | None, bool]:
    if concept is not None and concept.task is not None:
        return concept.task, True
    if goal.shape is not None:
        return goal.shape, goal.strong_shape
    tasks = {c.task for c in goal.concepts if c.task is not None}
    return (tasks.pop(), True) if len(tasks) == 1 else (None, False)


# --- Scoring ----------------------------------------------------------------------------------


def _match(name: str, goal: _Goal) -> tuple[float, Concept | None, str]:
    """How strongly the goal's words point at a column, the family that did it, and why."""
    norm = normalize(name)
    roots = _column_roots(name)
    glued = "".join(roots)
    meaningful = {r for r in roots if r not in COLUMN_FILLER} or set(roots)
    if norm in goal.focus_runs or glued in goal.focus_runs:
        family = next(
            (c for c in goal.concepts if norm in c.column_names or meaningful & c.column_roots),
            None,
        )
        return NAMED_OUTRIGHT, family, "the goal names it"
    score, why = 0.0, ""
    if norm in goal.rest_runs or glued in goal.rest_runs:
        score, why = NAMED_AMONG_INPUTS, "the goal names it, but among the inputs"
    overlap = meaningful & goal.content
    words = WORDS_BASE + WORDS_SPAN * len(overlap) / len(meaningful) if overlap else 0.0
    best_concept, by_concept = None, 0.0
    for concept in goal.concepts:
        if norm in concept.column_names:
            points = CONCEPT_NAME
        elif meaningful & concept.column_roots:
            points = CONCEPT_WORD
        else:
            continue
        if norm in GENERIC_TARGET_NAMES:
            points = GENERIC_IN_CONCEPT
        if points > by_concept:
            best_concept, by_concept = concept, points
    combined = max(words, by_concept) + (CONCEPT_AND_WORDS if words and by_concept else 0.0)
    if combined > score:
        score = combined
        if best_concept is not None:
            why = f"it is how a column about {best_concept.name} is called"
            if words:
                why = f"the goal uses its words ({', '.join(sorted(overlap))}) and means {best_concept.name}"
        else:
            why = f"the goal uses its words ({', '.join(sorted(overlap))})"
    if norm in GENERIC_TARGET_NAMES and score < GENERIC_NAME:
        score, why = GENERIC_NAME, "it is a conventional name for a target column"
    return min(score, 1.0), best_concept, why


def _candidate(column: ColumnProfile, index: int, count: int, goal: _Goal) -> TargetCandidate:
    matched, concept, why = _match(column.name, goal)
    wanted, strongly = _wanted_and_how_strongly(goal, concept)
    values = _values(column)
    if matched > 0:
        fit = _fit(values, wanted, strongly)
        score = matched * fit
        if fit < 1.0:
            why += f", though its values do not suit a {wanted} question" if wanted else ""
    else:
        table = _PLAUSIBLE[wanted]
        score = table.get(values, 0.02) + 0.02 * (index + 1) / count
        score = min(score, UNMATCHED_CEILING)
        why = "no word of the goal names it; " + (
            f"its values suit a {wanted} question" if wanted else "a plausible target by its values"
        )
    return TargetCandidate(
        column=column.name,
        score=round(score, 3),
        task_type=_task_for(column, wanted),
        why=why,
        concept=concept.name if concept is not None else None,
    )


def read_goal(
    goal: str, columns: Sequence[ColumnProfile], id_columns: Collection[str] = ()
) -> TargetReading:
    """Which column the goal asks to predict, the task, how sure, and the runners-up."""
    if not columns:
        raise ValueError("a dataset without columns has no target")
    pool = [c for c in columns if c.name not in id_columns] or list(columns)
    words = _read_words(goal)
    scored = [_candidate(c, i, len(pool), words) for i, c in enumerate(pool)]
    # Best first; among equals the later column, since data sets usually put the target last.
    order = sorted(range(len(scored)), key=lambda i: (scored[i].score, i), reverse=True)
    ranked = _object_of_the_verb(_longest_name_named([scored[i] for i in order]))
    best = ranked[0]
    runner_up = ranked[1].score if len(ranked) > 1 else 0.0
    margin = best.score - runner_up
    confidence = max(0.0, min(best.score, SURE_SCORE + 2 * (margin - SURE_MARGIN), 1.0))
    shown = [c for c in ranked if c.score > 0][:MAX_CANDIDATES] or ranked[:1]
    return TargetReading(
        target=best.column,
        task_type=best.task_type,
        confidence=round(confidence, 3),
        candidates=shown,
        reason=_reason(best, ranked[1] if len(ranked) > 1 else None, confidence),
        shape=words.shape,
        concepts=[c.name for c in words.concepts],
    )


def _longest_name_named(ranked: list[TargetCandidate]) -> list[TargetCandidate]:
    """Of two columns the goal names outright, the longer name is the one meant: "the new
    league" names both `League` and `NewLeague`, and means `NewLeague`."""
    named = [c.column for c in ranked if c.why == "the goal names it"]
    out = []
    for candidate in ranked:
        norm = normalize(candidate.column)
        if candidate.column in named and any(
            norm != normalize(other) and norm in normalize(other) for other in named
        ):
            candidate = replace(
                candidate,
                score=round(candidate.score * (WORDS_BASE + WORDS_SPAN), 3),
                why="the goal names it as part of a longer column name",
            )
        out.append(candidate)
    return sorted(out, key=lambda c: c.score, reverse=True)


def _object_of_the_verb(ranked: list[TargetCandidate]) -> list[TargetCandidate]:
    """Doubt a column the goal names outright when the goal's meaning points at another.

    In "which customers will cancel their contract?" the goal names `Contract`, but what it
    asks about is cancelling, which is `Churn`: the named column is what the verb acts on. The
    reading cannot tell these apart, so it asks: the named column's lead shrinks below the
    margin that would make it sure.
    """
    if len(ranked) < 2:
        return ranked
    best, runner_up = ranked[0], ranked[1]
    if (
        best.why == "the goal names it"
        and best.concept is None
        and runner_up.concept is not None
        and runner_up.score >= CONCEPT_WORD
    ):
        doubted = replace(
            best,
            score=round(min(best.score, runner_up.score + SURE_MARGIN / 2), 3),
            why=f"the goal names it, but asks about {runner_up.concept}",
        )
        return [doubted, *ranked[1:]]
    return ranked


def _reason(best: TargetCandidate, runner_up: TargetCandidate | None, confidence: float) -> str:
    if confidence >= SURE_SCORE:
        return f"{best.column!r}: {best.why}"
    if best.score < SURE_SCORE:
        if best.why.startswith("no word"):
            return "no column matches the goal's wording; the reviewer must choose the target"
        return (
            f"no column clearly matches the goal's wording (best {best.column!r}: {best.why}); "
            "the reviewer must choose the target"
        )
    assert runner_up is not None  # a close runner-up is the only other way to be unsure
    return (
        f"{best.column!r} ({best.why}) and {runner_up.column!r} ({runner_up.why}) match the goal "
        "almost equally; the reviewer must choose the target"
    )


def choose_target(goal: str, columns: Sequence[ColumnProfile], id_columns: Collection[str]) -> str:
    """The column the goal's words point at most; the last non-id column when they reach none.

    Kept for the critic's "does the run predict what the goal names" check, which tells the
    fallback apart with a sentinel column. Planning uses `read_goal`, which never falls back
    silently.
    """
    reading = read_goal(goal, columns, id_columns)
    if reading.candidates[0].why.startswith("no word"):
        pool = [c for c in columns if c.name not in id_columns] or list(columns)
        return pool[-1].name
    return reading.target


def infer_target(profile: DatasetProfile, goal: str) -> DatasetProfile:
    """The profile with the goal's most likely target and its task type filled in.

    Identifier columns stay candidates only when nothing else is; the target is never listed
    among the identifiers afterwards. The class balance needs the data and is added by
    `profile_for_goal`. Whether the reviewer must confirm the target is the plan's business
    (it reads the goal again with `read_goal`).
    """
    reading = read_goal(goal, profile.columns, profile.id_columns)
    return profile.model_copy(
        update={
            "target": reading.target,
            "task_type": reading.task_type,
            "id_columns": [c for c in profile.id_columns if c != reading.target],
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


def retarget_profile(
    profile: DatasetProfile,
    target: str,
    goal: str,
    dataset_path: str | Path | None = None,
    counter: ClassCounter = class_counts,
) -> DatasetProfile:
    """The profile as intake would have written it had `target` been its target.

    For a target the reviewer chose: its task comes from the column's values (and the goal's
    wording where they allow both); for a classification its classes are counted over the
    whole file when the file is on this worker, so class weighting is judged for this target
    and not the one it replaces.
    """
    column = profile.column(target)
    if column is None:
        raise ValueError(f"the dataset has no column named {target!r}")
    if target == profile.target:
        return profile
    task = infer_task_type(column, goal)
    balance = None
    if task == "classification" and dataset_path is not None and Path(dataset_path).is_file():
        balance = counter(Path(dataset_path), target)
    return profile.model_copy(
        update={
            "target": target,
            "task_type": task,
            "class_balance": balance,
            "id_columns": [c for c in profile.id_columns if c != target],
        }
    )
