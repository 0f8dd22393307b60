"""Hand-off domain in pure code: INN checksum, names and dates, working hours, Standard Webhooks signing,
the split of a request into queue payload and sealed fields, card callback data."""

from __future__ import annotations

import base64
import json
from datetime import UTC, date, datetime

import pytest

from clinicbot.handoff.desk import HandoffDesk
from clinicbot.handoff.hours import WorkingHours
from clinicbot.handoff.inn import InnError, InnProblem, inn_checksum_ok, validate_personal_inn
from clinicbot.handoff.outbox import FORBIDDEN_PAYLOAD_KEYS, InMemoryOutbox
from clinicbot.handoff.requests import (
    BirthDateError,
    CertificateRequest,
    NameError_,
    certificate_years,
    parse_birth_date,
    validate_full_name,
)
from clinicbot.handoff.signing import (
    SignatureProblem,
    WebhookVerificationError,
    secret_key,
    sign,
    signed_headers,
    verify,
    webhook_id_for,
)
from clinicbot.handoff.store import InMemoryHandoffStore
from clinicbot.handoff.texts import card_callback
from clinicbot.local.fake_crm import TEST_CRM_SECRET
from tests.harness import load_event

VALID_INN = "500100732259"  # a well-known valid personal INN (checksums match)


# --------------------------------------------------------------------------------------- INN
def test_inn_checksums() -> None:
    assert inn_checksum_ok(VALID_INN)
    assert inn_checksum_ok("7707083893")  # an organisation's (10 digits)
    assert not inn_checksum_ok("500100732258")  # last digit off
    assert not inn_checksum_ok("500100732249")  # 11th digit off
    assert not inn_checksum_ok("000000000000")  # region 00 never exists, though the sums are 0
    assert not inn_checksum_ok("５００１００７３２２５９")  # full-width digits are not ASCII digits


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("7707083893", InnProblem.ORGANISATION),
        ("500100732258", InnProblem.CHECKSUM),
        ("12345", InnProblem.FORMAT),
        ("50010073225x", InnProblem.FORMAT),
        ("7707083894", InnProblem.FORMAT),  # 10 digits with a wrong checksum: just not an INN
        ("", InnProblem.FORMAT),
    ],
)
def test_personal_inn_errors_say_what_is_wrong_without_the_number(raw: str, problem: InnProblem) -> None:
    with pytest.raises(InnError) as caught:
        validate_personal_inn(raw)
    assert caught.value.problem is problem
    assert not raw or raw not in str(caught.value)


def test_personal_inn_accepts_what_people_type() -> None:
    assert validate_personal_inn(" 5001 0073-2259 ") == VALID_INN


# ------------------------------------------------------------------------------ names, dates
def test_full_names() -> None:
    assert validate_full_name("  Иванова   Анна Сергеевна ") == "Иванова Анна Сергеевна"
    assert validate_full_name("Салтыков-Щедрин Михаил") == "Салтыков-Щедрин Михаил"
    assert validate_full_name("O'Brien John") == "O'Brien John"
    for bad in ("Анна", "Анна 123", "a b c d e", "Иванова <b>Анна</b>", "x" * 60 + " " + "y" * 60):
        with pytest.raises(NameError_):
            validate_full_name(bad)


def test_birth_dates() -> None:
    today = date(2026, 11, 23)
    assert parse_birth_date("05.03.1980", today) == date(1980, 3, 5)
    assert parse_birth_date("1980-03-05", today) == date(1980, 3, 5)
    cases = {"31.02.1980": "format", "5 March": "format", "24.11.2026": "future", "01.01.2015": "too_young",
             "01.01.1890": "too_old"}  # fmt: skip
    for raw, problem in cases.items():
        with pytest.raises(BirthDateError) as caught:
            parse_birth_date(raw, today)
        assert caught.value.problem == problem, raw
    assert parse_birth_date("23.11.2012", today) == date(2012, 11, 23)  # 14 today


