"""The visits pass of ``mis_sync``: linked patients' upcoming appointments (and medication courses) from the
MIS, handed to the reminders planner -- including visits booked by phone or at the desk, which the bot never
saw. No boto3, pynamodb or aiogram here: the patients, the cursor and the planner come in as ports.

Work per run is bounded (``per_run`` patients and the Lambda's time budget); the pass continues next run
from a cursor. A failure is never read as "no appointments": a patient whose MIS call failed is simply not
handed to the planner this time (an empty list would cancel their reminders). An outage stops the pass and
keeps the cursor where the current page started, so the page is done again next run (the planner's sync is
idempotent); nothing of that page is planned.

A cycle is one walk over all linked patients, possibly over several runs. The cursor item records when the
cycle in progress started and, once it completed, when the last complete cycle started: the job starts the
next cycle only ``visits_every_minutes`` after that (see ``clinicbot.schedule.job``). Only reaching the end
of the patients completes a cycle; an outage or the time budget never does.

Per page: the MIS calls (a few at once), then one batch read of the patient cards the planner needs (those
with upcoming visits: their own lead times), then the planner, patient by patient.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
import traceback
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from clinicbot.mis.errors import MisError, MisUnavailable, NotFound, Unsupported
from clinicbot.mis.models import Appointment, Prescription
from clinicbot.mis.port import Capability, MisPort

__all__ = [
    "CursorStore",
    "LinkedPatient",
    "LinkedPatients",
    "PlannerPort",
    "VisitsCursor",
    "VisitsResult",
    "safe_trace",
    "sync_visits",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

MIN_PAGE_SECONDS = 2.0
"""A page is not started with less time than this left (the MIS calls in it are cut at the deadline)."""


@dataclass(frozen=True)
class LinkedPatient:
    telegram_user_id: int
    patient_id: str


class LinkedPatients(Protocol):
    def page(
        self, cursor: dict[str, Any] | None, limit: int
    ) -> tuple[list[LinkedPatient], dict[str, Any] | None]: ...


@dataclass(frozen=True)
class VisitsCursor:
    """Where the visits pass stands."""

    cursor: dict[str, Any] | None = None
    """Where the cycle in progress stopped (a page key), or None between cycles (the next one starts over)."""
    cycle_started_at: datetime | None = None
    """Mid-cycle: when the cycle in progress started. Between cycles: when the last COMPLETE cycle started
    (None: none completed yet)."""


class CursorStore(Protocol):
    def load_cursor(self) -> VisitsCursor: ...

    def save_cursor(
        self, cursor: dict[str, Any] | None, *, now: datetime, cycle_started_at: datetime | None
    ) -> None: ...


class PlannerPort(Protocol):
    """What ``clinicbot.reminders.planner.ReminderPlanner`` offers the sync (its methods may be sync or async).

    Used when the planner has them: ``sync_patient(telegram_user_id=, patient_id=, appointments=,
    prescriptions=, now=)`` (both kinds from one read; ``prescriptions`` None when the MIS has none) and
    ``prefetch_cards(user_ids)`` (the cards of a page in one batch read)."""

    def sync_patient_appointments(
        self, *, telegram_user_id: int, patient_id: str, appointments: list[Appointment], now: datetime
    ) -> Any: ...

    def sync_patient_prescriptions(
        self, *, telegram_user_id: int, patient_id: str, prescriptions: list[Prescription], now: datetime
    ) -> Any: ...


@dataclass
class VisitsResult:
    patients: int = 0
    """Linked patients handed to the planner."""
    appointments: int = 0
    prescriptions: int = 0
    skipped: int = 0
    """Patients the MIS does not know (any more)."""
    failed: int = 0
    """Patients whose MIS call or planner call failed (not an outage)."""
    outage: bool = False
    cycle_complete: bool = False
    """The pass reached the end of the linked patients (the next run starts over)."""
    stopped_by_budget: bool = False
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def safe_trace(exc: BaseException) -> str:
    """Where an exception came from -- its class and the code frames -- without its message, which may
    quote data (a validation error quotes the input)."""
    frames = traceback.format_tb(exc.__traceback__)[-4:]
    return type(exc).__name__ + " at\n" + "".join(frames)


class _Outage(Exception):
    pass


class _OutOfTime(Exception):
    pass


@dataclass
class _Fetched:
    """One patient's answer from the MIS, waiting for the planner."""

    patient: LinkedPatient
    appointments: list[Appointment]
    prescriptions: list[Prescription] | None


