"""The erasure test: a patient who has used everything (card, dialogue, a referral link someone joined
through, news on, a broadcast received, named feedback and NPS, a booked visit with its slot claim, planned
reminders, the MIS sync's cursor stopped at them) says /forget. Afterwards EVERY table of template.yaml --
created in moto from the template by the ``aws`` fixture -- is scanned, and nothing belonging to the patient
may be left: not their Telegram id, not their MIS patient id or visit ids, not any key derived from them
(``USER#<id>``, ``U#<id>``, their ``REF#<code>``...).

A table added to the template later without a registered eraser fails
``test_every_table_of_the_template_has_an_eraser`` (and, once it holds patient data, the scan)."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Iterator
from datetime import date, timedelta
from typing import Any

import pytest

from clinicbot.infra.template import default_table_names, load_template, table_definitions
from clinicbot.privacy.erasure import ERASURE_KIND, complete_erasure
from clinicbot.privacy.registry import NoPersonalData
from clinicbot.privacy.stores import default_registry
from clinicbot.storage.models import PROFILE_SK, user_pk
from tests.harness import TgUser, WebhookHarness, callback_update, contact_update, message_update
from tests.integration.test_account_webhook import DEMO, card_of, mine, patient, press, run, send_text
from tests.integration.test_booking_webhook import (
    now_of,
    to_confirm,
)


@pytest.fixture
def bot(webhook: WebhookHarness) -> WebhookHarness:
    """The webhook, with the booking wizard on the demo clinic's clock."""
    webhook.use_mis_clock()
    return webhook


X = 913_370_001  # the patient who leaves
Y = 913_370_002  # someone who joined through their link (stays)


# --------------------------------------------------------------------------- scanning
def scan_table(client: Any, name: str) -> Iterator[dict[str, Any]]:
    start: dict[str, Any] | None = None
    while True:
        page = client.scan(TableName=name, **({"ExclusiveStartKey": start} if start else {}))
        yield from page["Items"]
        start = page.get("LastEvaluatedKey")
        if not start:
            return


def values(attribute: Any) -> Iterator[str]:
    """Every scalar inside a DynamoDB attribute value, as text."""
    if isinstance(attribute, dict):
        for tag, inner in attribute.items():
            if tag in ("S", "N"):
                yield str(inner)
            elif tag in ("SS", "NS"):
                yield from (str(v) for v in inner)
            elif tag == "M":
                for v in inner.values():
                    yield from values(v)
            elif tag == "L":
                for v in inner:
                    yield from values(v)
            elif tag == "B":
                yield repr(inner)


def finds(needle: str, text: str) -> bool:
    """``needle`` as a whole token of ``text`` (so ``p-001`` is not found in ``p-0012``)."""
    return re.search(rf"(?<![A-Za-z0-9]){re.escape(needle)}(?![A-Za-z0-9])", text) is not None


def leftovers(client: Any, needles: set[str]) -> dict[str, list[tuple[str, str, str]]]:
    """Table logical id -> (pk, sk, needle) of every item that still holds a needle."""
    found: dict[str, list[tuple[str, str, str]]] = {}
    for logical_id, name in default_table_names().items():
        for item in scan_table(client, name):
            texts = [t for attribute in item.values() for t in values(attribute)]
            for needle in needles:
                if any(finds(needle, text) for text in texts):
                    key = (str(item.get("pk", {}).get("S")), str(item.get("sk", {}).get("S")), needle)
                    found.setdefault(logical_id, []).append(key)
    return found


# --------------------------------------------------------------------------- the coverage guard
def test_every_table_of_the_template_has_an_eraser() -> None:
    registry = default_registry()
    tables = table_definitions()
    assert registry.uncovered(tables) == set(), (
        "a table of template.yaml has no exporter/eraser: register one in clinicbot/privacy/stores.py "
        "(or NoPersonalData with a reason)"
    )


def test_a_table_added_without_an_eraser_is_caught() -> None:
    template = load_template()
    template["Resources"]["LoyaltyTable"] = {
        "Type": "AWS::DynamoDB::Table",
        "Properties": {
            "BillingMode": "PAY_PER_REQUEST",
            "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
            "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
        },
    }
    assert default_registry().uncovered(table_definitions(template)) == {"LoyaltyTable"}
    # and a table declared impersonal is still scanned by the erasure test: a claim, not a blind spot


# --------------------------------------------------------------------------- the scenario
def link_code(said_text: str) -> str:
    match = re.search(r"\?start=([A-Za-z0-9_-]+)", said_text)
    assert match, said_text
    return match.group(1)


