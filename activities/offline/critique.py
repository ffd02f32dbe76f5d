"""The Critic: checks training code and its run for leakage, sloppy evaluation, weak results."""

from __future__ import annotations

import ast
import math
from collections.abc import Iterable
from dataclasses import dataclass, field

from activities.offline.selection import (
    SEVERE_IMBALANCE_RATIO,
    imbalance_ratio,
    is_imbalanced,
    leaky_by_name,
    plan_columns,
)
from workflows.models import AgentContext, ExecutionResult, Finding, Review

REQUIRED_METRICS = ("task_type", "target", "metric", "score", "baseline_score", "cv_mean", "cv_std")
# Metrics where a smaller number is better, as code written elsewhere may report them.
LOWER_IS_BETTER = {"rmse", "mse", "mae", "log_loss", "logloss", "mape", "error", "brier"}
MIN_MARGIN = 0.01  # a model this close to the baseline has learned next to nothing
SUSPICIOUS_SCORE = 0.999
MAX_CV_TEST_GAP = 0.15

_SPLITTERS = {"train_test_split", "ShuffleSplit", "StratifiedShuffleSplit", "GroupShuffleSplit"}
_CROSS_VALIDATION = {
    "cross_val_score",
    "cross_validate",
    "cross_val_predict",
    "KFold",
    "StratifiedKFold",
    "RepeatedKFold",
    "RepeatedStratifiedKFold",
    "GroupKFold",
    "GridSearchCV",
    "RandomizedSearchCV",
    "HalvingGridSearchCV",
}
_RANDOM_ESTIMATORS = (
    "RandomForest",
    "ExtraTrees",
    "GradientBoosting",
    "HistGradientBoosting",
    "DecisionTree",
    "MLP",
    "SGD",
    "Bagging",
    "AdaBoost",
    "XGB",
    "LGBM",
)
_IMBALANCE_REMEDIES = (
    "class_weight",
    "sample_weight",
    "compute_sample_weight",
    "smote",
    "randomoversampler",
    "randomundersampler",
    "resample",
    "scale_pos_weight",
    "balancedrandomforest",
)
_FEATURE_WORDS = {
    "feature",
    "features",
    "predictor",
    "predictors",
    "col",
    "cols",
    "column",
    "columns",
    "x",
    "num",
    "numeric",
    "numerical",
    "cat",
    "categorical",
    "input",
    "inputs",
}
_NOT_FEATURE_WORDS = {
    "drop",
    "dropped",
    "exclude",
    "excluded",
    "ignore",
    "ignored",
    "id",
    "ids",
    "leak",
    "leakage",
    "target",
    "remove",
    "removed",
    "skip",
    "unused",
    "label",
    "labels",
    "y",
    "all",
}


def _call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def _is_none(node: ast.expr | None) -> bool:
    return isinstance(node, ast.Constant) and node.value is None


@dataclass
class _CodeFacts:
    """What the critic could establish about a script without running it."""

    constants: dict[str, object] = field(default_factory=dict)
    feature_lists: dict[str, list[str]] = field(default_factory=dict)
    dropped: set[str] = field(default_factory=set)  # strings passed to .drop(...)
    calls: list[ast.Call] = field(default_factory=list)
    global_seed: bool = False
    source_lower: str = ""

    def called(self, names: Iterable[str]) -> list[ast.Call]:
        wanted = set(names)
        return [c for c in self.calls if _call_name(c) in wanted]


def _resolve(node: ast.expr | None, env: dict[str, object]) -> object:
    """The value of a literal expression, following names assigned earlier; None if unknown."""
    if node is None:
        return None
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env.get(node.id)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items: list[object] = []
        for element in node.elts:
            if isinstance(element, ast.Starred):
                inner = _resolve(element.value, env)
                items.extend(inner if isinstance(inner, list) else [])
            else:
                items.append(_resolve(element, env))
        return items
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = _resolve(node.left, env), _resolve(node.right, env)
        if isinstance(left, list) and isinstance(right, list):
            return left + right
        return None
    if isinstance(node, ast.Dict):
        keys = [_resolve(k, env) for k in node.keys if k is not None]
        return {k: True for k in keys if isinstance(k, str)}
    if isinstance(node, ast.Call) and _call_name(node) in {"list", "tuple", "sorted"} and node.args:
        return _resolve(node.args[0], env)
    return None


