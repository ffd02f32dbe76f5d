"""The Critic: checks training code and its run for leakage, sloppy evaluation, weak results."""

from __future__ import annotations

import ast
import math
from collections.abc import Sequence
from typing import Literal

from activities.column_plan import choose_target
from activities.offline.code_facts import CROSS_VALIDATION, SPLITTERS, CodeFacts, analyse
from activities.offline.selection import (
    SEVERE_IMBALANCE_RATIO,
    ColumnPlan,
    imbalance_ratio,
    is_imbalanced,
    leaky_by_name,
    plan_columns,
)
from workflows.models import (
    AgentContext,
    ColumnProfile,
    DatasetProfile,
    ExecutionResult,
    Finding,
    FindingAction,
    Review,
)
from workflows.scoring import higher_is_better, metric_value

REQUIRED_METRICS = ("task_type", "target", "metric", "score", "baseline_score", "cv_mean", "cv_std")
# Metrics capped at 1, where a perfect score is more likely a leak than a triumph.
BOUNDED_METRICS = frozenset(
    "roc_auc accuracy balanced_accuracy f1 f1_macro f1_weighted r2 average_precision".split()
)
MIN_MARGIN = 0.01  # a model this close to the baseline has learned next to nothing
# A bounded score this close to perfect, on at least this many test rows, is treated as a leak.
SUSPICIOUS_SCORE = 0.99
MIN_TEST_ROWS_FOR_SUSPICION = 200
# One feature alone scoring this well (metrics.json: single_feature_score) nearly is the answer.
SINGLE_FEATURE_LEAK = 0.98
# Metrics that reward always predicting the majority class, and when that matters.
IMBALANCE_BLIND_METRICS = frozenset({"accuracy"})
SKEWED_MAJORITY_SHARE = 0.9
MAX_CV_TEST_GAP = 0.15
MAX_CV_STD = 0.1


def _finding(
    severity: Literal["info", "warning", "error"],
    category: str,
    message: str,
    action: FindingAction | None = None,
    columns: Sequence[str] = (),
) -> Finding:
    return Finding(
        severity=severity, category=category, message=message, action=action, columns=[*columns]
    )


def _leakage(
    facts: CodeFacts, target: str, profile: DatasetProfile, human_drop: list[str]
) -> list[Finding]:
    """The target, identifiers, target-named or human-dropped columns among the features."""
    names = [c.name for c in profile.columns]
    if facts.feature_lists:
        used = {c for cols in facts.feature_lists.values() for c in cols}
    elif target in facts.excluded:
        used = {n for n in names if n not in facts.excluded}  # everything not dropped
    else:
        return [
            _finding(
                "warning",
                "leakage",
                f"Could not find the feature columns or a drop of the target {target!r}; make the "
                "feature lists explicit so leakage can be ruled out.",
                "investigate_leakage",
            )
        ]
    findings = []
    if target in used:
        where = next(n for n, cols in facts.feature_lists.items() if target in cols)
        findings.append(
            _finding(
                "error",
                "leakage",
                f"The target {target!r} is among the features ({where}): the model sees the "
                "answer. Remove it from the feature lists.",
                "drop_columns",
                [target],
            )
        )
    for column in profile.id_columns:
        if column in used and column != target:
            findings.append(
                _finding(
                    "warning",
                    "leakage",
                    f"Identifier column {column!r} is used as a feature: unique per row, it lets "
                    "the model memorise rows. Exclude it.",
                    "drop_columns",
                    [column],
                )
            )
    for column in names:
        if column in used and leaky_by_name(column, target):
            findings.append(
                _finding(
                    "warning",
                    "leakage",
                    f"Column {column!r} looks derived from the target {target!r}: check that it is "
                    "known before the outcome, or exclude it.",
                    "investigate_leakage",
                    [column],
                )
            )
    for column in human_drop:
        if column in used:
            findings.append(
                _finding(
                    "error",
                    "feedback",
                    f"Column {column!r} is used although the reviewer asked to drop it.",
                    "drop_columns",
                    [column],
                )
            )
    return findings


