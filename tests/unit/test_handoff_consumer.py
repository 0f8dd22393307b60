"""The hand-off consumer against the in-memory CRM fake and HandoffTable: effect once, failures released
for Lambda's retry, sealed parts joined and then forgotten, redeliveries told by age, poison refused."""

from __future__ import annotations

import asyncio
import json
from datetime import datetime, timedelta
from typing import Any

import pytest

from clinicbot.handoff.consumer import Busy, HandoffConsumer, PoisonMessage, Result
from clinicbot.handoff.desk import HandoffDesk
from clinicbot.handoff.outbox import InMemoryOutbox
from clinicbot.handoff.port import CrmRejected, CrmUnavailable, InMemoryCrm
from clinicbot.handoff.requests import PatientInfo
from clinicbot.handoff.retry import Deadline, RetryPolicy, retrying
from clinicbot.handoff.store import Claim, InMemoryHandoffStore


class Patients:
    def __init__(self) -> None:
        self.looked_up: list[str] = []

    async def patient(self, patient_id: str) -> PatientInfo | None:
        self.looked_up.append(patient_id)
        return PatientInfo(
            patient_id=patient_id, first_name="Анна", last_name="Кузьмина", phone="79991000001"
        )

    def telegram_user_of(self, patient_id: str) -> int | None:
        return 42 if patient_id == "p-001" else None


class Rig:
    def __init__(self) -> None:
        self.store = InMemoryHandoffStore()
        self.outbox = InMemoryOutbox()
        self.desk = HandoffDesk(self.store, self.outbox)
        self.crm = InMemoryCrm()
        self.consumer = HandoffConsumer(crm=self.crm, store=self.store, patients=Patients())

    def run(self, body: str | dict[str, Any], redelivery: bool | None = False) -> Any:
        text = body if isinstance(body, str) else json.dumps(body)
        return asyncio.run(self.consumer.process(text, redelivery=redelivery, deadline=Deadline.after(10)))

    def body(self, index: int = -1) -> dict[str, Any]:
        return self.outbox.messages[index].body()


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_a_call_back_request_reaches_the_crm_once(rig: Rig) -> None:
    rig.desk.submit("callback_request", {"patient_id": "p-001", "phone": "+7 916 000-11-22", "window": "asap"},
                    user_id=42, key="callback:42:1")  # fmt: skip
    assert rig.run(rig.body()).result is Result.PROCESSED
    [request] = rig.crm.of("callback")
    assert request.phone == "79160001122" and request.window.value == "asap" and request.number == "1001"
    [(_, _, ctx)] = rig.crm.received
    assert ctx.patient is not None and ctx.patient.first_name == "Анна" and not ctx.redelivery
    assert rig.store.sealed(42, "callback:42:1") is None  # the CRM has it: the bot keeps no copy
    assert rig.run(rig.body(), redelivery=True).result is Result.DUPLICATE  # redelivered: no second effect
    assert len(rig.crm.received) == 1


def test_a_failure_is_released_for_the_retry_and_the_retry_knows_it_is_one(rig: Rig) -> None:
    rig.desk.submit(
        "callback_request", {"patient_id": "p-001", "window": "asap"}, user_id=42, key="callback:42:1"
    )
    rig.crm.fail_next(CrmUnavailable("HTTP 503"))
    with pytest.raises(CrmUnavailable):
        rig.run(rig.body())
    assert rig.store.claim("callback:42:1", 1) is Claim.NEW  # released: the redelivery is let through
    rig.store.release("callback:42:1")
    assert rig.run(rig.body(), redelivery=True).result is Result.PROCESSED
    assert rig.crm.received[0][2].redelivery


def test_a_message_in_flight_elsewhere_is_busy(rig: Rig) -> None:
    rig.desk.submit(
        "callback_request", {"patient_id": "p-001", "window": "asap"}, user_id=42, key="callback:42:1"
    )
    assert rig.store.claim("callback:42:1", 60) is Claim.NEW  # another consumer holds the lease
    with pytest.raises(Busy):
        rig.run(rig.body())
    assert rig.crm.received == []


def test_a_lease_of_a_dead_consumer_expires() -> None:
    now = [1000.0]
    store = InMemoryHandoffStore(now=lambda: now[0])
    assert store.claim("k", 30) is Claim.NEW
    assert store.claim("k", 30) is Claim.BUSY
    now[0] += 31
    assert store.claim("k", 30) is Claim.NEW
    store.complete("k")
    assert store.claim("k", 30) is Claim.DONE


def test_the_sealed_part_gone_means_dropped_not_retried(rig: Rig) -> None:
    rig.desk.submit("callback_request", {"patient_id": "p-001", "phone": "+7 916 000-11-22", "window": "asap"},
                    user_id=42, key="callback:42:1")  # fmt: skip
    rig.store.erase_user(42)  # the patient asked to be forgotten while the message was queued
    processed = rig.run(rig.body())
    assert processed.result is Result.DROPPED and rig.crm.received == []


