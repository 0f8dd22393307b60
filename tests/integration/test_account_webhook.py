"""My account through the webhook: balance (hidden without the MIS capability), visit history, the news
toggle (marketing consent, off by default) and /stop. Also the helpers of the engagement tests
(test_privacy*, test_feedback*, test_referral*, test_info*, test_broadcast*)."""

from __future__ import annotations

from typing import Any

import pytest

from clinicbot.mis.port import Capability
from tests.harness import Said, TgUser, WebhookHarness, callback_update, message_update
from tests.integration.test_booking_webhook import (
    alert,
    fresh_phone,
    mine,
    press,
    run,
)

__all__ = ["DEMO", "alert", "card_of", "mine", "patient", "press", "run", "send_text", "tap"]


@pytest.fixture
def bot(webhook: WebhookHarness) -> WebhookHarness:
    """The webhook, with the booking wizard on the demo clinic's clock."""
    webhook.use_mis_clock()
    return webhook


DEMO = {"p-001": "+7 999 100-00-01", "p-002": "+7 999 100-00-02", "p-003": "+7 999 100-00-03"}


def patient(
    bot: WebhookHarness, user_id: int, *, phone: str | None = None, language: str = "ru"
) -> tuple[TgUser, str]:
    """A consented patient linked to an MIS patient (a demo one by ``phone``, else a new one), at the menu."""
    user = TgUser(id=user_id, language_code=language, first_name="Тест", last_name=None)
    phone = phone or fresh_phone()
    bot.onboard(user, phone)
    found = run(bot.mis.find_patient_by_phone(phone))
    assert found is not None
    return user, found.id


def tap(bot: WebhookHarness, user: TgUser, data: str) -> None:
    """Press a button with this callback data (on the user's last message)."""
    said = mine(bot, user)
    bot.send(callback_update(user, data, message_id=said.message_id or 1))


def send_text(bot: WebhookHarness, user: TgUser, text: str) -> Said:
    bot.send(message_update(user, text))
    return mine(bot, user)


def card_of(user_id: int) -> Any:
    from clinicbot.storage.unit import StateUnit

    return StateUnit(dialogue_ttl_seconds=3600).card(user_id)


def open_account(bot: WebhookHarness, user: TgUser) -> Said:
    press(bot, user, "Мой кабинет")
    screen = mine(bot, user)
    assert screen.text.startswith("Мой кабинет")
    return screen


# --------------------------------------------------------------------------- balance and history
def test_balance_shows_credit_debt_and_zero(bot: WebhookHarness) -> None:
    for user_id, pid, expected in (
        (8101, "p-003", "На вашем счёте 3 000 ₽"),
        (8102, "p-002", "К оплате: 1 500 ₽"),
        (8103, "p-001", "Баланс нулевой"),
    ):
        user, found = patient(bot, user_id, phone=DEMO[pid])
        assert found == pid
        open_account(bot, user)
        press(bot, user, "Мой баланс")
        assert expected in mine(bot, user).text, pid


def test_balance_button_is_hidden_without_the_capability(
    bot: WebhookHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    user, _ = patient(bot, 8104, phone=DEMO["p-003"])
    assert "💳 Мой баланс" in [b["text"] for b in open_account(bot, user).buttons()]
    reduced = frozenset(bot.mis.capabilities) - {Capability.BALANCE}
    monkeypatch.setattr(type(bot.mis), "capabilities", property(lambda self: reduced))
    press(bot, user, "Меню")
    screen = open_account(bot, user)
    assert "💳 Мой баланс" not in [b["text"] for b in screen.buttons()]
    tap(bot, user, "acc:bal")  # an old button: refused politely, the MIS is not asked
    assert "недоступен" in alert(bot)


def test_history_lists_past_visits_latest_first(bot: WebhookHarness) -> None:
    user, pid = patient(bot, 8105, phone=DEMO["p-001"])
    past = run(bot.mis.visits(pid)).past
    assert len(past) >= 2
    open_account(bot, user)
    press(bot, user, "История визитов")
    text = mine(bot, user).text
    assert text.startswith("Ваши прошедшие визиты:")
    assert "состоялся" in text and "неявка" in text
    assert text.index("состоялся") < text.index("неявка")  # a-0002 (-21 days) before a-0003 (-45 days)


def test_history_of_a_new_patient_is_empty(bot: WebhookHarness) -> None:
    user, _ = patient(bot, 8106)
    open_account(bot, user)
    press(bot, user, "История визитов")
    assert "Прошедших визитов пока нет" in mine(bot, user).text


def test_account_needs_a_linked_patient(bot: WebhookHarness) -> None:
    stranger = TgUser(id=8107)
    bot.send(callback_update(stranger, "menu:account"))
    assert "согласие" in alert(bot)


def test_mis_outage_is_polite(bot: WebhookHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    from clinicbot.mis.errors import MisUnavailable

    user, _ = patient(bot, 8108, phone=DEMO["p-003"])
    open_account(bot, user)

    async def down(*args: Any, **kwargs: Any) -> Any:
        raise MisUnavailable("test")

    monkeypatch.setattr(bot.mis, "balance", down)
    press(bot, user, "Мой баланс")
    assert "не отвечает" in alert(bot)


# --------------------------------------------------------------------------- marketing consent
def test_news_are_off_by_default_and_need_their_own_consent(bot: WebhookHarness) -> None:
    user, _ = patient(bot, 8110)
    assert card_of(user.id).marketing_at is None  # the personal-data consent is not a marketing one
    screen = open_account(bot, user)
    assert "📣 Новости: выкл." in [b["text"] for b in screen.buttons()]
    press(bot, user, "Новости")
    consent = mine(bot, user)
    assert "отдельное согласие" in consent.text and "/stop" in consent.text
    press(bot, user, "Согласен")
    assert card_of(user.id).marketing_at is not None
    assert "📣 Новости: вкл." in [b["text"] for b in mine(bot, user).buttons()]
    press(bot, user, "Новости")  # on -> off at once
    assert card_of(user.id).marketing_at is None


def test_stop_unsubscribes(bot: WebhookHarness) -> None:
    user, _ = patient(bot, 8111)
    open_account(bot, user)
    press(bot, user, "Новости")
    press(bot, user, "Согласен")
    assert card_of(user.id).wants_marketing
    said = send_text(bot, user, "/stop")
    assert "отписаны" in said.text
    assert card_of(user.id).marketing_at is None


def test_account_steps_stay_within_the_dynamodb_budget(bot: WebhookHarness, ddb: Any) -> None:
    user, _ = patient(bot, 8112, phone=DEMO["p-003"])
    for step in ("Мой кабинет", "Мой баланс", "Кабинет", "История визитов", "Кабинет", "Новости", "Согласен"):
        ddb.reset()
        press(bot, user, step)
        assert (ddb.reads, ddb.writes) == (1, 1), (step, dict(ddb.calls))
