"""Usage metering of the hand-off, reminders and MIS sync functions: counters against what they did (the fake
CRM's events, the fake Bot API's calls, an independent spy on the MIS), and the rollup written per run."""

from __future__ import annotations

import copy
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clinicbot import metering
from clinicbot.config import Settings
from clinicbot.handoff.runtime import HandoffApp, build_handoff
from clinicbot.local.fake_crm import TEST_CRM_SECRET, FakeCrm
from clinicbot.metering.rollup import InMemoryRollupStore
from tests.harness import TgUser, WebhookHarness, drain_outbox, load_event, message_update
from tests.integration.test_metering_webhook import MisSpy
from tests.reminders_helpers import configure_reminder_table, link, scheduled_event, sends

PHONE_P001 = "+7 999 100-00-01"


def meter(fn: str, *, every_run: bool = False) -> metering.Meter:
    return metering.Meter(fn, config=metering.MeteringConfig(clinic="c-fn"), store=InMemoryRollupStore(),
                          flush_every_run=every_run)  # fmt: skip


# ------------------------------------------------------------------------------------------ hand-off
@pytest.fixture
def rig(
    aws: object, botapi: Any, mis: Any, crm_server: FakeCrm
) -> Iterator[tuple[WebhookHarness, HandoffApp, FakeCrm]]:
    crm_server.reset()
    settings = {"crm_provider": "webhook", "crm_url": crm_server.webhook_url, "crm_secret": TEST_CRM_SECRET}
    bot = WebhookHarness.create(botapi=botapi, mis=mis, **settings)
    app = build_handoff(Settings(telegram_api_base=botapi.base_url, **settings), mis=mis)  # type: ignore[call-arg]
    yield bot, app, crm_server
    app.close()
    bot.close()


def test_hand_offs_crm_calls_and_relays_match_what_the_functions_did(
    rig: tuple[WebhookHarness, HandoffApp, FakeCrm], botapi: Any
) -> None:
    bot, app, crm = rig
    web = metering.for_webhook(bot.app, meter=meter("webhook"))
    bot.app = web.wrap_app(bot.app)
    handoff = metering.for_handoff(app, meter=meter("handoff"))
    spy = MisSpy(bot.mis)

    anna = TgUser(id=9501)
    bot.onboard(anna, PHONE_P001)
    bot.press(anna, "Перезвоните мне")
    for label in ("На этот номер", "12:00–15:00", "Оплата", "Отправить"):
        bot.press(anna, label)
    bot.send(message_update(anna, "/menu"))
    bot.press(anna, "Написать в клинику")
    bot.send(message_update(anna, "Можно ли перенести анализы на вечер?"))
    queued = len(bot.outbox.messages)
    assert queued >= 2

    spy.calls.clear()
    sent_before = len(botapi.calls)
    results = handoff.call(lambda event: drain_outbox(bot.outbox, app), {})
    assert not [r for r in results if isinstance(r, Exception)], results
    web_usage = web.meter.buffer.pending
    [month] = web_usage
    assert web_usage[month]["handoffs"] == queued  # counted where they were queued
    usage = handoff.last
    assert usage is not None
    assert usage["crm"] == len(crm.events) >= 2  # one CRM call per hand-off delivered
    assert usage["mis"] == spy.total  # the patient looked up for the CRM
    handoff_messages = [
        c for c in botapi.calls[sent_before:] if c.method in ("sendMessage", "copyMessage") and c.ok
    ]
    assert usage["msg.relay"] == len(handoff_messages)
    assert usage["inv.handoff"] == 1


