"""Delivers one run event to the webhooks, retrying for up to a day, apart from the run.

The run starts this as a child workflow it abandons: the run goes on (or ends) at once, and a
receiver that is down only delays its own notification.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.contract import ACTIVITY_TIMEOUTS, DELIVER_EVENT_WORKFLOW_TYPE, ActivityName
from workflows.models import RunEvent

DELIVERY_DEADLINE = timedelta(days=1)


@workflow.defn(name=DELIVER_EVENT_WORKFLOW_TYPE)
class DeliverRunEvent:
    @workflow.run
    async def run(self, event: RunEvent) -> list[str]:
        start_to_close, _, _ = ACTIVITY_TIMEOUTS[ActivityName.NOTIFY]
        return await workflow.execute_activity(
            ActivityName.NOTIFY.value,
            event,
            result_type=list[str],
            start_to_close_timeout=start_to_close,
            schedule_to_close_timeout=DELIVERY_DEADLINE,
            retry_policy=RetryPolicy(
                initial_interval=timedelta(seconds=2),
                backoff_coefficient=2.0,
                maximum_interval=timedelta(minutes=10),
            ),
        )
