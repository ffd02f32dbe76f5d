"""Heartbeats for long activities: a lost worker is noticed within the heartbeat timeout."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from temporalio import activity

T = TypeVar("T")

DEFAULT_HEARTBEAT_SECONDS = 2.0


def heartbeat(*details: Any) -> None:
    """activity.heartbeat, or nothing when called outside an activity (plain unit tests)."""
    if activity.in_activity():
        activity.heartbeat(*details)


def heartbeat_interval() -> float:
    """Every 2 s, or faster when the heartbeat timeout is short: three beats fit in it."""
    if activity.in_activity():
        timeout = activity.info().heartbeat_timeout
        if timeout:
            return min(DEFAULT_HEARTBEAT_SECONDS, timeout.total_seconds() / 3)
    return DEFAULT_HEARTBEAT_SECONDS


async def run_with_heartbeats(awaitable: Awaitable[T], interval: float | None = None) -> T:
    """Await a long job while heartbeating; cancelling the caller cancels the job.

    Temporal delivers an activity's cancellation only through heartbeats, and the job (an HTTP
    request, a model call, a sandboxed process) is cancelled with it rather than left running
    unobserved.
    """
    every = interval if interval is not None else heartbeat_interval()
    job = asyncio.ensure_future(awaitable)
    started = time.monotonic()
    try:
        while True:
            done, _ = await asyncio.wait({job}, timeout=every)
            if done:
                return job.result()
            heartbeat({"running_seconds": round(time.monotonic() - started, 1)})
    finally:
        if not job.done():
            job.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await job
