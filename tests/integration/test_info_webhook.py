"""About the clinic through the webhook: branches (venue pin, address, opening hours), doctors by specialty,
services with prices, the FAQ, and free text answered from the FAQ before the fallback."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import TgUser, WebhookHarness, callback_update, message_update
from tests.integration.test_account_webhook import mine, patient, press, send_text


@pytest.fixture
def bot(webhook: WebhookHarness) -> WebhookHarness:
    """The webhook, with the booking wizard on the demo clinic's clock."""
    webhook.use_mis_clock()
    return webhook


def open_info(bot: WebhookHarness, user: TgUser) -> None:
    press(bot, user, "О клинике")
    assert mine(bot, user).text.startswith("О клинике")


def test_branch_card_with_a_venue_and_opening_hours(bot: WebhookHarness) -> None:
    user, _ = patient(bot, 8401)
    open_info(bot, user)
    press(bot, user, "Филиалы")
    branches = [b["text"] for b in mine(bot, user).buttons()]
    assert "«Здоровье» на Тверской" in branches and "«Здоровье» на Профсоюзной" in branches
    press(bot, user, "на Тверской")
    venue = next(s for s in bot.said if s.method == "sendVenue")
    assert venue.params["latitude"] == 55.7647 and venue.params["longitude"] == 37.6055
    assert "Тверская" in venue.params["address"]
    card = mine(bot, user).text
    assert "ул. Тверская, д. 12" in card and "+7 495 000-00-01" in card
    assert "пн–сб: 08:00–21:00" in card and "вс: 09:00–18:00" in card
    press(bot, user, "Назад")
    press(bot, user, "на Профсоюзной")
    assert "вс: выходной" in mine(bot, user).text  # no hours on Sunday: closed


def test_doctors_by_specialty_with_a_profile(bot: WebhookHarness) -> None:
    user, _ = patient(bot, 8402)
    open_info(bot, user)
    press(bot, user, "Врачи")
    press(bot, user, "Терапевт")
    text = mine(bot, user).text
    assert "Иванова Мария Сергеевна" in text and "стаж 18 лет" in text
    assert "Петров Алексей Николаевич" in text
    assert "Записаться" in next(b["text"] for b in mine(bot, user).buttons())


def test_services_with_prices(bot: WebhookHarness) -> None:
    user, _ = patient(bot, 8403)
    open_info(bot, user)
    press(bot, user, "Услуги и цены")
    press(bot, user, "Стоматолог")
    text = mine(bot, user).text
    assert "Профессиональная гигиена полости рта — 6 500 ₽ (60 мин)" in text


def test_faq_list_and_answer(bot: WebhookHarness) -> None:
    user, _ = patient(bot, 8404)
    open_info(bot, user)
    press(bot, user, "Частые вопросы")
    press(bot, user, "Где припарковаться")
    assert "парковка" in mine(bot, user).text


def test_free_text_is_answered_from_the_faq(bot: WebhookHarness) -> None:
    en, _ = patient(bot, 8405, language="en")
    assert "empty stomach" in send_text(bot, en, "how do I prepare for a blood test").text
    assert "parking" in send_text(bot, en, "Where can I park?").text
    ru, _ = patient(bot, 8406)
    assert "натощак" in send_text(bot, ru, "Как подготовиться к анализу крови?").text
    assert "парковка" in send_text(bot, ru, "где можно припарковаться").text


def test_no_answer_offers_to_write_to_the_clinic(bot: WebhookHarness) -> None:
    user, _ = patient(bot, 8407)
    said = send_text(bot, user, "у вас есть рентген зубов?")
    assert "Не совсем понял вас" in said.text and "Напишите в клинику" in said.text
    assert said.buttons()[0]["callback_data"] == "menu:chat"
    press(bot, user, "Написать в клинику")  # the hand-off router takes it from here (not the fallback)
    assert "устарела" not in str(bot.said[-1].params.get("text"))


def test_strangers_read_public_information_and_nothing_is_stored(bot: WebhookHarness, ddb: Any) -> None:
    stranger = TgUser(id=8408)
    ddb.reset()
    bot.send(message_update(stranger, "/info"))
    bot.send(callback_update(stranger, "inf:br:-"))
    assert "Выберите филиал" in mine(bot, stranger).text
    assert "парковка" in send_text(bot, stranger, "где парковаться?").text
    said = send_text(bot, stranger, "привет")  # no answer: onboarding's fallback asks for the consent
    assert "/start" in said.text
    assert ddb.writes == 0


def test_info_steps_within_the_dynamodb_budget(bot: WebhookHarness, ddb: Any) -> None:
    user, _ = patient(bot, 8409)
    for label in ("О клинике", "Филиалы", "на Тверской", "Назад", "Назад", "Врачи", "Педиатр"):
        ddb.reset()
        press(bot, user, label)
        assert (ddb.reads, ddb.writes) == (1, 1), label