def _strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, dict)):
        return [v for v in value if isinstance(v, str)]
    return []


def _is_feature_name(name: str) -> bool:
    words = {w for w in name.lower().split("_") if w}
    if words & _NOT_FEATURE_WORDS - {"x"}:
        return False
    return bool(words & _FEATURE_WORDS) or name.lower().startswith("feature")


def _analyse(tree: ast.Module, source: str) -> _CodeFacts:
    facts = _CodeFacts(source_lower=source.lower())
    assigns = sorted(
        (n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign))),
        key=lambda n: (n.lineno, n.col_offset),
    )
    for node in assigns:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        value = _resolve(node.value, facts.constants)
        for target in targets:
            if not isinstance(target, ast.Name):
                continue
            if value is not None:
                facts.constants[target.id] = value
            if value is not None and _is_feature_name(target.id) and _strings(value):
                facts.feature_lists[target.id] = _strings(value)
            # X = df[["a", "b"]]: the frame's columns are the features.
            if (
                target.id.lower().startswith("x")
                and isinstance(node.value, ast.Subscript)
                and isinstance(node.value.slice, ast.List)
            ):
                columns = _strings(_resolve(node.value.slice, facts.constants))
                if columns:
                    facts.feature_lists[target.id] = columns
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        facts.calls.append(node)
        name = _call_name(node)
        if name == "drop":
            named = [k.value for k in node.keywords if k.arg in {"columns", "labels"}]
            for arg in [*node.args, *named]:
                facts.dropped.update(_strings(_resolve(arg, facts.constants)))
        elif name in {"ColumnTransformer", "make_column_transformer"}:
            specs = (
                node.args[0].elts
                if name == "ColumnTransformer"
                and node.args
                and isinstance(node.args[0], (ast.List, ast.Tuple))
                else node.args
            )
            for spec in specs:
                if isinstance(spec, ast.Tuple) and len(spec.elts) in (2, 3):
                    columns = _strings(_resolve(spec.elts[-1], facts.constants))
                    if columns:
                        facts.feature_lists[f"{name}:{len(facts.feature_lists)}"] = columns
        elif name == "seed" and "random.seed" in ast.unparse(node.func):
            facts.global_seed = True
    return facts


def _code_target(facts: _CodeFacts) -> str | None:
    for name, value in facts.constants.items():
        if isinstance(value, str) and name.lower() in {
            "target",
            "target_col",
            "target_column",
            "label",
            "label_col",
            "y_col",
        }:
            return value
    return None


def _leakage(
    facts: _CodeFacts, target: str, ctx: AgentContext, human_drop: list[str]
) -> list[Finding]:
    profile = ctx.dataset.profile
    names = [c.name for c in profile.columns]
    findings: list[Finding] = []
    if facts.feature_lists:
        used = {c for cols in facts.feature_lists.values() for c in cols}
        where = {c: n for n, cols in facts.feature_lists.items() for c in cols}
        if target in used:
            findings.append(
                Finding(
                    severity="error",
                    category="leakage",
                    message=f"The target {target!r} is among the features ({where[target]}): the "
                    "model sees the answer. Remove it from the feature lists.",
                )
            )
    elif target in facts.dropped:
        used = {n for n in names if n not in facts.dropped}
    else:
        findings.append(
            Finding(
                severity="warning",
                category="leakage",
                message=f"Could not find the feature columns or a drop of the target {target!r}; "
                "make the feature lists explicit so leakage can be ruled out.",
            )
        )
        return findings
    for column in profile.id_columns:
        if column in used and column != target:
            findings.append(
                Finding(
                    severity="warning",
                    category="leakage",
                    message=f"Identifier column {column!r} is used as a feature: it is unique per "
                    "row and lets the model memorise rows; exclude it.",
                )
            )
    for column in names:
        if column in used and leaky_by_name(column, target):
            findings.append(
                Finding(
                    severity="warning",
                    category="leakage",
                    message=f"Column {column!r} looks derived from the target {target!r}; "
                    "check that it is known before the outcome, or exclude it.",
                )
            )
    for column in human_drop:
        if column in used:
            findings.append(
                Finding(
                    severity="error",
                    category="feedback",
                    message=f"Column {column!r} is used although the reviewer asked to drop it.",
                )
            )
    return findings


