"""How training results compare: which way a metric points, and which of two results is better.

Pure functions, shared by the workflow (keeping the best round) and the critic (judging a
score against its baseline), so the two never disagree on what "better" means.
"""

from __future__ import annotations

import math

from workflows.models import ExecutionResult

# Metrics where smaller is better, as code from any agent may report them.
LOWER_IS_BETTER = ("rmse", "mse", "mae", "log_loss", "logloss", "mape", "error", "brier", "loss")


def metric_value(metrics: dict[str, float | str], key: str) -> float | None:
    """A finite number from the metrics, also when the code wrote it as text; else None."""
    try:
        value = float(metrics[key])
    except (KeyError, TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def higher_is_better(metrics: dict[str, float | str]) -> bool:
    """The result's own `higher_is_better` flag wins; otherwise the metric's name decides."""
    flag = metrics.get("higher_is_better")
    if isinstance(flag, str) and flag.lower() in ("true", "false"):
        return flag.lower() == "true"
    number = metric_value(metrics, "higher_is_better")
    if number is not None:
        return number != 0.0
    metric = str(metrics.get("metric", "score")).lower()
    return metric.startswith("neg") or not metric.endswith(LOWER_IS_BETTER)


def is_better(candidate: ExecutionResult, incumbent: ExecutionResult | None) -> bool:
    """Whether a new training result should replace the best one so far.

    Any success beats a failure. Two successes scored on the same metric compare by that
    metric's direction; otherwise the newer one wins, since it answers the critic's findings.
    """
    if incumbent is None:
        return True
    if not candidate.succeeded:
        return False
    if not incumbent.succeeded:
        return True
    new_metrics, old_metrics = candidate.metrics or {}, incumbent.metrics or {}
    new, old = metric_value(new_metrics, "score"), metric_value(old_metrics, "score")
    if new is None or old is None or new_metrics.get("metric") != old_metrics.get("metric"):
        return True
    return new > old if higher_is_better(new_metrics) else new < old
