"""clinicbot.schedule.reader.CachedSchedule: the same answers as the MIS reader, from the cache while it is
fresh, from the MIS otherwise."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from clinicbot.adapters.mis_demo import DemoClinic
from clinicbot.booking.schedule import HORIZON, MisScheduleReader, ScheduleReader, SlotFilter, day_bounds
from clinicbot.schedule.job import SyncJob
from clinicbot.schedule.reader import CachedSchedule
from clinicbot.schedule.sync import DayRecord
from tests.harness import TODAY
from tests.unit.test_schedule_job import MemoryCache

NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)


class Clock:
    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def synced() -> tuple[DemoClinic, MemoryCache]:
    mis = DemoClinic(today=TODAY, clock=lambda: NOW)
    cache = MemoryCache()
    result = asyncio.run(SyncJob(mis=mis, cache=cache, clock=lambda: NOW).run(remaining_seconds=60))
    assert result.schedule.ok
    cache.calls.clear()
    return mis, cache


def reader(
    mis: Any, cache: Any, *, at: datetime = NOW + timedelta(minutes=5), **kwargs: Any
) -> CachedSchedule:
    return CachedSchedule(mis, cache, clock=Clock(at), **kwargs)


FILTERS = [
    SlotFilter(doctor_id="d-01"),
    SlotFilter(specialty_id="sp-therapist"),
    SlotFilter(),
    SlotFilter(doctor_id="nobody"),
]


def test_it_is_a_schedule_reader() -> None:
    mis, cache = synced()
    assert isinstance(reader(mis, cache), ScheduleReader)


@pytest.mark.parametrize("flt", FILTERS, ids=["doctor", "specialty", "all", "unknown-doctor"])
def test_free_slots_from_the_cache_equal_the_mis(flt: SlotFilter) -> None:
    mis, cache = synced()
    cached, direct = reader(mis, cache), MisScheduleReader(mis)

    async def both(start: datetime, end: datetime) -> tuple[list[Any], list[Any]]:
        return await cached.free_slots(flt, start=start, end=end), await direct.free_slots(
            flt, start=start, end=end
        )

    month = asyncio.run(both(NOW, NOW + HORIZON))
    assert month[0] == month[1]
    if flt.doctor_id != "nobody":
        assert month[0]
    day = asyncio.run(both(*day_bounds(date(2026, 11, 26))))
    assert day[0] == day[1]
    assert cached.served_from_mis == 0


def test_reference_data_from_the_cache_equals_the_mis() -> None:
    mis, cache = synced()
    cached, direct = reader(mis, cache), MisScheduleReader(mis)

    async def compare() -> None:
        assert await cached.branches() == await direct.branches()
        assert await cached.specialties() == await direct.specialties()
        assert await cached.doctors() == await direct.doctors()
        assert await cached.doctors(specialty_id="sp-therapist") == await direct.doctors(
            specialty_id="sp-therapist"
        )
        assert await cached.doctor("d-03") == await direct.doctor("d-03")
        assert await cached.doctor("nobody") is None
        assert await cached.specialty("sp-ent") == await direct.specialty("sp-ent")
        for ids in (["sp-dentist"], ["sp-therapist", "sp-pediatrician"], ["nothing"]):
            assert await cached.price_from(ids) == await direct.price_from(ids)
        assert await cached.slot("d-01@20261124T0600Z") == await direct.slot("d-01@20261124T0600Z")

    asyncio.run(compare())
    assert cached.served_from_cache >= 10
    assert cached.served_from_mis == 1  # slot(): "free or not" is the MIS's to say
    assert cache.calls["reference_items"] == 1  # reference data read once, then from memory


def test_before_the_first_sync_everything_comes_from_the_mis() -> None:
    mis = DemoClinic(today=TODAY, clock=lambda: NOW)
    schedule = reader(mis, MemoryCache())
    slots = asyncio.run(schedule.free_slots(SlotFilter(doctor_id="d-01"), start=NOW, end=NOW + HORIZON))
    assert slots and schedule.served_from_cache == 0 and schedule.served_from_mis == 1
    assert asyncio.run(schedule.doctor("d-01")) is not None


def test_a_stale_cache_is_not_trusted() -> None:
    mis, cache = synced()
    schedule = reader(mis, cache, at=NOW + timedelta(minutes=41))
    asyncio.run(schedule.free_slots(SlotFilter(doctor_id="d-01"), start=NOW, end=NOW + HORIZON))
    asyncio.run(schedule.branches())
    assert schedule.served_from_cache == 0 and schedule.served_from_mis == 2
    assert "days" not in cache.calls


def test_the_state_is_read_at_most_once_per_state_ttl() -> None:
    mis, cache = synced()
    ticks = [0.0]
    schedule = reader(mis, cache, state_ttl=30.0, monotonic=lambda: ticks[0])
    for _ in range(5):
        asyncio.run(schedule.doctors())
    assert cache.calls["load_state"] == 1
    ticks[0] = 31.0
    asyncio.run(schedule.doctors())
    assert cache.calls["load_state"] == 2


def test_reference_data_is_reloaded_when_the_sync_changed_it() -> None:
    mis, cache = synced()
    schedule = reader(mis, cache, state_ttl=0.0)
    asyncio.run(schedule.doctors())
    asyncio.run(schedule.doctors())
    assert cache.calls["reference_items"] == 1
    assert cache.state is not None
    cache.state = replace(cache.state, ref_hash="changed")
    cache.refs.pop("DOCTOR#d-01")
    doctors = asyncio.run(schedule.doctors())
    assert cache.calls["reference_items"] == 2 and "d-01" not in {d.id for d in doctors}


def test_beyond_the_synced_window_the_mis_answers_the_rest() -> None:
    mis = DemoClinic(today=TODAY, clock=lambda: NOW)
    cache = MemoryCache()
    asyncio.run(SyncJob(mis=mis, cache=cache, clock=lambda: NOW, settings=_days(7)).run(remaining_seconds=60))
    schedule = reader(mis, cache)
    flt = SlotFilter(specialty_id="sp-therapist")
    slots = asyncio.run(schedule.free_slots(flt, start=NOW, end=NOW + HORIZON))
    assert slots == asyncio.run(MisScheduleReader(mis).free_slots(flt, start=NOW, end=NOW + HORIZON))
    assert schedule.served_from_cache == 1 and schedule.served_from_mis == 1
    assert cache.state is not None and slots[-1].start > cache.state.covers_until


def _days(days: int) -> Any:
    from clinicbot.schedule.job import SyncSettings

    return SyncSettings(days=days)


def test_an_unreadable_cache_falls_back_to_the_mis() -> None:
    mis, cache = synced()

    class Broken(MemoryCache):
        def days(self, doctor_id: str, first: date, last: date) -> list[DayRecord]:
            raise OSError("throttled")

    broken = Broken()
    broken.refs, broken.records, broken.state = cache.refs, cache.records, cache.state
    schedule = reader(mis, broken)
    flt = SlotFilter(doctor_id="d-02")
    slots = asyncio.run(schedule.free_slots(flt, start=NOW, end=NOW + HORIZON))
    assert slots == asyncio.run(MisScheduleReader(mis).free_slots(flt, start=NOW, end=NOW + HORIZON))
    assert schedule.served_from_mis == 1

    class NoState(MemoryCache):
        def load_state(self) -> Any:
            raise OSError("AccessDenied")

    schedule = reader(mis, NoState())
    assert asyncio.run(schedule.doctor("d-01")) is not None and schedule.served_from_mis == 1


def test_a_slot_booked_after_the_sync_is_still_offered_until_the_next_sync() -> None:
    """The cache may be up to one sync old; the booking itself asks the MIS (BookingService), which
    refuses a taken slot: the wizard then offers alternatives."""
    mis, cache = synced()
    schedule = reader(mis, cache)
    flt = SlotFilter(doctor_id="d-01")
    first = asyncio.run(schedule.free_slots(flt, start=NOW, end=NOW + HORIZON))[0]
    asyncio.run(mis.book("p-002", first.id))
    assert first in asyncio.run(schedule.free_slots(flt, start=NOW, end=NOW + HORIZON))
    asyncio.run(SyncJob(mis=mis, cache=cache, clock=lambda: NOW).run(remaining_seconds=60))
    assert first not in asyncio.run(schedule.free_slots(flt, start=NOW, end=NOW + HORIZON))
