"""Broadcasts: only patients with the separate marketing consent receive a campaign, through the rate-limited
BulkSender (the fake Bot API enforces Telegram's limits: no 429 may come back), each message with an
unsubscribe button; unsubscribed patients never get one again; a campaign goes in chunks and reaches
nobody twice; segments by branch and by last visit."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import Any

import pytest

from clinicbot.engagement.broadcasts import (
    UNSUBSCRIBE_CALLBACK,
    BroadcastRunner,
    Campaign,
    CampaignStatus,
    CampaignStore,
    RunReport,
    Segment,
    start_broadcast,
)
from clinicbot.sending.sender import BulkSender
from clinicbot.telegram_api.client import BotApiClient
from tests.harness import WebhookHarness, callback_update
from tests.integration.test_account_webhook import DEMO, card_of, mine, patient, press, send_text


@pytest.fixture
def bot(webhook: WebhookHarness) -> WebhookHarness:
    """The webhook, with the booking wizard on the demo clinic's clock."""
    webhook.use_mis_clock()
    return webhook


CONSENTED = range(920_000, 920_034)  # 34 patients with the marketing consent
PLAIN = range(920_100, 920_106)  # 6 with the personal-data consent only


def card(user_id: int, *, marketing: bool, language: str = "ru", patient_id: str | None = None) -> None:
    from clinicbot.storage.unit import StateUnit

    unit = StateUnit(dialogue_ttl_seconds=3600)
    now = datetime.now(UTC)
    unit.save_card(
        user_id,
        language=language,
        consent_at=now,
        consent_version="1",
        patient_id=patient_id,
        marketing_at=now if marketing else None,
    )
    unit.flush()


def run_campaign(
    bot: WebhookHarness,
    campaign_id: str,
    *,
    budget: float = 60,
    batch: int = 200,
    max_segments: int | None = None,
    clock: Any = None,
) -> RunReport:
    async def go() -> RunReport:
        client = BotApiClient(bot.botapi.token, base_url=bot.botapi.base_url)
        try:
            runner = BroadcastRunner(
                sender=BulkSender(client), mis=bot.mis, batch=batch, clock=clock or time.monotonic
            )
            return await runner.run(
                campaign_id, deadline=time.monotonic() + budget, max_segments=max_segments
            )
        finally:
            await client.close()

    return asyncio.run(go())


def received(bot: WebhookHarness, text: str) -> dict[int, int]:
    """chat id -> how many messages with ``text`` it got."""
    counts: dict[int, int] = {}
    for call in bot.botapi.calls_of("sendMessage", ok_only=True):
        if call.params.get("text") == text:
            counts[int(call.chat_id)] = counts.get(int(call.chat_id), 0) + 1
    return counts


def test_only_consented_patients_receive_it_within_telegrams_limits(bot: WebhookHarness) -> None:
    for user_id in CONSENTED:
        card(user_id, marketing=True, language="en" if user_id % 5 == 0 else "ru")
    for user_id in PLAIN:
        card(user_id, marketing=False)
    # one consents through the bot, one consents and then sends /stop before the campaign
    fan, _ = patient(bot, 920_200)
    press(bot, fan, "Мой кабинет")
    press(bot, fan, "Новости")
    press(bot, fan, "Согласен")
    quitter, _ = patient(bot, 920_201)
    press(bot, quitter, "Мой кабинет")
    press(bot, quitter, "Новости")
    press(bot, quitter, "Согласен")
    send_text(bot, quitter, "/stop")
    bot.botapi.enforce_rate_limits(global_per_second=30, per_chat_per_second=1)

    campaign_id = start_broadcast(
        Campaign(texts={"ru": "Скидка 10% на гигиену", "en": "10% off teeth cleaning"}, total_segments=4)
    )
    started = bot.botapi.stats().requests
    report = run_campaign(bot, campaign_id)

    expected = {*CONSENTED, fan.id}
    got = received(bot, "Скидка 10% на гигиену") | received(bot, "10% off teeth cleaning")
    assert set(got) == expected and set(got.values()) == {1}
    assert {u for u in got if u % 5 == 0 and u in CONSENTED} == set(received(bot, "10% off teeth cleaning"))
    assert bot.botapi.stats().rate_limited == 0  # count 429s: none
    assert bot.botapi.peak_per_second("sendMessage") <= 30
    assert report.sent == len(expected) and report.status is CampaignStatus.DONE
    sends = bot.botapi.calls_of("sendMessage")[-len(expected) :]
    assert all(
        c.params["reply_markup"]["inline_keyboard"][0][0]["callback_data"] == UNSUBSCRIBE_CALLBACK
        for c in sends
    )
    assert bot.botapi.stats().requests - started == len(expected)

    # the progress lost (a crash before it was saved): the campaign runs again and reaches nobody twice
    store = CampaignStore()
    stored = store.get(campaign_id)
    assert stored is not None
    stored.status, stored.next_segment = CampaignStatus.RUNNING, 0
    store.save_progress(stored)
    again = run_campaign(bot, campaign_id)
    assert again.sent == 0 and again.skipped == len(expected) and again.status is CampaignStatus.DONE
    assert received(bot, "Скидка 10% на гигиену") | received(bot, "10% off teeth cleaning") == got


