"""What the two scheduled functions cost per run when there is little or nothing to do, counted in DynamoDB
requests per table under moto (the clinic pays per request unit; ~8,640 reminders runs and ~2,880 MIS sync
runs a month):

- a reminders run with nothing due makes no write (no lock, no cursor move within the hour) and no metric;
- an MIS sync run inside ``visits_every_minutes`` reads one small cursor item and nothing of the patients: no
  MIS visits call, no ReminderTable or StateTable request;
- a linked patient whose visits did not change costs the planner one Query and no write.

The usage rollup (``clinicbot-usage``, the metering's) is left out of the counts: it has its own rules.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine

from clinicbot.adapters.mis_demo import DemoClinic
from clinicbot.local.lambda_runner import invoke, load_function
from clinicbot.reminders.items import Status, bucket_of
from tests.harness import TODAY, DdbCounter, load_event
from tests.reminders_helpers import (
    Fn,
    configure_reminder_table,
    invoke_killed_after_claim,
    link,
    reminders_function,
)

NOW = datetime(2026, 11, 23, 5, 0, tzinfo=UTC)  # 08:00 in Moscow, Monday, the demo clinic's first day
RUN_AT = NOW + timedelta(minutes=30)  # reminders runs: mid-hour (test items are due a minute before "now")
REMINDER, STATE, SCHEDULE = "clinicbot-reminder", "clinicbot-state", "clinicbot-schedule"
DEMO_LINKS = {501: "p-001", 502: "p-002", 503: "p-003", 504: "p-004", 505: "p-005", 506: "p-006"}


def emf_names(stdout: str) -> list[str]:
    names: list[str] = []
    for line in stdout.splitlines():
        with contextlib.suppress(ValueError):
            doc = json.loads(line)
            if isinstance(doc, dict) and "_aws" in doc:
                for directive in doc["_aws"]["CloudWatchMetrics"]:
                    names += [m["Name"] for m in directive["Metrics"]]
    return names


# ================================================================================== reminders


@pytest.fixture
def reminders(aws: Any, botapi: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fn]:
    with (
        time_machine.travel(RUN_AT, tick=False),
        reminders_function(botapi, _clinic(), monkeypatch) as loaded,
    ):
        yield loaded


def _clinic() -> DemoClinic:
    return DemoClinic(today=TODAY, clock=lambda: datetime.now(UTC))


def _due_medication(fn: Fn, user_id: int, label: str) -> Any:
    from tests.integration.test_reminders_send import due_medication

    return due_medication(fn.runner.store, user_id, label)


def test_an_idle_reminders_run_writes_nothing_and_emits_no_metric(
    reminders: Fn, capsys: pytest.CaptureFixture[str]
) -> None:
    first = reminders.invoke()  # the very first run: looks a day back, then sets the cursor (one write)
    assert first["due"] == 0 and first["cursor"] == bucket_of(RUN_AT)
    capsys.readouterr()
    with DdbCounter.installed() as ddb:
        for minutes in (5, 10, 25):
            with time_machine.travel(RUN_AT + timedelta(minutes=minutes), tick=False):
                report = reminders.invoke()
            assert report["due"] == 0 and not report["locked_out"]
            assert ddb.writes_to(REMINDER, STATE) == 0, ddb.requests  # no lock, no unlock, no cursor write
            assert ddb.to(REMINDER) == {"GetItem": 1, "Query": 1}  # the cursor item; this hour's bucket
            assert ddb.to(STATE) == {}
            ddb.reset()
    assert emf_names(capsys.readouterr().out) == []  # zeros are not emitted

    with DdbCounter.installed() as ddb, time_machine.travel(RUN_AT + timedelta(minutes=31), tick=False):
        report = reminders.invoke()  # a new hour: the cursor moves, once
        assert report["cursor"] == bucket_of(RUN_AT + timedelta(hours=1))
        assert ddb.to(REMINDER) == {"GetItem": 1, "Query": 2, "UpdateItem": 1}
    with DdbCounter.installed() as ddb, time_machine.travel(RUN_AT + timedelta(minutes=36), tick=False):
        reminders.invoke()
        assert ddb.to(REMINDER) == {"GetItem": 1, "Query": 1}


def test_the_lock_is_taken_only_when_something_is_due(reminders: Fn, botapi: Any) -> None:
    reminders.invoke()
    link(3001, None)
    item = _due_medication(reminders, 3001, "T1")
    with DdbCounter.installed() as ddb:
        report = reminders.invoke()
    assert report["sent"] == {"med": 1}
    ops = ddb.to(REMINDER)
    # lock + claim + finish + unlock (UpdateItem), the next occurrence of the course (PutItem)
    assert ops["UpdateItem"] == 4 and ops["PutItem"] == 1
    assert reminders.runner.store.get(3001, item.item_id).status is Status.SENT
    # the lock was released: the next (idle) run reads and writes nothing more
    with DdbCounter.installed() as ddb:
        assert reminders.invoke()["due"] == 0
    assert ddb.writes_to(REMINDER, STATE) == 0


def test_a_live_lock_keeps_a_run_out_without_a_write(reminders: Fn) -> None:
    store = reminders.runner.store
    lock = store.lock(run_id="other", now=RUN_AT, until=RUN_AT + timedelta(minutes=6))
    assert lock is not None
    link(3002, None)
    _due_medication(reminders, 3002, "T1")
    try:
        with DdbCounter.installed() as ddb:
            assert reminders.invoke()["locked_out"] is True
        assert ddb.to(REMINDER) == {"GetItem": 1}
    finally:
        store.unlock(lock, cursor=lock.cursor or bucket_of(RUN_AT))


def test_a_run_that_another_run_overtook_queries_again_and_loses_no_claim(reminders: Fn, botapi: Any) -> None:
    """Run B goes between run A's query of the index and A's lock: A sees it in the lock's answer (the lock
    count moved on) and queries the index again, so it does not fight over what B already took."""
    from clinicbot.config import Settings
    from clinicbot.local.lambda_runner import LambdaContext
    from clinicbot.reminders.app import build_reminders
    from tests.reminders_helpers import scheduled_event

    a_store = reminders.runner.store
    reminders.invoke()
    link(3003, None)
    _due_medication(reminders, 3003, "T1")
    b = build_reminders(Settings(telegram_api_base=botapi.base_url), mis=_clinic())  # type: ignore[call-arg]
    b_reports: list[dict[str, Any]] = []
    real_lock = a_store.lock

    def b_runs_first(**kwargs: Any) -> Any:
        b_reports.append(b.handle_event(scheduled_event(), LambdaContext("clinicbot-reminders")))
        return real_lock(**kwargs)

    a_store.lock = b_runs_first
    try:
        a = reminders.invoke()
    finally:
        a_store.lock = real_lock
        b.close()
    assert b_reports[0]["sent"] == {"med": 1}
    assert a["due"] == 0 and a["claimed"] == 0 and a["lost_claims"] == 0 and a["sent"] == {}
    assert a_store.read_cursor().locked_until is None  # A released the lock


def test_only_anomalies_become_metrics(
    reminders: Fn, botapi: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    reminders.invoke()
    for user_id in (3101, 3102):
        link(user_id, None)
        _due_medication(reminders, user_id, f"T{user_id}")
    botapi.block_chat(3102)
    capsys.readouterr()
    report = reminders.invoke()
    assert report["sent"] == {"med": 1} and report["blocked"] == 1
    assert emf_names(capsys.readouterr().out) == ["Reminders_blocked"]  # no RemindersSent, no zeros


# ================================================================================== MIS sync


@pytest.fixture
def sync(aws: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, DemoClinic, Counter[str]]]:
    """functions/mis_sync after its cold start, the demo clinic as its MIS (its visits calls counted), the
    six demo patients linked, a week of schedule."""
    from clinicbot.schedule import models as schedule_models

    with time_machine.travel(NOW, tick=False):
        schedule_models.configure(region="eu-central-1")
        configure_reminder_table()
        module = load_function("mis_sync")
        clinic = _clinic()
        calls: Counter[str] = Counter()
        visits, prescriptions = clinic.visits, clinic.prescriptions

        async def counted_visits(patient_id: str) -> Any:
            calls["visits"] += 1
            return await visits(patient_id)

        async def counted_prescriptions(patient_id: str) -> Any:
            calls["prescriptions"] += 1
            return await prescriptions(patient_id)

        monkeypatch.setattr(clinic, "visits", counted_visits)
        monkeypatch.setattr(clinic, "prescriptions", counted_prescriptions)
        monkeypatch.setattr(module.JOB, "mis", clinic)
        monkeypatch.setattr(module.JOB, "settings", module.JOB.settings.model_copy(update={"days": 7}))
        for user_id, patient_id in DEMO_LINKS.items():
            link(user_id, patient_id)
        yield module, clinic, calls


def run_sync(at: datetime) -> dict[str, Any]:
    with time_machine.travel(at, tick=False):
        result: dict[str, Any] = invoke("mis_sync", load_event("mis_sync/scheduled"))
    return result


def test_a_sync_run_inside_the_visits_interval_reads_one_cursor_and_nothing_of_the_patients(
    sync: tuple[Any, DemoClinic, Counter[str]],
) -> None:
    module, _, calls = sync
    assert module.JOB.settings.visits_every_minutes == 180  # the default
    first = run_sync(NOW)
    assert first["ok"] and first["visits"]["patients"] == 6 and first["visits"]["cycle_complete"]
    assert calls["visits"] == 6
    with DdbCounter.installed() as ddb:
        later = run_sync(NOW + timedelta(minutes=15))
    assert later["ok"] and later["visits"] is None
    due = (NOW + timedelta(minutes=180)).isoformat()
    assert later["visits_skipped_reason"] == f"not due until {due}"
    assert calls["visits"] == 6 and calls["prescriptions"] == 6  # no MIS call for the visits pass
    assert ddb.to(REMINDER) == {} and ddb.to(STATE) == {}  # no patient index, no card, no reminder
    # One Query of the SYNC partition: the sync state, the day indexes and the visits cursor (the one read
    # the skip costs comes with them); the state's write is the freshness heartbeat.
    assert ddb.to(SCHEDULE) == {"Query": 1, "PutItem": 1}

    again = run_sync(NOW + timedelta(minutes=180))
    assert again["visits"]["patients"] == 6 and calls["visits"] == 12


def test_an_unchanged_patient_costs_the_planner_one_query_and_no_write(
    sync: tuple[Any, DemoClinic, Counter[str]], monkeypatch: pytest.MonkeyPatch
) -> None:
    module, _, _ = sync
    monkeypatch.setattr(
        module.JOB, "settings", module.JOB.settings.model_copy(update={"visits_every_minutes": 0})
    )
    first = run_sync(NOW)
    assert first["ok"] and first["visits"]["patients"] == 6
    # 15 minutes, 3 hours and 9 hours later (a reminder due in between waits for the reminders function)
    for later in (timedelta(minutes=15), timedelta(hours=3), timedelta(hours=9)):
        with DdbCounter.installed() as ddb:
            again = run_sync(NOW + later)
        assert again["ok"] and again["visits"]["patients"] == 6, again
        assert ddb.writes_to(REMINDER, STATE) == 0, (later, ddb.requests)
        assert ddb.to(REMINDER) == {"Query": 6}  # one per patient: visits and courses at once
        # the linked patients (one page of the patient index) and their cards in one batch
        assert ddb.to(STATE) == {"Scan": 1, "BatchGetItem": 1}


def test_the_planner_reads_no_card_for_a_patient_without_upcoming_visits(aws: Any) -> None:
    from clinicbot.config import Settings
    from clinicbot.reminders.planner import ReminderPlanner

    configure_reminder_table()
    with time_machine.travel(NOW, tick=False):
        link(601, "p-001")
        clinic = _clinic()
        planner = ReminderPlanner.for_settings(Settings(), branches=asyncio.run(clinic.branches()))  # type: ignore[call-arg]
        upcoming = list(asyncio.run(clinic.visits("p-001")).upcoming)
        assert upcoming
        with DdbCounter.installed() as ddb:
            created = planner.sync_patient(
                telegram_user_id=601, patient_id="p-001", appointments=upcoming, prescriptions=None, now=NOW
            )
        assert created.created and ddb.to(STATE) == {"GetItem": 1}  # lead times: the card, once
        with DdbCounter.installed() as ddb:
            planner.prefetch_cards([601])
            same = planner.sync_patient(
                telegram_user_id=601, patient_id="p-001", appointments=upcoming, prescriptions=None, now=NOW
            )
        assert not same.changed and ddb.to(STATE) == {"BatchGetItem": 1} and ddb.to(REMINDER) == {"Query": 1}
        with DdbCounter.installed() as ddb:
            none = planner.sync_patient(
                telegram_user_id=602, patient_id="p-002", appointments=[], prescriptions=None, now=NOW
            )
        assert not none.changed and ddb.to(STATE) == {} and ddb.to(REMINDER) == {"Query": 1}


def test_a_visit_that_went_by_costs_the_planner_no_write(aws: Any) -> None:
    """Its before-visit items, never sent (the reminders function was not running), are left to the run
    (which skips them as late) and to TTL: cancelling them would be a write for nothing."""
    from clinicbot.config import Settings
    from clinicbot.reminders.planner import ReminderPlanner

    configure_reminder_table()
    with time_machine.travel(NOW, tick=False):
        link(611, "p-001")
        clinic = _clinic()
        planner = ReminderPlanner.for_settings(Settings(), branches=asyncio.run(clinic.branches()))  # type: ignore[call-arg]
        (visit,) = asyncio.run(clinic.visits("p-001")).upcoming
        planned = planner.sync_patient(
            telegram_user_id=611, patient_id="p-001", appointments=[visit], prescriptions=None, now=NOW
        )
        assert planned.created
    after = visit.start + timedelta(minutes=30)
    with time_machine.travel(after, tick=False), DdbCounter.installed() as ddb:
        upcoming = list(asyncio.run(clinic.visits("p-001")).upcoming)
        assert visit.id not in {a.id for a in upcoming}
        result = planner.sync_patient(
            telegram_user_id=611, patient_id="p-001", appointments=upcoming, prescriptions=None, now=after
        )
    assert not result.changed and ddb.writes_to(REMINDER, STATE) == 0
    assert ddb.to(REMINDER) == {"Query": 1}


# ================================================================================== writes per message


def _raw(user_id: int, item_id: str) -> dict[str, Any]:
    import boto3

    found = boto3.client("dynamodb", region_name="eu-central-1").get_item(
        TableName=REMINDER,
        Key={"pk": {"S": f"U#{user_id}"}, "sk": {"S": f"R#{item_id}"}},
        ConsistentRead=True,
    )
    return dict(found["Item"])


def test_a_claim_updates_the_index_entry_in_place_and_items_stay_under_one_write_unit(reminders: Fn) -> None:
    """Every write of an item on the due-time index (projection ALL) is also an index write: a claim that
    moved the item in the index (another due_at) would cost a delete and a put there; an item over 1 KB
    would cost two units per write, twice."""
    from clinicbot.metering.capacity import Index, TableSchema, index_write_units, item_size, write_units

    schema = TableSchema(REMINDER, indexes=(Index("due", ("due_bucket", "due_at")),))
    store = reminders.runner.store
    link(3201, None)
    item = _due_medication(reminders, 3201, "A medication label of a realistic length, 40")
    pending = _raw(3201, item.item_id)
    claimed = store.claim(item, now=RUN_AT, lease_until=RUN_AT + timedelta(minutes=6), lease_id="run-1")
    assert claimed is not None and claimed.due_at == item.due_at
    sending = _raw(3201, item.item_id)
    assert index_write_units(pending, sending, schema) == 1  # in place, not a delete and a put
    assert write_units(item_size(pending), item_size(sending)) == 1
    assert store.finish(claimed, lease_id="run-1", status=Status.SENT, sent_at=RUN_AT, message_id=10**9)
    sent = _raw(3201, item.item_id)
    assert index_write_units(sending, sent, schema) == 1  # it leaves the index
    assert write_units(item_size(sending), item_size(sent)) == 1
    assert max(item_size(pending), item_size(sending), item_size(sent)) < 1024


def test_writes_per_sent_message(reminders: Fn, botapi: Any) -> None:
    """Per message: its claim and its "sent" (UpdateItem), a medication's next occurrence (PutItem); per run:
    the lock and the unlock; per patient: the card's last_reminder_at, once however many messages."""
    reminders.invoke()
    users = (3301, 3302, 3303)
    for user_id in users:
        link(user_id, None)
        _due_medication(reminders, user_id, f"A{user_id}")
    _due_medication(reminders, 3301, "B3301")  # a second course of the first patient: two messages
    with DdbCounter.installed() as ddb:
        report = reminders.invoke()
    messages = 4
    assert report["sent"] == {"med": messages}
    assert ddb.to(REMINDER).get("UpdateItem") == 2 * messages + 2
    assert ddb.to(REMINDER).get("PutItem") == messages
    assert ddb.to(STATE).get("UpdateItem") == len(users)
    assert ddb.writes_to(REMINDER, STATE) <= 3 * messages + 2 + len(users)


