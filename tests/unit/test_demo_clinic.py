"""The embedded demo clinic: its data file and the behaviour beyond the MIS contract."""

from __future__ import annotations

import asyncio
import itertools
import logging
import re
from collections.abc import Coroutine
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any, TypeVar

import pytest

from clinicbot.adapters.mis_demo import WEEKDAYS, DemoClinic, load_demo_data
from clinicbot.mis import AppointmentStatus, MisPort, MisUnavailable, NotAllowed, NotFound, SlotTaken

T = TypeVar("T")
TODAY = date(2025, 3, 3)  # a Monday
START = datetime(2025, 3, 3, 5, 0, tzinfo=UTC)  # 08:00 in Moscow, 10:00 in Yekaterinburg


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class FakeClock:
    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def clinic(clock: FakeClock) -> DemoClinic:
    return DemoClinic(TODAY, clock=clock)


def window(days: int = 30) -> dict[str, datetime]:
    return {"start": START - timedelta(days=1), "end": START + timedelta(days=days)}


# --- the data file ----------------------------------------------------------------------------------


def test_data_file_has_enough_of_everything() -> None:
    data = load_demo_data()
    assert len(data.branches) >= 2
    zones = {b.timezone for b in data.branches}
    assert "Europe/Moscow" in zones and len(zones) >= 2
    assert len(data.doctors) >= 10
    assert len(data.specialties) >= 6
    sensitive = {s.id for s in data.specialties if s.sensitive}
    assert {"sp-urologist", "sp-gynecologist"} <= sensitive
    assert {"sp-therapist", "sp-pediatrician", "sp-dentist", "sp-ophthalmologist"}.isdisjoint(sensitive)
    assert len(data.services) >= 20 and all(s.price > 0 for s in data.services)
    assert len(data.patients) >= 5
    assert {p.phone for p in data.patients} >= {"79991000001", "447700900123"}
    assert any(v.days < 0 for v in data.visits) and any(v.days > 0 for v in data.visits)
    assert any(p.balance < 0 for p in data.patients) and any(p.balance > 0 for p in data.patients)
    for item in (*data.branches, *data.specialties, *data.services):
        assert item.name.ru and item.name.en
    for doctor in data.doctors:
        assert doctor.full_name.en and doctor.profile and doctor.profile.ru


def test_services_fit_the_slots_of_their_doctors() -> None:
    data = load_demo_data()
    for service in data.services:
        doctors = [d for d in data.doctors if service.specialty_id in d.specialty_ids]
        assert doctors, service.id
        assert all(service.duration_minutes <= d.slot_minutes for d in doctors), service.id


def test_doctors_work_within_branch_hours_with_lunch_breaks_and_days_off() -> None:
    data = load_demo_data()
    branches = {b.id: b for b in data.branches}
    for doctor in data.doctors:
        branch = branches[doctor.branch_id]
        assert len(doctor.week) < 7, f"{doctor.id} has no day off"
        assert any(len(intervals) >= 2 for intervals in doctor.week.values()), f"{doctor.id} has no lunch"
        for day, intervals in doctor.week.items():
            hours = branch.hours_on(WEEKDAYS.index(day))
            for start, end in intervals:
                assert any(h.opens <= start and end <= h.closes for h in hours), (doctor.id, day)


# --- the generated schedule -------------------------------------------------------------------------


