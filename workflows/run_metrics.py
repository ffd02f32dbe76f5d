"""Run-level metrics recorded from workflow code: runs started and finished, approval waits.

They go through `workflow.metric_meter()`, which the SDK silences while a workflow replays, so a
run counts once however often a worker replays its history. The worker's Prometheus endpoint
exports them with the workflow type, namespace and task queue as labels.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow

from workflows.models import HumanApproval, RunStatus

RUNS_STARTED = "orchestrator_runs_started"
RUNS_FINISHED = "orchestrator_runs_finished"
APPROVAL_WAIT = "orchestrator_approval_wait_seconds"

# A person answers in minutes to days: the buckets span that (the default timeout is 7 days).
APPROVAL_WAIT_BUCKETS = (
    60.0,
    300.0,
    900.0,
    1800.0,
    3600.0,
    4 * 3600.0,
    12 * 3600.0,
    24 * 3600.0,
    3 * 24 * 3600.0,
    7 * 24 * 3600.0,
)

# What an approval wait ended with, for the histogram's `decision` label.
_DECISION_LABEL = {
    HumanApproval.APPROVED: "approved",
    HumanApproval.REJECTED: "rejected",
}


def record_run_started() -> None:
    """Call once when a run begins (its first workflow task)."""
    workflow.metric_meter().create_counter(RUNS_STARTED, "Runs started.", "runs").add(1)


def record_run_finished(status: RunStatus) -> None:
    """Call once with the run's final status: completed, failed, cancelled or timed_out."""
    workflow.metric_meter().create_counter(
        RUNS_FINISHED, "Runs finished, by final status.", "runs"
    ).add(1, {"status": status.value})


def record_approval_wait(waited: timedelta, decision: HumanApproval | None) -> None:
    """How long one version of the EDA code waited for a person; None when the wait timed out."""
    label = _DECISION_LABEL.get(decision, "timed_out") if decision is not None else "timed_out"
    workflow.metric_meter().create_histogram_float(
        APPROVAL_WAIT, "Time EDA code waited for approval or rejection.", "s"
    ).record(max(waited.total_seconds(), 0.0), {"decision": label})
