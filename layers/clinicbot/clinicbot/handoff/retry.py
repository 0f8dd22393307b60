"""Bounded retries with exponential backoff and full jitter, inside a deadline (pure asyncio)."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

__all__ = ["Deadline", "RetryPolicy", "retrying"]

T = TypeVar("T")


@dataclass(frozen=True)
class Deadline:
    """A point in ``time.monotonic()`` after which no new attempt starts."""

    at: float

    @classmethod
    def after(cls, seconds: float) -> Deadline:
        return cls(time.monotonic() + seconds)

    @property
    def remaining(self) -> float:
        return max(0.0, self.at - time.monotonic())

    def timeout(self, wanted: float, *, floor: float = 0.5) -> float:
        """``wanted``, shortened to what is left (never below ``floor``)."""
        return max(floor, min(wanted, self.remaining))


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 3
    """In all, the first one included."""
    base: float = 0.25
    cap: float = 4.0
    max_wait: float = 10.0
    """A server asking for a longer pause than this is not waited for here: the queue retries later."""


async def retrying(
    call: Callable[[], Awaitable[T]],
    *,
    retry_on: Callable[[Exception], bool | float],
    policy: RetryPolicy = RetryPolicy(),
    deadline: Deadline | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> T:
    """Run ``call``; on an exception ask ``retry_on``: False re-raises, True waits the backoff, a number
    waits that many seconds (a server's Retry-After). Re-raises the last error when attempts, the wait
    limit or the deadline run out."""
    attempt = 0
    while True:
        attempt += 1
        try:
            return await call()
        except Exception as exc:
            verdict = retry_on(exc)
            if verdict is False or attempt >= policy.attempts:
                raise
            if verdict is True:
                wait = random.uniform(0, min(policy.cap, policy.base * 2 ** (attempt - 1)))
            else:
                wait = float(verdict)
            if wait > policy.max_wait or (deadline is not None and wait + 0.5 > deadline.remaining):
                raise
            await sleep(wait)
