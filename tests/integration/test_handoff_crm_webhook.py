"""The signed-webhook CRM adapter against a fake CRM on loopback that checks every signature: retries on
5xx / 429 / timeouts, refusals on 4xx, one event per webhook-id across redeliveries, minimum data."""

from __future__ import annotations

import asyncio
import base64
from datetime import date

import pytest

from clinicbot.handoff.crm_webhook import WebhookCrm
from clinicbot.handoff.port import Attachment, CrmRejected, CrmUnavailable, DeliveryContext
from clinicbot.handoff.requests import (
    BookingCopy,
    CallbackRequest,
    CertificateRequest,
    Notice,
    NoticeReason,
    PatientInfo,
    PatientMessage,
)
from clinicbot.handoff.retry import Deadline, RetryPolicy
from clinicbot.handoff.store import InMemoryHandoffStore
from clinicbot.local.fake_crm import TEST_CRM_SECRET, FakeCrm

PATIENT = PatientInfo(patient_id="p-001", first_name="Анна", last_name="Кузьмина", phone="79991000001")
FAST = RetryPolicy(attempts=3, base=0.01, cap=0.05, max_wait=2.0)


def adapter(
    crm: FakeCrm,
    store: InMemoryHandoffStore | None = None,
    *,
    secret: str = TEST_CRM_SECRET,
    timeout: float = 2.0,
) -> WebhookCrm:
    return WebhookCrm(crm.webhook_url, secret, store or InMemoryHandoffStore(), timeout=timeout, policy=FAST)


def ctx(key: str = "callback:42:1", **extra: object) -> DeliveryContext:
    return DeliveryContext(idempotency_key=key, patient=PATIENT, deadline=Deadline.after(10), **extra)  # type: ignore[arg-type]


def callback(**extra: object) -> CallbackRequest:
    return CallbackRequest.model_validate({"request_number": "1001", "user_id": 42, "patient_id": "p-001",
                                           "window": "12-15", "topic": "documents", **extra})  # fmt: skip


def run(adapter_: WebhookCrm, method: str, *args: object) -> object:
    async def go() -> object:
        try:
            return await getattr(adapter_, method)(*args)
        finally:
            await adapter_.close()

    return asyncio.run(go())


def test_a_call_back_arrives_signed_with_what_it_needs_and_no_more(crm: FakeCrm) -> None:
    delivery = run(adapter(crm), "submit_callback", callback(), ctx())
    [event] = crm.events
    assert crm.rejected == 0  # the receiver checked the signature and the timestamp
    assert event.type == "callback.requested"
    assert event.data["patient"] == {"id": "p-001", "first_name": "Анна", "last_name": "Кузьмина"}
    assert event.data["phone"] == "79991000001"  # the MIS record's number: the patient chose it
    assert event.data["window"] == "12-15" and event.data["topic"] == "documents"
    assert event.data["conversation_id"].startswith("c_")
    assert set(event.data) == {"request_number", "conversation_id", "patient", "phone", "window", "topic"}
    assert getattr(delivery, "crm_id", None) == "crm-101"


def test_a_certificate_carries_the_taxpayer_but_no_phone(crm: FakeCrm) -> None:
    request = CertificateRequest.model_validate(
        {"request_number": "1002", "user_id": 42, "patient_id": "p-001", "years": [date.today().year - 1],
         "relation": "parent", "taxpayer_full_name": "Кузьмин Пётр Ильич", "inn": "500100732259",
         "birth_date": "1960-01-02"}
    )  # fmt: skip
    run(adapter(crm), "submit_certificate", request, ctx("certificate:42:2"))
    [event] = crm.events
    assert event.data["taxpayer"] == {"full_name": "Кузьмин Пётр Ильич", "inn": "500100732259",
                                      "birth_date": "1960-01-02", "relation": "parent"}  # fmt: skip
    assert "phone" not in event.data and "phone" not in event.data["patient"]


