"""One run of ``mis_sync``: the schedule into the cache, then linked patients' visits to the reminders planner.

Called by ``functions/mis_sync/app.py`` once per scheduled event. Never raises for what can go wrong out
there (an MIS outage, a partial answer, DynamoDB refusing a write): it returns a ``RunResult`` whose ``ok``
the handler turns into the ``SyncFailed`` metric (and the alarm). A raised error would only make Lambda
retry an asynchronous invocation against an MIS that is down; the next scheduled run is the retry.

No aiogram here (its import alone costs seconds of cold start); the MIS adapter is built on first use.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from clinicbot.mis.models import Branch
from clinicbot.mis.port import MisPort
from clinicbot.schedule.index import INDEX_VERSION, IndexEntry
from clinicbot.schedule.sync import (
    ScheduleCache,
    Snapshot,
    SyncFailure,
    SyncRead,
    SyncState,
    desired_days,
    fetch_snapshot,
    plan_indexed,
    record_entry,
    ref_hash,
    reference_records,
)
from clinicbot.schedule.visits import (
    CursorStore,
    LinkedPatients,
    PlannerPort,
    VisitsCursor,
    VisitsResult,
    safe_trace,
    sync_visits,
)

__all__ = ["RunResult", "ScheduleResult", "SyncJob", "SyncSettings"]

log = logging.getLogger(__name__)


def utc_now() -> datetime:
    return datetime.now(UTC)


class SyncSettings(BaseSettings):
    """``CLINICBOT_SYNC_*`` variables (``SyncDays`` of the template is ``CLINICBOT_SYNC_DAYS``)."""

    model_config = SettingsConfigDict(env_prefix="CLINICBOT_SYNC_", extra="ignore", frozen=True)

    days: int = Field(default=30, ge=1, le=120)
    """Today and this many days ahead (whole branch-local days)."""
    concurrency: int = Field(default=8, ge=1, le=64)
    """MIS calls in flight at once (one free-slots call per doctor)."""
    call_timeout_seconds: float = Field(default=20.0, gt=0, le=300)
    patients_per_run: int = Field(default=200, ge=0, le=100_000)
    visits_every_minutes: int = Field(default=180, ge=0, le=7 * 24 * 60)
    """A cycle of the visits pass (every linked patient, over as many runs as it takes at
    ``patients_per_run``) starts at most this often; runs in between skip the pass (one small read). 0: a
    cycle starts whenever the last one ended, as in every run. Visits booked through the bot are planned
    when booked; this pass catches those booked by phone or at the desk, and cancellations."""
    page_size: int = Field(default=50, ge=1, le=1000)
    reserve_seconds: float = Field(default=5.0, ge=0, le=60)
    """Time kept back from the Lambda's budget for the final writes."""


@dataclass
class ScheduleResult:
    ok: bool = False
    failure: str | None = None
    """``outage`` | ``partial`` | ``budget`` | ``error`` (a failure on our side, e.g. DynamoDB)."""
    error: str | None = None
    doctors: int = 0
    days: int = 0
    slots: int = 0
    days_written: int = 0
    days_deleted: int = 0
    days_unchanged: int = 0
    refs_written: int = 0
    refs_deleted: int = 0
    batch_requests: int = 0
    days_read_for: int = 0
    """Doctors whose cached day items were read (their day index was missing or not trusted)."""
    indexes_written: int = 0

    @property
    def items_written(self) -> int:
        return self.days_written + self.days_deleted + self.refs_written + self.refs_deleted


@dataclass
class RunResult:
    schedule: ScheduleResult
    visits: VisitsResult | None = None
    visits_skipped_reason: str | None = None
    duration_ms: int = 0
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        visits_ok = self.visits is None or (not self.visits.outage and self.visits.failed == 0)
        return self.schedule.ok and visits_ok

    def as_dict(self) -> dict[str, Any]:
        schedule = asdict(self.schedule)
        schedule["items_written"] = self.schedule.items_written
        return {
            "ok": self.ok,
            "schedule": schedule,
            "visits": self.visits.as_dict() if self.visits is not None else None,
            "visits_skipped_reason": self.visits_skipped_reason,
            "duration_ms": self.duration_ms,
        }