def _evaluation(facts: CodeFacts) -> list[Finding]:
    """A held-out split, and seeds that make its scores comparable between revisions."""
    splits = facts.called(SPLITTERS)
    if not splits and not facts.called(CROSS_VALIDATION):
        return [
            _finding(
                "error",
                "evaluation",
                "No train/test split or cross-validation: the score is measured on the training "
                "data. Hold out a test set with train_test_split.",
                "fix_evaluation",
            )
        ]
    findings = []
    if not splits:
        findings.append(
            _finding(
                "warning",
                "evaluation",
                "Cross-validation only, no held-out train/test split: add train_test_split so the "
                "final score comes from rows the model selection never saw.",
                "fix_evaluation",
            )
        )
    if facts.global_seed:  # the global RNG is seeded, so unseeded calls still repeat
        return findings
    if facts.split_unseeded():
        findings.append(
            _finding(
                "error",
                "reproducibility",
                "train_test_split has no fixed random_state: the test set changes on every run, so "
                "scores cannot be compared between revisions. Set random_state=42.",
                "fix_evaluation",
            )
        )
    if unseeded := facts.unseeded():
        findings.append(
            _finding(
                "warning",
                "reproducibility",
                f"No random_state on {', '.join(unseeded)}: results vary between runs.",
                "fix_evaluation",
            )
        )
    return findings


def _imbalance(facts: CodeFacts, profile: DatasetProfile, cols: ColumnPlan) -> list[Finding]:
    if cols.task_type != "classification" or not is_imbalanced(profile, cols.target):
        return []
    if facts.handles_imbalance():
        return []
    ratio = imbalance_ratio(profile, cols.target) or 0.0
    return [
        _finding(
            "error" if ratio < SEVERE_IMBALANCE_RATIO else "warning",
            "imbalance",
            f"The classes of {cols.target!r} are imbalanced (smallest/largest = {ratio:.2f}) but "
            "the code does nothing about it: use class_weight='balanced' (or sample weights) and "
            "a stratified split.",
            "balance_classes",
        )
    ]


def _review_code(code: str, ctx: AgentContext, cols: ColumnPlan) -> list[Finding]:
    try:
        compile(code, "training.py", "exec")  # also catches what parsing alone allows
        tree = ast.parse(code, "training.py")
    except SyntaxError as exc:
        problem = f"{exc.msg} (line {exc.lineno})"
        return [_finding("error", "syntax", f"The training code does not compile: {problem}.")]
    except ValueError as exc:  # e.g. null bytes in the source
        return [_finding("error", "syntax", f"The training code does not compile: {exc}.")]
    facts = analyse(tree)
    profile = ctx.dataset.profile
    findings = _leakage(facts, cols.target, profile, cols.human.drop)
    if facts.target is not None and facts.target != cols.target:
        findings.append(
            _finding(
                "warning",
                "goal",
                f"The code predicts {facts.target!r}; the plan's target is {cols.target!r}.",
                "change_target",
                [cols.target],
            )
        )
        if facts.target in {c.name for c in profile.columns}:
            findings += _leakage(facts, facts.target, profile, [])
    return findings + _evaluation(facts) + _imbalance(facts, profile, cols)


def _review_result(result: ExecutionResult | None, target: str) -> tuple[list[Finding], str]:
    """Findings about the run, and a one-line account of its score for the summary."""
    if result is None:
        return [_finding("warning", "execution", "The training code has not been run yet.")], ""
    if result.exit_code != 0:
        lines = [line.strip() for line in result.stderr_tail.splitlines() if line.strip()]
        cause = f": {lines[-1][:300]}" if lines else ""
        return [
            _finding(
                "error",
                "execution",
                f"The training run failed with exit code {result.exit_code}{cause}. Fix the cause "
                "before judging the model.",
                "fix_run",
            )
        ], f"the run failed (exit code {result.exit_code})"

    metrics = result.metrics or {}
    findings = []
    if absent := [k for k in REQUIRED_METRICS if k not in metrics]:
        findings.append(
            _finding("warning", "metrics", f"metrics.json lacks {', '.join(absent)}.", "fix_run")
        )
    score, baseline = metric_value(metrics, "score"), metric_value(metrics, "baseline_score")
    if score is None or baseline is None:
        findings.append(
            _finding(
                "warning",
                "baseline",
                "No score and baseline_score to compare: cannot tell whether the model beats a "
                "trivial baseline.",
                "fix_run",
            )
        )
        return findings, "no comparable score"

    metric = str(metrics.get("metric", "score"))
    lower_better = not higher_is_better(metrics)
    gain = baseline - score if lower_better else score - baseline
    account = f"{metric} {score:.4f} on the test set vs {baseline:.4f} for the baseline"
    if gain <= 0:
        findings.append(
            _finding(
                "error",
                "baseline",
                f"The model does not beat the trivial baseline ({account}). Try other features or "
                "models; check the target and the preprocessing.",
                "tune",
            )
        )
    elif gain < MIN_MARGIN:
        findings.append(
            _finding(
                "warning",
                "baseline",
                f"The model barely beats the trivial baseline ({account}).",
                "tune",
            )
        )
    cv_mean, cv_std = metric_value(metrics, "cv_mean"), metric_value(metrics, "cv_std")
    if cv_mean is not None and abs(score - cv_mean) > MAX_CV_TEST_GAP:
        findings.append(
            _finding(
                "warning",
                "evaluation",
                f"The test score ({score:.4f}) and the cross-validation mean ({cv_mean:.4f}) "
                "disagree: the evaluation is unstable or the split unrepresentative.",
                "regularise",
            )
        )
    if cv_std is not None and cv_std > MAX_CV_STD:
        findings.append(
            _finding(
                "warning",
                "evaluation",
                f"Cross-validation scores vary widely (std {cv_std:.3f}).",
                "fix_evaluation",
            )
        )
    reported = metrics.get("target")
    if isinstance(reported, str) and reported != target:
        findings.append(
            _finding(
                "warning",
                "goal",
                f"The run predicts {reported!r}; the plan's target is {target!r}.",
                "change_target",
                [target],
            )
        )
    return findings, account


