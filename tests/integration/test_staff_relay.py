"""The staff Telegram supergroup, both ways through the webhook handler: a patient writes -> the hand-off
function opens the patient's forum topic and copies the message there -> a staff member replies in the
topic (an update from the supergroup, events/webhook/staff-reply.json) -> the reply is copied to the
patient, protected. Refused for a non-member; a patient who blocked the bot -> a note in the topic."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from clinicbot.config import Settings
from clinicbot.handoff.runtime import HandoffApp, build_handoff
from tests.harness import (
    STAFF_GROUP_ID,
    TgUser,
    WebhookHarness,
    drain_outbox,
    group_callback_update,
    group_message_update,
    load_event,
    message_update,
)

PHONE_P001 = "+7 999 100-00-01"
STAFF = TgUser(id=555000111, first_name="Ольга", last_name="Смирнова")  # the sender of staff-reply.json
OUTSIDER = TgUser(id=555000999, first_name="Чужой", last_name=None)


@dataclass
class Rig:
    bot: WebhookHarness
    app: HandoffApp
    api: Any

    def drain(self) -> list[Any]:
        results = drain_outbox(self.bot.outbox, self.app)
        assert not [r for r in results if isinstance(r, Exception)], results
        return results

    def calls(self, method: str, **match: Any) -> list[Any]:
        return [
            c
            for c in self.api.calls
            if c.method == method and c.ok and all(c.params.get(k) == v for k, v in match.items())
        ]

    def patient_writes(self, user: TgUser, text: str) -> None:
        self.bot.send(message_update(user, text))


@pytest.fixture
def rig(aws: object, botapi: Any, mis: Any) -> Iterator[Rig]:
    settings = {"crm_provider": "telegram_group", "staff_group_id": STAFF_GROUP_ID}
    bot = WebhookHarness.create(botapi=botapi, mis=mis, **settings)
    app = build_handoff(Settings(telegram_api_base=botapi.base_url, **settings), mis=mis)  # type: ignore[arg-type]
    botapi.set_member(STAFF_GROUP_ID, STAFF.id, "member")
    yield Rig(bot, app, botapi)
    app.close()
    bot.close()


def open_conversation(rig: Rig, patient: TgUser) -> int:
    """The patient writes to the clinic; the hand-off function creates their topic. Returns its id."""
    rig.bot.onboard(patient, PHONE_P001)
    rig.bot.press(patient, "Написать в клинику")
    rig.patient_writes(patient, "Добрый день! Когда будет готова справка?")
    rig.drain()
    [topic] = rig.calls("createForumTopic", chat_id=STAFF_GROUP_ID)
    return int(topic.result["message_thread_id"])


def staff_reply_event(
    thread_id: int, *, sender: TgUser = STAFF, text: str | None = None, group_id: int = STAFF_GROUP_ID
) -> dict[str, Any]:
    """events/webhook/staff-reply.json, pointed at the topic the test created."""
    event = copy.deepcopy(load_event("webhook/staff-reply"))
    update = json.loads(event["body"])
    message = update["message"]
    message["message_thread_id"] = message["reply_to_message"]["message_thread_id"] = thread_id
    message["reply_to_message"]["message_id"] = thread_id
    message["from"] = {**message["from"], **sender.as_dict()}
    message["chat"]["id"] = message["reply_to_message"]["chat"]["id"] = group_id
    message["message_id"] += thread_id * 100 + sender.id % 1000  # unique per test
    update["update_id"] += thread_id * 100 + sender.id % 1000
    if text is not None:
        message["text"] = text
    event["body"] = json.dumps(update, ensure_ascii=False)
    return event


def test_patient_to_topic_to_staff_reply_to_patient(rig: Rig) -> None:
    anna = TgUser(id=7201)
    topic = open_conversation(rig, anna)
    [created] = rig.calls("createForumTopic")
    assert created.params["name"] == "Анна Кузьмина · p-001"  # from the MIS record, nothing medical
    header = rig.calls("sendMessage", chat_id=STAFF_GROUP_ID, message_thread_id=topic)[0]
    assert "Обращение №1001" in header.params["text"]
    buttons = [b["callback_data"] for row in header.params["reply_markup"]["inline_keyboard"] for b in row]
    assert buttons == ["hcard:take:1001:0", "hcard:done:1001:0"]
    [copied] = rig.calls("copyMessage", chat_id=STAFF_GROUP_ID)
    assert copied.params["from_chat_id"] == anna.id and copied.params["message_thread_id"] == topic

    # The staff member answers in the topic: the update reaches the same webhook.
    event = staff_reply_event(topic)
    response = rig.bot.invoke(event)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["method"] == "setMessageReaction"  # 👀: queued
    [reply] = rig.bot.outbox.of_kind("staff_reply")
    staff_message_id = json.loads(event["body"])["message"]["message_id"]
    assert reply.payload == {
        "group_id": STAFF_GROUP_ID,
        "thread_id": topic,
        "message_id": staff_message_id,
        "user_id": anna.id,
    }
    rig.drain()
    [delivered] = rig.calls("copyMessage", chat_id=anna.id)
    assert (
        delivered.params["from_chat_id"] == STAFF_GROUP_ID
        and delivered.params["message_id"] == staff_message_id
    )
    assert delivered.params["protect_content"] is True  # no forwarding, no saving
    reactions = rig.calls("setMessageReaction", chat_id=STAFF_GROUP_ID, message_id=staff_message_id)
    assert reactions[-1].params["reaction"] == [{"type": "emoji", "emoji": "👌"}]  # delivered

    # The patient writes again: the same topic, no second one.
    rig.patient_writes(anna, "Спасибо!")
    rig.drain()
    assert len(rig.calls("createForumTopic")) == 1
    assert [c.params["message_thread_id"] for c in rig.calls("copyMessage", chat_id=STAFF_GROUP_ID)] == [
        topic,
        topic,
    ]


def test_a_retried_staff_update_is_relayed_once(rig: Rig) -> None:
    anna = TgUser(id=7202)
    topic = open_conversation(rig, anna)
    event = staff_reply_event(topic)
    rig.bot.invoke(event)
    rig.bot.invoke(event)  # Telegram retries the same update (staff have no dialogue item to remember it)
    rig.drain()
    assert len(rig.calls("copyMessage", chat_id=anna.id)) == 1


def test_a_non_member_cannot_reply_to_a_patient(rig: Rig) -> None:
    anna = TgUser(id=7203)
    topic = open_conversation(rig, anna)
    response = rig.bot.invoke(staff_reply_event(topic, sender=OUTSIDER, text="Я не из клиники"))
    assert response["statusCode"] == 200
    body = json.loads(response["body"])
    assert body["method"] == "sendMessage" and "только участники группы" in body["text"]
    assert body["message_thread_id"] == topic  # said in the topic, where it was written
    assert rig.bot.outbox.of_kind("staff_reply") == []
    rig.drain()
    assert rig.calls("copyMessage", chat_id=anna.id) == []


def test_other_groups_notes_and_the_general_topic_stay_put(rig: Rig) -> None:
    anna = TgUser(id=7204)
    topic = open_conversation(rig, anna)
    rig.api.set_member(-1009999999999, STAFF.id, "member")
    rig.bot.invoke(staff_reply_event(topic, group_id=-1009999999999))  # a different group, same topic id
    rig.bot.send(group_message_update(STAFF, "// пациентка просила не звонить до обеда", thread_id=topic))
    rig.bot.send(group_message_update(STAFF, "коллеги, кто сегодня на смене?", thread_id=None))
    assert rig.bot.outbox.of_kind("staff_reply") == []


def test_a_patient_who_blocked_the_bot_is_reported_in_the_topic(rig: Rig) -> None:
    anna = TgUser(id=7205)
    topic = open_conversation(rig, anna)
    rig.api.block_chat(anna.id)
    rig.bot.invoke(staff_reply_event(topic))
    rig.drain()
    notes = [
        c
        for c in rig.calls("sendMessage", chat_id=STAFF_GROUP_ID, message_thread_id=topic)
        if "заблокировал" in c.params["text"]
    ]
    assert len(notes) == 1


def test_telegram_errors_while_relaying_are_retried(rig: Rig) -> None:
    anna = TgUser(id=7206)
    topic = open_conversation(rig, anna)
    rig.bot.invoke(staff_reply_event(topic))
    rig.api.fail_next("copyMessage", 502, times=3)  # the consumer's own retries run out: the queue retries
    [failed] = drain_outbox(rig.bot.outbox, rig.app)
    assert isinstance(failed, Exception) and rig.calls("copyMessage", chat_id=anna.id) == []
    rig.bot.outbox.drained_upto -= 1  # SQS redelivers the message
    rig.drain()
    assert len(rig.calls("copyMessage", chat_id=anna.id)) == 1


def test_request_cards_take_and_done_by_members_only(rig: Rig) -> None:
    anna = TgUser(id=7207)
    rig.bot.onboard(anna, PHONE_P001)
    rig.bot.press(anna, "Перезвоните мне")
    rig.bot.press(anna, "На этот номер")
    rig.bot.press(anna, "Как можно скорее")
    rig.bot.press(anna, "Документы")
    rig.bot.press(anna, "Отправить")
    rig.drain()
    [card] = [
        c for c in rig.calls("sendMessage", chat_id=STAFF_GROUP_ID) if "Обратный звонок" in c.params["text"]
    ]
    text = card.params["text"]
    assert "+7 999 100-00-01" in text and "Документы" in text and "Анна Кузьмина (p-001)" in text
    markup = card.params["reply_markup"]
    card_id = card.result["message_id"]

    def press(user: TgUser, data: str, markup: dict[str, Any]) -> dict[str, Any]:
        return rig.bot.send(group_callback_update(user, data, message_id=card_id, markup=markup))

    refused = press(OUTSIDER, "hcard:take:1001:0", markup)
    assert "только участники группы" in json.loads(refused["body"])["text"]
    taken = json.loads(press(STAFF, "hcard:take:1001:0", markup)["body"])
    assert taken["method"] == "editMessageReplyMarkup"
    taken_markup = taken["reply_markup"]
    assert taken_markup["inline_keyboard"][0][0]["text"] == "✋ Взял(а): Ольга С."
    colleague = TgUser(id=555000222, first_name="Игорь", last_name=None)
    rig.api.set_member(STAFF_GROUP_ID, colleague.id, "administrator")
    busy = json.loads(
        press(colleague, taken_markup["inline_keyboard"][0][0]["callback_data"], taken_markup)["body"]
    )
    assert busy["method"] == "answerCallbackQuery" and "Ольга С." in busy["text"]
    done = json.loads(press(STAFF, "hcard:done:1001:0", taken_markup)["body"])
    assert done["reply_markup"]["inline_keyboard"] == [
        [{"text": "✅ Выполнено: Ольга С.", "callback_data": f"hcard:closed:1001:{STAFF.id}"}]
    ]


def test_a_forged_card_button_in_a_private_chat_is_refused(rig: Rig) -> None:
    anna = TgUser(id=7208)
    rig.bot.onboard(anna, PHONE_P001)
    from tests.harness import callback_update

    response = rig.bot.send(callback_update(anna, "hcard:done:1001:0"))
    body = json.loads(response["body"])
    assert body["method"] == "answerCallbackQuery" and body.get("show_alert") is True


def test_booking_copies_land_in_the_patients_topic(rig: Rig) -> None:
    anna = TgUser(id=7209)
    topic = open_conversation(rig, anna)
    rig.bot.outbox.publish(
        "booking",
        {"event": "booked", "patient_id": "p-001", "appointment_id": "a-9", "doctor_id": "d-001",
         "branch_id": "b-tverskaya", "start": "2026-11-25T07:00:00+00:00", "status": "booked"},
        "booking:a-9:booked",
    )  # fmt: skip
    rig.drain()
    [line] = [c for c in rig.calls("sendMessage", chat_id=STAFF_GROUP_ID) if "a-9" in c.params["text"]]
    assert line.params["message_thread_id"] == topic  # found through the StateTable's patient index
    assert "25.11.2026 10:00" in line.params["text"] and "d-001" not in line.params["text"]  # no doctor
