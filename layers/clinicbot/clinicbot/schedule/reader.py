"""``CachedSchedule``: the booking wizard's ``ScheduleReader`` served from the schedule cache while the sync
keeps it fresh, and from the MIS directly otherwise.

* Fresh means the sync-state item says the last successful sync is at most ``max_age`` old. The state is
  read at most once per ``state_ttl`` seconds per process (one GetItem), so a warm webhook mostly pays
  nothing for the check. Before the first sync, after an outage that outlived ``max_age``, or when the
  cache cannot be read, every call goes to ``MisScheduleReader`` -- the same answers, just slower.
* Reference data: one Query of the ``REF`` partition, kept in memory until the sync state's ``ref_hash``
  says it changed.
* Free slots: one Query per doctor over the days asked for (a month calendar of one doctor: one Query of
  ~30 small items). Whatever lies beyond the synced window (``covers_until``) is asked of the MIS.
* ``slot(id)`` always asks the MIS ("free or not" is the MIS's to say), and the booking itself never
  trusts a reader: ``BookingService`` books through the MIS, which refuses a slot taken since the sync.

No pynamodb here: the cache comes in as a port (``cached_schedule()`` builds the DynamoDB one).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Iterable
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Protocol

from clinicbot.booking.schedule import MisScheduleReader, ScheduleReader, SlotFilter
from clinicbot.mis.models import Branch, Doctor, Slot, Specialty
from clinicbot.mis.port import MisPort
from clinicbot.schedule.sync import (
    DayRecord,
    ReferenceData,
    RefRecord,
    SyncState,
    decode_slots,
    parse_reference,
    ref_hash,
)

__all__ = ["DEFAULT_MAX_AGE", "CachedSchedule", "ScheduleCacheReader", "cached_schedule"]

log = logging.getLogger(__name__)

DEFAULT_MAX_AGE = timedelta(minutes=40)
"""Two runs of the default 15-minute sync plus a margin; the template passes its own per ``SyncRate``."""
MAX_AGE_ENV = "CLINICBOT_SCHEDULE_MAX_AGE_MINUTES"


def _utc_now() -> datetime:
    return datetime.now(UTC)


class ScheduleCacheReader(Protocol):
    def load_state(self) -> SyncState | None: ...

    def reference_items(self) -> dict[str, RefRecord]: ...

    def days(self, doctor_id: str, first: date, last: date) -> list[DayRecord]: ...


class CachedSchedule:
    """``ScheduleReader`` from the DynamoDB schedule cache when the sync succeeded recently, else the MIS."""

    def __init__(
        self,
        mis: MisPort,
        cache: ScheduleCacheReader,
        *,
        max_age: timedelta = DEFAULT_MAX_AGE,
        state_ttl: float = 30.0,
        clock: Callable[[], datetime] = _utc_now,
        monotonic: Callable[[], float] = time.monotonic,
        fallback: ScheduleReader | None = None,
    ) -> None:
        self._cache = cache
        self._max_age = max_age
        self._state_ttl = state_ttl
        self._clock = clock
        self._monotonic = monotonic
        self.fallback: ScheduleReader = fallback or MisScheduleReader(mis)
        self._state: SyncState | None = None
        self._state_read_at: float | None = None
        self._ref: ReferenceData | None = None
        self._ref_hash: str | None = None
        self.served_from_cache = 0
        self.served_from_mis = 0

    # ------------------------------------------------------------------------------ freshness
    def fresh_state(self) -> SyncState | None:
        """The sync state if the cache may be trusted now, else None."""
        now = self._monotonic()
        if self._state_read_at is None or now - self._state_read_at >= self._state_ttl:
            try:
                self._state = self._cache.load_state()
            except Exception as exc:
                log.warning("schedule cache unreadable; asking the MIS", extra={"error": type(exc).__name__})
                self._state = None
            self._state_read_at = now
        state = self._state
        return state if state is not None and state.fresh(self._clock(), self._max_age) else None

    def _reference(self) -> ReferenceData | None:
        state = self.fresh_state()
        if state is None:
            return None
        if self._ref is None or self._ref_hash != state.ref_hash:
            try:
                items = self._cache.reference_items()
                self._ref = parse_reference({sk: r.data for sk, r in items.items()})
            except Exception as exc:
                log.warning("schedule cache reference unreadable", extra={"error": type(exc).__name__})
                self._ref = None
                return None
            # The hash of what was read: while a sync is between writing reference items and its state,
            # the two differ and the next call reads again (for the few seconds that lasts).
            self._ref_hash = ref_hash({sk: r.hash for sk, r in items.items()})
        return self._ref

    # ----------------------------------------------------------------------- ScheduleReader API
    async def branches(self) -> dict[str, Branch]:
        ref = self._reference()
        if ref is None:
            self.served_from_mis += 1
            return await self.fallback.branches()
        self.served_from_cache += 1
        return {b.id: b for b in ref.branches}

    async def specialties(self) -> list[Specialty]:
        ref = self._reference()
        if ref is None:
            self.served_from_mis += 1
            return await self.fallback.specialties()
        self.served_from_cache += 1
        staffed = {s for d in ref.doctors for s in d.specialty_ids}
        return [s for s in ref.specialties if s.id in staffed]

    async def doctors(self, *, specialty_id: str | None = None) -> list[Doctor]:
        ref = self._reference()
        if ref is None:
            self.served_from_mis += 1
            return await self.fallback.doctors(specialty_id=specialty_id)
        self.served_from_cache += 1
        return [d for d in ref.doctors if specialty_id is None or specialty_id in d.specialty_ids]

    async def doctor(self, doctor_id: str) -> Doctor | None:
        ref = self._reference()
        if ref is None:
            self.served_from_mis += 1
            return await self.fallback.doctor(doctor_id)
        self.served_from_cache += 1
        return next((d for d in ref.doctors if d.id == doctor_id), None)

    async def specialty(self, specialty_id: str) -> Specialty | None:
        return next((s for s in await self.specialties() if s.id == specialty_id), None)

    async def slot(self, slot_id: str) -> Slot | None:
        self.served_from_mis += 1
        return await self.fallback.slot(slot_id)

    async def price_from(self, specialty_ids: Iterable[str]) -> Decimal | None:
        ref = self._reference()
        if ref is None:
            self.served_from_mis += 1
            return await self.fallback.price_from(specialty_ids)
        self.served_from_cache += 1
        wanted = set(specialty_ids)
        prices = [s.price for s in ref.services if s.specialty_id in wanted]
        return min(prices) if prices else None

    async def free_slots(self, flt: SlotFilter, *, start: datetime, end: datetime) -> list[Slot]:
        state = self.fresh_state()
        ref = self._reference() if state is not None else None
        if state is None or ref is None or start >= state.covers_until:
            self.served_from_mis += 1
            return await self.fallback.free_slots(flt, start=start, end=end)
        if flt.doctor_id is not None:
            doctor_ids = [d.id for d in ref.doctors if d.id == flt.doctor_id]
        else:
            doctor_ids = [
                d.id for d in ref.doctors if flt.specialty_id is None or flt.specialty_id in d.specialty_ids
            ]
        cached_end = min(end, state.covers_until)
        try:
            slots = self._cached_slots(doctor_ids, start, cached_end)
        except Exception as exc:
            log.warning(
                "schedule cache slots unreadable; asking the MIS", extra={"error": type(exc).__name__}
            )
            self.served_from_mis += 1
            return await self.fallback.free_slots(flt, start=start, end=end)
        self.served_from_cache += 1
        if end > cached_end:  # beyond the synced window: the MIS has the rest
            self.served_from_mis += 1
            slots += await self.fallback.free_slots(flt, start=cached_end, end=end)
        return sorted(slots, key=lambda s: (s.start, s.doctor_id))

    def _cached_slots(self, doctor_ids: list[str], start: datetime, end: datetime) -> list[Slot]:
        # Days are branch-local dates: a UTC date +/- 1 covers every offset from UTC-12 to UTC+14.
        first = start.astimezone(UTC).date() - timedelta(days=1)
        last = end.astimezone(UTC).date() + timedelta(days=1)
        out: list[Slot] = []
        for doctor_id in doctor_ids:
            for record in self._cache.days(doctor_id, first, last):
                out += [
                    s
                    for s in decode_slots(
                        record.doctor_id, record.branch_id, record.first_start, record.slots
                    )
                    if start <= s.start < end
                ]
        return out


def cached_schedule(mis: MisPort, **kwargs: object) -> CachedSchedule:
    """``CachedSchedule`` over the DynamoDB cache (``CLINICBOT_SCHEDULE_TABLE``); ``max_age`` defaults to
    ``CLINICBOT_SCHEDULE_MAX_AGE_MINUTES`` (set by the template from ``SyncRate``), else 40 minutes."""
    from clinicbot.schedule.cache_dynamo import DynamoScheduleCache  # pynamodb: at the edge

    if "max_age" not in kwargs and os.environ.get(MAX_AGE_ENV):
        kwargs["max_age"] = timedelta(minutes=float(os.environ[MAX_AGE_ENV]))
    return CachedSchedule(mis, DynamoScheduleCache(), **kwargs)  # type: ignore[arg-type]