def test_certificate_years_and_model() -> None:
    assert certificate_years(date(2026, 11, 23)) == [2023, 2024, 2025, 2026]
    this_year = datetime.now(UTC).year
    request = CertificateRequest.model_validate(
        {"request_number": "1001", "user_id": 1, "patient_id": "p-1", "years": [this_year - 1, this_year - 2],
         "relation": "spouse", "taxpayer_full_name": "Иванов  Иван", "inn": VALID_INN, "birth_date": "1980-03-05"}
    )  # fmt: skip
    assert request.years == (this_year - 2, this_year - 1) and request.taxpayer_full_name == "Иванов Иван"
    with pytest.raises(ValueError):
        CertificateRequest.model_validate(
            {**request.model_dump(), "request_number": "1", "inn": "500100732258"}
        )
    with pytest.raises(ValueError):
        CertificateRequest.model_validate(
            {**request.model_dump(), "request_number": "1", "years": [this_year + 1]}
        )


# ------------------------------------------------------------------------------ working hours
def test_working_hours() -> None:
    hours = WorkingHours.parse("Mo-Fr 09:00-13:00,14:00-20:00; Sa 10:00-16:00", "Europe/Moscow")
    assert hours.describe("ru") == "пн–пт 09:00–13:00, 14:00–20:00; сб 10:00–16:00"
    assert hours.describe("en").startswith("Mon–Fri")
    monday_noon = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)  # 12:00 in Moscow
    assert hours.is_open(monday_noon)
    lunch = datetime(2026, 11, 23, 10, 30, tzinfo=UTC)  # 13:30 in Moscow
    assert not hours.is_open(lunch)
    assert hours.next_opening(lunch) == datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    saturday_evening = datetime(2026, 11, 28, 15, 0, tzinfo=UTC)  # 18:00 Sat in Moscow
    assert hours.next_opening(saturday_evening) == datetime(2026, 11, 30, 6, 0, tzinfo=UTC)  # Mon 09:00
    assert WorkingHours.parse("24/7").is_open(lunch)
    for bad in ("", "Mo-Fr", "Xx 09:00-10:00", "Fr-Mo 09:00-10:00", "Mo 10:00-09:00", "Mo 25:00-26:00"):
        with pytest.raises(ValueError):
            WorkingHours.parse(bad)


# ------------------------------------------------------------------------------ Standard Webhooks
def test_sign_and_verify_round_trip() -> None:
    body = '{"type":"message"}'
    headers = signed_headers(TEST_CRM_SECRET, "msg_1", body, now=1_700_000_000)
    assert headers["webhook-id"] == "msg_1" and headers["webhook-timestamp"] == "1700000000"
    assert headers["webhook-signature"].startswith("v1,")
    assert verify(TEST_CRM_SECRET, headers, body, now=1_700_000_100) == ("msg_1", 1_700_000_000)
    upper = {k.upper(): v for k, v in headers.items()}  # header names are case-insensitive
    assert verify(TEST_CRM_SECRET, upper, body.encode(), now=1_700_000_000)[0] == "msg_1"
    rotated = {**headers, "webhook-signature": "v1,bm90IGl0 " + headers["webhook-signature"]}  # two secrets
    assert verify(TEST_CRM_SECRET, rotated, body, now=1_700_000_000)[0] == "msg_1"


@pytest.mark.parametrize(
    ("change", "problem"),
    [
        ({"webhook-signature": None}, SignatureProblem.MISSING),
        ({"webhook-timestamp": "yesterday"}, SignatureProblem.BAD_TIMESTAMP),
        ({"webhook-timestamp": str(1_700_000_000 - 301)}, SignatureProblem.STALE),
        ({"webhook-timestamp": str(1_700_000_000 + 301)}, SignatureProblem.STALE),
        ({"webhook-id": "msg_2"}, SignatureProblem.BAD_SIGNATURE),
        ({"webhook-signature": "v2,abc"}, SignatureProblem.BAD_SIGNATURE),
    ],
)
def test_verify_refuses(change: dict[str, str | None], problem: SignatureProblem) -> None:
    body = '{"type":"message"}'
    headers: dict[str, str] = signed_headers(TEST_CRM_SECRET, "msg_1", body, now=1_700_000_000)
    for key, value in change.items():
        if value is None:
            headers.pop(key)
        else:
            headers[key] = value
    with pytest.raises(WebhookVerificationError) as caught:
        verify(TEST_CRM_SECRET, headers, body, now=1_700_000_000)
    assert caught.value.problem is problem


