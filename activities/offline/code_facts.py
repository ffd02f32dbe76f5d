"""Reading a training script without running it: its feature lists, splits, seeds and weights."""

from __future__ import annotations

import ast
from dataclasses import dataclass, field

# Calls that hold data out, that cross-validate, and estimators whose results depend on a seed.
SPLITTERS = frozenset(
    "train_test_split ShuffleSplit StratifiedShuffleSplit GroupShuffleSplit".split()
)
CROSS_VALIDATION = frozenset(
    "cross_val_score cross_validate cross_val_predict KFold StratifiedKFold RepeatedKFold "
    "RepeatedStratifiedKFold GroupKFold GridSearchCV RandomizedSearchCV HalvingGridSearchCV".split()
)
RANDOM_ESTIMATORS = tuple(
    "RandomForest ExtraTrees GradientBoosting HistGradientBoosting DecisionTree MLP SGD Bagging "
    "AdaBoost XGB LGBM CatBoost".split()
)
# Calls and keywords that counter class imbalance.
IMBALANCE_CALLS = frozenset(
    "compute_sample_weight compute_class_weight SMOTE ADASYN RandomOverSampler "
    "RandomUnderSampler resample BalancedRandomForestClassifier".split()
)
IMBALANCE_KEYWORDS = frozenset({"sample_weight", "scale_pos_weight", "is_unbalance"})
# Variable names that hold feature columns ("NUMERIC_FEATURES", "cat_cols", "X_columns")...
_FEATURE_WORDS = frozenset(
    "feature features predictor predictors col cols column columns x num numeric numerical cat "
    "categorical input inputs".split()
)
# ...unless they say the opposite ("DROP_COLUMNS", "ID_COLS", "EXCLUDED_COLUMNS").
_NOT_FEATURE_WORDS = frozenset(
    "drop dropped exclude excluded ignore ignored id ids leak leakage target remove removed skip "
    "unused label labels y all".split()
)
_TARGET_NAMES = frozenset("target target_col target_column label label_col y_col".split())


class _Unknown:
    """A value the analysis cannot know (computed at run time); distinct from a literal None."""


UNKNOWN = _Unknown()


def call_name(call: ast.Call) -> str:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    return func.id if isinstance(func, ast.Name) else ""


def keyword(call: ast.Call, name: str) -> ast.expr | None:
    return next((k.value for k in call.keywords if k.arg == name), None)


def resolve(node: ast.expr | None, env: dict[str, object]) -> object:
    """The value of a literal expression, following names assigned before; UNKNOWN otherwise."""
    if node is None:
        return UNKNOWN
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name):
        return env.get(node.id, UNKNOWN)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        items: list[object] = []
        for element in node.elts:
            if isinstance(element, ast.Starred):
                inner = resolve(element.value, env)
                items.extend(inner if isinstance(inner, list) else [])
            else:
                items.append(resolve(element, env))
        return items
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        left, right = resolve(node.left, env), resolve(node.right, env)
        if isinstance(left, list) and isinstance(right, list):
            return left + right
        return UNKNOWN
    if isinstance(node, ast.Dict):
        return {k: True for k in (resolve(k, env) for k in node.keys if k) if isinstance(k, str)}
    if isinstance(node, ast.Call) and call_name(node) in {"list", "tuple", "sorted"} and node.args:
        return resolve(node.args[0], env)
    return UNKNOWN


def strings(value: object) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, (list, dict)):
        return [v for v in value if isinstance(v, str)]
    return []


def is_feature_name(name: str) -> bool:
    words = {w for w in name.lower().split("_") if w}
    if words & (_NOT_FEATURE_WORDS - {"x"}):
        return False
    return bool(words & _FEATURE_WORDS) or name.lower().startswith("feature")