def use_everything(bot: WebhookHarness, aws: Any) -> tuple[TgUser, str, str]:
    """X uses every feature that stores something; returns (X, their patient id, their referral code)."""
    x, pid = patient(bot, X, phone=DEMO["p-001"])
    # a referral link, and Y joins through it
    press(bot, x, "Мой кабинет")
    press(bot, x, "Моя ссылка")
    code = link_code(mine(bot, x).text)
    y = TgUser(id=Y, first_name="Друг", last_name=None)
    bot.send(message_update(y, f"/start {code}"))
    bot.press(y, "✅", said=mine(bot, y))
    bot.send(contact_update(y, "+7 999 313-37-02"))
    assert card_of(Y).referred_by == code
    # news on
    press(bot, x, "Кабинет")
    press(bot, x, "Новости")
    press(bot, x, "Согласен")
    # named feedback on a past visit (a low one: a hand-off) and the NPS answer
    bot.send(callback_update(x, "fb:r:a-0002:2"))
    press(bot, x, "Отправить")
    press(bot, x, "9")
    press(bot, x, "Меню")
    # a visit booked through the wizard: a slot claim in the StateTable
    bot.use_mis_clock()
    to_confirm(bot, x)
    press(bot, x, "✅ Записаться")
    assert "записаны" in mine(bot, x).text.lower()
    # reminders planned for X's visits (as the MIS sync does)
    from clinicbot.config import Settings
    from clinicbot.reminders.planner import ReminderPlanner

    planner = ReminderPlanner.for_settings(Settings(), branches=run(bot.mis.branches()))  # type: ignore[call-arg]
    planned = planner.sync_patient_appointments(
        telegram_user_id=X,
        patient_id=pid,
        appointments=run(bot.mis.visits(pid)).upcoming,
        now=now_of(bot.mis),
    )
    assert planned.created
    # the MIS sync's visits pass stopped right at X (a LastEvaluatedKey of the patient GSI)
    from clinicbot.schedule.models import SYNC_PK, VISITS_SK, VisitsCursorItem

    VisitsCursorItem(
        pk=SYNC_PK,
        sk=VISITS_SK,
        cursor={"patient_id": {"S": pid}, "pk": {"S": user_pk(X)}, "sk": {"S": PROFILE_SK}},
        updated_at=now_of(bot.mis),
    ).save()
    # hand-off: a certificate request with its sealed personal fields and the patient's staff thread (as
    # the webhook and the hand-off function write them)
    from clinicbot.handoff.store import DynamoHandoffStore

    handoff = DynamoHandoffStore()
    handoff.open_request(X, f"certificate:{X}:2025", "certificate_request", {"inn": "500100732259"})
    handoff.bind_thread("telegram_group", X, "4711")
    # a broadcast received: a mark in X's partition
    deliver_broadcast(bot)
    return x, pid, code


def deliver_broadcast(bot: WebhookHarness) -> None:
    from clinicbot.engagement.broadcasts import BroadcastRunner, Campaign, start_broadcast
    from clinicbot.sending.sender import BulkSender
    from clinicbot.telegram_api.client import BotApiClient

    campaign_id = start_broadcast(Campaign(texts={"ru": "Скидка 10% на гигиену"}, total_segments=2))

    async def go() -> None:
        client = BotApiClient(bot.botapi.token, base_url=bot.botapi.base_url)
        try:
            runner = BroadcastRunner(sender=BulkSender(client), mis=bot.mis)
            loop = asyncio.get_running_loop()
            report = await runner.run(campaign_id, deadline=loop.time() + 30)
            assert report.sent == 1, report
        finally:
            await client.close()

    asyncio.run(go())


