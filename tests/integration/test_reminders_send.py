"""The reminders function against moto and the fake Bot API on loopback: exactly once through 429, 500,
403, a run killed between claim and send, concurrent runs and a run that runs out of time."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from typing import Any

import pytest

from clinicbot.local.lambda_runner import LambdaContext
from clinicbot.reminders.items import DueItem, Status
from clinicbot.reminders.medication import new_user_series
from clinicbot.reminders.planner import medication_item
from tests.reminders_helpers import (
    Fn,
    demo_clinic,
    invoke_killed_after_claim,
    link,
    reminders_function,
    scheduled_event,
    sends,
)


@pytest.fixture
def fn(aws: Any, botapi: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[Fn]:
    with reminders_function(botapi, demo_clinic(), monkeypatch) as loaded:
        yield loaded


def due_medication(store: Any, user_id: int, label: str, *, ago: timedelta = timedelta(minutes=1)) -> DueItem:
    """A patient-made medication reminder due ``ago`` ago (its label identifies the message)."""
    at = (datetime.now(UTC) - ago).replace(second=0, microsecond=0)
    series = new_user_series(
        label=label,
        times=[f"{at.astimezone(UTC):%H:%M}"],
        days=range(7),
        start=at.date() - timedelta(days=1),
        end=at.date() + timedelta(days=3),
        tz="UTC",
    )
    item = medication_item(user_id, None, series, at)
    assert store.create(item)
    return item


def labels_sent(botapi: Any) -> Counter[str]:
    counts: Counter[str] = Counter()
    for call in sends(botapi):
        label = str(call.params["text"]).split(" ", 2)[1]
        counts[label] += 1
    return counts


def test_a_due_reminder_goes_out_once_with_a_taken_button(fn: Fn, botapi: Any) -> None:
    link(2001, None)
    store = fn.runner.store
    item = due_medication(store, 2001, "T1")
    report = fn.invoke()
    assert report["sent"] == {"med": 1} and report["due"] == 1
    (call,) = sends(botapi)
    assert call.chat_id == 2001 and "T1" in call.params["text"]
    buttons = [b for row in call.params["reply_markup"]["inline_keyboard"] for b in row]
    assert buttons[0]["callback_data"] == f"rem:t:{item.item_id}"
    assert all(len(b["callback_data"].encode()) <= 64 for b in buttons)
    stored = store.get(2001, item.item_id)
    assert stored.status is Status.SENT and stored.message_id == call.result["message_id"]
    # the course goes on: the next occurrence is pending (tomorrow), not due
    pending = [i for i in store.user_items(2001) if i.status is Status.PENDING]
    assert len(pending) == 1 and pending[0].planned_at == item.planned_at + timedelta(days=1)

    again = fn.invoke()
    assert again["due"] == 0 and len(sends(botapi)) == 1


def test_429_500_and_403_every_reminder_exactly_once(fn: Fn, botapi: Any) -> None:
    store = fn.runner.store
    for n in range(8):
        link(2100 + n, None)
        due_medication(store, 2100 + n, f"T{n}")
    botapi.fail_next("sendMessage", 429, retry_after=1)
    botapi.fail_next("sendMessage", 500, times=2)
    botapi.block_chat(2103)
    report = fn.invoke()
    assert report["sent"] == {"med": 7} and report["blocked"] == 1
    assert labels_sent(botapi) == Counter({f"T{n}": 1 for n in range(8) if n != 3})
    assert botapi.stats().injected == 3
    from clinicbot.storage.patients import DynamoPatientDirectory

    card = DynamoPatientDirectory().card(2103)
    assert card is not None and card.unreachable_at is not None
    assert {i.status for i in store.user_items(2103) if i.attempts} == {Status.BLOCKED}

    # the blocked patient gets nothing more; the others nothing twice
    due_medication(store, 2103, "T3b")
    again = fn.invoke()
    assert again["skipped"] == {"unreachable": 1} and again["sent"] == {}
    assert labels_sent(botapi) == Counter({f"T{n}": 1 for n in range(8) if n != 3})


def test_a_server_error_that_outlasts_the_retries_is_retried_by_a_later_run(fn: Fn, botapi: Any) -> None:
    link(2200, None)
    store = fn.runner.store
    item = due_medication(store, 2200, "T1")
    fn.runner.sender.max_retries = 1
    fn.runner.sender.backoff_base = 0.01
    try:
        botapi.fail_next("sendMessage", 502, times=2)
        report = fn.invoke()
    finally:
        fn.runner.sender.max_retries, fn.runner.sender.backoff_base = 5, 0.5
    assert report["retry_later"] == 1 and not sends(botapi)
    stored = store.get(2200, item.item_id)
    assert stored.status is Status.PENDING and stored.due_at > datetime.now(UTC) + timedelta(minutes=4)
    store.update(stored, expect={Status.PENDING}, due_at=datetime.now(UTC) - timedelta(seconds=1))
    fn.invoke()
    assert labels_sent(botapi) == Counter({"T1": 1})


def test_a_run_killed_between_claim_and_send_is_picked_up_after_the_lease(
    fn: Fn, botapi: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time_machine

    link(2300, None)
    store = fn.runner.store
    item = due_medication(store, 2300, "T1")
    invoke_killed_after_claim(fn, monkeypatch)
    held = store.get(2300, item.item_id)
    assert held.status is Status.SENDING and held.lease_until is not None
    assert fn.invoke()["due"] == 0 and not sends(botapi)  # the lease still runs: not claimable yet
    with time_machine.travel(held.lease_until + timedelta(seconds=5), tick=True):
        report = fn.invoke()
    assert report["sent"] == {"med": 1}
    assert labels_sent(botapi) == Counter({"T1": 1})
    assert store.get(2300, item.item_id).attempts == 2


@pytest.fixture
def atomic_moto(monkeypatch: pytest.MonkeyPatch) -> None:
    """moto evaluates a condition and writes without a lock, so two threads can both pass one condition;
    DynamoDB applies each conditional write atomically. One request at a time gives moto that property."""
    from pynamodb.connection.base import Connection

    original = Connection._make_api_call
    guard = threading.Lock()

    def atomic(self: Connection, operation_name: str, operation_kwargs: dict[str, Any]) -> Any:
        with guard:
            return original(self, operation_name, operation_kwargs)

    monkeypatch.setattr(Connection, "_make_api_call", atomic)


def test_concurrent_runs_never_send_twice(aws: Any, botapi: Any, atomic_moto: None) -> None:
    """Two function instances at once, the run lock bypassed: the claims alone keep it exactly once."""
    from clinicbot.config import Settings
    from clinicbot.reminders.app import build_reminders
    from clinicbot.reminders.store import RunLock
    from tests.reminders_helpers import configure_reminder_table

    configure_reminder_table()
    apps = [
        build_reminders(Settings(telegram_api_base=botapi.base_url), mis=demo_clinic())  # type: ignore[call-arg]
        for _ in range(2)
    ]
    store = apps[0].runner.store
    for n in range(30):
        link(2400 + n, None)
        due_medication(store, 2400 + n, f"T{n}")
    for app in apps:
        app.runner.store.lock = lambda *, run_id, now, until: RunLock(run_id, None)  # type: ignore[method-assign]
    reports: list[dict[str, Any]] = []
    barrier = threading.Barrier(2)

    def run(app: Any) -> None:
        barrier.wait()
        reports.append(app.handle_event(scheduled_event(), LambdaContext("clinicbot-reminders")))

    threads = [threading.Thread(target=run, args=(app,)) for app in apps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    for app in apps:
        app.close()
    assert labels_sent(botapi) == Counter({f"T{n}": 1 for n in range(30)})
    assert sum(r["claimed"] for r in reports) == 30
    assert sum(sum(r["sent"].values()) for r in reports) == 30


def test_what_is_left_when_time_runs_out_stays_pending_for_the_next_run(fn: Fn, botapi: Any) -> None:
    store = fn.runner.store
    for n in range(45):
        link(2500 + n, None)
        due_medication(store, 2500 + n, f"T{n}")
    short = LambdaContext("clinicbot-reminders", timeout_ms=13_000)  # 3 s after the 10 s margin
    first = fn.app.handle_event(scheduled_event(), short)
    # Under load the 3 s may go before the first send: what matters is that the rest stays pending.
    assert sum(first["sent"].values()) < 45 and first["left_for_next_run"] > 0
    left = [
        i
        for n in range(45)
        for i in store.user_items(2500 + n)
        if i.status is Status.PENDING and i.attempts == 0
    ]
    assert len(left) >= first["left_for_next_run"]
    second = fn.invoke()
    assert sum(first["sent"].values()) + sum(second["sent"].values()) == 45
    assert labels_sent(botapi) == Counter({f"T{n}": 1 for n in range(45)})


def test_a_flood_wait_past_the_deadline_defers_to_the_next_run(fn: Fn, botapi: Any) -> None:
    store = fn.runner.store
    for n in range(5):
        link(2600 + n, None)
        due_medication(store, 2600 + n, f"T{n}")
    botapi.fail_next("sendMessage", 429, retry_after=30)
    started = time.monotonic()
    first = fn.app.handle_event(scheduled_event(), LambdaContext("clinicbot-reminders", timeout_ms=16_000))
    assert time.monotonic() - started < 12
    assert first["deferred"] == 5 and not first["sent"]
    assert {i.status for n in range(5) for i in store.user_items(2600 + n) if i.attempts} == {Status.PENDING}
    second = fn.invoke()
    assert second["sent"] == {"med": 5}
    assert labels_sent(botapi) == Counter({f"T{n}": 1 for n in range(5)})


def test_settings_off_skips_but_the_course_goes_on(fn: Fn, botapi: Any) -> None:
    link(2700, None, reminders_off=("med",))
    store = fn.runner.store
    item = due_medication(store, 2700, "T1")
    report = fn.invoke()
    assert report["skipped"] == {"off": 1} and not sends(botapi)
    assert store.get(2700, item.item_id).status is Status.SKIPPED
    assert [i.status for i in store.user_items(2700) if i.item_id != item.item_id] == [Status.PENDING]


def test_a_stranger_or_an_erased_patient_gets_nothing(fn: Fn, botapi: Any) -> None:
    store = fn.runner.store
    due_medication(store, 2800, "T1")  # no card at all
    assert fn.invoke()["skipped"] == {"no-card": 1}
    assert not sends(botapi)


def test_the_run_lock_keeps_a_second_run_out(fn: Fn) -> None:
    store = fn.runner.store
    now = datetime.now(UTC)
    lock = store.lock(run_id="other", now=now, until=now + timedelta(minutes=6))
    assert lock is not None
    try:
        assert fn.invoke()["locked_out"] is True
    finally:
        store.unlock(lock, cursor=lock.cursor or "H#2026010100")


def test_a_date_helper_is_not_needed() -> None:
    assert date(2026, 11, 23).weekday() == 0
