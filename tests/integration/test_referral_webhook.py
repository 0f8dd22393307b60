"""Referral links through the webhook: "My link", a newcomer attributed at consent (the counter goes up),
the attribution sent to the CRM with their first booking, and the cases that must attribute nothing."""

from __future__ import annotations

import re
from typing import Any

import pytest

from clinicbot.engagement.referrals import CODE_PATTERN, REFERRAL_KIND, ReferralStore
from tests.harness import TgUser, WebhookHarness, contact_update, message_update
from tests.integration.test_account_webhook import card_of, mine, patient, press, send_text
from tests.integration.test_booking_webhook import (
    fresh_phone,
    run,
    to_confirm,
)


@pytest.fixture
def bot(webhook: WebhookHarness) -> WebhookHarness:
    """The webhook, with the booking wizard on the demo clinic's clock."""
    webhook.use_mis_clock()
    return webhook


LINK = re.compile(r"https://t\.me/(\w+)\?start=([A-Za-z0-9_-]+)")


def my_link(bot: WebhookHarness, user: TgUser) -> tuple[str, str]:
    """Open "My link"; (code, the screen's text)."""
    press(bot, user, "Мой кабинет")
    press(bot, user, "Моя ссылка")
    text = mine(bot, user).text
    match = LINK.search(text)
    assert match, text
    assert match.group(1) == bot.botapi.bot_user["username"]
    return match.group(2), text


def join(bot: WebhookHarness, user_id: int, code: str, *, consent: bool = True) -> TgUser:
    newcomer = TgUser(id=user_id, first_name="Друг", last_name=None)
    bot.send(message_update(newcomer, f"/start {code}"))
    if consent:
        bot.press(newcomer, "✅", said=mine(bot, newcomer))
    return newcomer


def book_first_visit(bot: WebhookHarness, user: TgUser) -> None:
    bot.use_mis_clock()
    to_confirm(bot, user)
    press(bot, user, "✅ Записаться")
    assert "записаны" in mine(bot, user).text.lower()


def test_my_link_is_a_random_code_and_stays_the_same(bot: WebhookHarness, ddb: Any) -> None:
    owner, _ = patient(bot, 8301)
    ddb.reset()
    code, text = my_link(bot, owner)
    assert re.match(CODE_PATTERN, code) and str(owner.id) not in code
    assert len(code) <= 64
    assert "присоединилось: 0" in text
    share = next(b for b in mine(bot, owner).buttons() if "url" in b)
    assert share["url"].startswith("https://t.me/share/url?")
    assert card_of(owner.id).referral_code == code
    press(bot, owner, "Кабинет")
    ddb.reset()
    press(bot, owner, "Моя ссылка")
    assert code in mine(bot, owner).text
    assert (ddb.reads, ddb.writes) == (2, 1)  # the partition + the link's counter; the dialogue


def test_a_newcomer_is_attributed_at_consent_and_the_crm_hears_it_with_the_first_booking(
    bot: WebhookHarness, ddb: Any
) -> None:
    owner, owner_pid = patient(bot, 8302)
    code, _ = my_link(bot, owner)
    newcomer = TgUser(id=8303, first_name="Друг", last_name=None)
    bot.send(message_update(newcomer, f"/start {code}"))
    ddb.reset()
    bot.press(newcomer, "✅", said=mine(bot, newcomer))
    assert (ddb.reads, ddb.writes) == (1, 2)  # + the counter, no read: UpdateItem returns the owner
    assert card_of(newcomer.id).referred_by == code
    phone = fresh_phone()
    bot.send(contact_update(newcomer, phone))
    newcomer_pid = run(bot.mis.find_patient_by_phone(phone)).id

    press(bot, owner, "Кабинет")
    press(bot, owner, "Моя ссылка")
    assert "присоединилось: 1" in mine(bot, owner).text

    assert not bot.outbox.of_kind(REFERRAL_KIND)
    book_first_visit(bot, newcomer)
    (attribution,) = bot.outbox.of_kind(REFERRAL_KIND)
    booking = bot.outbox.of_kind("booking")[-1]
    assert attribution.payload == {
        "event": "first_booking",
        "patient_id": newcomer_pid,
        "appointment_id": booking.payload["appointment_id"],
        "referrer_patient_id": owner_pid,
    }
    assert card_of(newcomer.id).referred_by is None
    press(bot, newcomer, "Меню")
    book_first_visit(bot, newcomer)  # a second booking attributes nothing more
    assert len(bot.outbox.of_kind(REFERRAL_KIND)) == 1


def test_links_that_attribute_nothing(bot: WebhookHarness) -> None:
    owner, _ = patient(bot, 8310)
    code, _ = my_link(bot, owner)
    # the owner's own link, an existing patient's click, an unknown code, something that is no code
    send_text(bot, owner, f"/start {code}")
    other, _ = patient(bot, 8311)
    send_text(bot, other, f"/start {code}")
    unknown = join(bot, 8312, "r" + "A" * 16)
    garbage = join(bot, 8313, "book_d-01")
    assert card_of(owner.id).referred_by is None and card_of(other.id).referred_by is None
    assert card_of(unknown.id).referred_by is None and card_of(garbage.id).referred_by is None
    from clinicbot.storage.models import DialogueItem, StateItem, user_pk

    dialogues = [i for i in StateItem.query(user_pk(unknown.id)) if isinstance(i, DialogueItem)]
    assert all("ref" not in (i.data or {}) for i in dialogues)  # the stash left with the consent
    referrer = ReferralStore().referrer(code)
    assert referrer is not None and referrer.joined == 0


def test_an_erased_referrer_gets_no_attribution(bot: WebhookHarness) -> None:
    owner, _ = patient(bot, 8320)
    code, _ = my_link(bot, owner)
    newcomer = join(bot, 8321, code)
    bot.send(contact_update(newcomer, fresh_phone()))
    send_text(bot, owner, "/forget")
    press(bot, owner, "Да, удалить")
    assert ReferralStore().referrer(code) is None
    book_first_visit(bot, newcomer)
    assert not bot.outbox.of_kind(REFERRAL_KIND)
    assert card_of(newcomer.id).referred_by is None  # the dead code is dropped as well