def test_5xx_and_429_are_retried_with_the_same_webhook_id(crm: FakeCrm) -> None:
    crm.fail_next(503)
    crm.fail_next(429, retry_after=0)
    run(adapter(crm), "submit_callback", callback(), ctx())
    assert crm.requests == 3 and len(crm.events) == 1


def test_a_crm_that_stays_down_is_unavailable_for_the_queue_to_retry(crm: FakeCrm) -> None:
    crm.fail_next(500, times=5)
    with pytest.raises(CrmUnavailable):
        run(adapter(crm), "submit_callback", callback(), ctx())
    assert crm.requests == 3 and crm.events == []  # three attempts in this invocation, then the queue's turn


def test_a_slow_crm_times_out_and_the_redelivery_is_deduplicated_by_webhook_id(crm: FakeCrm) -> None:
    crm.delay(1.5)
    slow = WebhookCrm(crm.webhook_url, TEST_CRM_SECRET, InMemoryHandoffStore(), timeout=0.5,
                      policy=RetryPolicy(attempts=1))  # fmt: skip
    with pytest.raises(CrmUnavailable):
        run(slow, "submit_callback", callback(), ctx())
    crm.wait_for(lambda c: len(c.events) == 1)  # it arrived after all: the client gave up too early
    crm.delay(0)
    run(adapter(crm), "submit_callback", callback(), ctx(redelivery=True))  # the queue's redelivery
    assert len(crm.events) == 1 and crm.duplicates == 1  # same webhook-id: the receiver kept one


def test_a_refusal_is_not_retried_here(crm: FakeCrm) -> None:
    crm.fail_next(422)
    with pytest.raises(CrmRejected):
        run(adapter(crm), "submit_callback", callback(), ctx())
    assert crm.requests == 1


def test_a_wrong_secret_is_refused_by_the_crm(crm: FakeCrm) -> None:
    wrong = adapter(crm, secret="whsec_" + base64.b64encode(b"not the shared secret").decode())
    with pytest.raises(CrmRejected):
        run(wrong, "submit_callback", callback(), ctx())
    assert crm.rejected == 1 and crm.events == []


def test_messages_bookings_and_notices_share_the_conversation(crm: FakeCrm) -> None:
    store = InMemoryHandoffStore()
    message = PatientMessage.model_validate(
        {"request_number": "1003", "user_id": 42, "patient_id": "p-001", "message_id": 7, "content_type": "document",
         "text": "Вот выписка", "file_id": "F1", "file_name": "vypiska.pdf", "first": True}
    )  # fmt: skip

    async def fetch(file_id: str) -> Attachment | None:
        return Attachment("file.pdf", "application/pdf", b"%PDF-1.4 fake")

    run(adapter(crm, store), "relay_message", message, ctx("chat:42:7", fetch_file=fetch))
    booking = BookingCopy.model_validate({"event": "booked", "patient_id": "p-001", "appointment_id": "a-1",
                                          "start": "2026-11-25T07:00:00+00:00", "user_id": 42})  # fmt: skip
    run(adapter(crm, store), "mirror_booking", booking, ctx("booking:a-1:booked"))
    run(
        adapter(crm, store),
        "notify",
        Notice(user_id=42, reason=NoticeReason.PATIENT_BLOCKED, about="77"),
        ctx("n:1"),
    )
    received, copy, notice = crm.events
    assert (
        received.type == "message.received"
        and copy.type == "booking.booked"
        and notice.type == "patient.unreachable"
    )
    assert len({e.data["conversation_id"] for e in crm.events}) == 1
    attachment = received.data["message"]["attachment"]
    assert base64.b64decode(attachment["content_base64"]) == b"%PDF-1.4 fake"
    assert attachment["file_name"] == "vypiska.pdf" and received.data["message"]["text"] == "Вот выписка"
    assert "user_id" not in copy.data  # the Telegram id stays with the bot