def _evaluation(facts: _CodeFacts) -> list[Finding]:
    findings: list[Finding] = []
    splits = facts.called(_SPLITTERS)
    if not splits and not facts.called(_CROSS_VALIDATION):
        return [
            Finding(
                severity="error",
                category="evaluation",
                message="No train/test split or cross-validation: the score is measured on the "
                "training data. Hold out a test set with train_test_split.",
            )
        ]
    if not splits:
        findings.append(
            Finding(
                severity="warning",
                category="evaluation",
                message="Cross-validation only, no held-out train/test split: add "
                "train_test_split so the final score comes from unseen rows.",
            )
        )
    if facts.global_seed:
        return findings
    for call in facts.called({"train_test_split"}):
        if _is_none(_keyword(call, "random_state")) or _keyword(call, "random_state") is None:
            findings.append(
                Finding(
                    severity="error",
                    category="reproducibility",
                    message="train_test_split has no fixed random_state: the test set changes on "
                    "every run, so scores cannot be compared between revisions. Set "
                    "random_state=42.",
                )
            )
            break
    unseeded = sorted(
        {
            _call_name(c)
            for c in facts.calls
            if (
                _call_name(c).startswith(_RANDOM_ESTIMATORS)
                or (
                    _call_name(c) in {"KFold", "StratifiedKFold"}
                    and isinstance(_keyword(c, "shuffle"), ast.Constant)
                    and getattr(_keyword(c, "shuffle"), "value", False) is True
                )
            )
            and (_keyword(c, "random_state") is None or _is_none(_keyword(c, "random_state")))
        }
    )
    if unseeded:
        findings.append(
            Finding(
                severity="warning",
                category="reproducibility",
                message="No random_state on "
                + ", ".join(unseeded)
                + ": results vary between runs.",
            )
        )
    return findings


def _imbalance(facts: _CodeFacts, ctx: AgentContext, target: str, task_type: str) -> list[Finding]:
    profile = ctx.dataset.profile
    if task_type != "classification" or not is_imbalanced(profile, target):
        return []
    if any(remedy in facts.source_lower for remedy in _IMBALANCE_REMEDIES) and not (
        "class_weight=none" in facts.source_lower.replace(" ", "")
        and "balanced" not in facts.source_lower
    ):
        return []
    ratio = imbalance_ratio(profile, target) or 0.0
    severe = ratio < SEVERE_IMBALANCE_RATIO
    return [
        Finding(
            severity="error" if severe else "warning",
            category="imbalance",
            message=f"The classes of {target!r} are imbalanced (smallest/largest = {ratio:.2f}) "
            "but the code does nothing about it: use class_weight='balanced' (or sample "
            "weights) and a stratified split.",
        )
    ]


