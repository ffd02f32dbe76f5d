"""Names that the workflow, the activities, the API and operators' CLI commands must agree on."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

from temporalio.common import RetryPolicy, SearchAttributeKey

WORKFLOW_TYPE = "DataScienceRun"
# A run's webhook deliveries, started detached so a receiver that is down never holds it up.
DELIVER_EVENT_WORKFLOW_TYPE = "DeliverRunEvent"

# Signals, updates and queries an operator can use by hand with the `temporal` CLI.
# Approve and reject exist as both: the update tells its caller whether its decision took
# effect (the API uses it); the signal is fire-and-forget for `temporal workflow signal`.
SIGNAL_APPROVE = "approve"
SIGNAL_REJECT = "reject"
UPDATE_APPROVE = "approve"
UPDATE_REJECT = "reject"
# Sent by the API just before it asks Temporal to cancel, so the run records who cancelled it.
SIGNAL_CANCELLED_BY = "cancelled_by"
QUERY_STATUS = "status"
QUERY_STATE = "state"

# Visibility: registered on the dev server at start (see devserver.py) and on clusters by
# `temporal operator search-attribute create`.
RUN_STATUS_ATTRIBUTE = SearchAttributeKey.for_keyword("RunStatus")
CURRENT_STEP_ATTRIBUTE = SearchAttributeKey.for_keyword("CurrentStep")
# The principal who started the run, set by the API at start; listing and quotas filter on it.
OWNER_ATTRIBUTE = SearchAttributeKey.for_keyword("Owner")
SEARCH_ATTRIBUTES = (RUN_STATUS_ATTRIBUTE, CURRENT_STEP_ATTRIBUTE, OWNER_ATTRIBUTE)


class ActivityName(StrEnum):
    FETCH_DATASET = "fetch_dataset"
    RESEARCH = "research_agent"
    DATA_ENGINEERING = "data_engineering_agent"
    EXECUTE_EDA = "execute_eda"
    ML = "ml_agent"
    TRAIN_MODEL = "train_model"
    CRITIC = "critic_agent"
    NOTIFY = "notify_webhooks"


class ErrorType(StrEnum):
    """ApplicationError types raised by activities; retrying cannot fix the non-retryable ones."""

    # Dataset intake.
    DATASET_NOT_FOUND = "DatasetNotFound"
    DATASET_TOO_LARGE = "DatasetTooLarge"
    DATASET_NOT_CSV = "DatasetNotCsv"
    DATASET_EMPTY = "DatasetEmpty"
    DATASET_UNREADABLE = "DatasetUnreadable"
    DATASET_NOT_ALLOWED = "DatasetNotAllowed"
    DATASET_UNREACHABLE = "DatasetUnreachable"  # retryable
    DATASET_TIMEOUT = "DatasetTimeout"  # retryable
    # Agents.
    LLM_CONFIGURATION = "LlmConfigurationError"
    LLM_REQUEST_REFUSED = "LlmRequestRefused"
    INVALID_MODEL_OUTPUT = "InvalidModelOutput"
    LLM_TRANSIENT = "LlmTransientError"  # retryable
    AGENT_INPUT = "AgentInputError"
    # Execution.
    EXECUTION_LIMIT = "ExecutionLimitExceeded"
    EXECUTOR_REJECTED = "ExecutorRejected"
    EXECUTOR_UNAVAILABLE = "ExecutorUnavailable"  # retryable
    # This worker cannot isolate generated code (bubblewrap missing or not permitted).
    SANDBOX_UNAVAILABLE = "SandboxUnavailable"
    # Notifications: a webhook receiver that is down or answers with an error.
    WEBHOOK_UNDELIVERED = "WebhookUndelivered"  # retryable
    # How a run ends when it fails (the workflow's own failure, shown in the Web UI).
    STEP_FAILED = "StepFailed"
    DECISION_REFUSED = "DecisionRefused"  # an approve/reject update that did not take effect
    APPROVAL_TIMED_OUT = "ApprovalTimedOut"
    REJECTION_LIMIT_REACHED = "RejectionLimitReached"


RETRYABLE_ERRORS = {
    ErrorType.DATASET_UNREACHABLE,
    ErrorType.DATASET_TIMEOUT,
    ErrorType.LLM_TRANSIENT,
    ErrorType.EXECUTOR_UNAVAILABLE,
    ErrorType.WEBHOOK_UNDELIVERED,
}
NON_RETRYABLE_ERRORS = [e.value for e in ErrorType if e not in RETRYABLE_ERRORS]


def retry_policy(maximum_attempts: int) -> RetryPolicy:
    return RetryPolicy(
        initial_interval=timedelta(seconds=1),
        backoff_coefficient=2.0,
        maximum_interval=timedelta(minutes=1),
        maximum_attempts=maximum_attempts,
        non_retryable_error_types=NON_RETRYABLE_ERRORS,
    )


# Per activity: (start-to-close timeout, heartbeat timeout, maximum attempts).
# An agent call may make 1 + LLM_MAX_VALIDATION_RETRIES model requests, hence 10 minutes.
# Executions carry their own wall-clock limit in the sandbox; Temporal's timeout is the backstop.
# Every step heartbeats (agents while they wait on a model), so the heartbeat timeout notices a
# worker that died mid-step, or a completion lost while Temporal was down, within seconds.
HEARTBEAT_TIMEOUT = timedelta(seconds=20)
ACTIVITY_TIMEOUTS: dict[ActivityName, tuple[timedelta, timedelta | None, int]] = {
    ActivityName.FETCH_DATASET: (timedelta(minutes=10), timedelta(seconds=30), 5),
    ActivityName.RESEARCH: (timedelta(minutes=10), HEARTBEAT_TIMEOUT, 5),
    ActivityName.DATA_ENGINEERING: (timedelta(minutes=10), HEARTBEAT_TIMEOUT, 5),
    ActivityName.ML: (timedelta(minutes=10), HEARTBEAT_TIMEOUT, 5),
    ActivityName.CRITIC: (timedelta(minutes=10), HEARTBEAT_TIMEOUT, 5),
    ActivityName.EXECUTE_EDA: (timedelta(hours=2), timedelta(seconds=30), 3),
    ActivityName.TRAIN_MODEL: (timedelta(hours=4), timedelta(seconds=30), 3),
    # One POST per configured URL, 10 s each; a receiver that is down is retried, never fatal.
    ActivityName.NOTIFY: (timedelta(seconds=30), None, 5),
}