def test_slots_follow_the_weekly_templates(clinic: DemoClinic) -> None:
    data = load_demo_data()
    branches = {b.id: b for b in data.branches}
    for doctor in data.doctors:
        template = clinic.template(doctor.id)
        tz = branches[doctor.branch_id].tz
        slots = clinic.all_slots(doctor.id)
        expected = 0
        for offset in range(30):
            day = TODAY + timedelta(days=offset)
            for opens, closes in template.intervals_on(day):
                minutes = (closes.hour * 60 + closes.minute) - (opens.hour * 60 + opens.minute)
                expected += minutes // template.slot_minutes
        assert len(slots) == expected, doctor.id
        for slot in slots:
            local = slot.start.astimezone(tz)
            assert TODAY <= local.date() < TODAY + timedelta(days=30)
            intervals = template.intervals_on(local.date())
            assert intervals, f"{doctor.id} has a slot on a day off"
            assert any(o <= local.time() and slot.end.astimezone(tz).time() <= c for o, c in intervals)
            assert slot.end - slot.start == timedelta(minutes=template.slot_minutes)


def test_no_slots_on_days_off_or_in_the_lunch_break(clinic: DemoClinic) -> None:
    branches = {b.id: b for b in load_demo_data().branches}
    for doctor in load_demo_data().doctors:
        tz = branches[doctor.branch_id].tz
        days_off = {i for i, name in enumerate(WEEKDAYS) if name not in doctor.week}
        lunches = {
            WEEKDAYS.index(day): [(a[1], b[0]) for a, b in itertools.pairwise(intervals)]
            for day, intervals in doctor.week.items()
        }
        free = run(clinic.free_slots(doctor_id=doctor.id, **window()))
        assert free, doctor.id
        for slot in clinic.all_slots(doctor.id):
            local = slot.start.astimezone(tz)
            assert local.weekday() not in days_off
            for lunch_start, lunch_end in lunches[local.weekday()]:
                assert not lunch_start <= local.time() < lunch_end, (doctor.id, local)


def test_some_slots_are_already_taken(clinic: DemoClinic) -> None:
    total = len(clinic.all_slots())
    free = len(run(clinic.free_slots(**window())))
    assert 0.5 * total < free < 0.9 * total


def test_schedule_is_deterministic_across_instances(clock: FakeClock) -> None:
    first = DemoClinic(TODAY, clock=clock, data=load_demo_data().model_copy())
    second = DemoClinic(TODAY, clock=clock, data=load_demo_data().model_copy())
    assert [s.id for s in first.all_slots()] == [s.id for s in second.all_slots()]
    assert run(first.free_slots(**window())) == run(second.free_slots(**window()))
    assert run(first.visits("p-001")) == run(second.visits("p-001"))
    other_day = DemoClinic(TODAY + timedelta(days=1), clock=clock)
    assert run(other_day.free_slots(**window())) != run(first.free_slots(**window()))


def test_time_zones(clinic: DemoClinic) -> None:
    branches = {b.id: b for b in run(clinic.branches())}
    ekb = [s for s in clinic.all_slots("d-08") if s.start.date() == date(2025, 3, 4)]
    msk = [s for s in clinic.all_slots("d-01") if s.start.date() == date(2025, 3, 4)]
    assert ekb[0].start == datetime(2025, 3, 4, 4, 0, tzinfo=UTC)  # 09:00 in Yekaterinburg (UTC+5)
    assert msk[0].start == datetime(2025, 3, 4, 6, 0, tzinfo=UTC)  # 09:00 in Moscow (UTC+3)
    assert branches["b-ekaterinburg"].local(ekb[0].start).time() == time(9, 0)
    assert branches["b-tverskaya"].local(msk[0].start).time() == time(9, 0)


def test_free_slots_are_only_in_the_future(clinic: DemoClinic, clock: FakeClock) -> None:
    clock.now = START + timedelta(hours=5)
    slots = run(clinic.free_slots(**window()))
    assert slots and min(s.start for s in slots) > clock.now
    assert all(slots[i].start <= slots[i + 1].start for i in range(len(slots) - 1))


def test_default_today_and_clock() -> None:
    clinic = DemoClinic()
    assert clinic.today == datetime.now(UTC).date()
    anchored = DemoClinic(TODAY)
    slots = run(
        anchored.free_slots(start=datetime(2025, 3, 3, tzinfo=UTC), end=datetime(2025, 3, 4, tzinfo=UTC))
    )
    assert slots, "a fixed 'today' without a clock starts the clock at midnight UTC of that day"