def _number(metrics: dict[str, float | str], key: str) -> float | None:
    try:
        value = float(metrics[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def _result(result: ExecutionResult | None, target: str) -> tuple[list[Finding], str]:
    """Findings about the run and a one-line account of its score."""
    if result is None:
        return [
            Finding(
                severity="warning",
                category="execution",
                message="The training code has not been run yet; nothing to score.",
            )
        ], ""
    if result.exit_code != 0:
        last = [line for line in result.stderr_tail.strip().splitlines() if line.strip()]
        cause = f": {last[-1].strip()[:300]}" if last else ""
        return [
            Finding(
                severity="error",
                category="execution",
                message=f"The training run failed with exit code {result.exit_code}{cause}. "
                "Fix the cause before judging the model.",
            )
        ], f"the run failed (exit code {result.exit_code})"
    metrics = result.metrics or {}
    findings: list[Finding] = []
    absent = [k for k in REQUIRED_METRICS if k not in metrics]
    if absent:
        findings.append(
            Finding(
                severity="warning",
                category="metrics",
                message="metrics.json lacks " + ", ".join(absent) + ".",
            )
        )
    score, baseline = _number(metrics, "score"), _number(metrics, "baseline_score")
    metric = str(metrics.get("metric", "score"))
    if score is None or baseline is None:
        findings.append(
            Finding(
                severity="warning",
                category="baseline",
                message="No score and baseline_score to compare: cannot tell whether the model "
                "beats a trivial baseline.",
            )
        )
        return findings, "no comparable score"
    lower_better = (
        any(word in metric.lower() for word in LOWER_IS_BETTER) and "neg" not in metric.lower()
    ) or _number(metrics, "higher_is_better") == 0.0
    gain = baseline - score if lower_better else score - baseline
    account = f"{metric} {score:.4f} on the test set vs {baseline:.4f} for the baseline"
    if gain <= 0:
        findings.append(
            Finding(
                severity="error",
                category="baseline",
                message=f"The model does not beat the trivial baseline ({account}). Try other "
                "features or models; check the target and the preprocessing.",
            )
        )
    elif gain < MIN_MARGIN:
        findings.append(
            Finding(
                severity="warning",
                category="baseline",
                message=f"The model barely beats the trivial baseline ({account}).",
            )
        )
    if (
        not lower_better
        and score >= SUSPICIOUS_SCORE
        and metric
        in {"roc_auc", "accuracy", "balanced_accuracy", "f1", "f1_macro", "f1_weighted", "r2"}
    ):
        findings.append(
            Finding(
                severity="warning",
                category="leakage",
                message=f"A near-perfect {metric} of {score:.4f} is suspicious: check for features "
                "that encode the target.",
            )
        )
    cv_mean, cv_std = _number(metrics, "cv_mean"), _number(metrics, "cv_std")
    if cv_mean is not None and abs(score - cv_mean) > MAX_CV_TEST_GAP:
        findings.append(
            Finding(
                severity="warning",
                category="evaluation",
                message=f"The test score ({score:.4f}) and the cross-validation mean "
                f"({cv_mean:.4f}) disagree: the evaluation is unstable or the split "
                "unrepresentative.",
            )
        )
    if cv_std is not None and cv_std > 0.1:
        findings.append(
            Finding(
                severity="warning",
                category="evaluation",
                message=f"Cross-validation scores vary widely (std {cv_std:.3f}).",
            )
        )
    reported = metrics.get("target")
    if isinstance(reported, str) and reported != target:
        findings.append(
            Finding(
                severity="warning",
                category="goal",
                message=f"The run predicts {reported!r}, but the plan's target is {target!r}.",
            )
        )
    return findings, account


def review_training(ctx: AgentContext) -> Review:
    """Accept the training, or ask for a revision when any finding is an error."""
    cols = plan_columns(ctx.dataset.profile, ctx.plan, ctx.feedback, ctx.user_goal)
    findings: list[Finding] = []
    code = ctx.training_code.code if ctx.training_code else ""
    if not code.strip():
        findings.append(
            Finding(
                severity="error", category="code", message="There is no training code to review."
            )
        )
    else:
        try:
            tree = ast.parse(compile(code, "training.py", "exec", ast.PyCF_ONLY_AST))
        except SyntaxError as exc:
            findings.append(
                Finding(
                    severity="error",
                    category="syntax",
                    message=f"The training code does not compile: {exc.msg} (line {exc.lineno}).",
                )
            )
        else:
            facts = _analyse(tree, code)
            code_target = _code_target(facts)
            if code_target is not None and code_target != cols.target:
                findings.append(
                    Finding(
                        severity="warning",
                        category="goal",
                        message=f"The code's target is {code_target!r}; the plan's is "
                        f"{cols.target!r}.",
                    )
                )
            findings += _leakage(facts, cols.target, ctx, cols.human.drop)
            if code_target and code_target != cols.target:
                findings += _leakage(facts, code_target, ctx, [])
            findings += _evaluation(facts)
            findings += _imbalance(facts, ctx, cols.target, cols.task_type)
    result_findings, account = _result(ctx.training_result, cols.target)
    findings += result_findings

    errors = [f for f in findings if f.severity == "error"]
    warnings = [f for f in findings if f.severity == "warning"]
    verdict = "revise" if errors else "accept"
    if errors:
        summary = (
            f"Revise: {len(errors)} problem(s) to fix ("
            + ", ".join(dict.fromkeys(f.category for f in errors))
            + ")"
        )
    else:
        summary = "Accept: the evaluation is sound"
    if account:
        summary += f"; {account}"
    if warnings:
        summary += f"; {len(warnings)} warning(s)"
    if not findings:
        findings.append(
            Finding(
                severity="info",
                category="review",
                message="No leakage, evaluation or result problems found.",
            )
        )
    return Review(verdict=verdict, summary=summary + ".", findings=findings)