def test_forget_leaves_nothing_of_the_patient_in_any_table(bot: WebhookHarness, aws: Any) -> None:
    registry = default_registry()
    x, pid, code = use_everything(bot, aws)
    visit_ids = {a.id for v in (run(bot.mis.visits(pid)),) for a in (*v.upcoming, *v.past)}
    needles = registry.derived_keys(X, pid) | {str(X), pid, "500100732259"} | visit_ids
    assert {user_pk(X), f"U#{X}", f"REF#{code}"} <= needles

    before = leftovers(aws, needles)  # the scenario really put X's data in these tables
    impersonal = {t for store in registry.stores if isinstance(store, NoPersonalData) for t in store.tables}
    unused = set(table_definitions()) - set(before) - impersonal
    assert not unused, (
        f"extend use_everything() so that X's data is in {unused} too and its erasure is tested"
    )

    said = send_text(bot, x, "/forget")
    assert "Удалить все ваши данные" in said.text
    press(bot, x, "Да, удалить")
    assert "данные удалены" in mine(bot, x).text

    # the CRM is told, with ids only
    (erasure,) = bot.outbox.of_kind(ERASURE_KIND)
    assert erasure.payload["telegram_user_id"] == X and erasure.payload["patient_id"] == pid
    assert set(erasure.payload) == {"telegram_user_id", "patient_id", "reason", "requested_at"}

    # what the webhook can reach by key is gone at once; what only a Scan finds (the slot claim) or what the
    # webhook may not write (the MIS sync's cursor in the read-only schedule cache) waits for the deferred pass
    right_after = leftovers(aws, needles)
    assert set(right_after) <= {"StateTable", "ScheduleTable"}, right_after
    assert all(pk.startswith("SLOT#") for pk, _, _ in right_after.get("StateTable", [])), right_after
    assert all(pk == "SYNC" for pk, _, _ in right_after.get("ScheduleTable", [])), right_after

    # the hand-off function consumes the erasure message: the erasers again, then the sweeps
    complete_erasure(erasure.payload)
    assert leftovers(aws, needles) == {}

    # Y stays a patient; the code on their card now leads to nobody
    assert card_of(Y) is not None and card_of(Y).has_consent
    from clinicbot.engagement.referrals import ReferralStore

    assert ReferralStore().referrer(code) is None
    assert card_of(X) is None


def test_forget_again_after_a_partial_failure_erases_the_rest(bot: WebhookHarness, monkeypatch: Any) -> None:
    from clinicbot.privacy import stores

    x, _pid = patient(bot, 913_370_010)
    bot.send(callback_update(x, "menu:account"))
    real = stores.FeedbackStore.erase
    calls = {"n": 0}

    def flaky(self: Any, telegram_user_id: int, patient_id: str | None) -> int:
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("table throttled")
        return real(self, telegram_user_id, patient_id)

    monkeypatch.setattr(stores.FeedbackStore, "erase", flaky)
    send_text(bot, x, "/forget")
    confirm = mine(bot, x)
    press(bot, x, "Да, удалить", said=confirm)
    assert "Не получилось" in bot.said[-1].params.get("text", "")
    press(bot, x, "Да, удалить", said=confirm)  # the same confirmation again
    assert "данные удалены" in mine(bot, x).text
    assert card_of(x.id) is None
    assert len(bot.outbox.of_kind(ERASURE_KIND)) == 1  # one key per confirmation: the CRM hears it once


def test_withdrawing_consent_is_the_same_erasure(bot: WebhookHarness) -> None:
    x, _pid = patient(bot, 913_370_020)
    said = send_text(bot, x, "/withdraw")
    assert "Отозвать согласие" in said.text
    press(bot, x, "Да, удалить")
    assert "Согласие отозвано" in mine(bot, x).text
    assert card_of(x.id) is None
    (erasure,) = bot.outbox.of_kind(ERASURE_KIND)
    assert erasure.payload["reason"] == "consent_withdrawn"
    # and the bot starts from the beginning
    send_text(bot, x, "/start")
    assert "согласие" in mine(bot, x).text


def test_cancel_keeps_everything(bot: WebhookHarness) -> None:
    x, _ = patient(bot, 913_370_030)
    send_text(bot, x, "/forget")
    press(bot, x, "Нет, оставить")
    assert "ничего не удалено" in mine(bot, x).text
    assert card_of(x.id) is not None
    assert not bot.outbox.of_kind(ERASURE_KIND)


def test_the_stash_of_a_declining_stranger_is_erased(bot: WebhookHarness, aws: Any) -> None:
    """Declining stores nothing, even after a referral link put its code in the dialogue."""
    owner, _ = patient(bot, 913_370_040)
    press(bot, owner, "Мой кабинет")
    press(bot, owner, "Моя ссылка")
    code = link_code(mine(bot, owner).text)
    stranger = TgUser(id=913_370_041)
    bot.send(message_update(stranger, f"/start {code}"))
    assert leftovers(aws, {user_pk(stranger.id)})  # the code waits for the consent...
    bot.press(stranger, "Не сейчас", said=mine(bot, stranger))
    assert leftovers(aws, {user_pk(stranger.id), str(stranger.id)}) == {}  # ...and goes with a "no"


def test_dates_are_fine() -> None:  # the scenario's visits sit in the demo clinic's window
    assert date(2026, 11, 23) - timedelta(days=21) < date(2026, 11, 23)