def test_unsubscribed_patients_never_get_one_again(bot: WebhookHarness) -> None:
    user, _ = patient(bot, 920_300)
    press(bot, user, "Мой кабинет")
    press(bot, user, "Новости")
    press(bot, user, "Согласен")
    first = start_broadcast(Campaign(texts={"ru": "Новость 1"}, total_segments=1))
    run_campaign(bot, first)
    assert received(bot, "Новость 1") == {user.id: 1}
    # the unsubscribe button under the broadcast
    message = next(s for s in bot.botapi.calls_of("sendMessage") if s.params.get("text") == "Новость 1")
    bot.send(callback_update(user, UNSUBSCRIBE_CALLBACK, message_id=message.result["message_id"]))
    assert "отписаны" in bot.said[-1].params["text"]
    assert card_of(user.id).marketing_at is None
    second = start_broadcast(Campaign(texts={"ru": "Новость 2"}, total_segments=1))
    run_campaign(bot, second)
    assert received(bot, "Новость 2") == {}


def test_a_campaign_goes_in_chunks_and_resumes(bot: WebhookHarness) -> None:
    for user_id in range(920_400, 920_412):
        card(user_id, marketing=True)
    campaign_id = start_broadcast(Campaign(texts={"ru": "По частям"}, total_segments=3))
    statuses = []
    for _ in range(3):
        report = run_campaign(bot, campaign_id, max_segments=1)
        assert report.segments_done == 1
        statuses.append(report.status)
    assert statuses == [CampaignStatus.RUNNING, CampaignStatus.RUNNING, CampaignStatus.DONE]
    assert received(bot, "По частям") == {u: 1 for u in range(920_400, 920_412)}


def test_time_running_out_stops_between_batches_and_the_next_run_goes_on(bot: WebhookHarness) -> None:
    people = range(920_500, 920_540)
    for user_id in people:
        card(user_id, marketing=True)
    campaign_id = start_broadcast(Campaign(texts={"ru": "Не всё сразу"}, total_segments=1))
    calls = {"n": 0}

    def clock() -> float:  # the segment starts and one batch goes; then the budget is spent
        calls["n"] += 1
        return time.monotonic() if calls["n"] <= 2 else float("inf")

    first = run_campaign(bot, campaign_id, batch=10, clock=clock)
    assert first.status is CampaignStatus.RUNNING and first.sent == 10
    second = run_campaign(bot, campaign_id, batch=10)
    assert second.status is CampaignStatus.DONE and second.skipped == 10 and second.sent == 30
    assert received(bot, "Не всё сразу") == {u: 1 for u in people}


