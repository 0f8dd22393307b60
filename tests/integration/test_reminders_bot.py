"""The bot's side of reminders, through the webhook (real aiogram dispatch, moto, the fake Bot API):
Confirm / Cancel / Reschedule under a reminder, "taken", the settings menu, the patient's own medication
schedule, a free-text reply to a reminder (-> the operators), and blocked / unblocked notices."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from clinicbot.mis.models import AppointmentStatus
from clinicbot.reminders.callbacks import RemAction, pack, visit_button
from clinicbot.reminders.items import Kind, Status
from clinicbot.reminders.planner import ReminderPlanner
from clinicbot.telegram.routers.reminders import REPLY_KIND, RemCb, RemSetCb
from tests.harness import BOT_ID, TgUser, WebhookHarness, callback_update, message_update, mis_clock
from tests.reminders_helpers import configure_reminder_table

PHONE_P001 = "+7 999 100-00-01"  # the demo clinic's p-001: a-0001 on Wednesday 10:00, rx-001 daily 09:00


@pytest.fixture
def bot(webhook: WebhookHarness) -> Iterator[tuple[WebhookHarness, TgUser, Any]]:
    configure_reminder_table()
    webhook.use_mis_clock()
    user = TgUser(id=7001)
    webhook.onboard(user, PHONE_P001)
    from clinicbot.reminders.dynamo import DynamoReminderStore

    store = DynamoReminderStore()
    planner = ReminderPlanner(
        store, branch_tz={"b-tverskaya": "Europe/Moscow", "b-profsoyuznaya": "Europe/Moscow"}
    )
    now = mis_clock(webhook.mis)()
    visits = asyncio.run(webhook.mis.visits("p-001"))
    planner.sync_patient_appointments(
        telegram_user_id=user.id, patient_id="p-001", appointments=list(visits.upcoming), now=now
    )
    planner.sync_patient_prescriptions(
        telegram_user_id=user.id,
        patient_id="p-001",
        prescriptions=asyncio.run(webhook.mis.prescriptions("p-001")),
        now=now,
    )
    webhook.clear()
    yield webhook, user, store


def card_of(user_id: int) -> Any:
    from clinicbot.storage.patients import DynamoPatientDirectory

    return DynamoPatientDirectory().card(user_id)


def press(webhook: WebhookHarness, user: TgUser, data: str) -> None:
    webhook.send(callback_update(user, data, message_id=42))


def answers(webhook: WebhookHarness) -> list[str]:
    return [str(s.params.get("text") or "") for s in webhook.said if s.method == "answerCallbackQuery"]


def test_callback_data_is_the_same_on_both_sides() -> None:
    assert RemCb(a="c", v="a-0001").pack() == pack(RemAction.CONFIRM, "a-0001") == "rem:c:a-0001"
    assert RemCb.unpack(visit_button(RemAction.RESCHEDULE, "a-0001")) == RemCb(a="r", v="a-0001")
    long_id = "urn:uuid:" + "f" * 36  # a FHIR id: a short hashed reference
    assert len(visit_button(RemAction.CANCEL, long_id).encode()) <= 64
    assert RemCb.unpack(pack(RemAction.TAKEN, "m#xrx-001#202611230600")).v == "m#xrx-001#202611230600"
    assert RemSetCb(a="open").pack() == "rset:open:-"


def test_confirm_from_a_reminder(bot: Any) -> None:
    webhook, user, _store = bot
    press(webhook, user, visit_button(RemAction.CONFIRM, "a-0001"))
    assert any("подтвержд" in a for a in answers(webhook))
    edit = next(s for s in webhook.said if s.method == "editMessageReplyMarkup")
    datas = [b["callback_data"] for b in edit.buttons()]
    assert "rem:c:a-0001" not in datas and "rem:r:a-0001" in datas and "rem:x:a-0001" in datas
    assert asyncio.run(webhook.mis.appointment("p-001", "a-0001")).status is AppointmentStatus.CONFIRMED


def test_cancel_from_a_reminder_asks_first_and_keeps_everything_else(bot: Any) -> None:
    webhook, user, store = bot
    before = card_of(user.id)
    press(webhook, user, visit_button(RemAction.CANCEL, "a-0001"))
    question = webhook.last_message()
    assert "Отменить визит" in question.text
    assert asyncio.run(webhook.mis.appointment("p-001", "a-0001")).status is AppointmentStatus.BOOKED
    webhook.clear()
    press(webhook, user, question.button("Да")["callback_data"])
    assert "отменён" in webhook.last_message().text
    assert asyncio.run(webhook.mis.appointment("p-001", "a-0001")).status is AppointmentStatus.CANCELLED
    items = store.user_items(user.id)
    assert {i.status for i in items if i.appointment_id == "a-0001"} == {Status.CANCELLED}
    assert [i.status for i in items if i.kind is Kind.MED] == [Status.PENDING]  # still subscribed
    after = card_of(user.id)
    assert (after.reminders_off, after.reminder_leads) == (before.reminders_off, before.reminder_leads)
    assert any(m.kind == "booking" for m in webhook.outbox.messages)  # the CRM copy of the cancellation


def test_keep_the_visit(bot: Any) -> None:
    webhook, user, _ = bot
    press(webhook, user, "rem:xn:a-0001")
    assert "остаётся" in webhook.last_message().text
    assert asyncio.run(webhook.mis.appointment("p-001", "a-0001")).status is AppointmentStatus.BOOKED


def test_reschedule_opens_the_booking_calendar(bot: Any) -> None:
    webhook, user, _ = bot
    press(webhook, user, visit_button(RemAction.RESCHEDULE, "a-0001"))
    shown = webhook.last_message()
    assert any(b["callback_data"].startswith("by:") for b in shown.buttons())  # days of the calendar


def test_someone_elses_visit_matches_nothing(bot: Any) -> None:
    webhook, user, _ = bot
    press(webhook, user, visit_button(RemAction.CONFIRM, "a-0004"))  # p-002's visit
    assert any("нет среди предстоящих" in a for a in answers(webhook))
    assert asyncio.run(webhook.mis.appointment("p-002", "a-0004")).status is AppointmentStatus.CONFIRMED


def test_taken_is_recorded_once(bot: Any) -> None:
    webhook, user, store = bot
    (item,) = [i for i in store.user_items(user.id) if i.kind is Kind.MED]
    store.update(item, expect={Status.PENDING}, status=Status.SENT, sent_at=datetime.now(UTC))
    press(webhook, user, pack(RemAction.TAKEN, item.item_id))
    first = store.get(user.id, item.item_id).taken_at
    assert first is not None and "Отмечено" in answers(webhook)[-1]
    time.sleep(0.01)
    press(webhook, user, pack(RemAction.TAKEN, item.item_id))
    assert store.get(user.id, item.item_id).taken_at == first
    press(webhook, user, pack(RemAction.TAKEN, "m#xnope#202601010000"))
    assert "устарело" in answers(webhook)[-1]


def test_settings_switch_a_kind_off_and_choose_lead_times(bot: Any) -> None:
    webhook, user, store = bot
    press(webhook, user, "menu:reminders")
    screen = webhook.last_message()
    assert "Настройки напоминаний" in screen.text
    press(webhook, user, screen.button("лекарствах")["callback_data"])
    assert card_of(user.id).reminders_off == ("med",)
    assert "▫️ Напоминания о лекарствах" in [b["text"] for b in webhook.last_message().buttons()]

    press(webhook, user, "rset:leads:-")
    press(webhook, user, "rset:lead:48")
    assert card_of(user.id).reminder_leads == (48, 24, 2)
    leads = {
        i.lead_hours
        for i in store.user_items(user.id, "a#")
        if i.status is Status.PENDING and i.kind is Kind.VISIT
    }
    assert 48 in leads or not leads  # a-0001 is two days off: 48 h may already have passed
    press(webhook, user, "rset:ldef:-")
    assert card_of(user.id).reminder_leads is None
    # a lead time can only go if another one stays
    press(webhook, user, "rset:lead:24")
    press(webhook, user, "rset:lead:2")
    assert "хотя бы один" in answers(webhook)[-1]


def test_a_medication_schedule_of_ones_own(bot: Any) -> None:
    webhook, user, store = bot
    press(webhook, user, "rset:meds:-")
    press(webhook, user, "rset:add:-")
    assert "Как подписать" in webhook.last_message().text
    webhook.send(message_update(user, "Витамины"))
    webhook.send(message_update(user, "8:00, 20.30"))
    assert "В какие дни" in webhook.last_message().text
    press(webhook, user, "rset:day:6")  # no Sundays
    press(webhook, user, "rset:days:-")
    press(webhook, user, "rset:dur:7")
    assert "Первое напоминание" in webhook.last_message().text
    (series,) = store.list_series(user.id)
    assert series["label"] == "Витамины" and series["times"] == ["08:00", "20:30"] and 6 not in series["days"]
    pending = [i for i in store.user_items(user.id, f"m#{series['id']}#") if i.status is Status.PENDING]
    assert len(pending) == 1
    press(webhook, user, f"rset:del:{series['id']}")
    assert store.list_series(user.id) == []
    assert {i.status for i in store.user_items(user.id, f"m#{series['id']}#")} == {Status.CANCELLED}


def test_a_free_text_reply_to_a_reminder_goes_to_the_operators(bot: Any) -> None:
    webhook, user, _ = bot
    from clinicbot.storage.patients import DynamoPatientDirectory

    DynamoPatientDirectory().note_reminded(user.id, datetime.now(UTC) - timedelta(minutes=30))
    webhook.send(message_update(user, "Я опоздаю минут на десять"))
    assert "администратору" in webhook.last_message().text
    (message,) = webhook.outbox.of_kind(REPLY_KIND)
    assert message.payload["user_id"] == user.id and message.payload["patient_id"] == "p-001"
    assert "text" not in message.payload  # ids only: the hand-off copies the message by its id


def test_a_telegram_reply_to_an_old_reminder_also_goes_to_the_operators(bot: Any) -> None:
    webhook, user, _ = bot
    reminder = {
        "message_id": 77,
        "date": int(time.time()) - 86400,
        "chat": user.chat(),
        "from": {"id": BOT_ID, "is_bot": True, "first_name": "ClinicBot"},
        "text": "🔔 Напоминаем…",
        "reply_markup": {"inline_keyboard": [[{"text": "✅", "callback_data": "rem:c:a-0001"}]]},
    }
    webhook.send(message_update(user, "А можно прийти пораньше?", reply_to_message=reminder))
    (message,) = webhook.outbox.of_kind(REPLY_KIND)
    assert message.payload["reply_to_message_id"] == 77


def test_free_text_long_after_a_reminder_is_not_a_reply(bot: Any) -> None:
    webhook, user, _ = bot
    webhook.send(message_update(user, "Здравствуйте"))
    assert not webhook.outbox.of_kind(REPLY_KIND)


def test_blocked_and_unblocked(bot: Any) -> None:
    webhook, user, _ = bot

    bot_user = {"id": BOT_ID, "is_bot": True, "first_name": "ClinicBot"}

    def as_member(status: str) -> dict[str, Any]:
        return {"user": bot_user, "status": status} | ({"until_date": 0} if status == "kicked" else {})

    def member(status: str) -> dict[str, Any]:
        return {
            "update_id": int(time.time() * 1000) % 10**9,
            "my_chat_member": {
                "chat": user.chat(),
                "from": user.as_dict(),
                "date": int(time.time()),
                "old_chat_member": as_member("member" if status == "kicked" else "kicked"),
                "new_chat_member": as_member(status),
            },
        }

    webhook.send(member("kicked"))
    assert card_of(user.id).unreachable_at is not None
    webhook.send(member("member"))
    assert card_of(user.id).unreachable_at is None