# --- What the critic must never let through: each check reads metrics.json or the plan ----------


def _leak_signals(metrics: dict[str, float | str]) -> list[Finding]:
    """A near-perfect score on a test set big enough to mean it, or one feature that alone
    predicts the target almost perfectly: both say some column encodes the answer."""
    score = metric_value(metrics, "score")
    metric = str(metrics.get("metric", ""))
    if score is None or metric not in BOUNDED_METRICS or not higher_is_better(metrics):
        return []
    findings = []
    single = metric_value(metrics, "single_feature_score")
    column = str(metrics.get("single_feature_best") or "")
    if single is not None and column and single >= SINGLE_FEATURE_LEAK:
        findings.append(
            _finding(
                "error",
                "leakage",
                f"The feature {column!r} alone predicts the target with {metric} {single:.4f}: "
                "a column that nearly is the answer is usually derived from it or recorded "
                "after the outcome. Check how it is made, and leave it out unless it is known "
                "before the prediction is needed.",
                "investigate_leakage",
                [column],
            )
        )
    n_test = metric_value(metrics, "n_test")
    if score >= SUSPICIOUS_SCORE and (n_test is None or n_test >= MIN_TEST_ROWS_FOR_SUSPICION):
        # The feature the model leans on most is where a leak would show first.
        suspect = str(metrics.get("top_feature") or "") or column
        if not findings:
            rows = f" on {n_test:,.0f} test rows" if n_test is not None else ""
            findings.append(
                _finding(
                    "error",
                    "leakage",
                    f"A near-perfect {metric} of {score:.4f}{rows} is more likely a leak than a "
                    "triumph: look for features that encode the target"
                    + (f", starting with {suspect!r}" if suspect else "")
                    + ".",
                    "investigate_leakage",
                    [suspect] if suspect else [],
                )
            )
    elif score >= SUSPICIOUS_SCORE:
        findings.append(
            _finding(
                "warning",
                "leakage",
                f"A near-perfect {metric} of {score:.4f} on {n_test:,.0f} test rows: too few rows "
                "to call it a leak, but worth a look.",
            )
        )
    return findings


def _accuracy_vs_majority(metrics: dict[str, float | str]) -> list[Finding]:
    """Decisions less accurate than always predicting the majority class."""
    accuracy = metric_value(metrics, "accuracy")
    majority = metric_value(metrics, "majority_baseline_accuracy")
    if accuracy is None or majority is None or accuracy >= majority:
        return []
    n_test = metric_value(metrics, "n_test")
    # Within a standard error of the majority's accuracy, the gap may be the test rows' luck.
    noise = math.sqrt(majority * (1 - majority) / n_test) if n_test else 0.0
    severe = majority - accuracy > noise
    return [
        _finding(
            "error" if severe else "warning",
            "accuracy",
            f"Accuracy {accuracy:.4f} is below always predicting the majority class "
            f"({majority:.4f}): the decisions are worse than no model for anyone counting "
            "errors. Tune the decision threshold for accuracy, or keep accuracy at the "
            "majority's level while favouring the minority class.",
            "use_metric",
        )
    ]