def test_a_retry_is_told_by_the_age_of_the_message(rig: Rig) -> None:
    """Lambda does not say which attempt an invocation is: a message older than Lambda's first retry delay
    may have reached the CRM before (the Bitrix adapter then looks for the lead before adding one)."""
    rig.desk.submit(
        "callback_request", {"patient_id": "p-001", "window": "asap"}, user_id=42, key="callback:42:1"
    )
    body = rig.body()
    assert rig.run(body, redelivery=None).result is Result.PROCESSED
    assert not rig.crm.received[-1][2].redelivery  # fresh: just published
    rig.desk.submit(
        "callback_request", {"patient_id": "p-001", "window": "asap"}, user_id=42, key="callback:42:2"
    )
    later = datetime.fromisoformat(rig.body()["created_at"]) + timedelta(seconds=61)
    rig.consumer.now = lambda: later  # the first retry, a minute after the first attempt
    assert rig.run(rig.body(), redelivery=None).result is Result.PROCESSED
    assert rig.crm.received[-1][2].redelivery


def test_a_conversation_is_not_held_back_by_a_failed_message(rig: Rig) -> None:
    """No batches, no order: a later message of the patient is relayed while an earlier one waits for its
    retry, and the retry still delivers the earlier one, once."""
    for n in range(3):
        fields = {
            "patient_id": "p-001",
            "message_id": 10 + n,
            "content_type": "text",
            "text": f"m{n}",
            "first": n == 0,
        }
        if n == 0:
            rig.desk.submit("chat_message", fields, user_id=42, key=f"chat:42:{10 + n}")
        else:
            rig.desk.relay(fields, user_id=42, key=f"chat:42:{10 + n}", number="1001", seal=True)
    rig.crm.fail_next(CrmUnavailable("timeout"), operation="message")
    with pytest.raises(CrmUnavailable):
        rig.run(rig.body(0))
    assert [rig.run(rig.body(i)).result for i in (1, 2)] == [Result.PROCESSED] * 2
    assert rig.run(rig.body(0), redelivery=True).result is Result.PROCESSED  # Lambda's retry
    assert [rig.run(rig.body(i)).result for i in range(3)] == [Result.DUPLICATE] * 3
    assert sorted(m.text for m in rig.crm.of("message")) == ["m0", "m1", "m2"]


def test_booking_copies_find_the_patient_and_other_kinds_are_forwarded(rig: Rig) -> None:
    booking = {
        "event": "booked",
        "patient_id": "p-001",
        "appointment_id": "a-1",
        "start": "2026-11-25T07:00:00+00:00",
    }
    rig.outbox.publish("booking", booking, "booking:a-1:booked")
    rig.outbox.publish("low_rating", {"patient_id": "p-001", "appointment_id": "a-1", "rating": 2}, "low:a-1")
    assert rig.run(rig.body(0)).result is Result.PROCESSED
    assert rig.run(rig.body(1)).result is Result.PROCESSED
    [copy] = rig.crm.of("booking")
    assert copy.user_id == 42  # the Telegram user of the MIS patient: the copy lands in their thread
    [forwarded] = rig.crm.of("low_rating")
    assert forwarded == {"patient_id": "p-001", "appointment_id": "a-1", "rating": 2, "user_id": 42}


@pytest.mark.parametrize(
    "body",
    [
        "not json",
        json.dumps({"kind": "callback_request"}),  # no idempotency key
        json.dumps({"kind": "callback_request", "idempotency_key": "k", "payload": {"window": "asap"}}),
    ],
)
def test_poison_messages_are_refused(rig: Rig, body: str) -> None:
    with pytest.raises(PoisonMessage):
        rig.run(body)
    assert rig.crm.received == []


def test_a_refusing_crm_is_an_error_for_the_dead_letter_queue(rig: Rig) -> None:
    rig.desk.submit(
        "callback_request", {"patient_id": "p-001", "window": "asap"}, user_id=42, key="callback:42:1"
    )
    rig.crm.fail_next(CrmRejected("HTTP 400"))
    with pytest.raises(CrmRejected):
        rig.run(rig.body())


# ------------------------------------------------------------------------------ retries
def test_retrying_backs_off_honours_retry_after_and_gives_up() -> None:
    waits: list[float] = []
    calls = {"n": 0}

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    async def flaky() -> str:
        calls["n"] += 1
        if calls["n"] == 1:
            raise CrmUnavailable("503", retry_after=2.0)
        if calls["n"] == 2:
            raise CrmUnavailable("503")
        return "ok"

    def retry_on(exc: Exception) -> bool | float:
        assert isinstance(exc, CrmUnavailable)
        return exc.retry_after if exc.retry_after is not None else True

    policy = RetryPolicy(attempts=3, base=0.5, cap=4)
    assert asyncio.run(retrying(flaky, retry_on=retry_on, policy=policy, sleep=sleep)) == "ok"
    assert waits[0] == 2.0 and 0 <= waits[1] <= 1.0

    async def always() -> str:
        raise CrmUnavailable("503", retry_after=60)

    with pytest.raises(CrmUnavailable):  # a minute's pause is the queue's job, not this invocation's
        asyncio.run(retrying(always, retry_on=retry_on, policy=policy, sleep=sleep))

    async def refused() -> str:
        raise CrmRejected("400")

    with pytest.raises(CrmRejected):
        asyncio.run(
            retrying(refused, retry_on=lambda e: isinstance(e, CrmUnavailable), policy=policy, sleep=sleep)
        )
