"""The one rate-limited bulk sender: reminders and broadcasts go through it.

Telegram allows about 30 messages a second per bot, about one a second per chat and about 20 a
minute per group; over that it answers 429 with ``retry_after``. :class:`BulkSender` keeps under
those limits with a pacer (a token bucket of capacity one, so sends are spread evenly and a
sliding one-second window never sees more than the rate), one send at a time per chat, and a
bounded number of requests in flight. It honours 429 by pausing all sending, retries 5xx and
network errors with exponential backoff and jitter, and stops starting sends before the deadline.

Exactly-once bookkeeping is the caller's: ``on_result`` fires after each message's final outcome,
so the caller can mark items one by one. A message that timed out may still have been delivered
(see ``retry_maybe_delivered``).

Nothing here logs message texts; chat ids only at DEBUG.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

from clinicbot.telegram_api.client import (
    BadRequest,
    BotApiError,
    Forbidden,
    NetworkError,
    RetryAfter,
    ServerError,
)

__all__ = [
    "BotApi",
    "BulkSender",
    "Outcome",
    "OutgoingMessage",
    "SendReport",
    "SendStatus",
]

log = logging.getLogger(__name__)


class BotApi(Protocol):
    """What the sender needs from a Bot API client (:class:`clinicbot.telegram_api.BotApiClient`)."""

    async def send_message(
        self,
        chat_id: int | str,
        text: str,
        *,
        reply_markup: dict[str, Any] | None = ...,
        parse_mode: str | None = ...,
        protect_content: bool = ...,
        message_thread_id: int | None = ...,
        disable_notification: bool = ...,
    ) -> dict[str, Any]: ...

    async def send_document(
        self,
        chat_id: int | str,
        document: str,
        *,
        caption: str | None = ...,
        reply_markup: dict[str, Any] | None = ...,
        parse_mode: str | None = ...,
        protect_content: bool = ...,
        message_thread_id: int | None = ...,
        disable_notification: bool = ...,
    ) -> dict[str, Any]: ...


@dataclass(frozen=True)
class OutgoingMessage:
    """One message to send. ``key`` identifies it to the caller (e.g. a reminder id); keys are
    unique within one :meth:`BulkSender.send`. With ``document`` (a file_id or HTTPS URL) the message
    is a document and ``text`` its caption."""

    key: str
    chat_id: int | str
    text: str
    reply_markup: dict[str, Any] | None = None
    parse_mode: str | None = None
    protect_content: bool = False
    disable_notification: bool = False
    message_thread_id: int | None = None
    document: str | None = None

    def __repr__(self) -> str:  # keep texts out of logs and tracebacks
        return f"OutgoingMessage(key={self.key!r}, chat_id=…, text=<{len(self.text)} chars>)"


class SendStatus(StrEnum):
    SENT = "sent"
    BLOCKED = "blocked"  # 403: mark the patient unreachable
    FAILED = "failed"  # 400, or retries exhausted: do not retry blindly
    DEFERRED = "deferred"  # not sent before the deadline: leave pending for the next run


@dataclass(frozen=True)
class Outcome:
    status: SendStatus
    message_id: int | None = None
    error: str | None = None  # Telegram's description (never contains the message text)
    attempts: int = 0


@dataclass
class SendReport:
    outcomes: dict[str, Outcome] = field(default_factory=dict)
    rate_limited: int = 0  # 429 answers received
    retries: int = 0  # re-sends after 429, 5xx or network errors
    elapsed: float = 0.0
    duplicate_keys: list[str] = field(default_factory=list)
    callback_errors: list[str] = field(default_factory=list)  # keys whose on_result raised

    def _keys(self, status: SendStatus) -> list[str]:
        return [k for k, o in self.outcomes.items() if o.status is status]

    @property
    def sent(self) -> dict[str, int]:
        """key -> message_id"""
        return {k: o.message_id or 0 for k, o in self.outcomes.items() if o.status is SendStatus.SENT}

    @property
    def blocked(self) -> list[str]:
        return self._keys(SendStatus.BLOCKED)

    @property
    def failed(self) -> dict[str, str]:
        """key -> reason"""
        return {k: o.error or "" for k, o in self.outcomes.items() if o.status is SendStatus.FAILED}

    @property
    def deferred(self) -> list[str]:
        return self._keys(SendStatus.DEFERRED)

    @property
    def rate(self) -> float:
        """Messages sent per second over the whole run."""
        return len(self.sent) / self.elapsed if self.elapsed > 0 else 0.0


OnResult = Callable[[str, Outcome], Awaitable[None]]
Clock = Callable[[], float]
Sleep = Callable[[float], Awaitable[None]]


class _Pacer:
    """A token bucket of capacity one on a fixed grid: at most one send per ``interval``, on average
    exactly ``1 / interval`` per second while busy, and a global pause for 429s."""

    def __init__(self, rate: float, clock: Clock, sleep: Sleep) -> None:
        self.interval = 1.0 / rate
        self._clock = clock
        self._sleep = sleep
        self._next = -float("inf")
        self.paused_until = -float("inf")

    def pause(self, until: float) -> None:
        self.paused_until = max(self.paused_until, until)

    def _slot(self, now: float) -> float:
        """The grid slot the next send may take (possibly in the past, when a little late)."""
        grid = self._next if now <= self._next + self.interval else now  # idle: restart the grid
        return max(grid, self.paused_until)

    async def acquire(self, cutoff: float) -> bool:
        """Wait for a slot; False (without taking one) if the slot comes after ``cutoff``."""
        while True:
            now = self._clock()
            slot = self._slot(now)
            if slot > cutoff:
                return False
            if slot <= now:
                self._next = slot + self.interval
                return True
            await self._sleep(slot - now)


@dataclass
class _Item:
    msg: OutgoingMessage
    attempts: int = 0  # requests made
    floods: int = 0  # 429s for this message
    errors: int = 0  # 5xx / network errors for this message


@dataclass
class _Chat:
    chat_id: int | str
    queue: deque[_Item] = field(default_factory=deque)
    ready_at: float = 0.0
    busy: bool = False


class BulkSender:
    """Send many messages within Telegram's limits; see the module docstring.

    ``global_rate`` messages per second at most (``headroom`` keeps the pace a few per cent under it
    so that network jitter cannot push a one-second window over); one message per chat per
    ``per_chat_interval`` (``per_group_interval`` for groups, negative chat ids); up to
    ``concurrency`` requests in flight; ``max_retries`` re-sends after 5xx / network errors (and as
    many after 429s before a message is deferred). ``clock`` is monotonic seconds and must agree
    with ``deadline``; ``sleep`` and ``rng`` are injectable for tests.
    """

    def __init__(
        self,
        client: BotApi,
        *,
        global_rate: float = 30.0,
        per_chat_interval: float = 1.0,
        per_group_interval: float = 3.0,
        max_retries: int = 5,
        concurrency: int = 16,
        headroom: float = 0.03,
        backoff_base: float = 0.5,
        backoff_max: float = 30.0,
        retry_maybe_delivered: bool = True,
        clock: Clock = time.monotonic,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        if global_rate <= 0 or concurrency < 1 or max_retries < 0 or not 0 <= headroom < 1:
            raise ValueError("invalid BulkSender settings")
        self.client = client
        self.global_rate = global_rate
        self.per_chat_interval = per_chat_interval
        self.per_group_interval = per_group_interval
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.headroom = headroom
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self.retry_maybe_delivered = retry_maybe_delivered
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()

    async def send(
        self,
        messages: Iterable[OutgoingMessage],
        *,
        deadline: float,
        on_result: OnResult | None = None,
    ) -> SendReport:
        """Send ``messages``; return when each has an outcome. ``deadline`` (monotonic seconds, per
        ``clock``) is when this call should be done: no send starts that would likely end after it
        (the longest recent request time is the estimate), and what is left is reported deferred.
        In-flight requests are awaited (at most the client's timeout past the last start)."""
        run = _Run(self, deadline, on_result)
        return await run.execute(messages)

    # helpers for _Run

    def _chat_interval(self, chat_id: int | str) -> float:
        base = self.per_group_interval if isinstance(chat_id, int) and chat_id < 0 else self.per_chat_interval
        return base * (1 + self.headroom)

    def _backoff(self, errors: int) -> float:
        ceiling = min(self.backoff_max, self.backoff_base * 2 ** (errors - 1))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)  # "equal jitter"