def test_demo_clinic_satisfies_the_port(clinic: DemoClinic) -> None:
    assert isinstance(clinic, MisPort)


# --- seeded patients --------------------------------------------------------------------------------


def test_seeded_visits(clinic: DemoClinic) -> None:
    visits = run(clinic.visits("p-001"))
    assert [a.id for a in visits.upcoming] == ["a-0001"]
    assert [a.status for a in visits.past] == [AppointmentStatus.FULFILLED, AppointmentStatus.NOSHOW]
    upcoming = visits.upcoming[0]
    assert upcoming.start > START
    assert upcoming.price == Decimal("2500.00") and upcoming.service_id == "sv-ther-1"
    free = {s.start for s in run(clinic.free_slots(doctor_id="d-01", **window()))}
    assert upcoming.start not in free
    run(clinic.cancel("p-001", "a-0001"))
    assert upcoming.start in {s.start for s in run(clinic.free_slots(doctor_id="d-01", **window()))}
    with pytest.raises(NotAllowed):
        run(clinic.cancel("p-001", "a-0002"))  # in the past


def test_every_seeded_visit_is_placed_on_a_working_day() -> None:
    for offset in range(7):  # whatever weekday "today" is
        clinic = DemoClinic(TODAY + timedelta(days=offset), clock=FakeClock(START + timedelta(days=offset)))
        for patient_id in ("p-001", "p-002", "p-003", "p-004", "p-005", "p-006"):
            visits = run(clinic.visits(patient_id))
            assert visits.upcoming or visits.past


def test_balances_and_prescriptions(clinic: DemoClinic) -> None:
    assert run(clinic.balance("p-002")).amount == Decimal("-1500.00")
    assert run(clinic.balance("p-003")).amount == Decimal("3000.00")
    courses = run(clinic.prescriptions("p-001"))
    assert [(c.start, c.end, c.times_of_day) for c in courses] == [
        (TODAY - timedelta(days=5), TODAY + timedelta(days=25), (time(9, 0),))
    ]
    assert run(clinic.prescriptions("p-004"))[0].timezone == "Asia/Yekaterinburg"


def test_find_international_patient(clinic: DemoClinic) -> None:
    found = run(clinic.find_patient_by_phone("+44 7700 900123"))
    assert found is not None and found.id == "p-006"
    assert run(clinic.find_patient_by_phone("8 (999) 100-00-01")) is not None


# --- rules ------------------------------------------------------------------------------------------


def test_booking_a_slot_taken_by_another_patient(clinic: DemoClinic) -> None:
    free = {s.id for s in run(clinic.free_slots(**window()))}
    taken = next(s for s in clinic.all_slots() if s.id not in free and s.start > START)
    with pytest.raises(SlotTaken):
        run(clinic.book("p-001", taken.id))


def test_booking_the_past_and_foreign_services_are_refused(clinic: DemoClinic, clock: FakeClock) -> None:
    slot = run(clinic.free_slots(doctor_id="d-01", **window()))[0]
    with pytest.raises(NotAllowed):
        run(clinic.book("p-001", slot.id, service_id="sv-dent-1"))
    with pytest.raises(NotFound):
        run(clinic.book("p-001", slot.id, service_id="sv-nope"))
    clock.now = slot.start + timedelta(minutes=1)
    with pytest.raises(NotAllowed):
        run(clinic.book("p-001", slot.id))


