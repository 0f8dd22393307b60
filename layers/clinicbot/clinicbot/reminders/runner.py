"""One run of the reminders function: find what is due, send it once, within Telegram's limits.

::

    read the cursor item (one eventually consistent GetItem; another run holds the lock -> done)
    Query the due-time index, one hour bucket at a time, from the cursor up to now (due_at <= now)
    nothing due -> done, WITHOUT A WRITE (the cursor moves to this hour, conditionally, only when the hour
        changed: at most one write an hour when idle)
    lock the run (conditional write on the cursor item; its answer tells whether another run went in
        between the read and the lock -- then the index is queried again)
    BatchGet the patients' cards (language, settings, unreachable)          -- per 100 patients
    in chunks (claims of the next chunk overlap the sending of this one):
        claim each item: pending -> sending, with a lease           (conditional UpdateItem; the item
            keeps its due_at, so its index entry is updated in place: one index write, not two)
        medication: write the next occurrence of the course         (conditional PutItem)
        decide: skip (setting off, visit over, unreachable, erased), wait (quiet hours), or send;
        visits are checked against the MIS (one call per patient): cancelled -> cancelled, moved ->
        cancelled and re-planned, confirmed -> no Confirm button
        BulkSender (the one rate-limited sender), deadline = the Lambda's remaining time - a margin;
        each outcome is written as it comes (on_result): sent | blocked (card unreachable) |
        failed (retried later up to max_attempts) | deferred (pending again, due now); the card's
        last_reminder_at once per patient per run
    unlock, moving the cursor to the earliest bucket that may still hold due items (items left for the
        next run, claims lost or not finished, and items still under another claim's live lease)

Exactly once. A claim is a conditional write, so two runs (or a retried run) never both hold an item;
the lock only keeps overlapping runs from racing for the same items (an optimisation, not the guarantee);
an item is sent only by the holder of its claim and marked sent by a write conditioned on that claim.
A run that dies after claiming leaves items ``sending`` (lease_until = the lease end) in their hour's
bucket, and the cursor where it was (no unlock): the first run after the lease ends finds them on the
index and claims them again (never lost). A run never moves the cursor past a bucket holding an item it
could not finish or claim (a live lease: it is skipped, not claimed, and looked at again next run).
The one window where a message can go twice is between Telegram's answer and the "sent" write (the
Bot API has no idempotency key, so a re-claimed item cannot tell whether its send got through). It is
kept as narrow as it can be: each item is marked the moment its answer arrives, not at the end; sends
stop before the Lambda's deadline with a margin for those writes; the lease is longer than a run can
live, so a live run is never overtaken; and a request that timed out after reaching Telegram is not
re-sent (``resend_maybe_delivered``): it is marked sent, at most once.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from clinicbot.domain.patient import PatientCard
from clinicbot.i18n import Translator, pick_language
from clinicbot.mis.errors import MisError
from clinicbot.mis.models import Appointment, AppointmentStatus, PatientVisits
from clinicbot.reminders.config import ReminderConfig
from clinicbot.reminders.items import DueItem, Kind, Status, bucket_of, buckets_between
from clinicbot.reminders.medication import next_occurrence
from clinicbot.reminders.memos import Memos, load_memos
from clinicbot.reminders.planner import ReminderPlanner, medication_item
from clinicbot.reminders.store import CursorState, PatientDirectory, ReminderStore, RunLock
from clinicbot.reminders.survey import NoSurvey, SurveyHook
from clinicbot.reminders.texts import Reference, Rendered, render
from clinicbot.sending import BulkSender, Outcome, OutgoingMessage, SendStatus

__all__ = ["ReminderRunner", "RunReport"]

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
FIRST_LOOKBACK = timedelta(days=1)
MAX_LOOKBACK = timedelta(days=7)
WRITE_MARGIN = 2.0  # seconds kept after the last send for the last writes
REFERENCE_MAX_AGE = 3600.0


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass
class RunReport:
    """What one run did (ids and counts only: logs and metrics)."""

    run_id: str
    locked_out: bool = False
    buckets: int = 0
    due: int = 0
    claimed: int = 0
    lost_claims: int = 0
    left_for_next_run: int = 0
    sent: Counter[str] = field(default_factory=Counter)  # by kind
    skipped: Counter[str] = field(default_factory=Counter)  # by reason
    cancelled: int = 0
    waiting: int = 0  # quiet hours: pending until they end
    deferred: int = 0  # out of time: pending, due now
    failed: int = 0
    retry_later: int = 0
    blocked: int = 0
    unreachable_marked: int = 0
    cursor: str | None = None
    elapsed: float = 0.0

    @property
    def sent_total(self) -> int:
        return sum(self.sent.values())

    def as_log(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "locked_out": self.locked_out,
            "buckets": self.buckets,
            "due": self.due,
            "claimed": self.claimed,
            "lost_claims": self.lost_claims,
            "left_for_next_run": self.left_for_next_run,
            "sent": dict(self.sent),
            "skipped": dict(self.skipped),
            "cancelled": self.cancelled,
            "waiting": self.waiting,
            "deferred": self.deferred,
            "failed": self.failed,
            "retry_later": self.retry_later,
            "blocked": self.blocked,
            "cursor": self.cursor,
            "elapsed": round(self.elapsed, 3),
        }


@dataclass
class _Found:
    items: dict[tuple[int, str], DueItem] = field(default_factory=dict)  # due and claimable
    hold: str | None = None  # the earliest bucket with an item under another claim's live lease


@dataclass
class _RunState:
    """What one run tracks across its chunks."""

    held: dict[tuple[int, str], DueItem] = field(default_factory=dict)  # claimed, outcome not yet written
    lost: list[DueItem] = field(default_factory=list)  # claims that failed
    reminded: set[int] = field(default_factory=set)  # users whose card got last_reminder_at
    unreachable: set[int] = field(default_factory=set)


@dataclass
class _Prepared:
    messages: list[OutgoingMessage] = field(default_factory=list)
    held: dict[str, DueItem] = field(default_factory=dict)  # message key -> the item we hold


class ReminderRunner:
    """One object per cold start; :meth:`run` per invocation. See the module docstring."""

    def __init__(
        self,
        *,
        store: ReminderStore,
        directory: PatientDirectory,
        sender: BulkSender,
        mis: Any,
        config: ReminderConfig | None = None,
        planner: ReminderPlanner | None = None,
        survey: SurveyHook | None = None,
        memos: Memos | None = None,
        default_language: str = "ru",
        clock: Clock = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        verify_with_mis: bool = True,
        resend_maybe_delivered: bool = False,
        first_chunk: int = 100,
        chunk: int = 1000,
        threads: int = 8,
    ) -> None:
        self.store = store
        self.directory = directory
        self.sender = sender
        self.mis = mis
        self.config = config or ReminderConfig()
        self.planner = planner or ReminderPlanner(store, config=self.config, directory=directory)
        self.survey = survey or NoSurvey()
        self.memos = memos or load_memos()
        self.default_language = default_language
        self.clock = clock
        self.monotonic = monotonic
        self.verify_with_mis = verify_with_mis
        self.resend_maybe_delivered = resend_maybe_delivered
        self.first_chunk = first_chunk
        self.chunk = chunk
        self._threads = asyncio.Semaphore(threads) if threads else None
        self._threads_n = threads
        self._reference: Reference | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------ helpers
    async def _io(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """Run a (blocking) store call in a thread, a few at a time, so the sender keeps its pace."""
        assert self._threads is not None
        async with self._threads:
            return await asyncio.to_thread(fn, *args, **kwargs)

    async def _gather(self, calls: Iterable[Awaitable[Any]]) -> list[Any]:
        return list(await asyncio.gather(*calls))

    async def reference(self) -> Reference:
        if self._reference is None or self.monotonic() - self._reference.loaded_at > REFERENCE_MAX_AGE:
            try:
                self._reference = await Reference.load(self.mis)
            except MisError:
                if self._reference is None:
                    raise
                log.warning("MIS reference data could not be refreshed; using the cached copy")
        return self._reference

    def _capacity(self, deadline: float) -> int:
        """How many messages can still go out before the deadline at the sender's pace."""
        seconds = max(0.0, deadline - self.monotonic() - WRITE_MARGIN)
        rate = self.sender.global_rate * (1 - self.sender.headroom)
        return int(seconds * rate)

    # ------------------------------------------------------------------ the run
    async def run(self, *, deadline: float) -> RunReport:
        """``deadline``: monotonic seconds by which the run must be done (the Lambda's remaining time
        minus a margin)."""
        started = self.monotonic()
        self._loop = asyncio.get_running_loop()
        self._threads = asyncio.Semaphore(self._threads_n)  # bound to this invocation's loop
        now = self.clock()
        report = RunReport(run_id=secrets.token_hex(6))
        state: CursorState = await self._io(self.store.read_cursor)
        if state.locked_until is not None and state.locked_until > now:
            return self._locked_out(report, started)
        first = _first_bucket(state.cursor, now)
        found = await self._due(first, now, report)
        if not found.items:
            # nothing to claim: no lock, and a write only when the hour changed
            report.cursor = state.cursor
            target = _earliest(found.hold, bucket_of(now))
            if state.cursor is None or target > state.cursor:
                advanced = await self._io(self.store.advance_cursor, old=state.cursor, new=target, now=now)
                report.cursor = target if advanced else state.cursor
            report.elapsed = self.monotonic() - started
            log.info("reminders run: nothing due", extra=report.as_log())
            return report
        lock: RunLock | None = await self._io(
            self.store.lock, run_id=report.run_id, now=now, until=now + self.config.lease
        )
        if lock is None:
            return self._locked_out(report, started)
        cursor = first  # on a failure, look again next time
        try:
            locked_first = _first_bucket(lock.cursor, now)
            if lock.version != state.version + 1 or locked_first < first:
                # another run went in between the read and the lock (or the read was stale): query again
                first = cursor = min(first, locked_first)
                found = await self._due(first, now, report)
            cursor = await self._run_locked(found.items, now, deadline, report)
            cursor = _earliest(found.hold, cursor)
        finally:
            report.cursor = cursor
            await self._io(self.store.unlock, lock, cursor=cursor)
            report.elapsed = self.monotonic() - started
            log.info("reminders run", extra=report.as_log())
        return report

    def _locked_out(self, report: RunReport, started: float) -> RunReport:
        report.locked_out = True
        report.elapsed = self.monotonic() - started
        log.info("another run holds the lock; nothing to do", extra={"run_id": report.run_id})
        return report

    async def _due(self, first: str, now: datetime, report: RunReport) -> _Found:
        """What is due from bucket ``first`` up to now (one Query of the due-time index per hour bucket);
        items under a live claim are not due, but hold the cursor at their bucket."""
        buckets = buckets_between(first, now)
        report.buckets = len(buckets)
        found = _Found()
        for bucket in buckets:
            for item in await self._io(lambda b=bucket: list(self.store.due(b, now))):
                if _claimable(item, now):
                    found.items[(item.user_id, item.item_id)] = item
                else:
                    found.hold = _earliest(found.hold, bucket_of(item.due_at))
        return found

    async def _run_locked(
        self, found: dict[tuple[int, str], DueItem], now: datetime, deadline: float, report: RunReport
    ) -> str:
        due = sorted(found.values(), key=lambda i: (i.due_at, i.user_id, i.item_id))
        report.due = len(due)
        if not due:
            return bucket_of(now)
        run = _RunState()

        capacity = self._capacity(deadline)
        taken, left = _take_whole_users(due, capacity)
        report.left_for_next_run = len(left)
        cursor = min((bucket_of(i.due_at) for i in left), default=bucket_of(now))

        cards: dict[int, PatientCard] = await self._io(self.directory.cards, {i.user_id for i in taken})
        chunks = _chunks(taken, self.first_chunk, self.chunk)
        next_chunk: asyncio.Task[_Prepared] | None = asyncio.create_task(
            self._prepare(chunks[0], cards, now, report, run)
        )
        index = 0
        while next_chunk is not None:
            prepared = await next_chunk
            index += 1
            next_chunk = None
            if index < len(chunks) and self._capacity(deadline) > len(prepared.messages):
                next_chunk = asyncio.create_task(
                    self._prepare(chunks[index], cards, self.clock(), report, run)
                )
            await self._send(prepared, deadline, report, run)
            if next_chunk is None and index < len(chunks):
                rest = [i for c in chunks[index:] for i in c]
                report.left_for_next_run += len(rest)
                cursor = min([cursor, *(bucket_of(i.due_at) for i in rest)])
        # claims lost (someone else holds the item, or it changed) or not finished (an error): their
        # bucket is looked at again by the next run
        for item in (*run.lost, *run.held.values()):
            cursor = min(cursor, bucket_of(item.due_at))
        return cursor

    # ------------------------------------------------------------------ prepare a chunk
    async def _prepare(
        self,
        items: Sequence[DueItem],
        cards: dict[int, PatientCard],
        now: datetime,
        report: RunReport,
        run: _RunState,
    ) -> _Prepared:
        reference = await self.reference()  # before claiming: an MIS that is down claims nothing
        lease_until = now + self.config.lease
        claimed = await self._gather(
            self._io(self.store.claim, i, now=now, lease_until=lease_until, lease_id=report.run_id)
            for i in items
        )
        held = [c for c in claimed if c is not None]
        run.lost += [i for i, c in zip(items, claimed, strict=True) if c is None]
        run.held.update(((c.user_id, c.item_id), c) for c in held)
        report.claimed += len(held)
        report.lost_claims += len(items) - len(held)
        # a course goes on whatever happens to this occurrence: write the next one now
        await self._gather(self._io(self._chain, i, now) for i in held if i.kind is Kind.MED)

        visits = await self._visits(held, cards, now) if self.verify_with_mis else {}
        # deciding and rendering a thousand messages is CPU work: off the loop, so the sender keeps its pace
        prepared, decisions = await asyncio.to_thread(self._compose, held, cards, reference, now, visits)
        for item, decision in decisions:
            done = await self._io(self._apply, item, decision, now)
            run.held.pop((item.user_id, item.item_id), None)
            if done == "waiting":
                report.waiting += 1
            elif done == "cancelled":
                report.cancelled += 1
            elif done == "skipped":
                report.skipped[decision[1]] += 1
        return prepared

    def _compose(
        self,
        held: Sequence[DueItem],
        cards: dict[int, PatientCard],
        reference: Reference,
        now: datetime,
        visits: dict[str, PatientVisits | None],
    ) -> tuple[_Prepared, list[tuple[DueItem, tuple[str, Any]]]]:
        prepared = _Prepared()
        decisions: list[tuple[DueItem, tuple[str, Any]]] = []
        for item in held:
            card = cards.get(item.user_id)
            decision = self._decide(item, card, now, visits)
            message: OutgoingMessage | None = None
            if decision is None:
                assert card is not None
                message = self._message(item, card, reference, now, visits)
                if message is None:
                    decision = ("skip", "no-survey" if item.kind is Kind.SURVEY else "nothing-to-say")
            if decision is not None:
                decisions.append((item, decision))
                continue
            assert message is not None
            prepared.messages.append(message)
            prepared.held[message.key] = item
        return prepared, decisions

    def _chain(self, item: DueItem, now: datetime) -> None:
        series = item.series or {}
        after = max(item.planned_at, now - self.config.med_late_limit)
        following = next_occurrence(series, after)
        if following is not None:
            upcoming = medication_item(item.user_id, item.patient_id, series, following)
            # never into an hour bucket the cursor may have passed (an occurrence missed by an outage)
            upcoming.due_at = max(following, now)
            self.store.create(upcoming)

    async def _visits(
        self, items: Sequence[DueItem], cards: dict[int, PatientCard], now: datetime
    ) -> dict[str, PatientVisits | None]:
        """The MIS's view of each patient with visit items in the chunk (None: the MIS did not answer)."""
        patients = {i.patient_id for i in items if i.kind is not Kind.MED and i.patient_id}
        out: dict[str, PatientVisits | None] = {}
        semaphore = asyncio.Semaphore(8)

        async def one(patient_id: str) -> None:
            async with semaphore:
                try:
                    out[patient_id] = await self.mis.visits(patient_id)
                except MisError:
                    log.warning(
                        "MIS did not answer; reminders go out unverified", extra={"patient_id": patient_id}
                    )
                    out[patient_id] = None

        await asyncio.gather(*(one(p) for p in patients))
        return out

    def _decide(
        self,
        item: DueItem,
        card: PatientCard | None,
        now: datetime,
        visits: dict[str, PatientVisits | None],
    ) -> tuple[str, Any] | None:
        """None: send it. Otherwise ``("skip", reason)``, ``("cancel", reason)`` or ``("wait", until)``."""
        if card is None or not card.has_consent:
            return ("skip", "no-card")
        if card.unreachable_at is not None:
            return ("skip", "unreachable")
        if item.kind is not Kind.MED and item.patient_id and card.patient_id != item.patient_id:
            return ("skip", "relinked")  # this Telegram user is now another MIS patient
        if item.setting in set(card.reminders_off):
            return ("skip", "off")
        tz = ZoneInfo(item.tz)
        before_visit = item.kind in (Kind.VISIT, Kind.MEMO_BEFORE)
        if before_visit and item.start is not None and item.start <= now:
            return ("skip", "late")
        if item.kind is Kind.MED:
            if now - item.planned_at > self.config.med_late_limit:
                return ("skip", "late")
        elif self.config.quiet.contains(now, tz):
            until = self.config.quiet.end_after(now, tz)
            if before_visit and item.start is not None and until >= item.start:
                return ("skip", "quiet")
            return ("wait", until)
        if item.kind is not Kind.MED and item.patient_id and item.patient_id in visits:
            return self._check_visit(item, visits[item.patient_id], now)
        return None

    def _check_visit(
        self, item: DueItem, visits: PatientVisits | None, now: datetime
    ) -> tuple[str, Any] | None:
        if visits is None:
            return None  # the MIS is down: better a reminder than none
        mine = [a for a in (*visits.upcoming, *visits.past) if a.id == item.appointment_id]
        if item.kind in (Kind.VISIT, Kind.MEMO_BEFORE):
            current = next((a for a in visits.upcoming if a.id == item.appointment_id), None)
            if current is None or not current.is_active:
                return ("cancel", "gone")
            if current.start != item.start:
                return ("cancel", "moved")
            return None
        if any(a.status in (AppointmentStatus.CANCELLED, AppointmentStatus.NOSHOW) for a in mine):
            return ("skip", "not-visited")
        return None

    def _message(
        self,
        item: DueItem,
        card: PatientCard,
        reference: Reference,
        now: datetime,
        visits: dict[str, PatientVisits | None],
    ) -> OutgoingMessage | None:
        t = Translator(pick_language(card.language, None, self.default_language))  # type: ignore[arg-type]
        key = f"{item.user_id}/{item.item_id}"
        if item.kind is Kind.SURVEY:
            survey = self.survey.message(item, card, t)
            if survey is None:
                return None
            rendered = Rendered(survey.text, survey.reply_markup)
        else:
            status = _status_of(item, visits)
            found = render(item, t, reference, self.config, self.memos, now=now, status=status)
            if found is None:
                return None
            rendered = found
        return OutgoingMessage(
            key=key,
            chat_id=item.user_id,
            text=rendered.text,
            reply_markup=rendered.reply_markup,
            parse_mode="HTML",
        )

    def _apply(self, item: DueItem, decision: tuple[str, Any], now: datetime) -> str | None:
        """Carry out a decision on an item we hold; what happened (None: we had lost it)."""
        verb, arg = decision
        lease = item.lease_id or ""
        if verb == "wait":
            return (
                "waiting"
                if self.store.finish(item, lease_id=lease, status=Status.PENDING, due_at=arg)
                else None
            )
        if verb == "cancel":
            done = self.store.finish(item, lease_id=lease, status=Status.CANCELLED, reason=arg)
            if arg == "moved" and item.patient_id:
                self._replan(item, now)
            return "cancelled" if done else None
        return (
            "skipped" if self.store.finish(item, lease_id=lease, status=Status.SKIPPED, reason=arg) else None
        )

    def _replan(self, item: DueItem, now: datetime) -> None:
        """The visit moved in the MIS and the sync has not caught up: plan the new time's items now."""
        assert self._loop is not None
        try:
            visits = asyncio.run_coroutine_threadsafe(self.mis.visits(item.patient_id), self._loop).result(30)
        except Exception:
            log.exception("could not re-plan a moved visit; the MIS sync will")
            return
        assert item.patient_id is not None
        self.planner.sync_patient_appointments(
            telegram_user_id=item.user_id,
            patient_id=item.patient_id,
            appointments=list(visits.upcoming),
            now=now,
        )

    # ------------------------------------------------------------------ send a chunk
    async def _send(self, prepared: _Prepared, deadline: float, report: RunReport, run: _RunState) -> None:
        if not prepared.messages:
            return
        reminded = run.reminded  # once per patient per run (the card's last_reminder_at)
        unreachable = run.unreachable

        async def on_result(key: str, outcome: Outcome) -> None:
            item = prepared.held[key]
            first_sent = outcome.status is SendStatus.SENT and item.user_id not in reminded
            first_blocked = outcome.status is SendStatus.BLOCKED and item.user_id not in unreachable
            if first_sent:
                reminded.add(item.user_id)
            if first_blocked:
                unreachable.add(item.user_id)
                report.unreachable_marked += 1
            done = await self._io(self._record, item, outcome, first_sent, first_blocked)
            run.held.pop((item.user_id, item.item_id), None)
            if done == "sent":
                report.sent[str(item.kind)] += 1
            elif done is not None:
                setattr(report, done, getattr(report, done) + 1)

        await self.sender.send(prepared.messages, deadline=deadline, on_result=on_result)

    def _record(self, item: DueItem, outcome: Outcome, first_sent: bool, first_blocked: bool) -> str | None:
        """Write a send's outcome on the item we hold (and on the card); the report field to count."""
        now = self.clock()
        lease = item.lease_id or ""
        status = outcome.status
        maybe = status is SendStatus.FAILED and "may have been delivered" in (outcome.error or "")
        if status is SendStatus.SENT or (maybe and not self.resend_maybe_delivered):
            reason = "maybe-delivered" if maybe else None
            done = self.store.finish(
                item,
                lease_id=lease,
                status=Status.SENT,
                sent_at=now,
                message_id=outcome.message_id,
                reason=reason,
            )
            if first_sent:
                self.directory.note_reminded(item.user_id, now)
            if not done:
                log.error(
                    "a sent reminder could not be marked sent (lease lost)", extra={"item": item.item_id}
                )
                return None
            return "sent"
        if status is SendStatus.BLOCKED:
            if first_blocked:
                self.directory.mark_unreachable(item.user_id, now)
            done = self.store.finish(item, lease_id=lease, status=Status.BLOCKED, reason="403")
            return "blocked" if done else None
        if status is SendStatus.FAILED:
            if item.attempts >= self.config.max_attempts:
                reason = (outcome.error or "")[:200]
                done = self.store.finish(item, lease_id=lease, status=Status.FAILED, reason=reason)
                return "failed" if done else None
            later = now + self.config.retry_delay
            done = self.store.finish(item, lease_id=lease, status=Status.PENDING, due_at=later)
            return "retry_later" if done else None
        # DEFERRED: out of time; pending again, due now (its bucket is the current hour)
        done = self.store.finish(item, lease_id=lease, status=Status.PENDING, due_at=now)
        return "deferred" if done else None