async def _maybe_await(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


async def sync_visits(
    mis: MisPort,
    patients: LinkedPatients,
    cursors: CursorStore,
    planner: PlannerPort,
    *,
    clock: Callable[[], datetime],
    per_run: int = 200,
    page_size: int = 50,
    concurrency: int = 4,
    call_timeout: float = 20.0,
    deadline: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
    min_page_seconds: float = MIN_PAGE_SECONDS,
    state: VisitsCursor | None = None,
    track_cycles: bool = True,
) -> VisitsResult:
    """One run's share of the cycle. ``state``: the cursor item if the caller read it already.
    ``track_cycles``: record a completed cycle even when the cursor did not move (a cycle within one run)."""
    result = VisitsResult()
    if state is None:
        state = cursors.load_cursor()
    start_cursor = state.cursor
    cycle_started = (state.cycle_started_at if start_cursor is not None else None) or clock()
    cursor = start_cursor
    with_prescriptions = Capability.PRESCRIPTIONS in mis.capabilities
    gate = asyncio.Semaphore(max(1, concurrency))
    sync_patient = getattr(planner, "sync_patient", None)
    prefetch_cards = getattr(planner, "prefetch_cards", None)

    async def call(coro: Awaitable[T]) -> T:
        left = call_timeout if deadline is None else deadline - monotonic()
        timeout = max(0.001, min(call_timeout, left))
        try:
            return await asyncio.wait_for(coro, timeout)
        except TimeoutError as exc:
            if left < call_timeout:
                raise _OutOfTime() from exc  # our budget ran out, not the MIS's patience
            raise _Outage(type(exc).__name__) from exc
        except MisUnavailable as exc:
            raise _Outage(type(exc).__name__) from exc

    async def fetch(patient: LinkedPatient) -> _Fetched | None:
        async with gate:
            try:
                visits = await call(mis.visits(patient.patient_id))
                prescriptions: list[Prescription] | None = None
                if with_prescriptions:
                    try:
                        prescriptions = list(await call(mis.prescriptions(patient.patient_id)))
                    except Unsupported:
                        prescriptions = None
            except (_Outage, _OutOfTime):
                raise
            except NotFound:
                result.skipped += 1
                log.info("visits: patient unknown to the MIS", extra={"patient_id": patient.patient_id})
                return None
            except Exception as exc:
                result.failed += 1
                log.warning(
                    "visits: MIS call failed",
                    extra={"patient_id": patient.patient_id, "error": _describe(exc)},
                )
                return None
            return _Fetched(patient, list(visits.upcoming), prescriptions)

    async def plan(found: _Fetched, now: datetime) -> None:
        patient = found.patient
        try:
            if sync_patient is not None:
                await _maybe_await(
                    sync_patient(
                        telegram_user_id=patient.telegram_user_id,
                        patient_id=patient.patient_id,
                        appointments=found.appointments,
                        prescriptions=found.prescriptions,
                        now=now,
                    )
                )
            else:
                await _maybe_await(
                    planner.sync_patient_appointments(
                        telegram_user_id=patient.telegram_user_id,
                        patient_id=patient.patient_id,
                        appointments=found.appointments,
                        now=now,
                    )
                )
                if found.prescriptions is not None:
                    await _maybe_await(
                        planner.sync_patient_prescriptions(
                            telegram_user_id=patient.telegram_user_id,
                            patient_id=patient.patient_id,
                            prescriptions=found.prescriptions,
                            now=now,
                        )
                    )
        except Exception as exc:
            result.failed += 1
            log.error(
                "visits: planner failed",
                extra={"patient_id": patient.patient_id, "error": safe_trace(exc)},
            )
            return
        result.patients += 1
        result.appointments += len(found.appointments)
        result.prescriptions += len(found.prescriptions or ())

    done = 0
    while done < per_run:
        if deadline is not None and deadline - monotonic() < min_page_seconds:
            result.stopped_by_budget = True
            break
        page, next_cursor = patients.page(cursor, min(page_size, per_run - done))
        outcomes = await asyncio.gather(*(fetch(p) for p in page), return_exceptions=True)
        for outcome in outcomes:
            if isinstance(outcome, BaseException) and not isinstance(outcome, Exception):
                raise outcome
        outages = [o for o in outcomes if isinstance(o, _Outage)]
        unexpected = [
            o for o in outcomes if isinstance(o, Exception) and not isinstance(o, _Outage | _OutOfTime)
        ]
        if outages:
            result.outage = True
            result.error = f"MIS outage during the visits pass ({outages[0]})"
            break  # the cursor stays where this page started; nothing of it is planned
        if any(isinstance(o, _OutOfTime) for o in outcomes):
            result.stopped_by_budget = True
            break  # the same: this page is done again next run
        if unexpected:
            raise unexpected[0]
        fetched = [o for o in outcomes if isinstance(o, _Fetched)]
        now = clock()
        if prefetch_cards is not None:
            wanted = [
                f.patient.telegram_user_id
                for f in fetched
                if any(a.is_active and a.start > now for a in f.appointments)
            ]
            if wanted:
                try:
                    await _maybe_await(prefetch_cards(wanted))
                except Exception as exc:  # the planner reads each card itself then
                    log.warning("visits: cards not read ahead", extra={"error": type(exc).__name__})
        for found in fetched:
            await plan(found, now)
        done += len(page)
        cursor = next_cursor
        if cursor is None:
            result.cycle_complete = True
            break
    if cursor != start_cursor or (track_cycles and result.cycle_complete):
        # mid-cycle: when this cycle started; at its end: when the cycle just completed started
        cursors.save_cursor(cursor, now=clock(), cycle_started_at=cycle_started)
    return result


def _describe(exc: BaseException) -> str:
    if isinstance(exc, MisError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__
