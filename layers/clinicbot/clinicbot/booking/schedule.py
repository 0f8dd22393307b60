"""Reading the schedule: reference data (branches, specialties, doctors, prices) and free slots.

:class:`ScheduleReader` is the seam. Today :class:`MisScheduleReader` asks the MIS directly (reference
data is kept for a few minutes per process; free slots are always fresh). When ``mis_sync`` fills the
DynamoDB schedule cache, a ``CachedScheduleReader`` implementing the same protocol can serve the wizard's
calendar and time buttons from it. The booking itself never trusts a reader: ``BookingService`` always
asks the MIS (``slot``, ``book``, ``reschedule``).

Also here: the pure helpers the wizard needs to turn UTC slots into the branch-local days and times a
patient sees.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Protocol, runtime_checkable
from zoneinfo import ZoneInfo

from clinicbot.mis.errors import NotFound
from clinicbot.mis.models import Branch, Doctor, Service, Slot, Specialty
from clinicbot.mis.port import MisPort

__all__ = [
    "DEFAULT_TZ",
    "HORIZON",
    "MisScheduleReader",
    "ScheduleReader",
    "SlotFilter",
    "local_day",
    "slots_on_day",
]

HORIZON = timedelta(days=30)
"""How far ahead a patient can book."""
DEFAULT_TZ = ZoneInfo("Europe/Moscow")


@dataclass(frozen=True)
class SlotFilter:
    """Whose slots: one doctor, or any doctor of a specialty."""

    doctor_id: str | None = None
    specialty_id: str | None = None


@runtime_checkable
class ScheduleReader(Protocol):
    async def branches(self) -> dict[str, Branch]: ...

    async def specialties(self) -> list[Specialty]:
        """Specialties that have at least one doctor, in the MIS's order."""
        ...

    async def doctors(self, *, specialty_id: str | None = None) -> list[Doctor]: ...

    async def doctor(self, doctor_id: str) -> Doctor | None: ...

    async def specialty(self, specialty_id: str) -> Specialty | None: ...

    async def slot(self, slot_id: str) -> Slot | None:
        """One slot by id (free or not), None if the MIS does not know it."""
        ...

    async def price_from(self, specialty_ids: Iterable[str]) -> Decimal | None:
        """The lowest price of the services of these specialties (None if the MIS lists none)."""
        ...

    async def free_slots(self, flt: SlotFilter, *, start: datetime, end: datetime) -> list[Slot]:
        """Free slots in ``[start, end)``, ordered by start."""
        ...


class MisScheduleReader:
    """``ScheduleReader`` straight from the MIS; reference data cached for ``reference_ttl`` seconds."""

    def __init__(
        self,
        mis: MisPort,
        *,
        reference_ttl: float = 300.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._mis = mis
        self._ttl = reference_ttl
        self._monotonic = monotonic
        self._loaded_at: float | None = None
        self._branches: dict[str, Branch] = {}
        self._specialties: list[Specialty] = []
        self._doctors: list[Doctor] = []
        self._services: list[Service] = []

    async def _reference(self) -> None:
        now = self._monotonic()
        if self._loaded_at is not None and now - self._loaded_at < self._ttl:
            return
        branches = await self._mis.branches()
        specialties = await self._mis.specialties()
        doctors = await self._mis.doctors()
        services = await self._mis.services()
        self._branches = {b.id: b for b in branches}
        staffed = {s for d in doctors for s in d.specialty_ids}
        self._specialties = [s for s in specialties if s.id in staffed]
        self._doctors = list(doctors)
        self._services = list(services)
        self._loaded_at = now

    async def branches(self) -> dict[str, Branch]:
        await self._reference()
        return dict(self._branches)

    async def specialties(self) -> list[Specialty]:
        await self._reference()
        return list(self._specialties)

    async def doctors(self, *, specialty_id: str | None = None) -> list[Doctor]:
        await self._reference()
        return [d for d in self._doctors if specialty_id is None or specialty_id in d.specialty_ids]

    async def doctor(self, doctor_id: str) -> Doctor | None:
        await self._reference()
        return next((d for d in self._doctors if d.id == doctor_id), None)

    async def specialty(self, specialty_id: str) -> Specialty | None:
        await self._reference()
        return next((s for s in self._specialties if s.id == specialty_id), None)

    async def slot(self, slot_id: str) -> Slot | None:
        try:
            return await self._mis.slot(slot_id)
        except NotFound:
            return None

    async def price_from(self, specialty_ids: Iterable[str]) -> Decimal | None:
        await self._reference()
        wanted = set(specialty_ids)
        prices = [s.price for s in self._services if s.specialty_id in wanted]
        return min(prices) if prices else None

    async def free_slots(self, flt: SlotFilter, *, start: datetime, end: datetime) -> list[Slot]:
        try:
            return await self._mis.free_slots(
                start=start, end=end, doctor_id=flt.doctor_id, specialty_id=flt.specialty_id
            )
        except NotFound:  # a doctor or specialty the MIS no longer knows
            return []


# --------------------------------------------------------------------------- pure helpers
def tz_of(branch_id: str, branches: dict[str, Branch]) -> ZoneInfo:
    branch = branches.get(branch_id)
    return branch.tz if branch is not None else DEFAULT_TZ


def local_day(slot: Slot, branches: dict[str, Branch]) -> date:
    """The day a slot is on, as the patient sees it (the branch's wall clock)."""
    return slot.start.astimezone(tz_of(slot.branch_id, branches)).date()


def slots_on_day(slots: Iterable[Slot], day: date, branches: dict[str, Branch]) -> list[Slot]:
    return [s for s in slots if local_day(s, branches) == day]


def day_bounds(day: date) -> tuple[datetime, datetime]:
    """A UTC window that surely contains every branch-local moment of ``day`` (UTC-12 .. UTC+14)."""
    start = datetime.combine(day, datetime.min.time(), UTC) - timedelta(hours=14)
    return start, start + timedelta(hours=24 + 14 + 12)


def reference_tz(slots: Sequence[Slot], doctors: Sequence[Doctor], branches: dict[str, Branch]) -> ZoneInfo:
    """The time zone the calendar's "today" is counted in: the first slot's or doctor's branch."""
    for branch_id in [s.branch_id for s in slots[:1]] + [d.branch_id for d in doctors[:1]]:
        if branch_id in branches:
            return branches[branch_id].tz
    return DEFAULT_TZ
