"""ReminderPlanner: lead times, quiet hours in the branch's zone, memos, survey, cancel / move, medication
courses -- against the in-memory store and (same tests) the ReminderTable under moto."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from clinicbot.domain.patient import PatientCard
from clinicbot.mis.models import Appointment, AppointmentStatus, Prescription
from clinicbot.reminders.config import QuietHours, ReminderConfig, parse_lead_hours, parse_quiet_hours
from clinicbot.reminders.items import DueItem, Kind, Status
from clinicbot.reminders.medication import new_user_series, next_occurrence, parse_times
from clinicbot.reminders.planner import ReminderPlanner
from clinicbot.reminders.store import InMemoryDirectory, InMemoryReminderStore

MSK = ZoneInfo("Europe/Moscow")
EKB = ZoneInfo("Asia/Yekaterinburg")
TZ = {"b-msk": "Europe/Moscow", "b-ekb": "Asia/Yekaterinburg"}
USER = 4242
NOW = datetime(2026, 11, 23, 9, 0, tzinfo=MSK).astimezone(UTC)  # Monday 09:00 in Moscow


def visit(
    start_local: datetime,
    *,
    id: str = "a-1",
    branch: str = "b-msk",
    minutes: int = 30,
    status: AppointmentStatus = AppointmentStatus.BOOKED,
    service: str | None = "sv-ther-1",
) -> Appointment:
    start = start_local.astimezone(UTC)
    return Appointment(
        id=id,
        patient_id="p-1",
        doctor_id="d-01",
        branch_id=branch,
        start=start,
        end=start + timedelta(minutes=minutes),
        status=status,
        service_id=service,
    )


@pytest.fixture(params=["memory", "dynamo"])
def store(request: pytest.FixtureRequest) -> Iterator[Any]:
    if request.param == "memory":
        yield InMemoryReminderStore()
        return
    from clinicbot.reminders import models
    from clinicbot.reminders.dynamo import DynamoReminderStore
    from tests.harness import aws_tables

    with aws_tables():
        models.configure(table_name="clinicbot-reminder", region="eu-central-1")
        yield DynamoReminderStore()


def planner_for(store: Any, **config: Any) -> ReminderPlanner:
    return ReminderPlanner(store, config=ReminderConfig(**config), branch_tz=TZ)


def by_kind(items: list[DueItem]) -> dict[str, DueItem]:
    return {i.item_id.rsplit("#", 1)[1]: i for i in items}


def local(item: DueItem, tz: ZoneInfo = MSK) -> datetime:
    return item.planned_at.astimezone(tz)


# ----------------------------------------------------------------------------------- config


def test_config_parsing() -> None:
    assert parse_lead_hours("24,2") == (24, 2)
    assert parse_lead_hours(" 2, 24 ,2") == (24, 2)
    for bad in ("", "0", "24;2", "200", "a"):
        with pytest.raises(ValueError):
            parse_lead_hours(bad)
    assert parse_quiet_hours("21:00-09:00") == QuietHours(time(21), time(9))
    assert not parse_quiet_hours("00:00-00:00").enabled
    with pytest.raises(ValueError):
        parse_quiet_hours("25:00-09:00")


def test_quiet_hours_wrap_midnight_in_the_given_zone() -> None:
    quiet = QuietHours()
    assert quiet.contains(datetime(2026, 11, 23, 22, 0, tzinfo=MSK), MSK)
    assert quiet.contains(datetime(2026, 11, 23, 8, 59, tzinfo=MSK), MSK)
    assert not quiet.contains(datetime(2026, 11, 23, 9, 0, tzinfo=MSK), MSK)
    assert quiet.end_after(datetime(2026, 11, 23, 22, 0, tzinfo=MSK), MSK) == datetime(
        2026, 11, 24, 9, 0, tzinfo=MSK
    )
    assert quiet.end_after(datetime(2026, 11, 24, 3, 0, tzinfo=MSK), MSK) == datetime(
        2026, 11, 24, 9, 0, tzinfo=MSK
    )
    # 10:00 in Moscow is 12:00 in Yekaterinburg; 20:00 Moscow is 22:00 there: quiet
    assert quiet.contains(datetime(2026, 11, 23, 20, 0, tzinfo=MSK), EKB)


# ----------------------------------------------------------------------------------- visits


def test_a_visit_gets_reminders_memos_and_survey(store: Any) -> None:
    planner = planner_for(store)
    appointment = visit(datetime(2026, 11, 25, 10, 0, tzinfo=MSK))
    result = planner.sync_patient_appointments(
        telegram_user_id=USER, patient_id="p-1", appointments=[appointment], now=NOW
    )
    items = by_kind(store.user_items(USER))
    assert sorted(items) == ["ma", "mb", "r2", "r24", "sv"]
    assert sorted(result.created) == sorted(i.item_id for i in items.values())
    assert local(items["r24"]) == datetime(2026, 11, 24, 10, 0, tzinfo=MSK)
    assert local(items["r2"]) == datetime(2026, 11, 25, 8, 0, tzinfo=MSK).replace(hour=9)  # quiet -> 09:00
    assert local(items["mb"]) == datetime(2026, 11, 24, 18, 0, tzinfo=MSK)
    assert local(items["ma"]) == datetime(2026, 11, 25, 11, 30, tzinfo=MSK)
    assert local(items["sv"]) == datetime(2026, 11, 25, 13, 30, tzinfo=MSK)
    for item in items.values():
        assert item.status is Status.PENDING and item.due_at == item.planned_at
        assert item.appointment_id == "a-1" and item.patient_id == "p-1" and item.tz == "Europe/Moscow"
        assert item.expires_at and item.expires_at > appointment.end + timedelta(days=29)
    assert items["r24"].kind is Kind.VISIT and items["r24"].lead_hours == 24

    again = planner.sync_patient_appointments(
        telegram_user_id=USER, patient_id="p-1", appointments=[appointment], now=NOW
    )
    assert not again.changed and len(again.unchanged) == 5  # idempotent


def test_quiet_hours_use_the_branch_zone_and_a_reminder_after_the_visit_is_dropped(store: Any) -> None:
    planner = planner_for(store)
    # 09:00 in Yekaterinburg: the 2 h reminder (07:00) would move to 09:00 = the visit itself: dropped
    appointment = visit(datetime(2026, 11, 24, 9, 0, tzinfo=EKB), branch="b-ekb")
    now = datetime(2026, 11, 23, 8, 0, tzinfo=EKB)
    planner.sync_patient_appointments(
        telegram_user_id=USER, patient_id="p-1", appointments=[appointment], now=now
    )
    items = by_kind(store.user_items(USER))
    assert "r2" not in items
    assert local(items["r24"], EKB) == datetime(2026, 11, 23, 9, 0, tzinfo=EKB)
    assert items["r24"].tz == "Asia/Yekaterinburg"
    # the evening memo at 18:00 Yekaterinburg time
    assert local(items["mb"], EKB) == datetime(2026, 11, 23, 18, 0, tzinfo=EKB)


def test_reminders_that_land_together_become_one(store: Any) -> None:
    planner = planner_for(store, lead_hours=(12, 2))
    # 12 h before 10:00 is 22:00 (quiet -> 09:00), 2 h before is 08:00 (quiet -> 09:00): one reminder
    appointment = visit(datetime(2026, 11, 25, 10, 0, tzinfo=MSK))
    planner.sync_patient_appointments(
        telegram_user_id=USER, patient_id="p-1", appointments=[appointment], now=NOW
    )
    items = by_kind(store.user_items(USER))
    assert "r12" not in items and local(items["r2"]).time() == time(9, 0)


def test_past_lead_times_are_not_planned_and_a_late_booking_still_gets_its_memo(store: Any) -> None:
    planner = planner_for(store)
    now = datetime(2026, 11, 23, 12, 0, tzinfo=MSK).astimezone(UTC)
    appointment = visit(datetime(2026, 11, 23, 18, 0, tzinfo=MSK))  # booked at noon for 18:00 today
    planner.sync_patient_appointments(
        telegram_user_id=USER, patient_id="p-1", appointments=[appointment], now=now
    )
    items = by_kind(store.user_items(USER))
    assert "r24" not in items
    assert local(items["r2"]) == datetime(2026, 11, 23, 16, 0, tzinfo=MSK)
    assert items["mb"].due_at == now  # its time (yesterday 18:00) passed: right away


def test_patient_lead_times_come_from_the_card(store: Any) -> None:
    directory = InMemoryDirectory(
        [PatientCard(user_id=USER, created_at=NOW, patient_id="p-1", reminder_leads=(48,))]
    )
    planner = ReminderPlanner(store, config=ReminderConfig(), branch_tz=TZ, directory=directory)
    appointment = visit(datetime(2026, 11, 26, 10, 0, tzinfo=MSK))
    planner.sync_patient_appointments(
        telegram_user_id=USER, patient_id="p-1", appointments=[appointment], now=NOW
    )
    items = by_kind(store.user_items(USER))
    assert {k for k in items if k.startswith("r")} == {"r48"}
    # the patient goes back to 24 + 2: r48 cancelled, the others planned
    result = planner.sync_patient_appointments(
        telegram_user_id=USER, patient_id="p-1", appointments=[appointment], now=NOW, leads=[24, 2]
    )
    items = by_kind(store.user_items(USER))
    assert items["r48"].status is Status.CANCELLED and items["r48"].reason == "replanned"
    assert items["r24"].status is Status.PENDING and items["r2"].status is Status.PENDING
    assert len(result.created) == 2 and len(result.cancelled) == 1
    # and back again: the cancelled one comes back to life
    result = planner.sync_patient_appointments(
        telegram_user_id=USER, patient_id="p-1", appointments=[appointment], now=NOW, leads=[48]
    )
    assert by_kind(store.user_items(USER))["r48"].status is Status.PENDING
    assert len(result.revived) == 1


def test_cancelled_and_moved_visits(store: Any) -> None:
    planner = planner_for(store)
    a1 = visit(datetime(2026, 11, 25, 10, 0, tzinfo=MSK), id="a-1")
    a2 = visit(datetime(2026, 11, 26, 11, 0, tzinfo=MSK), id="a-2")
    planner.sync_patient_appointments(telegram_user_id=USER, patient_id="p-1", appointments=[a1, a2], now=NOW)
    assert len(store.user_items(USER)) == 10

    cancelled = a1.model_copy(update={"status": AppointmentStatus.CANCELLED})
    moved = a2.model_copy(update={"start": a2.start + timedelta(days=1), "end": a2.end + timedelta(days=1)})
    result = planner.sync_patient_appointments(
        telegram_user_id=USER, patient_id="p-1", appointments=[cancelled, moved], now=NOW
    )
    items = store.user_items(USER)
    a1_items = [i for i in items if i.appointment_id == "a-1"]
    assert {i.status for i in a1_items} == {Status.CANCELLED}
    assert {i.reason for i in a1_items} == {"cancelled"}
    old = [i for i in items if i.appointment_id == "a-2" and i.start == a2.start]
    new = [i for i in items if i.appointment_id == "a-2" and i.start == moved.start]
    assert {i.status for i in old} == {Status.CANCELLED} and {i.reason for i in old} == {"moved"}
    assert len(new) == 5 and {i.status for i in new} == {Status.PENDING}
    assert len(result.cancelled) == 10 and len(result.created) == 5


def test_a_future_visit_missing_from_the_list_is_gone_but_a_past_one_keeps_its_after_items(
    store: Any,
) -> None:
    planner = planner_for(store)
    a1 = visit(datetime(2026, 11, 23, 10, 0, tzinfo=MSK), id="a-1")  # in an hour
    a2 = visit(datetime(2026, 11, 25, 10, 0, tzinfo=MSK), id="a-2")
    planner.sync_patient_appointments(telegram_user_id=USER, patient_id="p-1", appointments=[a1, a2], now=NOW)
    later = datetime(2026, 11, 23, 10, 30, tzinfo=MSK).astimezone(UTC)  # a-1 has started; a-2 vanished
    planner.sync_patient_appointments(telegram_user_id=USER, patient_id="p-1", appointments=[], now=later)
    items = {(i.appointment_id, i.item_id.rsplit("#", 1)[1]): i for i in store.user_items(USER)}
    assert items[("a-1", "sv")].status is Status.PENDING
    assert items[("a-1", "ma")].status is Status.PENDING
    assert {i.status for (a, _), i in items.items() if a == "a-2"} == {Status.CANCELLED}
    assert {i.reason for (a, _), i in items.items() if a == "a-2"} == {"gone"}


def test_a_sent_reminder_is_never_replanned(store: Any) -> None:
    planner = planner_for(store)
    a1 = visit(datetime(2026, 11, 25, 10, 0, tzinfo=MSK))
    planner.sync_patient_appointments(telegram_user_id=USER, patient_id="p-1", appointments=[a1], now=NOW)
    r24 = by_kind(store.user_items(USER))["r24"]
    store.update(r24, expect={Status.PENDING}, status=Status.SENT, sent_at=NOW)
    result = planner.sync_patient_appointments(
        telegram_user_id=USER, patient_id="p-1", appointments=[a1], now=NOW, leads=[2]
    )
    assert by_kind(store.user_items(USER))["r24"].status is Status.SENT
    assert r24.item_id not in result.cancelled


def test_cancel_appointment_only_touches_that_visit(store: Any) -> None:
    planner = planner_for(store)
    a1 = visit(datetime(2026, 11, 25, 10, 0, tzinfo=MSK), id="a-1")
    a2 = visit(datetime(2026, 11, 26, 10, 0, tzinfo=MSK), id="a-2")
    planner.sync_patient_appointments(telegram_user_id=USER, patient_id="p-1", appointments=[a1, a2], now=NOW)
    result = planner.cancel_appointment(telegram_user_id=USER, appointment_id="a-1", reason="cancelled")
    assert len(result.cancelled) == 5
    assert {i.status for i in store.user_items(USER) if i.appointment_id == "a-2"} == {Status.PENDING}


# ----------------------------------------------------------------------------------- medication


def rx(**changes: Any) -> Prescription:
    values: dict[str, Any] = {
        "id": "rx-1",
        "patient_id": "p-1",
        "label": "Витамин D3",
        "times_of_day": (time(8, 0), time(20, 0)),
        "start": date(2026, 11, 20),
        "end": date(2026, 11, 30),
        "timezone": "Europe/Moscow",
    }
    values.update(changes)
    return Prescription(**values)


def test_medication_series_and_occurrences() -> None:
    assert parse_times("8:00, 20.30 8:00") == ["08:00", "20:30"]
    with pytest.raises(ValueError):
        parse_times("25:00")
    series = new_user_series(
        label="  ",
        times=["09:00"],
        days=[0, 2],
        start=date(2026, 11, 23),
        end=date(2026, 11, 30),
        tz="Europe/Moscow",
    )
    assert series["label"] is None and series["id"].startswith("u")
    first = next_occurrence(series, NOW - timedelta(minutes=1))
    assert first == datetime(2026, 11, 23, 9, 0, tzinfo=MSK).astimezone(UTC)
    second = next_occurrence(series, first)  # Wednesday
    assert second == datetime(2026, 11, 25, 9, 0, tzinfo=MSK).astimezone(UTC)
    assert next_occurrence(series, datetime(2026, 11, 30, 9, 0, tzinfo=MSK)) is None


def test_prescriptions_keep_one_pending_occurrence(store: Any) -> None:
    planner = planner_for(store)
    result = planner.sync_patient_prescriptions(
        telegram_user_id=USER, patient_id="p-1", prescriptions=[rx()], now=NOW
    )
    (item,) = store.user_items(USER, "m#")
    assert result.created == [item.item_id]
    assert item.kind is Kind.MED and local(item) == datetime(2026, 11, 23, 20, 0, tzinfo=MSK)
    assert item.series and item.series["source"] == "mis" and item.series["rx_id"] == "rx-1"
    assert not planner.sync_patient_prescriptions(
        telegram_user_id=USER, patient_id="p-1", prescriptions=[rx()], now=NOW
    ).changed
    # the doctor changes the times: the pending occurrence is replaced
    changed = planner.sync_patient_prescriptions(
        telegram_user_id=USER, patient_id="p-1", prescriptions=[rx(times_of_day=(time(12, 0),))], now=NOW
    )
    assert len(changed.cancelled) == 1 and len(changed.created) == 1
    pending = [i for i in store.user_items(USER, "m#") if i.status is Status.PENDING]
    assert [local(i).time() for i in pending] == [time(12, 0)]
    # the course is gone from the MIS: nothing pending any more
    planner.sync_patient_prescriptions(telegram_user_id=USER, patient_id="p-1", prescriptions=[], now=NOW)
    assert not [i for i in store.user_items(USER, "m#") if i.status is Status.PENDING]


def test_patient_medication_add_and_remove(store: Any) -> None:
    planner = planner_for(store)
    series = new_user_series(
        label=None,
        times=["21:30"],
        days=range(7),
        start=date(2026, 11, 23),
        end=date(2026, 12, 1),
        tz="Europe/Moscow",
    )
    planner.add_medication(telegram_user_id=USER, patient_id="p-1", series=series, now=NOW)
    assert store.list_series(USER) == [series]
    (item,) = store.user_items(USER, "m#")
    assert local(item) == datetime(2026, 11, 23, 21, 30, tzinfo=MSK)  # the patient's time, quiet or not
    result = planner.remove_medication(telegram_user_id=USER, series_id=series["id"])
    assert result.cancelled == [item.item_id]
    assert store.list_series(USER) == []