def test_a_live_claim_of_a_dead_run_holds_the_cursor_and_is_sent_once_its_lease_is_over(
    reminders: Fn, botapi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run dies at 05:58 after claiming (lease to 06:04). The 06:01 run sees the item on the index under a
    live lease: it leaves it (no claim, no lock, no write) and keeps the cursor on the 05:00 bucket; the
    06:06 run sends it."""
    store = reminders.runner.store
    before = RUN_AT + timedelta(minutes=28)  # 05:58
    with time_machine.travel(before, tick=False):
        reminders.invoke()
        link(3401, None)
        item = _due_medication(reminders, 3401, "T1")
        invoke_killed_after_claim(reminders, monkeypatch)
    held = store.get(3401, item.item_id)
    assert held.status is Status.SENDING and bucket_of(held.due_at) == bucket_of(before)
    with time_machine.travel(before + timedelta(minutes=3), tick=False), DdbCounter.installed() as ddb:
        report = reminders.invoke()
    assert report["due"] == 0 and report["cursor"] == bucket_of(before) and not botapi.calls_of("sendMessage")
    assert ddb.writes_to(REMINDER, STATE) == 0
    assert store.read_cursor().cursor == bucket_of(before)
    with time_machine.travel(held.lease_until + timedelta(minutes=2), tick=False):
        report = reminders.invoke()
    assert report["sent"] == {"med": 1} and report["cursor"] == bucket_of(held.lease_until)
    assert store.get(3401, item.item_id).attempts == 2
