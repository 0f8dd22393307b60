"""The Bitrix24 adapter against a fake Bitrix24 REST endpoint on loopback: leads for requests, timeline
comments on the patient's lead, 503 QUERY_LIMIT_EXCEEDED with backoff, no duplicate lead after an
ambiguous timeout or a redelivery."""

from __future__ import annotations

import asyncio
from datetime import date
from typing import Any

import pytest

from clinicbot.handoff.crm_bitrix import BitrixCrm
from clinicbot.handoff.port import Attachment, CrmRejected, CrmUnavailable, DeliveryContext
from clinicbot.handoff.requests import (
    BookingCopy,
    CallbackRequest,
    CertificateRequest,
    PatientInfo,
    PatientMessage,
)
from clinicbot.handoff.retry import Deadline, RetryPolicy
from clinicbot.handoff.store import InMemoryHandoffStore, ref_of
from clinicbot.local.fake_crm import FakeCrm

PATIENT = PatientInfo(patient_id="p-001", first_name="Анна", last_name="Кузьмина", phone="79991000001")
FAST = RetryPolicy(attempts=4, base=0.01, cap=0.05, max_wait=2.0)


def bitrix(crm: FakeCrm, store: InMemoryHandoffStore | None = None, **kw: Any) -> BitrixCrm:
    return BitrixCrm(crm.bitrix_url, store or InMemoryHandoffStore(), **{"policy": FAST, **kw})


def ctx(key: str, **extra: Any) -> DeliveryContext:
    return DeliveryContext(idempotency_key=key, patient=PATIENT, deadline=Deadline.after(10), **extra)


def run(adapter: BitrixCrm, method: str, *args: Any) -> Any:
    async def go() -> Any:
        try:
            return await getattr(adapter, method)(*args)
        finally:
            await adapter.close()

    return asyncio.run(go())


def callback() -> CallbackRequest:
    return CallbackRequest.model_validate({"request_number": "1001", "user_id": 42, "patient_id": "p-001",
                                           "window": "asap", "phone": "8 916 000 11 22"})  # fmt: skip


def test_a_call_back_becomes_a_lead_with_the_phone(crm: FakeCrm) -> None:
    delivery = run(bitrix(crm), "submit_callback", callback(), ctx("callback:42:1"))
    [(lead_id, lead)] = crm.leads.items()
    assert delivery.crm_id == str(lead_id)
    assert lead["TITLE"] == "Обратный звонок №1001" and lead["SOURCE_ID"] == "CALLBACK"
    assert lead["NAME"] == "Анна" and lead["LAST_NAME"] == "Кузьмина"
    assert lead["PHONE"] == [{"VALUE": "+79160001122", "VALUE_TYPE": "MOBILE"}]  # the patient's choice
    assert lead["ORIGINATOR_ID"] == "clinicbot" and lead["ORIGIN_ID"] == ref_of("callback:42:1")
    assert "<" not in lead["COMMENTS"]  # plain text, not the staff group's HTML
    assert crm.bitrix_calls == ["crm.lead.add"]  # first delivery: no look-up before it


def test_a_certificate_lead_has_no_phone(crm: FakeCrm) -> None:
    request = CertificateRequest.model_validate(
        {"request_number": "1002", "user_id": 42, "patient_id": "p-001", "years": [date.today().year - 1],
         "relation": "self", "taxpayer_full_name": "Кузьмина Анна", "inn": "500100732259", "birth_date": "1980-03-05"}
    )  # fmt: skip
    run(bitrix(crm), "submit_certificate", request, ctx("certificate:42:2"))
    [lead] = crm.leads.values()
    assert "PHONE" not in lead and "500100732259" in lead["COMMENTS"] and "Кузьмина Анна" in lead["COMMENTS"]


def test_query_limit_exceeded_is_retried_with_backoff(crm: FakeCrm) -> None:
    crm.fail_next(503, times=2)  # QUERY_LIMIT_EXCEEDED: the call was not executed
    run(bitrix(crm), "submit_callback", callback(), ctx("callback:42:1"))
    assert len(crm.leads) == 1 and crm.bitrix_calls == ["crm.lead.add"]  # no look-up needed: unambiguous


def test_a_query_limit_that_lasts_leaves_it_to_the_queue(crm: FakeCrm) -> None:
    crm.fail_next(503, times=10)
    with pytest.raises(CrmUnavailable):
        run(bitrix(crm), "submit_callback", callback(), ctx("callback:42:1"))
    assert crm.leads == {}


def test_an_ambiguous_timeout_does_not_make_a_second_lead(crm: FakeCrm) -> None:
    crm.delay(0.8)  # the lead is created, but after the client gave up
    slow = bitrix(crm, timeout=0.3, policy=RetryPolicy(attempts=1))
    with pytest.raises(CrmUnavailable):
        run(slow, "submit_callback", callback(), ctx("callback:42:1"))
    crm.wait_for(lambda c: len(c.leads) == 1)
    crm.delay(0)
    again = run(bitrix(crm), "submit_callback", callback(), ctx("callback:42:1", redelivery=True))
    assert len(crm.leads) == 1 and again.crm_id == str(next(iter(crm.leads)))
    assert crm.bitrix_calls[-1] == "crm.lead.list"  # found, not added


def test_a_5xx_inside_one_invocation_checks_before_adding_again(crm: FakeCrm) -> None:
    crm.fail_next(500, code="INTERNAL_SERVER_ERROR")  # maybe executed: look before the second add
    run(bitrix(crm), "submit_callback", callback(), ctx("callback:42:1"))
    assert crm.bitrix_calls == ["crm.lead.list", "crm.lead.add"] and len(crm.leads) == 1


def test_messages_and_booking_copies_go_on_the_patients_lead(crm: FakeCrm) -> None:
    store = InMemoryHandoffStore()
    message = PatientMessage.model_validate(
        {"request_number": "1003", "user_id": 42, "patient_id": "p-001", "message_id": 7, "content_type": "photo",
         "text": "Фото чека", "file_id": "F1", "file_name": "photo.jpg", "first": True}
    )  # fmt: skip

    async def fetch(file_id: str) -> Attachment | None:
        return Attachment("photo.jpg", "image/jpeg", b"JPEG")

    run(bitrix(crm, store), "relay_message", message, ctx("chat:42:7", fetch_file=fetch))
    booking = BookingCopy.model_validate({"event": "cancelled", "patient_id": "p-001", "appointment_id": "a-1",
                                          "start": "2026-11-25T07:00:00+00:00", "user_id": 42})  # fmt: skip
    run(bitrix(crm, store), "mirror_booking", booking, ctx("booking:a-1:cancelled"))
    [(lead_id, lead)] = crm.leads.items()  # one patient lead, made once
    assert lead["ORIGIN_ID"] == "patient:p-001"
    first, second = crm.comments
    assert first["ENTITY_ID"] == second["ENTITY_ID"] == lead_id and first["ENTITY_TYPE"] == "lead"
    assert "Фото чека" in first["COMMENT"] and first["FILES"] == [["photo.jpg", "SlBFRw=="]]
    assert "a-1" in second["COMMENT"] and "отменена" in second["COMMENT"]
    assert store.thread_of("bitrix", 42) == str(lead_id)


def test_wrong_credentials_are_refused(crm: FakeCrm) -> None:
    crm.fail_next(401, code="INVALID_CREDENTIALS")
    with pytest.raises(CrmRejected):
        run(bitrix(crm), "submit_callback", callback(), ctx("callback:42:1"))
