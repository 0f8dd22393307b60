"""Usage metering through the real webhook handler: a scripted scenario, and the counters -- per invocation
(EMF documents on stdout), in the rollup item (moto) and per update in DynamoDB requests -- checked against
what the function did (the fake Bot API's calls, an independent spy on the MIS, the hand-off outbox)."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from clinicbot import metering
from clinicbot.metering.instrument import MESSAGE_METHODS, port_methods
from clinicbot.metering.rollup import DynamoRollupStore, month_of
from clinicbot.mis.port import MisPort
from tests.harness import SECRET, TgUser, WebhookHarness, callback_update, message_update

CLINIC = "clinic-test"


class MisSpy:
    """Counts every call the MIS itself receives (patched on the instance, under any wrapper)."""

    def __init__(self, mis: Any) -> None:
        self.calls: Counter[str] = Counter()
        self.paused = False
        for name in port_methods(MisPort):
            original = getattr(mis, name, None)
            if callable(original):
                setattr(mis, name, self._counted(name, original))

    def _counted(self, name: str, original: Any) -> Any:
        def counted(*args: Any, **kwargs: Any) -> Any:
            if not self.paused:
                self.calls[name] += 1
            return original(*args, **kwargs)

        return counted

    @property
    def total(self) -> int:
        return sum(self.calls.values())


def metered(webhook: WebhookHarness, *, n: int = 50, metrics: bool = True) -> metering.FunctionMeter:
    config = metering.MeteringConfig(clinic=CLINIC, metrics=metrics, flush_invocations=n)
    fm = metering.for_webhook(
        webhook.app, meter=metering.Meter("webhook", config=config, store=DynamoRollupStore())
    )
    webhook.app = fm.wrap_app(webhook.app)
    return fm


def emf(out: str) -> list[dict[str, Any]]:
    return [json.loads(line) for line in out.splitlines() if line.startswith('{"_aws"')]


def emf_sum(docs: list[dict[str, Any]], metric: str, **dims: str) -> float:
    return sum(sum(d[metric]) for d in docs if metric in d and all(d.get(k) == v for k, v in dims.items()))


def messages_seen(webhook: WebhookHarness) -> Counter[str]:
    """Messages the bot put in front of someone, as Telegram saw them: by where they went."""
    seen: Counter[str] = Counter()
    for said in webhook.said:
        if said.method in MESSAGE_METHODS:
            seen["response" if said.via == "response" else "api"] += 1
    return seen


def book_first_free(webhook: WebhookHarness, user: TgUser, spy: MisSpy) -> None:
    """Book through the wizard: specialty -> doctor -> first day -> first time -> confirm."""
    mis = webhook.mis
    now = webhook.app.processor.dispatcher["clock"]()
    spy.paused = True  # the test's own questions to the MIS are not the function's
    slot = asyncio.run(mis.free_slots(start=now, end=now + timedelta(days=30)))[0]
    doctor = next(d for d in asyncio.run(mis.doctors()) if d.id == slot.doctor_id)
    specialty = next(s for s in asyncio.run(mis.specialties()) if s.id == doctor.specialty_ids[0])
    spy.paused = False
    webhook.press(user, "Записаться")
    webhook.press(user, "По специальности")
    for label in (specialty.name.ru, doctor.full_name.ru):
        for _ in range(10):
            if any(label.lower() in b["text"].lower() for b in webhook.last_message().buttons()):
                webhook.press(user, label)
                break
            webhook.press(user, "›")
    for prefix in ("by:", "bt:"):
        said = webhook.last_message()
        button = next(b for b in said.buttons() if str(b.get("callback_data", "")).startswith(prefix))
        webhook.send(callback_update(user, button["callback_data"], message_id=said.message_id or 1))
    webhook.press(user, "✅")
    assert webhook.last_message().text.startswith("✅ Вы записаны!")


def test_first_five_updates_count_what_telegram_saw(
    webhook: WebhookHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    fm = metered(webhook)
    spy = MisSpy(webhook.mis)
    anna = TgUser(id=9101)
    webhook.onboard(anna)  # 3 updates: /start, consent, contact
    webhook.send(message_update(anna, "здравствуйте"))  # free text
    webhook.send(message_update(anna, "/help"))
    docs = emf(capsys.readouterr().out)

    seen = messages_seen(webhook)
    assert seen["response"] >= 2 and seen["api"] >= 1  # replies in response bodies and by direct calls
    assert emf_sum(docs, "UpdatesHandled") == 5
    assert emf_sum(docs, "MessagesSent", kind="reply") == seen["response"] + seen["api"]
    assert emf_sum(docs, "MessagesSent", kind="relay") == 0
    assert emf_sum(docs, "MisCalls") == spy.total > 0  # the contact: find/register the patient
    assert all(d["clinic"] == CLINIC and d["service"] == "clinicbot" for d in docs)
    assert {
        tuple(sorted(dims)) for d in docs for dims in d["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    } <= {
        ("clinic", "service"),
        ("clinic", "kind", "service"),
    }
    assert fm.meter.buffer.invocations == 5 and fm.meter.buffer.flushes == 0  # N = 50: nothing written yet


@pytest.fixture
def clinic_bot(aws: object, botapi: Any, mis: Any) -> Iterator[WebhookHarness]:
    """The webhook of a clinic with a CRM (call-backs are offered); the CRM itself is the hand-off's business."""
    from clinicbot.local.fake_crm import TEST_CRM_SECRET

    harness = WebhookHarness.create(
        botapi=botapi,
        mis=mis,
        crm_provider="webhook",
        crm_url="https://crm.invalid/hook",
        crm_secret=TEST_CRM_SECRET,
    )
    yield harness
    harness.close()


