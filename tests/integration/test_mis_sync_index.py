"""The MIS sync's day index (clinicbot.schedule.index): an unchanged run diffs against one Query of the SYNC
partition instead of reading every cached doctor-day, and falls back to the day items whenever the index
cannot be trusted. functions/mis_sync under moto with the demo clinic, as in test_mis_sync."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from clinicbot.adapters.mis_demo import DemoClinic
from clinicbot.schedule.cache_dynamo import DynamoScheduleCache
from clinicbot.schedule.index import IndexEntry, chain
from clinicbot.schedule.sync import encode_day, record_rows
from tests.harness import DdbCounter
from tests.integration import test_mis_sync as base
from tests.integration.test_mis_sync import (
    NOW,
    SCHEDULE,
    _msk,
    day_item,
    free_slots,
    run_sync,
    slot_ids,
)

# test_mis_sync's fixtures: the frozen clock, the demo clinic, the function after its cold start
frozen, clinic, fn, writes = base.frozen, base.clinic, base.fn, base.writes


def reads(counter: DdbCounter) -> dict[str, int]:
    return {op: n for (op, t), n in counter.requests.items() if t == SCHEDULE and op not in DdbCounter.WRITES}


def writes_by_op(counter: DdbCounter) -> dict[str, int]:
    return {op: n for (op, t), n in counter.requests.items() if t == SCHEDULE and op in DdbCounter.WRITES}


def sync_at(at: datetime) -> dict[str, Any]:
    with time_machine.travel(at, tick=False):
        return run_sync()


@pytest.fixture
def synced(fn: Any, writes: DdbCounter) -> Iterator[DdbCounter]:
    first = run_sync()
    assert first["ok"] and first["schedule"]["indexes_written"] == 13, first
    writes.reset()
    yield writes


def test_unchanged_runs_read_one_query_and_write_only_the_state_while_now_moves(synced: DdbCounter) -> None:
    """Every hour for two days (today's days lose their past slots, days come within the cut horizon, the
    window moves at midnight): never a day item read; an unchanged run writes only the state."""
    quiet = 0
    for hours in range(1, 49):
        synced.reset()
        result = sync_at(NOW + timedelta(hours=hours))
        schedule = result["schedule"]
        assert result["ok"], result
        assert schedule["days_read_for"] == 0, (hours, schedule)
        assert reads(synced) == {"Query": 1}, (hours, synced.requests)
        changed = schedule["days_written"] + schedule["days_deleted"]
        if changed == 0:
            # no day written: nothing else but the state (and a day index that gained its cuts; the
            # visits pass's cursor when its cycle was due)
            puts = 1 + (result["visits"] is not None)
            assert writes_by_op(synced).get("PutItem") == puts, (hours, synced.requests)
            assert synced.items[SCHEDULE] == puts + schedule["indexes_written"]
            quiet += schedule["indexes_written"] == 0
    assert quiet >= 30  # most hours nothing at all changes


def test_a_booked_slot_of_today_rewrites_exactly_its_day(
    synced: DdbCounter, aws: Any, clinic: DemoClinic
) -> None:
    later = NOW + timedelta(hours=3)  # 11:00 in Moscow: today's first slots went by
    assert sync_at(later)["ok"]
    with time_machine.travel(later, tick=False):
        today = [s for s in free_slots(clinic, "d-02") if s.start > later]
        taken = next(s for s in today if s.start.astimezone(_msk()).date() == later.date())
        day = taken.start.astimezone(_msk()).date().isoformat()
        before = day_item(aws, "d-02", day)
        assert before is not None
        asyncio.run(clinic.book("p-002", taken.id))
    synced.reset()
    result = sync_at(later + timedelta(minutes=15))
    schedule = result["schedule"]
    assert schedule["days_written"] == 1 and schedule["days_deleted"] == 0 and schedule["days_read_for"] == 0
    assert reads(synced) == {"Query": 1}
    after = day_item(aws, "d-02", day)
    assert after is not None and taken.id not in slot_ids(after)
    with time_machine.travel(later + timedelta(minutes=15), tick=False):
        expected = [
            s.id for s in free_slots(clinic, "d-02") if s.start.astimezone(_msk()).date().isoformat() == day
        ]
    assert slot_ids(after) == expected  # only the future part was written

    synced.reset()
    assert sync_at(later + timedelta(minutes=30))["schedule"]["items_written"] == 0
    assert synced.items[SCHEDULE] == 1


def test_a_missing_day_index_reads_that_doctors_days_and_writes_it_again(
    synced: DdbCounter, aws: Any, clinic: DemoClinic
) -> None:
    aws.delete_item(TableName=SCHEDULE, Key={"pk": {"S": "SYNC"}, "sk": {"S": "DAYS#d-03"}})
    result = sync_at(NOW + timedelta(minutes=15))
    schedule = result["schedule"]
    assert schedule["days_read_for"] == 1 and schedule["items_written"] == 0
    assert schedule["indexes_written"] == 1
    assert reads(synced) == {"Query": 2}  # SYNC, and d-03's days
    synced.reset()
    again = sync_at(NOW + timedelta(minutes=30))["schedule"]
    assert again["days_read_for"] == 0 and again["indexes_written"] == 0 and reads(synced) == {"Query": 1}


def test_a_missing_day_index_still_finds_a_change(synced: DdbCounter, aws: Any, clinic: DemoClinic) -> None:
    aws.delete_item(TableName=SCHEDULE, Key={"pk": {"S": "SYNC"}, "sk": {"S": "DAYS#d-02"}})
    taken = free_slots(clinic, "d-02")[5]
    asyncio.run(clinic.book("p-002", taken.id))
    schedule = sync_at(NOW + timedelta(minutes=15))["schedule"]
    assert schedule["days_read_for"] == 1 and schedule["days_written"] == 1


@pytest.mark.parametrize(
    "state_change",
    [
        {"dirty": {"BOOL": True}},  # a run died between its first item write and its state
        {"ix": None},  # written by a sync that keeps no index (a rollback)
        {"ix": {"N": "0"}},  # another index version
    ],
)
def test_an_untrusted_state_reads_everything(
    synced: DdbCounter, aws: Any, clinic: DemoClinic, state_change: dict[str, Any]
) -> None:
    key = {"pk": {"S": "SYNC"}, "sk": {"S": "STATE"}}
    state = aws.get_item(TableName=SCHEDULE, Key=key)["Item"]
    for name, value in state_change.items():
        if value is None:
            state.pop(name, None)
        else:
            state[name] = value
    aws.put_item(TableName=SCHEDULE, Item=state)
    # a change the stale index could not know about: a slot written straight into the cache
    taken = free_slots(clinic, "d-01")[0]
    day = taken.start.astimezone(_msk()).date().isoformat()
    item = day_item(aws, "d-01", day)
    assert item is not None
    aws.delete_item(TableName=SCHEDULE, Key={"pk": item["pk"], "sk": item["sk"]})

    result = sync_at(NOW + timedelta(minutes=15))["schedule"]
    assert result["days_read_for"] == 13  # every doctor's days, and the REF partition
    assert reads(synced) == {"Query": 1 + 1 + 13}
    assert result["days_written"] == 1  # the day missing from the cache is found and written again
    assert day_item(aws, "d-01", day) is not None
    healed = aws.get_item(TableName=SCHEDULE, Key=key)["Item"]
    assert "dirty" not in healed and healed["ix"]["N"] == "1"
    synced.reset()
    assert sync_at(NOW + timedelta(minutes=30))["schedule"]["days_read_for"] == 0
    assert reads(synced) == {"Query": 1}


def test_a_failed_write_leaves_the_state_dirty_and_the_next_run_reads_everything(
    synced: DdbCounter, aws: Any, clinic: DemoClinic, monkeypatch: pytest.MonkeyPatch
) -> None:
    taken = free_slots(clinic, "d-02")[3]
    asyncio.run(clinic.book("p-002", taken.id))

    def refuse(self: Any, **kwargs: Any) -> None:
        raise RuntimeError("DynamoDB refused")

    with monkeypatch.context() as m:
        m.setattr(DynamoScheduleCache, "_write", refuse)
        failed = sync_at(NOW + timedelta(minutes=15))
    assert not failed["ok"] and failed["schedule"]["failure"] == "error"
    state = aws.get_item(TableName=SCHEDULE, Key={"pk": {"S": "SYNC"}, "sk": {"S": "STATE"}})["Item"]
    assert state["dirty"]["BOOL"] is True
    assert state["last_success_at"]["S"].startswith("2026-11-23T05:00:00")  # freshness unchanged

    synced.reset()
    healed = sync_at(NOW + timedelta(minutes=30))["schedule"]
    assert healed["days_read_for"] == 13 and healed["days_written"] == 1


def test_the_bot_reader_sees_the_fresh_state_and_the_new_slots(
    synced: DdbCounter, clinic: DemoClinic
) -> None:
    from clinicbot.booking.schedule import SlotFilter
    from clinicbot.schedule.reader import CachedSchedule

    taken = free_slots(clinic, "d-02")[2]
    asyncio.run(clinic.book("p-002", taken.id))
    at = NOW + timedelta(minutes=15)
    assert sync_at(at)["schedule"]["days_written"] == 1
    reader = CachedSchedule(clinic, DynamoScheduleCache(), clock=lambda: at + timedelta(minutes=1))
    state = reader.fresh_state()
    assert state is not None and state.last_success_at == at and not state.dirty
    with time_machine.travel(at, tick=False):
        slots = asyncio.run(
            reader.free_slots(SlotFilter(doctor_id="d-02"), start=at, end=at + timedelta(days=7))
        )
    assert reader.served_from_cache >= 1 and reader.served_from_mis == 0
    assert slots and taken.id not in {s.id for s in slots}
    # an unchanged run still renews the freshness
    later = at + timedelta(minutes=15)
    assert sync_at(later)["schedule"]["items_written"] == 0
    renewed = CachedSchedule(clinic, DynamoScheduleCache(), clock=lambda: later).fresh_state()
    assert renewed is not None and renewed.last_success_at == later


# ------------------------------------------------------------------------------- the index itself


def test_an_index_entry_gives_the_fingerprint_of_the_future_part_at_any_cut(clinic: DemoClinic) -> None:
    slots = [s for s in free_slots(clinic, "d-02") if s.start.astimezone(_msk()).date() == NOW.date()]
    assert len(slots) > 3
    record = encode_day("d-02", NOW.date(), slots, default_branch=slots[0].branch_id)
    rows = record_rows(record)
    entry = IndexEntry.of(record.day, rows, chain(rows), with_cuts=True)
    decoded = IndexEntry.decode(entry.encode(NOW.date()), NOW.date())
    assert decoded == entry
    for s in slots:
        for cut in (s.start - timedelta(seconds=1), s.start):
            future = [r for r in rows if r[1] > cut.timestamp()]
            assert decoded.effective(cut.timestamp()) == (True, chain(future)[0] if future else None)
    compact = IndexEntry.of(record.day, rows, chain(rows, suffixes=False), with_cuts=False)
    assert compact.fp == entry.fp and compact.encode(NOW.date()) == "0~" + entry.fp
    before = datetime(2026, 11, 22, 9, 0, tzinfo=UTC).timestamp()
    assert compact.effective(before) == (True, entry.fp)
    assert compact.effective(slots[0].start.timestamp()) == (False, None)  # the cut-off reached it: read