def _metric_fit(
    metrics: dict[str, float | str], profile: DatasetProfile, target: str
) -> list[Finding]:
    """A metric that rewards ignoring the minority class on a skewed target."""
    if metrics.get("task_type") != "classification":
        return []
    metric = str(metrics.get("metric", ""))
    ratio = imbalance_ratio(profile, target)
    majority = metric_value(metrics, "majority_baseline_accuracy")
    skewed = (ratio is not None and ratio < SEVERE_IMBALANCE_RATIO) or (
        majority is not None and majority >= SKEWED_MAJORITY_SHARE
    )
    if not skewed or metric not in IMBALANCE_BLIND_METRICS:
        return []
    share = (
        f"{majority:.0%} of the test rows are one class" if majority else "the classes are skewed"
    )
    return [
        _finding(
            "error",
            "metric",
            f"{metric} does not suit this target: {share}, so always predicting that class "
            "scores well. Score with ROC AUC (two classes) or macro F1, which count the "
            "minority class.",
            "use_metric",
        )
    ]


def _goal_target(ctx: AgentContext, cols: ColumnPlan) -> list[Finding]:
    """The column the goal's words name, when the run predicts another one.

    A target a person set explicitly stands: they know their data better than the words.
    """
    if cols.human.target is not None:
        return []
    profile = ctx.dataset.profile
    named = goal_named_column(ctx.user_goal, profile)
    result = ctx.training_result
    reported = result.metrics.get("target") if result and result.metrics else None
    predicted = reported if isinstance(reported, str) else cols.target
    if named is None or named == predicted:
        return []
    return [
        _finding(
            "error",
            "goal",
            f"The goal ({ctx.user_goal.strip()[:120]!r}) asks about {named!r}, but the run "
            f"predicts {predicted!r}. Predict {named!r}, or say why the goal means another column.",
            "change_target",
            [named],
        )
    ]


def goal_named_column(goal: str, profile: DatasetProfile) -> str | None:
    """The column the goal's wording points at, or None when its words name no column."""
    # choose_target falls back to the last candidate when no column scores; a nameless
    # sentinel placed last tells that fallback apart from a real match.
    sentinel = ColumnProfile(name="", kind="text", dtype="object")
    chosen = choose_target(goal, [*profile.columns, sentinel], profile.id_columns)
    return chosen or None


def _requests_not_done(ctx: AgentContext) -> list[Finding]:
    """Requests the training code says it did not do: the run goes back until they are."""
    code = ctx.training_code
    if code is None:
        return []
    return [
        _finding(
            "error",
            "feedback",
            f"Not done: {outcome.request} (the code says: {outcome.reason or 'no reason given'}).",
            "do_request",
        )
        for outcome in code.addressed
        if not outcome.done
    ]


def review_training(ctx: AgentContext) -> Review:
    """Accept the training, or ask for a revision when any finding is an error."""
    cols = plan_columns(ctx.dataset.profile, ctx.plan, ctx.feedback, ctx.user_goal)
    code = ctx.training_code.code if ctx.training_code else ""
    if code.strip():
        findings = _review_code(code, ctx, cols)
    else:
        findings = [_finding("error", "code", "There is no training code to review.")]
    result_findings, account = _review_result(ctx.training_result, cols.target)
    findings += result_findings
    result = ctx.training_result
    if result is not None and result.succeeded and result.metrics:
        findings += _leak_signals(result.metrics)
        findings += _accuracy_vs_majority(result.metrics)
        findings += _metric_fit(result.metrics, ctx.dataset.profile, cols.target)
    findings += _goal_target(ctx, cols)
    findings += _requests_not_done(ctx)

    errors = [f for f in findings if f.severity == "error"]
    warnings = [f for f in findings if f.severity == "warning"]
    if errors:
        categories = ", ".join(dict.fromkeys(f.category for f in errors))
        summary = f"Revise: {len(errors)} problem(s) to fix ({categories})"
    else:
        summary = "Accept: the evaluation is sound"
    if account:
        summary += f"; {account}"
    if warnings:
        summary += f"; {len(warnings)} warning(s)"
    if not findings:
        findings.append(
            _finding("info", "review", "No leakage, evaluation or result problems found.")
        )
    return Review(
        verdict="revise" if errors else "accept", summary=summary + ".", findings=findings
    )