def test_a_scripted_scenario_counts_match_in_emf_and_in_the_rollup(
    clinic_bot: WebhookHarness, capsys: pytest.CaptureFixture[str]
) -> None:
    webhook = clinic_bot
    webhook.use_mis_clock()
    fm = metered(webhook)
    spy = MisSpy(webhook.mis)
    anna = TgUser(id=9201)
    webhook.onboard(anna, "+7 999 100-00-02")  # a patient the demo clinic knows
    book_first_free(webhook, anna, spy)
    webhook.send(message_update(anna, "/menu"))
    webhook.press(anna, "Перезвоните мне")
    webhook.press(anna, "На этот номер")
    webhook.press(anna, "12:00–15:00")
    webhook.press(anna, "Оплата")
    webhook.press(anna, "Отправить")
    assert "принята" in webhook.last_message().text
    retry = message_update(anna, "ещё вопрос")
    webhook.send(retry)
    webhook.send(retry)  # Telegram retries the same update: a duplicate
    webhook.send(message_update(anna, "подделка"), secret="wrong-secret_0123")  # refused: 403
    docs = emf(capsys.readouterr().out)
    assert fm.flush() == 1

    invocations = len([d for d in docs if "UpdatesHandled" in d])
    usage = metering.Usage()
    for item in DynamoRollupStore().month(month_of(webhook_clock()), CLINIC):
        usage.merge(item.usage)
    seen = messages_seen(webhook)
    total_invocations = usage["inv.webhook"]
    assert usage["duplicates"] == 1 and usage["rejected"] == 1
    assert usage["updates"] == total_invocations - 2 == emf_sum(docs, "UpdatesHandled") == invocations
    assert usage["msg.reply"] == seen["response"] + seen["api"] == emf_sum(docs, "MessagesSent", kind="reply")
    assert usage["msg.relay"] == 0
    assert usage["mis"] == spy.total == emf_sum(docs, "MisCalls")
    assert spy.calls["book"] == 1 and usage["mis"] > 1
    outbox = webhook.outbox
    assert (
        usage["handoffs"] == len(outbox.messages) == emf_sum(docs, "Handoffs") >= 2
    )  # booking copy + call-back
    assert usage["cold.webhook"] == 1 and usage["ms.webhook"] > 0


def webhook_clock() -> float:
    import time

    return time.time()


def test_the_rollup_costs_one_write_per_n_updates(webhook: WebhookHarness, ddb: Any) -> None:
    metered(webhook, n=4, metrics=False)
    ben = TgUser(id=9301)
    webhook.onboard(ben)
    ddb.reset()
    writes_per_update = []
    for n in range(8):
        before = ddb.writes
        webhook.send(message_update(ben, f"вопрос {n}"))
        writes_per_update.append(ddb.writes - before)
    rollup_writes = ddb.calls["UpdateItem"]
    # 3 onboarding updates + 8 = 11 invocations with N = 4: flushes after the 4th and the 8th
    assert rollup_writes == 2
    assert sum(writes_per_update) - rollup_writes <= 8  # the budget: at most 1 write per update, + 1/N
    [item] = DynamoRollupStore().month(month_of(webhook_clock()), CLINIC)
    assert item.flushes == 2 and item.usage["inv.webhook"] == 8 and item.usage["updates"] == 8


def test_no_secret_no_counters_but_the_invocation(webhook: WebhookHarness) -> None:
    fm = metered(webhook, metrics=False)
    webhook.send(message_update(TgUser(id=9401), "/start"), secret=None)
    assert fm.last is not None
    assert fm.last.as_dict().keys() >= {"rejected", "inv.webhook", "ms.webhook"}
    assert fm.last["updates"] == 0 and fm.last.messages_total == 0
    assert SECRET  # the harness's secret is what the function expects