def test_a_staff_reply_from_the_crm_is_one_relayed_message(aws: object, botapi: Any, mis: Any) -> None:
    from clinicbot.handoff.desk import HandoffDesk
    from clinicbot.handoff.outbox import InMemoryOutbox
    from clinicbot.handoff.store import DynamoHandoffStore
    from tests.integration.test_handoff_inbound import PATIENT, call

    store = DynamoHandoffStore()
    HandoffDesk(store, InMemoryOutbox())  # the table is ready
    store.bind_thread("webhook", PATIENT, "c_sampleconversation")
    settings = Settings(telegram_api_base=botapi.base_url, crm_provider="webhook",  # type: ignore[call-arg]
                        crm_url="https://crm.example/hook", crm_secret=TEST_CRM_SECRET)  # fmt: skip
    sample_ts = int(load_event("handoff/inbound-crm")["headers"]["webhook-timestamp"])
    app = build_handoff(settings, store=store, mis=mis, clock=lambda: sample_ts + 2)
    try:
        handoff = metering.for_handoff(app, meter=meter("handoff"))
        event = call(
            {"type": "message", "conversation_id": "c_sampleconversation", "text": "Ждём вас в 10:00."}
        )
        response = handoff.call(app.handle_http, event)
        assert response["statusCode"] == 200
        assert handoff.last is not None
        assert handoff.last["msg.relay"] == len(botapi.calls_of("sendMessage", ok_only=True)) == 1
        assert handoff.last["crm"] == 0  # the CRM called us
    finally:
        app.close()


# ------------------------------------------------------------------------------------------ reminders
def test_reminders_count_messages_by_kind_and_flush_billable_runs(aws: object, botapi: Any, mis: Any) -> None:
    from clinicbot.reminders.app import build_reminders
    from tests.integration.test_reminders_send import due_medication

    configure_reminder_table()
    spy = MisSpy(mis)
    app = build_reminders(Settings(telegram_api_base=botapi.base_url), mis=mis)  # type: ignore[call-arg]
    try:
        store_ = InMemoryRollupStore()
        fm = metering.for_reminders(
            app, meter=metering.Meter("reminders", config=metering.MeteringConfig(clinic="c-fn"), store=store_,
                                      flush_every_run=True)
        )  # fmt: skip
        for user in (2101, 2102):
            link(user, None)
            due_medication(app.runner.store, user, f"M{user}")
        report = fm.call(app.handle_event, scheduled_event())
        assert report["sent"] == {"med": 2}
        assert fm.last is not None
        assert fm.last["msg.reminder"] == len(sends(botapi)) == 2
        assert fm.last["mis"] == spy.total  # reference data for the texts
        again = fm.call(app.handle_event, scheduled_event())
        assert again["due"] == 0 and fm.last["msg.reminder"] == 0
        assert store_.writes == 1  # a run that sent something is flushed; the idle one waits in the buffer
        [item] = store_.items.values()
        assert item.usage["inv.reminders"] == 1 and item.usage["msg.reminder"] == 2
        assert fm.flush() == 1 and store_.writes == 2  # ... until the N/T rule (or a billable run) flushes it
        [item] = store_.items.values()
        assert item.usage["inv.reminders"] == 2 and item.usage["msg.reminder"] == 2
    finally:
        app.close()


# ------------------------------------------------------------------------------------------ MIS sync
def test_mis_sync_counts_its_mis_calls(aws: object, mis: Any) -> None:
    import time_machine

    from clinicbot.schedule import models as schedule_models
    from clinicbot.schedule.job import SyncJob
    from tests.harness import TODAY

    schedule_models.configure(region="eu-central-1")
    now = datetime.combine(TODAY, datetime.min.time(), UTC) + timedelta(hours=5)
    with time_machine.travel(now, tick=False):
        job = SyncJob.from_environment()
        spy = MisSpy(mis)
        job.mis = mis
        job.settings = job.settings.model_copy(update={"days": 3})
        fm = metering.for_mis_sync(job, meter=meter("mis_sync", every_run=True))
        event = copy.deepcopy(load_event("mis_sync/scheduled"))
        result = fm.call(lambda e: job.handle(remaining_seconds=60).as_dict(), event)
    assert result["ok"], result
    assert fm.last is not None and fm.last["mis"] == spy.total > 0
    assert fm.meter.buffer.flushes == 1
