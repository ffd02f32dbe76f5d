"""Which training result is better: by the metric's own direction, successes before failures."""

from __future__ import annotations

import pytest

from workflows.models import ExecutionResult
from workflows.scoring import higher_is_better, is_better, metric_value


def result(exit_code: int = 0, **metrics: float | str) -> ExecutionResult:
    return ExecutionResult(backend="local", exit_code=exit_code, duration_seconds=1.0,
                           metrics=metrics or None)  # fmt: skip


@pytest.mark.parametrize(
    ("metrics", "expected"),
    [
        ({"metric": "roc_auc"}, True),
        ({"metric": "r2"}, True),
        ({"metric": "rmse"}, False),
        ({"metric": "log_loss"}, False),
        ({"metric": "neg_mean_squared_error"}, True),
        ({"metric": "rmse", "higher_is_better": 1.0}, True),
        ({"metric": "roc_auc", "higher_is_better": "false"}, False),
    ],
)
def test_direction_comes_from_the_flag_then_the_metric_name(metrics, expected):
    assert higher_is_better(metrics) is expected


def test_lower_rmse_wins_and_higher_auc_wins():
    assert is_better(result(metric="rmse", score=3.0), result(metric="rmse", score=9.0))
    assert not is_better(result(metric="rmse", score=9.0), result(metric="rmse", score=3.0))
    assert is_better(result(metric="roc_auc", score=0.9), result(metric="roc_auc", score=0.8))
    assert not is_better(result(metric="roc_auc", score=0.7), result(metric="roc_auc", score=0.8))


def test_any_success_beats_a_failure_and_never_the_reverse():
    failed = result(exit_code=1)
    assert is_better(result(), failed), "a success without a score still beats a failure"
    assert not is_better(failed, result(metric="r2", score=0.1))
    assert is_better(result(metric="r2", score=0.1), None)


def test_different_metrics_prefer_the_newer_revision():
    assert is_better(result(metric="f1_macro", score=0.5), result(metric="roc_auc", score=0.9))


def test_metric_values_accept_numeric_text_and_reject_non_finite():
    assert metric_value({"score": "0.75"}, "score") == 0.75
    assert metric_value({"score": "nan"}, "score") is None
    assert metric_value({"score": "n/a"}, "score") is None
    assert metric_value({}, "score") is None
