"""Abuse limits per caller: one for every call, a stricter one for starting runs.

Counters live in memory (one process) or in Redis (`RATE_LIMIT_STORAGE=redis://…`), where
every API replica counts against the same limit.
"""

from __future__ import annotations

import math
import time

import limits
from limits.aio.storage import MemoryStorage, RedisStorage, Storage
from limits.aio.strategies import MovingWindowRateLimiter
from limits.errors import StorageError

from api.errors import ServiceUnavailable, TooManyRequests
from settings import Settings


class RateLimitConfigError(ValueError):
    """A RATE_LIMIT_* setting the limits library cannot read."""


def _parse(name: str, value: str) -> limits.RateLimitItem:
    try:
        return limits.parse(value)
    except ValueError as err:
        raise RateLimitConfigError(
            f"{name}={value!r} is not a rate limit; write it like '120/minute' or '10/second'."
        ) from err


def _storage(uri: str) -> Storage:
    scheme = uri.partition("://")[0]
    if scheme in ("redis", "rediss"):
        # The redis-py client (already a dependency) instead of limits' default, coredis.
        return RedisStorage(f"async+{uri}", implementation="redispy", wrap_exceptions=True)
    if scheme == "memory":
        return MemoryStorage()
    raise RateLimitConfigError(
        f"RATE_LIMIT_STORAGE={uri!r} is not supported; use memory:// or redis://host:port/db."
    )


class RateLimiter:
    def __init__(self, settings: Settings) -> None:
        self.every_call = _parse("RATE_LIMIT_DEFAULT", settings.rate_limit_default)
        self.starting_runs = _parse("RATE_LIMIT_START", settings.rate_limit_start)
        self.storage_uri = settings.rate_limit_storage
        self._limiter = MovingWindowRateLimiter(_storage(settings.rate_limit_storage))

    async def hit(self, caller: str, *, starts_run: bool = False) -> None:
        """Count one call by `caller`; TooManyRequests (with Retry-After) past a limit."""
        checks = [("calls", self.every_call)]
        if starts_run:
            checks.append(("run starts", self.starting_runs))
        for what, item in checks:
            try:
                if await self._limiter.hit(item, what, caller):
                    continue
                stats = await self._limiter.get_window_stats(item, what, caller)
            except StorageError as err:
                raise ServiceUnavailable(
                    f"The rate-limit store at RATE_LIMIT_STORAGE is not answering ({err}); "
                    "check that Redis is up."
                ) from err
            retry_after = max(1, math.ceil(stats.reset_time - time.time()))
            raise TooManyRequests(
                f"Too many {what} from {caller}: the limit is {item}. Retry in {retry_after} s.",
                headers={"Retry-After": str(retry_after)},
            )