def test_tampered_body_and_wrong_secret_are_refused() -> None:
    headers = signed_headers(TEST_CRM_SECRET, "msg_1", "{}", now=1_700_000_000)
    with pytest.raises(WebhookVerificationError):
        verify(TEST_CRM_SECRET, headers, "{ }", now=1_700_000_000)
    with pytest.raises(WebhookVerificationError):
        verify("whsec_" + base64.b64encode(b"another").decode(), headers, "{}", now=1_700_000_000)


def test_known_vector_and_secret_formats() -> None:
    # The Standard Webhooks reference vector (standard-webhooks/libraries, spec tests).
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    body = '{"test": 2432232314}'
    assert sign(secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body) == (
        "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
    )
    assert secret_key("plain-secret") == b"plain-secret"
    with pytest.raises(ValueError):
        secret_key("whsec_%%%")
    assert webhook_id_for("k") == webhook_id_for("k") != webhook_id_for("k2")


def test_the_inbound_sample_is_signed_with_the_dummy_secret() -> None:
    event = load_event("handoff/inbound-crm")
    ts = int(event["headers"]["webhook-timestamp"])
    assert (
        verify(TEST_CRM_SECRET, event["headers"], event["body"], now=ts)[0] == event["headers"]["webhook-id"]
    )
    assert base64.b64decode(TEST_CRM_SECRET.removeprefix("whsec_")) == b"clinicbot-test-crm-secret-0123456789"


# ------------------------------------------------------------------------------ the desk
def test_the_queue_gets_no_personal_data_and_a_retry_keeps_its_number() -> None:
    store, outbox = InMemoryHandoffStore(), InMemoryOutbox()
    desk = HandoffDesk(store, outbox)
    this_year = datetime.now(UTC).year
    fields = {"patient_id": "p-1", "years": [this_year - 1], "relation": "self",
              "taxpayer_full_name": "Иванова Анна", "inn": VALID_INN, "birth_date": "1980-03-05"}  # fmt: skip
    number = desk.submit("certificate_request", fields, user_id=42, key="certificate:42:7")
    assert desk.submit("certificate_request", fields, user_id=42, key="certificate:42:7") == number  # retry
    [message] = outbox.messages
    assert not FORBIDDEN_PAYLOAD_KEYS & set(message.payload)
    text = json.dumps(message.payload, ensure_ascii=False)
    assert VALID_INN not in text and "Иванова" not in text and "1980" not in text
    assert message.payload["sealed"] is True and message.payload["request_number"] == number
    assert store.sealed(42, "certificate:42:7") == {
        "taxpayer_full_name": "Иванова Анна", "inn": VALID_INN, "birth_date": "1980-03-05"
    }  # fmt: skip
    assert store.user_for_number(number) == 42
    other = desk.submit(
        "callback_request", {"patient_id": "p-1", "window": "asap"}, user_id=42, key="callback:42:8"
    )
    assert int(other) == int(number) + 1
    with pytest.raises(ValueError):  # validated before anything is written
        desk.submit("certificate_request", {**fields, "inn": "1"}, user_id=42, key="certificate:42:9")
    assert len(outbox.messages) == 2


def test_erasure_removes_every_item_of_the_patient() -> None:
    store = InMemoryHandoffStore()
    store.open_request(42, "callback:42:1", "callback_request", {"phone": "79990000001"})
    store.bind_thread("tg:-100", 42, "7")
    store.bind_thread("tg:-100", 43, "8")
    store.claim("callback:42:1", 30)
    # the request, its number, the thread both ways; the idempotency record holds nothing personal
    assert store.erase_user(42) == 4
    assert store.user_of_thread("tg:-100", "7") is None and store.user_of_thread("tg:-100", "8") == 43


def test_card_callback_matches_the_staff_router() -> None:
    from clinicbot.telegram.handoff_callbacks import CardCb

    assert card_callback("take", "1042") == CardCb(action="take", number="1042").pack()
    assert CardCb.unpack(card_callback("done", "1042")).action == "done"