def _first_bucket(cursor: str | None, now: datetime) -> str:
    """The first hour bucket a run queries: the cursor, or a day back on the very first run, never more
    than a week back (older items are left to expire)."""
    first = cursor or bucket_of(now - FIRST_LOOKBACK)
    if first < bucket_of(now - MAX_LOOKBACK):
        log.warning("the cursor is more than a week old; older items are left to expire")
        first = bucket_of(now - MAX_LOOKBACK)
    return first


def _claimable(item: DueItem, now: datetime) -> bool:
    """Pending, or sending under a lease that is over (the store's claim condition, seen from the index)."""
    if item.status is Status.SENDING:
        return item.lease_until is None or item.lease_until <= now
    return True


def _earliest(bucket: str | None, other: str) -> str:
    return other if bucket is None else min(bucket, other)


def _status_of(item: DueItem, visits: dict[str, PatientVisits | None]) -> AppointmentStatus | None:
    found = visits.get(item.patient_id or "")
    if not found:
        return None
    appointment: Appointment | None = next((a for a in found.upcoming if a.id == item.appointment_id), None)
    return appointment.status if appointment else None


def _take_whole_users(items: Sequence[DueItem], capacity: int) -> tuple[list[DueItem], list[DueItem]]:
    """The earliest items up to ``capacity``, never splitting one patient's items across runs."""
    if len(items) <= capacity:
        return list(items), []
    taken: list[DueItem] = []
    users: set[int] = set()
    for item in items:
        if item.user_id in users or len(taken) < capacity:
            users.add(item.user_id)
            taken.append(item)
    ids = {(i.user_id, i.item_id) for i in taken}
    return taken, [i for i in items if (i.user_id, i.item_id) not in ids]


def _chunks(items: Sequence[DueItem], first: int, size: int) -> list[list[DueItem]]:
    """Chunks of whole patients (so the sender's one-message-per-chat spacing holds across chunks)."""
    by_user: dict[int, list[DueItem]] = {}
    for item in items:
        by_user.setdefault(item.user_id, []).append(item)
    chunks: list[list[DueItem]] = [[]]
    limit = first
    for group in by_user.values():
        if chunks[-1] and len(chunks[-1]) + len(group) > limit:
            chunks.append([])
            limit = size
        chunks[-1].extend(group)
    return chunks
