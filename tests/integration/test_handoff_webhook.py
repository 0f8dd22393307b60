"""The hand-off dialogues through the webhook handler, then the hand-off function on what they queued, with
the signed-webhook CRM on loopback: call me back, tax certificate, write to the clinic."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from clinicbot.config import Settings
from clinicbot.handoff.outbox import FORBIDDEN_PAYLOAD_KEYS
from clinicbot.handoff.runtime import HandoffApp, build_handoff
from clinicbot.local.fake_crm import TEST_CRM_SECRET, FakeCrm
from tests.harness import (
    TgUser,
    WebhookHarness,
    contact_update,
    drain_outbox,
    message_update,
)

PHONE_P001 = "+7 999 100-00-01"  # the demo clinic's Анна Кузьмина, p-001
VALID_INN = "500100732259"


@dataclass
class Rig:
    bot: WebhookHarness
    app: HandoffApp
    crm: FakeCrm

    def drain(self) -> list[Any]:
        results = drain_outbox(self.bot.outbox, self.app)
        assert not [r for r in results if isinstance(r, Exception)], results
        return results

    def alerts(self) -> list[str]:
        return [s.params.get("text", "") for s in self.bot.said if s.method == "answerCallbackQuery"]


def make_rig(botapi: Any, mis: Any, crm: FakeCrm, **settings: Any) -> tuple[WebhookHarness, HandoffApp]:
    bot = WebhookHarness.create(botapi=botapi, mis=mis, **settings)
    app = build_handoff(Settings(telegram_api_base=botapi.base_url, **settings), mis=mis)  # type: ignore[call-arg]
    return bot, app


@pytest.fixture
def rig(aws: object, botapi: Any, mis: Any, crm_server: FakeCrm) -> Iterator[Rig]:
    crm_server.reset()
    bot, app = make_rig(botapi, mis, crm_server, crm_provider="webhook", crm_url=crm_server.webhook_url,
                        crm_secret=TEST_CRM_SECRET)  # fmt: skip
    yield Rig(bot, app, crm_server)
    app.close()
    bot.close()


def test_call_me_back_on_the_number_of_the_record(rig: Rig) -> None:
    anna = TgUser(id=7101)
    rig.bot.onboard(anna, PHONE_P001)
    rig.bot.press(anna, "Перезвоните мне")
    assert "+7 *** ***-**-01" in rig.bot.last_message().text  # masked: enough to recognise it
    rig.bot.press(anna, "На этот номер")
    rig.bot.press(anna, "12:00–15:00")
    rig.bot.press(anna, "Оплата")
    summary = rig.bot.last_message().text
    assert "12:00–15:00" in summary and "Оплата" in summary
    rig.bot.press(anna, "Отправить")
    done = rig.bot.last_message().text
    assert "Заявка №1001 принята" in done and "пн–пт 09:00–20:00" in done
    [queued] = rig.bot.outbox.of_kind("callback_request")
    assert queued.payload["sealed"] is False  # nothing personal to seal: the MIS number is looked up later
    rig.drain()
    [event] = rig.crm.of_type("callback.requested")
    assert event.data["request_number"] == "1001" and event.data["phone"] == "79991000001"
    assert event.data["window"] == "12-15" and event.data["topic"] == "payment"
    assert rig.crm.rejected == 0


def test_call_me_back_on_a_newly_shared_number_with_back_and_validation(rig: Rig) -> None:
    anna = TgUser(id=7102)
    rig.bot.onboard(anna, PHONE_P001)
    rig.bot.press(anna, "Перезвоните мне")
    rig.bot.press(anna, "На другой номер")
    share = rig.bot.last_message()
    assert share.markup["keyboard"][0][0]["request_contact"] is True
    rig.bot.send(message_update(anna, "+7 916 555-44-33"))  # typed, not shared
    assert "кнопкой" in rig.bot.last_message().text
    rig.bot.send(contact_update(anna, "+7 916 555-44-33", owner_id=999))  # someone else's contact
    assert "чужой контакт" in rig.bot.last_message().text
    rig.bot.send(contact_update(anna, "+7 916 555-44-33"))
    assert any("Перезвоним на +7 916 555-44-33" in s.text for s in rig.bot.messages())
    assert rig.bot.app.processor.last_outcome.outcome == "handled"
    rig.bot.press(anna, "Как можно скорее")
    rig.bot.press(anna, "Пропустить")
    rig.bot.press(anna, "Назад")  # from the summary back to the topic
    assert "О чём разговор" in rig.bot.last_message().text
    rig.bot.press(anna, "Документы")
    rig.bot.press(anna, "Отправить")
    [queued] = rig.bot.outbox.of_kind("callback_request")
    assert "phone" not in queued.payload and queued.payload["sealed"] is True  # sealed in the HandoffTable
    assert "79165554433" not in json.dumps(queued.payload)
    rig.drain()
    [event] = rig.crm.of_type("callback.requested")
    assert event.data["phone"] == "79165554433" and event.data["window"] == "asap"
    assert rig.app.consumer.store.sealed(anna.id, queued.idempotency_key) is None  # delivered: forgotten


def test_tax_certificate_with_every_validation(rig: Rig) -> None:
    anna = TgUser(id=7103)
    rig.bot.onboard(anna, PHONE_P001)
    rig.bot.press(anna, "Справка для налогового вычета")
    rig.bot.press(anna, "Далее")
    assert "хотя бы один год" in rig.alerts()[-1]
    year = datetime.now(UTC).year - 1
    rig.bot.press(anna, str(year))
    assert f"✅ {year}" in [b["text"] for b in rig.bot.last_message().buttons()]
    rig.bot.press(anna, "Далее")
    rig.bot.press(anna, "Супруг")
    steps = [
        ("Иван", "Не получилось разобрать ФИО"),
        ("Кузьмин Иван Петрович", "ИНН налогоплательщика"),
        ("7707083893", "ИНН организации"),
        ("500100732258", "опечатка"),
        (VALID_INN, "дату рождения"),
        ("31.02.1980", "Не получилось разобрать дату"),
        ("01.01.2099", "в будущем"),
        ("05.03.1980", "Проверьте, пожалуйста, запрос справки"),
    ]
    for text, expected in steps:
        rig.bot.send(message_update(anna, text))
        assert expected in rig.bot.last_message().text, text
    summary = rig.bot.last_message().text
    assert "Кузьмин Иван Петрович" in summary and VALID_INN in summary and "05.03.1980" in summary
    rig.bot.press(anna, "Отправить")
    assert "Запрос №1001 принят" in rig.bot.last_message().text
    [queued] = rig.bot.outbox.of_kind("certificate_request")
    assert not FORBIDDEN_PAYLOAD_KEYS & set(queued.payload)
    assert VALID_INN not in json.dumps(queued.payload) and "Кузьмин" not in json.dumps(
        queued.payload, ensure_ascii=False
    )
    rig.drain()
    [event] = rig.crm.of_type("certificate.requested")
    assert event.data["years"] == [year]
    assert event.data["taxpayer"] == {"full_name": "Кузьмин Иван Петрович", "inn": VALID_INN,
                                      "birth_date": "1980-03-05", "relation": "spouse"}  # fmt: skip
    assert event.data["patient"]["id"] == "p-001"


def test_write_to_the_clinic_until_the_patient_leaves(rig: Rig) -> None:
    anna = TgUser(id=7104)
    rig.bot.onboard(anna, PHONE_P001)
    rig.bot.press(anna, "Написать в клинику")
    intro = rig.bot.last_message().text
    assert "Мы работаем: пн–пт 09:00–20:00; сб 10:00–16:00" in intro
    assert ("ответим в течение ~30 мин" in intro) or ("клиника закрыта" in intro)
    rig.bot.send(message_update(anna, "Можно ли перенести анализы на вечер?"))
    assert "обращение №1001" in rig.bot.last_message().text
    rig.bot.clear()
    photo = [{"file_id": "PHOTO-SMALL", "file_unique_id": "u1", "width": 90, "height": 90},
             {"file_id": "PHOTO-BIG", "file_unique_id": "u2", "width": 800, "height": 600}]  # fmt: skip
    rig.bot.send(message_update(anna, None, photo=photo, caption="чек"))
    assert [s.method for s in rig.bot.said] == ["setMessageReaction"]  # 👌: taken, no chatter
    rig.bot.send(message_update(anna, None, sticker={"file_id": "S", "file_unique_id": "s", "type": "regular",
                                                      "width": 1, "height": 1, "is_animated": False,
                                                      "is_video": False}))  # fmt: skip
    assert "текст, фото или документ" in rig.bot.last_message().text
    rig.bot.send(message_update(anna, "/menu"))
    assert "Переписка с клиникой завершена" in rig.bot.last_message().text
    rig.bot.send(message_update(anna, "а это уже не в клинику"))
    assert len(rig.bot.outbox.of_kind("chat_message")) == 2
    rig.drain()
    first, second = rig.crm.of_type("message.received")
    assert first.data["message"] == {"id": first.data["message"]["id"], "type": "text",
                                     "text": "Можно ли перенести анализы на вечер?"}  # fmt: skip
    assert first.data["patient"]["first_name"] == "Анна"  # names with the first message only
    assert second.data["message"]["type"] == "photo" and second.data["message"]["text"] == "чек"
    assert second.data["message"]["attachment"]["content_base64"]  # fetched from Telegram for the CRM
    assert "first_name" not in second.data["patient"]
    assert first.data["conversation_id"] == second.data["conversation_id"]


def test_cancel_and_the_gate(rig: Rig) -> None:
    anna = TgUser(id=7105)
    rig.bot.onboard(anna, PHONE_P001)
    rig.bot.press(anna, "Справка для налогового вычета")
    rig.bot.press(anna, "Отмена")
    assert "ничего не отправлено" in rig.bot.last_message().text
    stranger = TgUser(id=7106)
    rig.bot.send(message_update(stranger, "/start"))
    rig.bot.press(stranger, "✅")  # consent, no phone yet
    from tests.harness import callback_update

    rig.bot.send(callback_update(stranger, "menu:chat"))
    assert "номером телефона" in rig.bot.last_message().text  # linked patients only
    assert rig.bot.outbox.messages == []


def test_no_crm_means_the_features_say_so(aws: object, botapi: Any, mis: Any, crm_server: FakeCrm) -> None:
    bot, app = make_rig(botapi, mis, crm_server)  # crm_provider=none
    try:
        anna = TgUser(id=7107)
        bot.onboard(anna, PHONE_P001)
        bot.press(anna, "Перезвоните мне")
        alerts = [s.params.get("text", "") for s in bot.said if s.method == "answerCallbackQuery"]
        assert "не подключена" in alerts[-1] and bot.outbox.messages == []
    finally:
        app.close()
        bot.close()