@dataclass
class CodeFacts:
    """What can be established about a script by reading it."""

    constants: dict[str, object] = field(default_factory=dict)
    feature_lists: dict[str, list[str]] = field(default_factory=dict)  # where -> columns
    excluded: set[str] = field(default_factory=set)  # dropped, or filtered out with != / not in
    calls: list[ast.Call] = field(default_factory=list)
    global_seed: bool = False  # np.random.seed(...) or random.seed(...)

    def called(self, names: frozenset[str] | set[str]) -> list[ast.Call]:
        return [c for c in self.calls if call_name(c) in names]

    @property
    def target(self) -> str | None:
        """The column the script says it predicts (TARGET = "..."), if it says so."""
        for name, value in self.constants.items():
            if isinstance(value, str) and name.lower() in _TARGET_NAMES:
                return value
        return None

    def _seeded(self, call: ast.Call) -> bool:
        """Whether the call fixes random_state (to anything but None)."""
        seed = keyword(call, "random_state")
        return seed is not None and resolve(seed, self.constants) is not None

    def unseeded(self) -> list[str]:
        """Random estimators and shuffling splitters created without a random_state."""
        found = set()
        for call in self.calls:
            name = call_name(call)
            shuffles = name in {"KFold", "StratifiedKFold"} and (
                resolve(keyword(call, "shuffle"), self.constants) is True
            )
            if (name.startswith(RANDOM_ESTIMATORS) or shuffles) and not self._seeded(call):
                found.add(name)
        return sorted(found)

    def split_unseeded(self) -> bool:
        """Whether some train_test_split call leaves its random_state unset or None."""
        return any(not self._seeded(c) for c in self.called({"train_test_split"}))

    def handles_imbalance(self) -> bool:
        if self.called(IMBALANCE_CALLS):
            return True
        for call in self.calls:
            for kw in call.keywords:
                if kw.arg in IMBALANCE_KEYWORDS:
                    return True
                # class_weight=None (literally or through a constant) does nothing.
                if kw.arg == "class_weight" and resolve(kw.value, self.constants) is not None:
                    return True
        return False


def analyse(tree: ast.Module) -> CodeFacts:
    """Collect constants, feature lists, exclusions and calls, in source order."""
    facts = CodeFacts()
    assigns = sorted(
        (n for n in ast.walk(tree) if isinstance(n, (ast.Assign, ast.AnnAssign)) and n.value),
        key=lambda n: (n.lineno, n.col_offset),
    )
    for node in assigns:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        value = resolve(node.value, facts.constants)
        for target in targets:
            if not isinstance(target, ast.Name):
                continue
            if value is not UNKNOWN:
                facts.constants[target.id] = value
            if is_feature_name(target.id) and strings(value):
                facts.feature_lists[target.id] = strings(value)
            # X = df[["a", "b"]]: the frame's columns are the features.
            if (
                target.id.lower().startswith("x")
                and isinstance(node.value, ast.Subscript)
                and isinstance(node.value.slice, ast.List)
            ):
                columns = strings(resolve(node.value.slice, facts.constants))
                if columns:
                    facts.feature_lists[target.id] = columns
    for item in ast.walk(tree):
        if isinstance(item, ast.Compare):
            # [c for c in df.columns if c != TARGET] / if c not in DROP: filters columns out.
            for op, right in zip(item.ops, item.comparators, strict=True):
                if isinstance(op, (ast.NotEq, ast.NotIn)):
                    facts.excluded.update(strings(resolve(right, facts.constants)))
        if not isinstance(item, ast.Call):
            continue
        call = item
        facts.calls.append(call)
        name = call_name(call)
        if name == "drop":
            named = [k.value for k in call.keywords if k.arg in {"columns", "labels"}]
            for arg in [*call.args, *named]:
                facts.excluded.update(strings(resolve(arg, facts.constants)))
        elif name in {"ColumnTransformer", "make_column_transformer"}:
            first = call.args[0] if call.args else None
            specs = (
                first.elts
                if name == "ColumnTransformer" and isinstance(first, (ast.List, ast.Tuple))
                else call.args
            )
            for spec in specs:
                if isinstance(spec, ast.Tuple) and len(spec.elts) in (2, 3):
                    columns = strings(resolve(spec.elts[-1], facts.constants))
                    if columns:
                        facts.feature_lists[f"{name} #{len(facts.feature_lists) + 1}"] = columns
        elif name == "seed" and "random" in ast.unparse(call.func):
            facts.global_seed = True
    return facts