class _Run:
    """The state of one BulkSender.send() call."""

    def __init__(self, sender: BulkSender, deadline: float, on_result: OnResult | None) -> None:
        self.s = sender
        self.deadline = deadline
        self.on_result = on_result
        self.clock = sender._clock
        self.sleep = sender._sleep
        self.pacer = _Pacer(sender.global_rate * (1 - sender.headroom), sender._clock, sender._sleep)
        self.report = SendReport()
        self.chats: dict[int | str, _Chat] = {}
        self.heap: list[tuple[float, int, int | str]] = []  # (ready_at, seq, chat_id) of idle chats
        self.seq = 0
        self.in_flight: set[asyncio.Task[None]] = set()
        self.wake = asyncio.Event()
        self.latencies: deque[float] = deque(maxlen=32)

    # -------------------------------------------------------------------- scheduling

    def _push(self, chat: _Chat) -> None:
        if chat.queue and not chat.busy:
            self.seq += 1
            heapq.heappush(self.heap, (chat.ready_at, self.seq, chat.chat_id))

    def _latency(self) -> float:
        return max(self.latencies, default=0.0)

    async def execute(self, messages: Iterable[OutgoingMessage]) -> SendReport:
        started = self.clock()
        keys: set[str] = set()
        for msg in messages:
            if msg.key in keys:
                self.report.duplicate_keys.append(msg.key)
                continue
            keys.add(msg.key)
            chat = self.chats.setdefault(msg.chat_id, _Chat(msg.chat_id))
            chat.queue.append(_Item(msg))
        for chat in self.chats.values():
            self._push(chat)
        if self.report.duplicate_keys:
            log.warning("bulk send: %d duplicate keys skipped", len(self.report.duplicate_keys))
        try:
            await self._dispatch()
        finally:
            if self.in_flight:
                await asyncio.gather(*self.in_flight, return_exceptions=True)
            for chat in self.chats.values():
                while chat.queue:
                    item = chat.queue.popleft()
                    await self._finish(item, Outcome(SendStatus.DEFERRED, attempts=item.attempts))
            self.report.elapsed = self.clock() - started
        r = self.report
        log.info(
            "bulk send: %d sent, %d blocked, %d failed, %d deferred, %d rate-limited, %d retries in %.1f s",
            len(r.sent),
            len(r.blocked),
            len(r.failed),
            len(r.deferred),
            r.rate_limited,
            r.retries,
            r.elapsed,
        )
        return r

    async def _dispatch(self) -> None:
        semaphore = asyncio.Semaphore(self.s.concurrency)
        while True:
            if not self.heap:
                if not self.in_flight:
                    return
                self.wake.clear()
                await self.wake.wait()
                continue
            now = self.clock()
            cutoff = self.deadline - self._latency()
            ready_at = self.heap[0][0]
            if ready_at > now:
                if ready_at > cutoff:
                    if not self.in_flight:
                        return  # nothing can start in time any more
                    await self._wait_for_any()  # a result may make another chat ready sooner
                    continue
                await self._wait_until(ready_at)
                continue
            if now > cutoff:
                if self.in_flight:
                    await self._wait_for_any()
                    continue
                return
            await semaphore.acquire()
            if not await self.pacer.acquire(self.deadline - self._latency()):
                semaphore.release()
                if self.in_flight:  # a pause or backoff may end; in-flight results may change plans
                    await self._wait_for_any()
                    continue
                return
            if not self.heap or self.heap[0][0] > self.clock():
                # a 429 may have re-queued things while we waited for the slot; it is spent anyway
                semaphore.release()
                continue
            _, _, chat_id = heapq.heappop(self.heap)
            chat = self.chats[chat_id]
            item = chat.queue.popleft()
            chat.busy = True
            task = asyncio.create_task(self._send(chat, item, semaphore))
            self.in_flight.add(task)
            task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self.in_flight.discard(task)
        self.wake.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("bulk send task failed", exc_info=task.exception())

    async def _wait_for_any(self) -> None:
        self.wake.clear()
        await self.wake.wait()

    async def _wait_until(self, when: float) -> None:
        """Sleep until ``when`` or until an in-flight send finishes, whichever comes first."""
        delay = when - self.clock()
        if delay <= 0:
            return
        if not self.in_flight:
            await self.sleep(delay)
            return
        self.wake.clear()
        sleeper = asyncio.ensure_future(self.sleep(delay))
        waker = asyncio.ensure_future(self.wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for fut in (sleeper, waker):
                fut.cancel()

    # -------------------------------------------------------------------- one request

    async def _send(self, chat: _Chat, item: _Item, semaphore: asyncio.Semaphore) -> None:
        msg = item.msg
        item.attempts += 1
        if item.attempts > 1:
            self.report.retries += 1
        started = self.clock()
        outcome: Outcome | None = None
        requeue_at: float | None = None
        try:
            result = await self._request(msg)
        except RetryAfter as exc:
            self.report.rate_limited += 1
            item.floods += 1
            now = self.clock()
            self.pacer.pause(now + exc.retry_after)
            log.debug("bulk send: 429 for chat %s, pausing %.1f s", msg.chat_id, exc.retry_after)
            if item.floods > self.s.max_retries:
                outcome = Outcome(SendStatus.DEFERRED, error=exc.description, attempts=item.attempts)
            else:
                requeue_at = now + exc.retry_after
        except Forbidden as exc:
            outcome = Outcome(SendStatus.BLOCKED, error=exc.description, attempts=item.attempts)
        except BadRequest as exc:
            outcome = Outcome(SendStatus.FAILED, error=exc.description, attempts=item.attempts)
        except ServerError as exc:
            item.errors += 1
            maybe = isinstance(exc, NetworkError) and exc.maybe_delivered
            if maybe and not self.s.retry_maybe_delivered:
                outcome = Outcome(
                    SendStatus.FAILED,
                    error=f"{exc.description} (may have been delivered)",
                    attempts=item.attempts,
                )
            elif item.errors > self.s.max_retries:
                outcome = Outcome(SendStatus.FAILED, error=exc.description, attempts=item.attempts)
            else:
                requeue_at = self.clock() + self.s._backoff(item.errors)
        except BotApiError as exc:  # 401, 404, ...: nothing a retry fixes
            outcome = Outcome(SendStatus.FAILED, error=exc.description, attempts=item.attempts)
        else:
            self.latencies.append(self.clock() - started)
            message_id = result.get("message_id") if isinstance(result, dict) else None
            outcome = Outcome(SendStatus.SENT, message_id=message_id, attempts=item.attempts)
        finally:
            semaphore.release()

        if outcome is None:  # retry later, first in this chat's line
            chat.queue.appendleft(item)
            chat.ready_at = max(requeue_at or 0.0, started + self.s._chat_interval(chat.chat_id))
        else:
            chat.ready_at = started + self.s._chat_interval(chat.chat_id)
            if outcome.status is SendStatus.BLOCKED:
                log.debug("bulk send: chat %s blocked the bot", msg.chat_id)
                await self._finish(item, outcome)
                while chat.queue:  # the rest would be refused too
                    rest = chat.queue.popleft()
                    await self._finish(rest, Outcome(SendStatus.BLOCKED, error=outcome.error))
            else:
                await self._finish(item, outcome)
        chat.busy = False
        self._push(chat)

    async def _request(self, msg: OutgoingMessage) -> dict[str, Any]:
        if msg.document is not None:
            return await self.s.client.send_document(
                msg.chat_id,
                msg.document,
                caption=msg.text or None,
                reply_markup=msg.reply_markup,
                parse_mode=msg.parse_mode,
                protect_content=msg.protect_content,
                message_thread_id=msg.message_thread_id,
                disable_notification=msg.disable_notification,
            )
        return await self.s.client.send_message(
            msg.chat_id,
            msg.text,
            reply_markup=msg.reply_markup,
            parse_mode=msg.parse_mode,
            protect_content=msg.protect_content,
            message_thread_id=msg.message_thread_id,
            disable_notification=msg.disable_notification,
        )

    async def _finish(self, item: _Item, outcome: Outcome) -> None:
        key = item.msg.key
        self.report.outcomes[key] = outcome
        if outcome.status is SendStatus.FAILED:
            log.warning("bulk send: message %s failed: %s", key, outcome.error)
        if self.on_result is None:
            return
        try:
            await self.on_result(key, outcome)
        except Exception:
            log.exception("bulk send: on_result failed for %s", key)
            self.report.callback_errors.append(key)
