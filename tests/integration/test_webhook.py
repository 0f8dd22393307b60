"""The webhook function end to end: API Gateway event in, aiogram dispatch, DynamoDB under moto, the
demo clinic, a fake Bot API on loopback."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.harness import (
    SECRET,
    TgUser,
    WebhookHarness,
    callback_update,
    contact_update,
    demo_patients,
    load_event,
    message_update,
)


def table_items(aws: Any) -> list[dict[str, Any]]:
    return aws.scan(TableName="clinicbot-state")["Items"]


def items_of(aws: Any, user_id: int) -> list[dict[str, Any]]:
    return [i for i in table_items(aws) if i["pk"]["S"] == f"USER#{user_id}"]


# --------------------------------------------------------------------------- authentication & parsing
@pytest.mark.parametrize(
    ("event", "status"),
    [("webhook/bad-secret", 403), ("webhook/missing-secret", 401)],
)
def test_forged_or_missing_secret_is_refused_and_nothing_happens(
    webhook: WebhookHarness, aws: Any, ddb: Any, event: str, status: int
) -> None:
    response = webhook.invoke(load_event(event))
    assert response["statusCode"] == status
    assert json.loads(response["body"]).get("method") is None
    assert table_items(aws) == []
    assert ddb.calls == {}
    assert webhook.botapi.calls == []


def test_secret_header_name_is_case_insensitive(webhook: WebhookHarness) -> None:
    event = load_event("webhook/start")
    event["headers"] = {
        ("X-Telegram-Bot-Api-Secret-Token" if k.startswith("x-telegram") else k): v
        for k, v in event["headers"].items()
    }
    assert webhook.invoke(event)["statusCode"] == 200


def test_a_secret_that_only_shares_a_prefix_is_refused(webhook: WebhookHarness) -> None:
    assert webhook.send(message_update(TgUser(), "/start"), secret=SECRET[:-1])["statusCode"] == 403
    assert webhook.send(message_update(TgUser(), "/start"), secret=SECRET + "x")["statusCode"] == 403


def test_malformed_body_is_400(webhook: WebhookHarness, aws: Any) -> None:
    assert webhook.invoke(load_event("webhook/malformed"))["statusCode"] == 400
    assert webhook.send("[1, 2, 3]")["statusCode"] == 400
    assert webhook.send('{"message": {"text": "no update id"}}')["statusCode"] == 400
    assert table_items(aws) == []


@pytest.mark.parametrize(
    ("event", "outcome"), [("webhook/unknown-kind", "unknown-kind"), ("webhook/channel-post", "no-user")]
)
def test_unknown_kinds_and_userless_updates_are_200_and_write_nothing(
    webhook: WebhookHarness, aws: Any, ddb: Any, event: str, outcome: str
) -> None:
    response = webhook.invoke(load_event(event))
    assert response["statusCode"] == 200
    assert webhook.outcome.outcome == outcome
    assert ddb.calls == {}
    assert webhook.botapi.calls == []


# --------------------------------------------------------------------------- first dialogue
def test_start_greets_in_russian_and_asks_for_consent_in_the_response_body(
    webhook: WebhookHarness, aws: Any, ddb: Any
) -> None:
    response = webhook.invoke(load_event("webhook/start"))
    body = json.loads(response["body"])
    assert body["method"] == "sendMessage"
    assert body["chat_id"] == 777000111
    assert "Здравствуйте" in body["text"] and "согласие" in body["text"]
    assert "https://example.org/privacy-policy" in body["text"]
    labels = [b["text"] for row in body["reply_markup"]["inline_keyboard"] for b in row]
    assert labels == ["✅ Даю согласие", "Не сейчас"]
    assert webhook.outcome.direct_calls == 0  # the whole reply travelled in the response
    assert [s.via for s in webhook.said] == ["response"]
    assert (ddb.reads, ddb.writes) == (1, 0)  # nothing changed, nothing written
    assert table_items(aws) == []


def test_start_in_english_for_an_english_telegram(webhook: WebhookHarness) -> None:
    webhook.send(message_update(TgUser(language_code="en-GB"), "/start"))
    assert "Hello!" in webhook.last_message().text


def test_consent_declined_stores_nothing(webhook: WebhookHarness, aws: Any) -> None:
    user = TgUser(id=5001)
    webhook.send(message_update(user, "/start"))
    decline = webhook.last_message().button("Не сейчас")["callback_data"]
    webhook.send(callback_update(user, decline))
    assert "ничего о вас не сохранили" in webhook.last_message().text
    webhook.send(message_update(user, "Запишите меня к врачу"))
    assert "/start" in webhook.last_message().text  # asks for consent again, politely
    assert table_items(aws) == []


def test_full_onboarding_links_an_existing_mis_patient(webhook: WebhookHarness, aws: Any) -> None:
    patient = demo_patients()[0]
    user = TgUser(id=5002)
    webhook.send(message_update(user, "/start"))
    webhook.send(callback_update(user, webhook.last_message().button("✅")["callback_data"]))
    request = webhook.last_message()
    assert "номером телефона" in request.text
    assert request.button("Поделиться")["request_contact"] is True

    [card] = [i for i in items_of(aws, user.id) if i["sk"]["S"] == "PROFILE"]
    assert card["consent_version"]["S"] == "1" and "consent_at" in card
    assert "patient_id" not in card

    webhook.send(contact_update(user, "8 " + patient.phone[1:]))
    said = [s.text for s in webhook.messages()[-2:]]
    assert "Нашли вашу карту" in said[0]
    assert "Главное меню" in said[1]
    [card] = [i for i in items_of(aws, user.id) if i["sk"]["S"] == "PROFILE"]
    assert card["patient_id"]["S"] == patient.id
    stored = json.dumps(items_of(aws, user.id), ensure_ascii=False)
    assert patient.phone not in stored and patient.first_name not in stored  # the MIS keeps those


def test_new_phone_registers_a_patient_in_the_mis(webhook: WebhookHarness) -> None:
    import asyncio

    user = TgUser(id=5003, first_name="Олег", last_name="Новиков")
    webhook.onboard(user, phone="+7 999 123-45-00")
    assert "Завели для вас карту" in webhook.messages()[-2].text
    patient = asyncio.run(webhook.mis.find_patient_by_phone("79991234500"))
    assert patient is not None and patient.first_name == "Олег"


def test_someone_elses_contact_is_refused(webhook: WebhookHarness, aws: Any) -> None:
    user = TgUser(id=5004)
    webhook.send(message_update(user, "/start"))
    webhook.send(callback_update(user, webhook.last_message().button("✅")["callback_data"]))
    other = demo_patients()[0]
    webhook.send(contact_update(user, other.phone, owner_id=999999))
    assert "чужой контакт" in webhook.last_message().text
    webhook.send(contact_update(user, other.phone, owner_id=0))  # a contact typed in by hand: no user_id
    assert "чужой контакт" in webhook.last_message().text
    [card] = [i for i in items_of(aws, user.id) if i["sk"]["S"] == "PROFILE"]
    assert "patient_id" not in card


def test_the_sample_contact_events_link_or_refuse(webhook: WebhookHarness, aws: Any) -> None:
    webhook.invoke(load_event("webhook/start"))
    consent = webhook.last_message().button("✅")["callback_data"]
    webhook.send(callback_update(TgUser(id=777000111, first_name="Мария"), consent))
    webhook.invoke(load_event("webhook/contact-foreign"))
    assert "чужой контакт" in webhook.last_message().text
    webhook.invoke(load_event("webhook/contact"))
    assert "Главное меню" in webhook.last_message().text
    [card] = [i for i in items_of(aws, 777000111) if i["sk"]["S"] == "PROFILE"]
    assert "patient_id" in card


def test_duplicate_update_takes_effect_once(webhook: WebhookHarness, aws: Any) -> None:
    user = TgUser(id=5005, first_name="Пётр")
    webhook.send(message_update(user, "/start"))
    webhook.send(callback_update(user, webhook.last_message().button("✅")["callback_data"]))
    registrations: list[str] = []
    real_register = webhook.mis.register_patient

    async def counting_register(registration: Any) -> Any:
        registrations.append(registration.phone)
        return await real_register(registration)

    webhook.mis.register_patient = counting_register
    update = contact_update(user, "+7 999 000-00-05")
    first = webhook.send(update)
    said_after_first = len(webhook.said)
    retry = webhook.send(update)  # Telegram retries the same update_id
    assert first["statusCode"] == retry["statusCode"] == 200
    assert webhook.outcome.outcome == "duplicate"
    assert len(webhook.said) == said_after_first  # nothing said twice
    assert registrations == ["79990000005"]  # nobody registered twice


def test_sample_duplicate_event_is_ignored(webhook: WebhookHarness) -> None:
    user = TgUser(id=777000111, first_name="Мария")
    webhook.onboard(user, phone="+79160001122")
    webhook.invoke(load_event("webhook/text"))
    assert webhook.outcome.outcome == "handled"
    count = len(webhook.said)
    webhook.invoke(load_event("webhook/duplicate"))
    assert webhook.outcome.outcome == "duplicate"
    assert len(webhook.said) == count


def test_language_switch_persists_and_changes_every_text(webhook: WebhookHarness) -> None:
    user = TgUser(id=777000111, first_name="Мария")
    webhook.onboard(user, phone="+79160001122")
    webhook.invoke(load_event("webhook/callback"))  # lang:en
    assert webhook.last_message().text == "Language switched to English."
    webhook.send(message_update(user, "/menu"))
    assert webhook.last_message().text.startswith("Main menu")
    webhook.send(message_update(user, "/help"))
    assert "I help the patients" in webhook.last_message().text


def test_any_other_input_gets_a_helpful_answer(webhook: WebhookHarness) -> None:
    user = TgUser(id=5006)
    webhook.send(message_update(user, "привет"))
    assert "/start" in webhook.last_message().text
    webhook.onboard(user, phone="+7 999 000-00-06")
    webhook.send(message_update(user, "привет"))
    assert "/help" in webhook.last_message().text
    webhook.send(
        message_update(
            user,
            None,
            sticker={
                "file_id": "x",
                "file_unique_id": "y",
                "type": "regular",
                "width": 1,
                "height": 1,
                "is_animated": False,
                "is_video": False,
            },
        )
    )
    assert "/help" in webhook.last_message().text
    webhook.send(callback_update(user, "no-such:button"))
    assert webhook.said[-1].method == "answerCallbackQuery"
    assert webhook.said[-1].params["show_alert"] in (True, "true")


def test_a_handler_failure_answers_politely_and_writes_nothing(
    webhook: WebhookHarness, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = TgUser(id=5007)
    webhook.send(message_update(user, "/start"))
    webhook.send(callback_update(user, webhook.last_message().button("✅")["callback_data"]))
    before = items_of(aws, user.id)

    async def broken(phone: str) -> None:
        raise RuntimeError("bug")

    monkeypatch.setattr(webhook.mis, "find_patient_by_phone", broken)
    response = webhook.send(contact_update(user, "+7 999 000-00-07"))
    assert response["statusCode"] == 200
    assert "Что-то пошло не так" in webhook.last_message().text
    assert items_of(aws, user.id) == before


def test_mis_outage_keeps_the_patient_at_the_phone_step(
    webhook: WebhookHarness, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clinicbot.mis.errors import MisUnavailable

    user = TgUser(id=5008)
    webhook.send(message_update(user, "/start"))
    webhook.send(callback_update(user, webhook.last_message().button("✅")["callback_data"]))

    async def down(phone: str) -> None:
        raise MisUnavailable("timeout")

    monkeypatch.setattr(webhook.mis, "find_patient_by_phone", down)
    webhook.send(contact_update(user, "+7 999 000-00-08"))
    assert "не отвечает" in webhook.last_message().text
    monkeypatch.undo()
    webhook.send(contact_update(user, "+7 999 000-00-08"))
    assert "Главное меню" in webhook.last_message().text


def test_warm_invocations_reuse_one_loop_and_one_http_session(webhook: WebhookHarness) -> None:
    user = TgUser(id=5009)
    webhook.send(message_update(user, "/start"))
    webhook.send(callback_update(user, webhook.last_message().button("✅")["callback_data"]))
    session = webhook.app.processor.bot.session._session
    assert session is not None and not session.closed
    webhook.send(contact_update(user, "+7 999 000-00-09"))  # makes direct Bot API calls again
    assert webhook.app.processor.bot.session._session is session
    assert not webhook.app.loop.is_closed()


def test_every_step_of_a_dialogue_costs_at_most_one_read_and_one_write(
    webhook: WebhookHarness, ddb: Any
) -> None:
    user = TgUser(id=5010)
    steps = [
        lambda: message_update(user, "/start"),
        lambda: callback_update(
            user,
            webhook.last_message().button("✅")["callback_data"],
            message_id=webhook.last_message().message_id or 1,
        ),
        lambda: contact_update(user, "+7 999 000-00-10"),
        lambda: message_update(user, "/language"),
        lambda: callback_update(user, "lang:en", message_id=webhook.last_message().message_id or 1),
        lambda: message_update(user, "/menu"),
        lambda: callback_update(user, "menu:help"),
        lambda: message_update(user, "what?"),
    ]
    budget = []
    for step in steps:
        ddb.reset()
        webhook.send(step())
        assert webhook.outcome.outcome == "handled"
        budget.append((ddb.reads, ddb.writes))
    assert all(reads <= 1 and writes <= 1 for reads, writes in budget), budget
    assert budget[0] == (1, 0)  # a stranger's /start stores nothing
    ddb.reset()
    webhook.send(steps[-1]())
    webhook.send(message_update(user, "/help"))
    ddb.reset()
    last = message_update(user, "/help")
    webhook.send(last)
    ddb.reset()
    webhook.send(last)  # the duplicate: one read, no write
    assert (ddb.reads, ddb.writes) == (1, 0)