class SyncJob:
    def __init__(
        self,
        *,
        mis: MisPort,
        cache: ScheduleCache,
        settings: SyncSettings | None = None,
        patients: LinkedPatients | None = None,
        cursors: CursorStore | None = None,
        planner_factory: Callable[[Sequence[Branch]], PlannerPort] | None = None,
        clock: Callable[[], datetime] = utc_now,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.mis = mis
        self.cache = cache
        self.settings = settings or SyncSettings()
        self.patients = patients
        self.cursors = cursors
        self.planner_factory = planner_factory
        self._branches: tuple[Branch, ...] | None = None
        self._cursor: VisitsCursor | None = None
        self.clock = clock
        self.monotonic = monotonic
        self._loop: asyncio.AbstractEventLoop | None = None

    # ------------------------------------------------------------------------------- entry points
    def handle(self, remaining_seconds: float) -> RunResult:
        """Run once on this job's own event loop, kept across warm invocations (an MIS adapter's HTTP
        session is bound to the loop it was opened on)."""
        if self._loop is None or self._loop.is_closed():
            self._loop = asyncio.new_event_loop()
        return self._loop.run_until_complete(self.run(remaining_seconds=remaining_seconds))

    async def run(self, *, remaining_seconds: float) -> RunResult:
        started = self.monotonic()
        deadline = started + max(0.0, remaining_seconds - self.settings.reserve_seconds)
        self._branches = None
        self._cursor = None
        result = RunResult(schedule=await self.sync_schedule(deadline))
        if result.schedule.failure in ("outage", "budget"):
            result.visits_skipped_reason = f"schedule sync: {result.schedule.failure}"
        elif self.planner_factory is None or self.patients is None or self.cursors is None:
            result.visits_skipped_reason = "no reminders planner in this build"
        elif self.settings.patients_per_run == 0:
            result.visits_skipped_reason = "CLINICBOT_SYNC_PATIENTS_PER_RUN is 0"
        else:
            try:
                # Read with the sync state when the cache is also the cursor store (one Query for both).
                state = self._cursor if self._cursor is not None else self.cursors.load_cursor()
            except Exception as exc:
                log.error("visits pass: the cursor could not be read", extra={"error": safe_trace(exc)})
                result.visits = VisitsResult(failed=1, error=f"cursor: {type(exc).__name__}")
            else:
                due_at = self.next_cycle_at(state)
                if due_at is not None and self.clock() < due_at:
                    result.visits_skipped_reason = f"not due until {due_at.isoformat()}"
                else:
                    result.visits = await self.sync_visits(deadline, state)
        result.duration_ms = int((self.monotonic() - started) * 1000)
        return result

    # ---------------------------------------------------------------------------------- schedule
    async def sync_schedule(self, deadline: float) -> ScheduleResult:
        result = ScheduleResult()
        try:
            snapshot = await fetch_snapshot(
                self.mis,
                clock=self.clock,
                days=self.settings.days,
                concurrency=self.settings.concurrency,
                call_timeout=self.settings.call_timeout_seconds,
                deadline=deadline,
                monotonic=self.monotonic,
            )
            read = self._load_sync()
            if isinstance(read.cursor, VisitsCursor) and self.cursors is self.cache:
                self._cursor = read.cursor
            state = read.state
            # The day index and the state's ref_hash describe the cache only if the last run that wrote
            # items finished (not dirty) and kept the index (a sync without it leaves ``index`` unset).
            trusted = state is not None and state.index == INDEX_VERSION and not state.dirty
            desired_refs = reference_records(
                snapshot.branches, snapshot.specialties, snapshot.doctors, snapshot.services
            )
            desired_ref_hash = ref_hash({sk: r.hash for sk, r in desired_refs.items()})
            if trusted and state is not None and state.ref_hash == desired_ref_hash:
                cached_hashes = {sk: r.hash for sk, r in desired_refs.items()}  # the same items
            else:
                cached_hashes = {sk: r.hash for sk, r in self.cache.reference_items().items()}
            doctors = {d.id for d in snapshot.doctors} | set(read.indexes)
            doctors |= {sk.split("#", 1)[1] for sk in cached_hashes if sk.startswith("DOCTOR#")}
            since = min((w.first for w in snapshot.windows.values()), default=snapshot.cutoff.date())
            cached, to_read = self._cached_entries(snapshot, since, doctors, read, trusted)
            if to_read:
                for key, record in self.cache.cached_days(to_read, since - timedelta(days=1)).items():
                    cached.setdefault(key.doctor_id, {})[key.day] = record_entry(record)
            self._branches = snapshot.branches
            changes = plan_indexed(
                snapshot,
                desired_days(snapshot),
                cached,
                cached_refs=cached_hashes,
                stored=read.indexes if self._indexed else {},
                rewrite=to_read if self._indexed else (),
                days_setting=self.settings.days,
            )
            if not self._indexed:
                changes.put_index, changes.delete_index = [], []
            if self.monotonic() > deadline:
                raise SyncFailure("budget", "out of time before writing")
            if changes.writes and trusted and state is not None:
                self.cache.mark_dirty(state)  # type: ignore[attr-defined]
            result.batch_requests = self.cache.apply(changes)
            result.ok = True
            result.doctors = len(snapshot.doctors)
            result.days = len(changes.put_days) + changes.unchanged_days
            result.slots = sum(len(s) for s in snapshot.slots.values())
            result.days_written = len(changes.put_days)
            result.days_deleted = len(changes.delete_days)
            result.days_unchanged = changes.unchanged_days
            result.refs_written = len(changes.put_refs)
            result.refs_deleted = len(changes.delete_refs)
            result.days_read_for = len(to_read)
            result.indexes_written = len(changes.put_index) + len(changes.delete_index)
            self.cache.save_state(
                SyncState(
                    last_success_at=snapshot.cutoff,
                    covers_until=snapshot.covers_until,
                    ref_hash=desired_ref_hash,
                    days=self.settings.days,
                    counts={
                        "doctors": result.doctors,
                        "days": result.days,
                        "slots": result.slots,
                        "written": result.items_written,
                    },
                    index=INDEX_VERSION if self._indexed else None,
                )
            )
        except SyncFailure as failure:
            result.ok, result.failure, result.error = False, failure.kind, str(failure)
            log.warning(
                "schedule sync failed; the cache is left as it was",
                extra={"failure": failure.kind, "error": str(failure)},
            )
        except Exception as exc:  # our side: DynamoDB, a bug
            result.ok, result.failure, result.error = False, "error", type(exc).__name__
            log.error("schedule sync failed on our side", extra={"error": safe_trace(exc)})
        else:
            log.info(
                "schedule synced",
                extra={k: v for k, v in asdict(result).items() if k not in ("failure", "error")},
            )
        return result

    @property
    def _indexed(self) -> bool:
        """Whether the cache keeps the day index (``IndexedScheduleCache``)."""
        return callable(getattr(self.cache, "load_sync", None)) and callable(
            getattr(self.cache, "mark_dirty", None)
        )

    def _load_sync(self) -> SyncRead:
        if not self._indexed:
            return SyncRead(state=None, indexes={})
        read: SyncRead = self.cache.load_sync()  # type: ignore[attr-defined]
        return read

    def _cached_entries(
        self,
        snapshot: Snapshot,
        since: date,
        doctors: set[str],
        read: SyncRead,
        trusted: bool,
    ) -> tuple[dict[str, dict[date, IndexEntry]], list[str]]:
        """What the cache holds per doctor from the day index where it can be trusted, and the doctors
        whose day items must be read instead: no trusted state, no index (or one of another version or
        ``SyncDays``), or a day the cut-off reached whose cuts the index did not keep."""
        cached: dict[str, dict[date, IndexEntry]] = {}
        to_read: list[str] = []
        windows, cutoff = snapshot.windows, snapshot.cutoff.timestamp()
        default_first = since - timedelta(days=1)
        for doctor_id in sorted(doctors):
            index = read.indexes.get(doctor_id) if trusted else None
            usable = (
                index is not None
                and index.version == INDEX_VERSION
                and index.days_setting == self.settings.days
            )
            if usable and index is not None:
                first = windows[doctor_id].first if doctor_id in windows else default_first
                if all(e.effective(cutoff)[0] for e in index.entries.values() if e.day >= first):
                    cached[doctor_id] = dict(index.entries)
                    continue
            to_read.append(doctor_id)
        return cached, to_read

    # ------------------------------------------------------------------------------------ visits
    def next_cycle_at(self, state: VisitsCursor) -> datetime | None:
        """When the next cycle of the visits pass may start (None: now). A cycle in progress always goes
        on; a new one starts ``visits_every_minutes`` after the last COMPLETE one started."""
        every = self.settings.visits_every_minutes
        if every == 0 or state.cursor is not None or state.cycle_started_at is None:
            return None
        return state.cycle_started_at + timedelta(minutes=every)

    async def sync_visits(self, deadline: float, state: VisitsCursor | None = None) -> VisitsResult:
        assert self.planner_factory is not None and self.patients is not None and self.cursors is not None
        try:
            branches = self._branches
            if branches is None:  # the schedule part failed before the MIS listed its branches
                branches = tuple(
                    await asyncio.wait_for(self.mis.branches(), self.settings.call_timeout_seconds)
                )
        except Exception as exc:
            log.warning("visits pass skipped: no branches from the MIS", extra={"error": type(exc).__name__})
            return VisitsResult(outage=True, error=f"branches: {type(exc).__name__}")
        try:
            visits = await sync_visits(
                self.mis,
                self.patients,
                self.cursors,
                self.planner_factory(branches),
                clock=self.clock,
                per_run=self.settings.patients_per_run,
                page_size=self.settings.page_size,
                concurrency=max(1, self.settings.concurrency // 2),
                call_timeout=self.settings.call_timeout_seconds,
                deadline=deadline,
                monotonic=self.monotonic,
                state=state,
                track_cycles=self.settings.visits_every_minutes > 0,
            )
        except Exception as exc:
            log.error("visits pass failed on our side", extra={"error": safe_trace(exc)})
            return VisitsResult(failed=1, error=type(exc).__name__)
        log.info("visits pass done", extra=visits.as_dict())
        return visits

    # ------------------------------------------------------------------------------ construction
    @classmethod
    def from_environment(cls) -> SyncJob:
        """The job as deployed: settings from the environment, the MIS adapter from ``bootstrap`` (built on
        first use), the ScheduleTable and the StateTable's ``patient`` index, and the reminders planner
        when this build has one."""
        from clinicbot import bootstrap
        from clinicbot.config import load_settings
        from clinicbot.schedule import models as schedule_models
        from clinicbot.schedule.cache_dynamo import DynamoScheduleCache
        from clinicbot.schedule.linked_dynamo import DynamoLinkedPatients
        from clinicbot.storage import models as state_models

        settings = load_settings()
        # Not the webhook's 1 s / 2 s: nobody waits for this function, a slow answer beats a failed run.
        state_models.configure(
            table_name=settings.state_table, connect_timeout=2, read_timeout=5, max_retries=3
        )
        schedule_models.configure(connect_timeout=2, read_timeout=5, max_retries=3)
        cache = DynamoScheduleCache()
        return cls(
            mis=bootstrap.build_mis(settings),
            cache=cache,
            settings=SyncSettings(),
            patients=DynamoLinkedPatients(),
            cursors=cache,
            planner_factory=_reminder_planner_factory(settings),
        )


def _reminder_planner_factory(settings: Any) -> Callable[[Sequence[Branch]], PlannerPort] | None:
    """``ReminderPlanner.for_settings`` (the ReminderTable and the StateTable), built per run with the
    branches the MIS listed (their time zones place the reminders)."""
    try:
        from clinicbot.reminders.planner import ReminderPlanner
    except ImportError:  # a build without the reminders
        log.info("no clinicbot.reminders.planner in this build: the visits pass is off")
        return None

    def factory(branches: Sequence[Branch]) -> PlannerPort:
        planner: PlannerPort = ReminderPlanner.for_settings(settings, branches=branches)
        return planner

    return factory
