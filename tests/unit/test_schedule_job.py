"""clinicbot.schedule.job and .visits with an in-memory cache: the run's outcomes and the visits pass."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from clinicbot.adapters.mis_demo import DemoClinic
from clinicbot.mis.errors import MisUnavailable, NotFound
from clinicbot.mis.models import Appointment, Branch, PatientVisits, Prescription
from clinicbot.schedule.job import SyncJob, SyncSettings
from clinicbot.schedule.sync import DayKey, DayRecord, Plan, RefRecord, SyncState
from clinicbot.schedule.visits import LinkedPatient, VisitsCursor, sync_visits
from tests.harness import TODAY

NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)


class MemoryCache:
    """``ScheduleCache`` + ``CursorStore`` in memory (the DynamoDB one is tested under moto)."""

    def __init__(self) -> None:
        self.refs: dict[str, RefRecord] = {}
        self.records: dict[DayKey, DayRecord] = {}
        self.state: SyncState | None = None
        self.cursor: dict[str, Any] | None = None
        self.cycle_started_at: datetime | None = None
        self.writes = 0
        self.cursor_saves = 0
        self.calls: dict[str, int] = {}

    def _count(self, name: str) -> None:
        self.calls[name] = self.calls.get(name, 0) + 1

    def reference_items(self) -> dict[str, RefRecord]:
        self._count("reference_items")
        return dict(self.refs)

    def cached_days(self, doctor_ids: Iterable[str], since: date) -> dict[DayKey, DayRecord]:
        wanted = set(doctor_ids)
        return {k: r for k, r in self.records.items() if k.doctor_id in wanted and k.day >= since}

    def days(self, doctor_id: str, first: date, last: date) -> list[DayRecord]:
        self._count("days")
        return [
            r for k, r in sorted(self.records.items()) if k.doctor_id == doctor_id and first <= k.day <= last
        ]

    def apply(self, plan: Plan) -> int:
        for record in plan.put_days:
            self.records[record.key] = record
        for key in plan.delete_days:
            del self.records[key]
        for ref in plan.put_refs:
            self.refs[ref.sk] = ref
        for sk in plan.delete_refs:
            del self.refs[sk]
        self.writes += plan.writes
        return math.ceil((len(plan.put_days) + len(plan.delete_days)) / 25) + math.ceil(
            (len(plan.put_refs) + len(plan.delete_refs)) / 25
        )

    def load_state(self) -> SyncState | None:
        self._count("load_state")
        return self.state

    def save_state(self, state: SyncState) -> None:
        self.state = state

    def load_cursor(self) -> VisitsCursor:
        self._count("load_cursor")
        return VisitsCursor(self.cursor, self.cycle_started_at)

    def save_cursor(
        self, cursor: dict[str, Any] | None, *, now: datetime, cycle_started_at: datetime | None
    ) -> None:
        self.cursor = cursor
        self.cycle_started_at = cycle_started_at
        self.cursor_saves += 1


@dataclass
class Patients:
    """``LinkedPatients`` over a list; the cursor is the index of the next patient."""

    linked: list[LinkedPatient]

    def page(
        self, cursor: dict[str, Any] | None, limit: int
    ) -> tuple[list[LinkedPatient], dict[str, Any] | None]:
        start = int(cursor["i"]) if cursor else 0
        end = start + limit
        return self.linked[start:end], ({"i": end} if end < len(self.linked) else None)


@dataclass
class Planner:
    appointments: dict[int, list[Appointment]] = field(default_factory=dict)
    prescriptions: dict[int, list[Prescription]] = field(default_factory=dict)
    branches: Sequence[Branch] = ()
    fail_for: set[int] = field(default_factory=set)

    def sync_patient_appointments(
        self, *, telegram_user_id: int, patient_id: str, appointments: list[Appointment], now: datetime
    ) -> None:
        if telegram_user_id in self.fail_for:
            raise RuntimeError("planner bug")
        assert now == NOW
        self.appointments[telegram_user_id] = appointments

    async def sync_patient_prescriptions(
        self, *, telegram_user_id: int, patient_id: str, prescriptions: list[Prescription], now: datetime
    ) -> None:  # async on purpose: both kinds are accepted
        self.prescriptions[telegram_user_id] = prescriptions


def demo() -> DemoClinic:
    return DemoClinic(today=TODAY, clock=lambda: NOW)


def job(
    mis: Any, cache: MemoryCache | None = None, *, planner: Planner | None = None, **settings: Any
) -> SyncJob:
    linked = [LinkedPatient(100 + i, f"p-00{i}") for i in range(1, 7)]
    planner = planner if planner is not None else Planner()
    cache = cache if cache is not None else MemoryCache()

    def factory(branches: Sequence[Branch]) -> Planner:
        planner.branches = branches
        return planner

    return SyncJob(
        mis=mis,
        cache=cache,
        settings=SyncSettings(**settings),
        patients=Patients(linked),
        cursors=cache,
        planner_factory=factory,
        clock=lambda: NOW,
    )


def run(j: SyncJob, seconds: float = 60) -> Any:
    return asyncio.run(j.run(remaining_seconds=seconds))


def test_a_run_fills_the_cache_and_plans_every_linked_patient() -> None:
    cache, planner, mis = MemoryCache(), Planner(), demo()
    result = run(job(mis, cache, planner=planner))
    assert result.ok, result.as_dict()
    assert result.schedule.days_written == len(cache.records) > 200
    assert cache.state is not None and cache.state.last_success_at == NOW
    assert result.visits.patients == 6 and result.visits.cycle_complete
    assert {b.id for b in planner.branches} == {"b-tverskaya", "b-profsoyuznaya", "b-ekaterinburg"}
    assert [a.id for a in planner.appointments[101]] == ["a-0001"]  # p-001's upcoming visit
    assert [rx.id for rx in planner.prescriptions[101]] == ["rx-001"]
    assert result.visits.appointments == 6  # one upcoming visit for each demo patient

    again = run(job(mis, cache, planner=planner))
    assert again.ok and again.schedule.items_written == 0 and again.schedule.batch_requests == 0


def test_the_visits_pass_is_bounded_and_continues_from_a_cursor() -> None:
    cache, planner, mis = MemoryCache(), Planner(), demo()
    first = run(job(mis, cache, planner=planner, patients_per_run=4, page_size=3))
    assert first.visits.patients == 4 and not first.visits.cycle_complete
    assert cache.cursor == {"i": 4}
    second = run(job(mis, cache, planner=planner, patients_per_run=4, page_size=3))
    assert second.visits.patients == 2 and second.visits.cycle_complete
    assert cache.cursor is None
    assert sorted(planner.appointments) == list(range(101, 107))


def test_the_visits_pass_stops_when_the_time_budget_runs_low() -> None:
    cache = MemoryCache()
    result = run(job(demo(), cache, reserve_seconds=5), seconds=6.5)
    assert result.visits.stopped_by_budget and result.visits.patients == 0
    assert result.ok  # stopping early is not a failure: the next run goes on


def test_a_page_cut_by_the_deadline_is_done_again_next_run() -> None:
    class Slow(Flaky):
        async def visits(self, patient_id: str) -> PatientVisits:
            if patient_id == "p-002":
                await asyncio.sleep(10)
            return await self._mis.visits(patient_id)

    cache = MemoryCache()
    cache.cursor = {"i": 0}
    linked = [LinkedPatient(100 + i, f"p-00{i}") for i in range(1, 7)]
    result = asyncio.run(
        sync_visits(
            Slow(demo()),
            Patients(linked),
            cache,
            Planner(),
            clock=lambda: NOW,
            page_size=3,
            call_timeout=20,
            deadline=time.monotonic() + 0.3,  # one page may start, then time runs out
            min_page_seconds=0.2,
        )
    )
    assert result.stopped_by_budget and not result.outage and result.failed == 0
    assert cache.cursor == {"i": 0} and cache.cursor_saves == 0


class Flaky:
    def __init__(self, mis: DemoClinic, **errors: Exception) -> None:
        self._mis, self._errors = mis, errors

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mis, name)

    async def visits(self, patient_id: str) -> PatientVisits:
        error = self._errors.get(patient_id.replace("-", "_"))
        if error is not None:
            raise error
        return await self._mis.visits(patient_id)


def test_an_outage_in_the_visits_pass_keeps_the_cursor_and_fails_the_run() -> None:
    cache, planner = MemoryCache(), Planner()
    cache.cursor = {"i": 0}
    result = run(job(Flaky(demo(), p_002=MisUnavailable("down")), cache, planner=planner))
    assert result.schedule.ok and result.visits.outage and not result.ok
    assert cache.cursor == {"i": 0} and cache.cursor_saves == 0
    assert 102 not in planner.appointments  # never "no appointments" for a patient we could not read


def test_unknown_patients_are_skipped_and_a_planner_error_fails_only_that_patient() -> None:
    planner = Planner(fail_for={103})
    result = run(job(Flaky(demo(), p_002=NotFound("patient p-002")), planner=planner))
    assert result.visits.skipped == 1 and result.visits.failed == 1 and result.visits.patients == 4
    assert 102 not in planner.appointments and 103 not in planner.appointments
    assert not result.ok  # a failing planner is worth the alarm


def test_an_mis_outage_skips_the_visits_pass_and_writes_nothing() -> None:
    mis, cache = demo(), MemoryCache()
    mis.unavailable = True
    result = run(job(mis, cache))
    assert not result.ok and result.schedule.failure == "outage"
    assert result.visits is None and "outage" in (result.visits_skipped_reason or "")
    assert cache.writes == 0 and cache.state is None


def test_a_partial_schedule_answer_writes_nothing_but_visits_still_run() -> None:
    class NoSlotsForD05(Flaky):
        async def free_slots(self, **kwargs: Any) -> Any:
            if kwargs.get("doctor_id") == "d-05":
                raise NotFound("doctor d-05")
            return await self._mis.free_slots(**kwargs)

    cache, planner = MemoryCache(), Planner()
    result = run(job(NoSlotsForD05(demo()), cache, planner=planner))
    assert result.schedule.failure == "partial" and not result.ok
    assert cache.writes == 0 and cache.state is None
    assert result.visits is not None and result.visits.patients == 6  # reminders do not wait for slots
    assert planner.branches  # fetched separately: the failed snapshot did not return them


def test_a_cache_error_is_a_failure_on_our_side() -> None:
    class Broken(MemoryCache):
        def apply(self, plan: Plan) -> int:
            raise OSError("DynamoDB said no")

    result = run(job(demo(), Broken()))
    assert result.schedule.failure == "error" and result.schedule.error == "OSError"
    assert not result.ok


def test_no_planner_no_visits_pass() -> None:
    j = job(demo())
    j.planner_factory = None
    result = run(j)
    assert result.ok and result.visits is None
    assert result.visits_skipped_reason == "no reminders planner in this build"


def test_a_run_result_is_plain_json() -> None:
    import json

    body = run(job(demo())).as_dict()
    assert json.loads(json.dumps(body)) == body
    assert body["ok"] is True and body["schedule"]["items_written"] > 0


@pytest.mark.parametrize("days", [1, 7])
def test_sync_days_bounds_the_window(days: int) -> None:
    cache = MemoryCache()
    run(job(demo(), cache, days=days))
    assert max(k.day for k in cache.records) <= TODAY + timedelta(days=days)


def test_a_doctor_who_left_the_mis_leaves_the_cache() -> None:
    class WithoutD05(Flaky):
        async def doctors(self, **kwargs: Any) -> Any:
            return [d for d in await self._mis.doctors(**kwargs) if d.id != "d-05"]

    mis, cache = demo(), MemoryCache()
    assert run(job(mis, cache)).ok
    his_days = [k for k in cache.records if k.doctor_id == "d-05"]
    assert his_days
    result = run(job(WithoutD05(mis), cache))
    assert result.ok
    assert result.schedule.days_deleted == len(his_days) and result.schedule.days_written == 0
    assert result.schedule.refs_deleted == 1 and result.schedule.refs_written == 1  # DOCTOR#d-05; ORDER
    assert not [k for k in cache.records if k.doctor_id == "d-05"]
    assert "DOCTOR#d-05" not in cache.refs


# ------------------------------------------------------------------ the visits pass's cadence


class CountingMis(Flaky):
    def __init__(self, mis: DemoClinic, **errors: Exception) -> None:
        super().__init__(mis, **errors)
        self.visit_calls = 0

    async def visits(self, patient_id: str) -> PatientVisits:
        self.visit_calls += 1
        return await super().visits(patient_id)


class AnyTimePlanner(Planner):
    def sync_patient_appointments(
        self, *, telegram_user_id: int, patient_id: str, appointments: list[Appointment], now: datetime
    ) -> None:
        self.appointments[telegram_user_id] = appointments


def timed_job(mis: Any, cache: MemoryCache, at: list[datetime], **settings: Any) -> SyncJob:
    j = job(mis, cache, planner=AnyTimePlanner(), **settings)
    j.clock = lambda: at[0]
    return j


def test_a_complete_cycle_is_not_started_again_before_the_interval() -> None:
    mis, cache, at = CountingMis(demo()), MemoryCache(), [NOW]
    first = run(timed_job(mis, cache, at))
    assert first.visits.cycle_complete and mis.visit_calls == 6
    assert cache.cursor is None and cache.cycle_started_at == NOW

    for minutes in (15, 30, 179):
        at[0] = NOW + timedelta(minutes=minutes)
        cache.calls.clear()
        skipped = run(timed_job(mis, cache, at))
        assert skipped.ok and skipped.visits is None
        assert skipped.visits_skipped_reason == f"not due until {(NOW + timedelta(minutes=180)).isoformat()}"
        assert mis.visit_calls == 6  # no MIS call for visits
        assert cache.calls.get("load_cursor") == 1 and cache.cursor_saves == 1  # one read, no write

    at[0] = NOW + timedelta(minutes=180)
    due = run(timed_job(mis, cache, at))
    assert due.visits.cycle_complete and mis.visit_calls == 12
    assert cache.cycle_started_at == NOW + timedelta(minutes=180)


def test_a_cycle_spans_runs_and_records_when_it_started() -> None:
    mis, cache, at = CountingMis(demo()), MemoryCache(), [NOW]
    small = {"patients_per_run": 4, "page_size": 2}
    assert not run(timed_job(mis, cache, at, **small)).visits.cycle_complete
    assert cache.cursor == {"i": 4} and cache.cycle_started_at == NOW
    at[0] = NOW + timedelta(minutes=15)
    second = run(timed_job(mis, cache, at, **small))
    assert second.visits.patients == 2 and second.visits.cycle_complete
    assert cache.cursor is None and cache.cycle_started_at == NOW  # when the cycle STARTED
    at[0] = NOW + timedelta(minutes=30)
    assert run(timed_job(mis, cache, at, **small)).visits is None
    at[0] = NOW + timedelta(minutes=180)
    assert run(timed_job(mis, cache, at, **small)).visits.patients == 4


def test_an_outage_mid_cycle_is_not_a_complete_cycle() -> None:
    mis, cache, at = CountingMis(demo()), MemoryCache(), [NOW]
    small = {"patients_per_run": 4, "page_size": 2}
    run(timed_job(mis, cache, at, **small))
    assert cache.cursor == {"i": 4}
    mis._errors = {"p_005": MisUnavailable("down")}
    at[0] = NOW + timedelta(minutes=15)
    failed = run(timed_job(mis, cache, at, **small))
    assert failed.visits.outage and not failed.visits.cycle_complete and not failed.ok
    assert cache.cursor == {"i": 4} and cache.cycle_started_at == NOW
    mis._errors = {}
    at[0] = NOW + timedelta(minutes=30)  # the cycle goes on at the next run, whatever the interval
    again = run(timed_job(mis, cache, at, **small))
    assert again.visits.cycle_complete and cache.cycle_started_at == NOW


def test_an_outage_at_the_start_of_a_cycle_leaves_it_due() -> None:
    mis, cache, at = CountingMis(demo()), MemoryCache(), [NOW]
    run(timed_job(mis, cache, at))
    at[0] = NOW + timedelta(minutes=200)
    mis._errors = {"p_001": MisUnavailable("down")}
    assert run(timed_job(mis, cache, at)).visits.outage
    assert cache.cursor is None and cache.cycle_started_at == NOW  # the last COMPLETE cycle
    mis._errors = {}
    at[0] = NOW + timedelta(minutes=215)
    assert run(timed_job(mis, cache, at)).visits.cycle_complete
    assert cache.cycle_started_at == NOW + timedelta(minutes=215)


def test_every_zero_walks_the_patients_every_run_as_before() -> None:
    mis, cache, at = CountingMis(demo()), MemoryCache(), [NOW]
    for _ in range(3):
        assert run(timed_job(mis, cache, at, visits_every_minutes=0)).visits.cycle_complete
    assert mis.visit_calls == 18
    assert cache.cursor_saves == 0  # a cycle within one run moves no cursor: nothing written, as before


def test_the_interval_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert SyncSettings().visits_every_minutes == 180
    monkeypatch.setenv("CLINICBOT_SYNC_VISITS_EVERY_MINUTES", "0")
    assert SyncSettings().visits_every_minutes == 0