def test_reschedule_keeps_the_service_within_the_specialty(clinic: DemoClinic) -> None:
    first, second = run(clinic.free_slots(doctor_id="d-01", **window()))[:2]
    booked = run(clinic.book("p-001", first.id, service_id="sv-ther-2"))
    moved = run(clinic.reschedule("p-001", booked.id, second.id))
    assert (moved.service_id, moved.price) == ("sv-ther-2", Decimal("2000.00"))
    assert run(clinic.appointment("p-001", booked.id)).status == AppointmentStatus.CANCELLED
    dentist = run(clinic.free_slots(doctor_id="d-04", **window()))[0]
    moved_again = run(clinic.reschedule("p-001", moved.id, dentist.id))
    assert (moved_again.service_id, moved_again.price) == (None, None)


def test_hold_expires(clinic: DemoClinic, clock: FakeClock) -> None:
    slot = run(clinic.free_slots(**window()))[0]
    hold = run(clinic.hold("p-001", slot.id))
    assert hold.expires_at == START + timedelta(minutes=10)
    assert slot.id not in {s.id for s in run(clinic.free_slots(**window()))}
    clock.now = START + timedelta(minutes=11)
    assert slot.id in {s.id for s in run(clinic.free_slots(**window()))}
    with pytest.raises(NotFound):
        run(clinic.book("p-001", slot.id, hold_id=hold.id))
    assert run(clinic.book("p-002", slot.id)).patient_id == "p-002"


def test_one_hold_per_patient(clinic: DemoClinic) -> None:
    first, second = run(clinic.free_slots(**window()))[:2]
    run(clinic.hold("p-001", first.id))
    run(clinic.hold("p-001", second.id))
    free = {s.id for s in run(clinic.free_slots(**window()))}
    assert first.id in free and second.id not in free


def test_outage(clinic: DemoClinic) -> None:
    clinic.unavailable = True
    with pytest.raises(MisUnavailable):
        run(clinic.branches())
    with pytest.raises(MisUnavailable):
        run(clinic.book("p-001", clinic.all_slots()[0].id))
    clinic.unavailable = False
    assert run(clinic.branches())


def test_shared_instance(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(DemoClinic, "_shared", None)
    first = DemoClinic.shared(TODAY)
    assert DemoClinic.shared() is first and first.today == TODAY


# --- verification -----------------------------------------------------------------------------------


def logged_code(caplog: pytest.LogCaptureFixture, patient_id: str) -> str:
    messages = [r.getMessage() for r in caplog.records if r.name == "clinicbot.mis.demo"]
    match = re.fullmatch(rf"demo MIS verification code for patient {patient_id}: (\d{{4}})", messages[-1])
    assert match, messages
    return match.group(1)


def test_verification_code_is_logged_and_checked(
    clinic: DemoClinic, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clinicbot.mis.demo")
    run(clinic.request_verification("p-001"))
    code = logged_code(caplog, "p-001")
    assert "999" not in caplog.text  # no phone numbers in the log
    wrong = "0000" if code != "0000" else "1111"
    assert run(clinic.check_verification("p-002", code)) is False
    assert run(clinic.check_verification("p-001", wrong)) is False
    assert run(clinic.check_verification("p-001", code)) is True
    assert run(clinic.check_verification("p-001", code)) is False  # used up


def test_verification_allows_three_attempts(clinic: DemoClinic, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="clinicbot.mis.demo")
    run(clinic.request_verification("p-001"))
    code = logged_code(caplog, "p-001")
    wrong = "0000" if code != "0000" else "1111"
    for _ in range(3):
        assert run(clinic.check_verification("p-001", wrong)) is False
    assert run(clinic.check_verification("p-001", code)) is False
    run(clinic.request_verification("p-001"))
    assert run(clinic.check_verification("p-001", logged_code(caplog, "p-001"))) is True


def test_verification_code_expires(
    clinic: DemoClinic, clock: FakeClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="clinicbot.mis.demo")
    run(clinic.request_verification("p-003"))
    code = logged_code(caplog, "p-003")
    clock.now = START + timedelta(minutes=6)
    assert run(clinic.check_verification("p-003", code)) is False
    with pytest.raises(NotFound):
        run(clinic.request_verification("p-nope"))
