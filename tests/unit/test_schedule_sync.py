"""clinicbot.schedule.sync: encoding of doctor-days, the diff by content hash, the all-or-nothing MIS fetch."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from clinicbot.adapters.mis_demo import DemoClinic
from clinicbot.mis.errors import MisUnavailable, NotFound
from clinicbot.mis.models import Slot
from clinicbot.schedule.sync import (
    DayKey,
    SyncFailure,
    content_hash,
    day_records,
    decode_slots,
    effective_hash,
    encode_day,
    fetch_snapshot,
    parse_reference,
    plan,
    plan_days,
    plan_reference,
    ref_hash,
    reference_records,
    window_for,
)
from tests.harness import TODAY

NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # 08:00 in Moscow, on the demo clinic's first day
MSK = ZoneInfo("Europe/Moscow")


def slot(i: int, *, start: datetime, minutes: int = 30, **extra: Any) -> Slot:
    fields: dict[str, Any] = {"doctor_id": "d-1", "branch_id": "b-1"} | extra
    return Slot(id=f"s-{i}", start=start, end=start + timedelta(minutes=minutes), **fields)


def day_of(hour: int, minute: int = 0) -> datetime:
    return datetime(2026, 11, 24, hour, minute, tzinfo=UTC)


def demo() -> DemoClinic:
    return DemoClinic(today=TODAY, clock=lambda: NOW)


def snapshot_of(mis: Any, **kwargs: Any) -> Any:
    return asyncio.run(fetch_snapshot(mis, clock=lambda: NOW, days=kwargs.pop("days", 30), **kwargs))


# --------------------------------------------------------------------------------------- encoding
def test_encode_decode_round_trip_keeps_every_field() -> None:
    slots = [
        slot(2, start=day_of(7)),
        slot(1, start=day_of(6), service_id="sv-1"),
        slot(3, start=day_of(9), minutes=60, branch_id="b-2"),
    ]
    record = encode_day("d-1", date(2026, 11, 24), slots, default_branch="b-9")
    assert record.branch_id == "b-1"  # the branch most slots are at
    assert record.first_start == int(day_of(6).timestamp())
    assert record.count == 3
    assert record.expires_at == day_of(10) + timedelta(days=1)
    back = decode_slots("d-1", record.branch_id, record.first_start, record.slots)
    assert back == sorted(slots, key=lambda s: s.start)
    assert len(record.slots) < 120  # compact: ~35 bytes a slot


def test_hash_changes_with_any_slot_and_only_then() -> None:
    slots = [slot(1, start=day_of(6)), slot(2, start=day_of(7))]
    record = encode_day("d-1", date(2026, 11, 24), slots, default_branch="b-1")
    same = encode_day("d-1", date(2026, 11, 24), list(reversed(slots)), default_branch="b-1")
    assert same.hash == record.hash
    variants = [
        [slots[0]],  # booked
        [slots[0], slot(2, start=day_of(7, 30))],  # moved
        [slot(1, start=day_of(6, 10)), slot(2, start=day_of(7, 10))],  # both moved: same offsets
        [slots[0], slot(2, start=day_of(7), minutes=20)],  # shorter
        [slots[0], slot(2, start=day_of(7), service_id="sv-1")],
        [slots[0], slot(9, start=day_of(7))],  # another id
    ]
    hashes = {encode_day("d-1", date(2026, 11, 24), v, default_branch="b-1").hash for v in variants}
    assert record.hash not in hashes and len(hashes) == len(variants)


def test_effective_hash_ignores_slots_before_the_cutoff() -> None:
    early, late = slot(1, start=day_of(6)), slot(2, start=day_of(9))
    cached = encode_day("d-1", date(2026, 11, 24), [early, late], default_branch="b-1")
    only_late = encode_day("d-1", date(2026, 11, 24), [late], default_branch="b-1")
    assert effective_hash(cached, day_of(5)) == cached.hash
    assert effective_hash(cached, day_of(7)) == only_late.hash
    assert effective_hash(cached, day_of(9)) is None  # nothing left in the future


def test_content_hash_is_short_and_stable() -> None:
    assert content_hash("abc") == content_hash("abc") != content_hash("abd")
    assert len(content_hash("abc")) == 16


def test_window_is_whole_local_days() -> None:
    window = window_for(MSK, NOW, 30)
    assert window.first == date(2026, 11, 23) and window.last == date(2026, 12, 23)
    assert window.start == datetime(2026, 11, 22, 21, 0, tzinfo=UTC)
    assert window.end == datetime(2026, 12, 23, 21, 0, tzinfo=UTC)
    late = window_for(MSK, datetime(2026, 11, 23, 22, 0, tzinfo=UTC), 30)  # 01:00 next day in Moscow
    assert late.first == date(2026, 11, 24)
    assert window_for(MSK, NOW + timedelta(hours=12), 30) == window  # the same all day long


# ---------------------------------------------------------------------------------------- planning
def test_plan_days_puts_new_and_changed_and_deletes_vanished() -> None:
    d1, d2, d3 = date(2026, 11, 24), date(2026, 11, 25), date(2026, 11, 26)
    a = encode_day("d-1", d1, [slot(1, start=day_of(6))], default_branch="b-1")
    b_old = encode_day("d-1", d2, [slot(2, start=day_of(6) + timedelta(days=1))], default_branch="b-1")
    b_new = encode_day("d-1", d2, [slot(3, start=day_of(7) + timedelta(days=1))], default_branch="b-1")
    c = encode_day("d-1", d3, [slot(4, start=day_of(6) + timedelta(days=2))], default_branch="b-1")
    new = encode_day("d-2", d1, [slot(5, start=day_of(6), doctor_id="d-2")], default_branch="b-1")
    result = plan_days(
        {a.key: a, b_new.key: b_new, new.key: new},
        {a.key: a, b_old.key: b_old, c.key: c},
        cutoff=NOW,
        first_day={"d-1": d1, "d-2": d1},
        default_first=d1,
    )
    assert result.unchanged_days == 1
    assert [r.key for r in result.put_days] == [b_new.key, new.key]
    assert result.delete_days == [c.key]


def test_plan_days_leaves_the_past_to_ttl() -> None:
    today = date(2026, 11, 23)
    yesterday = encode_day(
        "d-1", today - timedelta(days=1), [slot(1, start=NOW - timedelta(days=1))], default_branch="b-1"
    )
    morning = encode_day("d-1", today, [slot(2, start=NOW - timedelta(hours=1))], default_branch="b-1")
    result = plan_days(
        {},
        {yesterday.key: yesterday, morning.key: morning},
        cutoff=NOW,
        first_day={"d-1": today},
        default_first=today,
    )
    assert result.writes == 0  # yesterday: before the window; this morning: only past slots left


def test_plan_days_does_not_rewrite_today_as_its_slots_pass() -> None:
    """At the next run the MIS no longer lists the slots that started meanwhile; the future part of the
    day is unchanged, so nothing is written."""
    today = date(2026, 11, 23)
    slots = [slot(i, start=NOW + timedelta(minutes=30 * i)) for i in range(1, 8)]
    cached = encode_day("d-1", today, slots, default_branch="b-1")
    later = NOW + timedelta(hours=1, minutes=40)
    still_listed = [s for s in slots if s.start > later]
    desired = encode_day("d-1", today, still_listed, default_branch="b-1")
    result = plan_days(
        {desired.key: desired},
        {cached.key: cached},
        cutoff=later,
        first_day={"d-1": today},
        default_first=today,
    )
    assert result.writes == 0 and result.unchanged_days == 1


def test_plan_reference_diffs_by_hash() -> None:
    mis = demo()
    snap = snapshot_of(mis)
    desired = reference_records(snap.branches, snap.specialties, snap.doctors, snap.services)
    cached = {sk: r.hash for sk, r in desired.items()}
    assert plan_reference(desired, cached).writes == 0
    cached["DOCTOR#d-01"] = "stale"
    cached["DOCTOR#gone"] = "x"
    del cached["SERVICE#sv-ther-1"]
    result = plan_reference(desired, cached)
    assert sorted(r.sk for r in result.put_refs) == ["DOCTOR#d-01", "SERVICE#sv-ther-1"]
    assert result.delete_refs == ["DOCTOR#gone"]


def test_reference_round_trip_keeps_the_mis_order() -> None:
    snap = snapshot_of(demo())
    records = reference_records(snap.branches, snap.specialties, snap.doctors, snap.services)
    ref = parse_reference({sk: r.data for sk, r in records.items()})
    assert ref.branches == snap.branches
    assert ref.specialties == snap.specialties
    assert ref.doctors == snap.doctors
    assert ref.services == snap.services
    reordered = reference_records(
        snap.branches, tuple(reversed(snap.specialties)), snap.doctors, snap.services
    )
    changed = plan_reference(reordered, {sk: r.hash for sk, r in records.items()})
    assert [r.sk for r in changed.put_refs] == ["ORDER"]  # an order change rewrites one item
    assert ref_hash({sk: r.hash for sk, r in records.items()}) != ref_hash(
        {sk: r.hash for sk, r in reordered.items()}
    )


def test_plan_refuses_an_empty_doctor_list_when_the_cache_has_doctors() -> None:
    snap = snapshot_of(demo())
    empty = replace(snap, doctors=(), windows={}, slots={})
    records = reference_records(snap.branches, snap.specialties, snap.doctors, snap.services)
    with pytest.raises(SyncFailure) as failure:
        plan(empty, {sk: r.hash for sk, r in records.items()}, {})
    assert failure.value.kind == "partial"
    assert plan(empty, {}, {}).writes > 0  # a first sync of a clinic with no doctors yet is fine


# ------------------------------------------------------------------------------------- MIS fetch
def test_snapshot_holds_every_doctors_future_free_slots() -> None:
    mis = demo()
    snap = snapshot_of(mis)
    assert len(snap.doctors) == 13 and set(snap.slots) == {d.id for d in snap.doctors}
    everything = asyncio.run(mis.free_slots(start=NOW, end=NOW + timedelta(days=40)))
    assert sum(len(s) for s in snap.slots.values()) == len(everything)
    assert snap.covers_until == datetime(2026, 12, 23, 19, 0, tzinfo=UTC)  # Yekaterinburg's midnight
    records = day_records(snap)
    assert sum(r.count for r in records.values()) == len(everything)
    assert all(r.first_start > NOW.timestamp() for r in records.values())


def test_outage_raises() -> None:
    mis = demo()
    mis.unavailable = True
    with pytest.raises(SyncFailure) as failure:
        snapshot_of(mis)
    assert failure.value.kind == "outage"


class OneDoctorFails:
    """The demo clinic, but one doctor's free-slots call fails."""

    def __init__(self, mis: DemoClinic, doctor_id: str, error: Exception) -> None:
        self._mis, self._doctor, self._error = mis, doctor_id, error

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mis, name)

    async def free_slots(self, **kwargs: Any) -> list[Slot]:
        if kwargs.get("doctor_id") == self._doctor:
            raise self._error
        return await self._mis.free_slots(**kwargs)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        (NotFound("doctor d-05"), "partial"),
        (ValueError("Иванов"), "partial"),
        (MisUnavailable("down"), "outage"),
    ],
)
def test_one_doctor_failing_fails_the_whole_snapshot(error: Exception, kind: str) -> None:
    with pytest.raises(SyncFailure) as failure:
        snapshot_of(OneDoctorFails(demo(), "d-05", error))
    assert failure.value.kind == kind
    assert "d-05" in str(failure.value)
    assert "Иванов" not in str(failure.value)  # a non-MIS error is named by its class only