def test_deferred_messages_give_their_mark_back(bot: WebhookHarness) -> None:
    from clinicbot.sending.sender import Outcome, SendReport, SendStatus
    from clinicbot.storage.models import BroadcastMarkItem, StateItem, user_pk

    people = range(920_550, 920_556)
    for user_id in people:
        card(user_id, marketing=True)
    campaign_id = start_broadcast(Campaign(texts={"ru": "Дедлайн"}, total_segments=1))

    class HalfInTime:
        """A sender whose deadline comes after half of the messages: the rest is deferred."""

        async def send(self, messages: Any, *, deadline: float, on_result: Any) -> SendReport:
            report = SendReport()
            for n, message in enumerate(messages):
                status = SendStatus.SENT if n % 2 == 0 else SendStatus.DEFERRED
                report.outcomes[message.key] = Outcome(status, message_id=1)
                await on_result(message.key, report.outcomes[message.key])
            return report

    async def go() -> RunReport:
        runner = BroadcastRunner(sender=HalfInTime(), mis=bot.mis)  # type: ignore[arg-type]
        return await runner.run(campaign_id, deadline=time.monotonic() + 60)

    first = asyncio.run(go())
    assert first.status is CampaignStatus.RUNNING and (first.sent, first.deferred) == (3, 3)

    def marked(user_id: int) -> list[Any]:
        return [i for i in StateItem.query(user_pk(user_id)) if isinstance(i, BroadcastMarkItem)]

    assert sorted(len(marked(u)) for u in people) == [0, 0, 0, 1, 1, 1]
    assert {m.status for u in people for m in marked(u)} == {"sent"}
    second = run_campaign(bot, campaign_id)  # the real sender: only the deferred three go
    assert second.status is CampaignStatus.DONE and (second.sent, second.skipped) == (3, 3)


def test_segments_by_branch_and_by_last_visit(bot: WebhookHarness) -> None:
    card(920_601, marketing=True, patient_id="p-001")  # past visit at Profsoyuznaya, one booked
    card(920_602, marketing=True, patient_id="p-002")  # dentist (Tverskaya?) visits, one booked
    card(920_603, marketing=True)  # not linked: no visits known
    visits = {pid: asyncio.run(bot.mis.visits(pid)) for pid in ("p-001", "p-002")}

    branch = "b-profsoyuznaya"
    campaign_id = start_broadcast(
        Campaign(texts={"ru": "Филиал"}, segment=Segment.parse(f"branch:{branch}"), total_segments=1)
    )
    run_campaign(bot, campaign_id)
    expected = {
        920_600 + n
        for n, pid in ((1, "p-001"), (2, "p-002"))
        if any(
            v.branch_id == branch and v.status.value != "cancelled"
            for v in (*visits[pid].upcoming, *visits[pid].past)
        )
    }
    assert 920_601 in expected
    assert set(received(bot, "Филиал")) == expected

    # lapsed: the last attended visit before a day, and nothing booked -- both have a booked visit
    campaign_id = start_broadcast(
        Campaign(
            texts={"ru": "Давно не виделись"}, segment=Segment.parse("lapsed:2030-01-01"), total_segments=1
        )
    )
    run_campaign(bot, campaign_id)
    assert received(bot, "Давно не виделись") == {}
    # once p-001's upcoming visits are cancelled, they are lapsed
    for visit in visits["p-001"].upcoming:
        asyncio.run(bot.mis.cancel("p-001", visit.id))
    campaign_id = start_broadcast(
        Campaign(texts={"ru": "Снова ждём вас"}, segment=Segment.parse("lapsed:2030-01-01"), total_segments=1)
    )
    run_campaign(bot, campaign_id)
    assert set(received(bot, "Снова ждём вас")) == {920_601}


def test_the_cli_creates_and_sends(bot: WebhookHarness, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    from clinicbot.cli import main

    card(920_700, marketing=True)
    monkeypatch.setenv("CLINICBOT_TELEGRAM_API_BASE", bot.botapi.base_url)
    assert (
        main(["broadcast", "--text-ru", "Из командной строки", "--segments", "2", "--run", "--budget", "30"])
        == 0
    )
    out = capsys.readouterr().out
    assert '"status": "done"' in out and '"sent": 1' in out
    assert received(bot, "Из командной строки") == {920_700: 1}
    assert main(["broadcast-run", "--budget", "10"]) == 0  # nothing unfinished: nothing sent


def test_the_webhook_never_sends_a_campaign(bot: WebhookHarness) -> None:
    card(920_800, marketing=True)
    start_broadcast(Campaign(texts={"ru": "Только функция"}, total_segments=1))
    user, _ = patient(bot, 920_801, phone=DEMO["p-003"])
    press(bot, user, "Мой кабинет")
    assert mine(bot, user).text.startswith("Мой кабинет")
    assert received(bot, "Только функция") == {}