def test_a_slow_mis_is_an_outage() -> None:
    class Slow(OneDoctorFails):
        async def free_slots(self, **kwargs: Any) -> list[Slot]:
            await asyncio.sleep(5)
            return []

    with pytest.raises(SyncFailure) as failure:
        snapshot_of(Slow(demo(), "", ValueError()), call_timeout=0.05)
    assert failure.value.kind == "outage"


def test_slots_of_another_doctor_make_the_answer_partial() -> None:
    class Confused(OneDoctorFails):
        async def free_slots(self, **kwargs: Any) -> list[Slot]:
            kwargs.pop("doctor_id")
            return await self._mis.free_slots(doctor_id="d-01", **kwargs)

    with pytest.raises(SyncFailure) as failure:
        snapshot_of(Confused(demo(), "", ValueError()))
    assert failure.value.kind == "partial"


def test_out_of_time_is_a_budget_failure() -> None:
    with pytest.raises(SyncFailure) as failure:
        snapshot_of(demo(), deadline=0.0, monotonic=lambda: 1.0)
    assert failure.value.kind == "budget"


# ------------------------------------------------------------------------------------- layering
def test_sync_module_imports_no_aws_or_telegram_library() -> None:
    code = (
        "import sys; import clinicbot.schedule.sync, clinicbot.schedule.visits, clinicbot.schedule.job;"
        "bad = [m for m in ('boto3', 'botocore', 'pynamodb', 'aiogram') if m in sys.modules];"
        "print(','.join(bad))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_encoded_slots_are_plain_json() -> None:
    record = encode_day("d-1", date(2026, 11, 24), [slot(1, start=day_of(6))], default_branch="b-1")
    assert json.loads(record.slots) == [["s-1", 0, 1800]]
    assert DayKey("d-1", date(2026, 11, 24)) == record.key
