"""Small parts of booking: id references, callback data, texts, the calendar grid, the outbox."""

from __future__ import annotations

import json
import string
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qs, urlparse

import pytest

from clinicbot.booking.refs import ref_of, resolve
from clinicbot.booking.texts import fmt_day, fmt_price, google_calendar_url, month_grid, short_name
from clinicbot.handoff.outbox import (
    InMemoryOutbox,
    LambdaOutbox,
    OutboxError,
    PayloadTooLarge,
    outbox_from_env,
)
from clinicbot.i18n import Translator, catalog
from clinicbot.mis.models import Doctor, LocalizedText

FHIR_ID = "0f8fad5b-d9cb-469f-a165-70867728950e"
LONG_ID = "Slot/" + "x" * 60 + ":with:colons"


# --------------------------------------------------------------------------- references
def test_short_safe_ids_are_their_own_reference() -> None:
    assert ref_of("d-01@20261124T0600Z") == "d-01@20261124T0600Z"
    assert ref_of("a-1001") == "a-1001"


@pytest.mark.parametrize("identifier", [FHIR_ID, LONG_ID, "a:b", "~x", "id with space"])
def test_long_or_unsafe_ids_are_hashed_into_short_references(identifier: str) -> None:
    ref = ref_of(identifier)
    assert ref.startswith("~") and len(ref) == 12 and ":" not in ref
    assert ref_of(identifier) == ref  # stable
    assert resolve(ref, ["other", identifier], key=str) == identifier
    assert resolve(ref, ["other"], key=str) is None


# --------------------------------------------------------------------------- callback data
def test_callback_data_fits_64_bytes_even_with_long_ids() -> None:
    from clinicbot.telegram.booking_callbacks import (
        BookAlt,
        BookBy,
        BookDay,
        BookDoc,
        BookMonth,
        BookNav,
        BookOk,
        BookPage,
        BookSpec,
        BookTime,
        VisitCb,
    )

    ref = ref_of(LONG_ID)
    packed = [
        BookBy(f="a1b2", by="sp").pack(),
        BookSpec(f="a1b2", s=ref).pack(),
        BookDoc(f="a1b2", d=ref).pack(),
        BookDoc(f="a1b2", d="*").pack(),
        BookPage(f="a1b2", p=12).pack(),
        BookMonth(f="a1b2", m="202612").pack(),
        BookDay(f="a1b2", y="20261231").pack(),
        BookTime(f="a1b2", s=ref).pack(),
        BookAlt(f="a1b2", s=ref_of("d-13@20261231T2330Z")).pack(),
        BookOk(f="a1b2", s=ref).pack(),
        BookNav(f="a1b2", a="earliest").pack(),
        VisitCb(a="cxok", v=ref_of(FHIR_ID)).pack(),
    ]
    assert max(len(p.encode()) for p in packed) <= 40


@pytest.mark.parametrize(
    "data",
    [
        "bt:ZZZZ:d-01@20261124T0600Z",  # not a run id
        "bt:a1b2:" + "x" * 30,  # not a reference
        "bt:a1b2:a:b",  # too many parts
        "by:a1b2:2026-11-24",
        "bn:a1b2:explode",
        "vi:drop:a-0001",
        "bp:a1b2:-1",
        "bt:a1b2",
    ],
)
def test_malformed_callback_data_does_not_parse(data: str) -> None:
    from clinicbot.telegram.booking_callbacks import BookDay, BookNav, BookPage, BookTime, VisitCb

    factory = {"bt": BookTime, "by": BookDay, "bn": BookNav, "vi": VisitCb, "bp": BookPage}[data[:2]]
    with pytest.raises((TypeError, ValueError)):
        factory.unpack(data)


# --------------------------------------------------------------------------- texts
def test_dates_and_prices_read_naturally() -> None:
    ru, en = Translator("ru"), Translator("en")
    assert fmt_day(ru, date(2026, 11, 24)) == "вт, 24 ноября"
    assert fmt_day(en, date(2026, 11, 24), year=True) == "Tue, 24 November 2026"
    assert fmt_price(ru, Decimal("2500.00")) == "Стоимость приёма: от 2 500 ₽"
    assert fmt_price(en, Decimal("990.50")) == "Visit price: from 990.50 RUB"
    assert "администратор" in fmt_price(ru, None)


def test_short_doctor_names() -> None:
    doctor = Doctor(
        id="d",
        full_name=LocalizedText(ru="Иванова Мария Сергеевна", en="Maria Ivanova"),
        specialty_ids=("s",),
        branch_id="b",
    )
    assert short_name(doctor, Translator("ru")) == "Иванова М. С."
    assert short_name(doctor, Translator("en")) == "Maria Ivanova"


def test_month_grid_starts_on_monday() -> None:
    grid = month_grid(2026, 11)
    assert grid[0][:6] == [None] * 6 and grid[0][6] == date(2026, 11, 1)  # 1 Nov 2026 is a Sunday
    assert grid[-1][0] == date(2026, 11, 30)
    assert all(len(week) == 7 for week in grid)


def test_google_calendar_link() -> None:
    url = google_calendar_url(
        title="Приём в клинике «Демо»",
        start=datetime(2026, 11, 24, 6, 0, tzinfo=UTC),
        end=datetime(2026, 11, 24, 6, 30, tzinfo=UTC),
        details="Врач: Иванова",
        location="Москва, ул. Тверская, 12",
    )
    parsed = urlparse(url)
    query = parse_qs(parsed.query)
    assert parsed.netloc == "calendar.google.com" and query["action"] == ["TEMPLATE"]
    assert query["dates"] == ["20261124T060000Z/20261124T063000Z"]
    assert query["location"] == ["Москва, ул. Тверская, 12"]


def test_booking_texts_exist_in_both_languages_with_the_same_placeholders() -> None:
    def placeholders(text: str) -> set[str]:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name}

    ru, en = catalog("ru"), catalog("en")
    ours = [k for k in ru if k.startswith(("booking.", "visits.", "calendar."))]
    assert len(ours) > 50
    for key in ours:
        assert key in en and placeholders(ru[key]) == placeholders(en[key]), key
    for key in ("calendar.weekdays", "calendar.weekdays_short"):
        assert len(ru[key].split()) == len(en[key].split()) == 7
    for key in ("calendar.months", "calendar.months_genitive"):
        assert len(ru[key].split()) == len(en[key].split()) == 12


# --------------------------------------------------------------------------- outbox
def test_in_memory_outbox_deduplicates_on_the_key_and_refuses_personal_data() -> None:
    outbox = InMemoryOutbox()
    first = outbox.publish("booking", {"appointment_id": "a-1"}, "booking:a-1:booked")
    assert outbox.publish("booking", {"appointment_id": "a-1"}, "booking:a-1:booked") == first
    assert len(outbox.messages) == 1
    with pytest.raises(ValueError, match="personal data"):
        outbox.publish("booking", {"phone": "79990000000"}, "k")
    with pytest.raises(ValueError):
        outbox.publish("booking", {}, "")


def test_outbox_from_env() -> None:
    assert isinstance(outbox_from_env({}), InMemoryOutbox)
    outbox = outbox_from_env({"CLINICBOT_HANDOFF_FUNCTION": "clinicbot-HandoffFunction-1A2B"})
    assert isinstance(outbox, LambdaOutbox) and outbox.function_name == "clinicbot-HandoffFunction-1A2B"


class RecordingLambda:
    """The two things LambdaOutbox asks of boto3's lambda client."""

    def __init__(self, status: int = 202) -> None:
        self.status = status
        self.calls: list[dict[str, Any]] = []

    def invoke(self, **request: Any) -> dict[str, Any]:
        self.calls.append(request)
        return {"StatusCode": self.status}


def test_lambda_outbox_invokes_the_function_asynchronously_once_per_key() -> None:
    client = RecordingLambda()
    outbox = LambdaOutbox("clinicbot-handoff", client=client)
    payload = {"patient_id": "p-1", "appointment_id": "a-1", "start": "2026-11-24T06:00:00+00:00"}
    message_id = outbox.publish("booking", payload, "booking:a-1:booked")
    assert outbox.publish("booking", payload, "booking:a-1:booked") == message_id  # not sent twice
    [call] = client.calls
    assert call["FunctionName"] == "clinicbot-handoff" and call["InvocationType"] == "Event"
    event = json.loads(call["Payload"])
    assert event["payload"] == payload and event["kind"] == "booking" and event["message_id"] == message_id
    assert event["idempotency_key"] == "booking:a-1:booked" and event["created_at"]
    with pytest.raises(ValueError, match="personal data"):
        outbox.publish("booking", {"phone": "79990000000"}, "k")
    assert len(client.calls) == 1


def test_lambda_outbox_refuses_what_an_asynchronous_invocation_cannot_carry() -> None:
    client = RecordingLambda()
    outbox = LambdaOutbox("clinicbot-handoff", client=client)
    with pytest.raises(PayloadTooLarge, match="bytes, over"):
        outbox.publish("notice", {"about": "x" * 300_000}, "notice:1")
    assert client.calls == []
    with pytest.raises(PayloadTooLarge):  # the same check in memory: a test catches it before AWS does
        InMemoryOutbox().publish("notice", {"about": "ы" * 130_000}, "notice:1")
    rejected = LambdaOutbox("clinicbot-handoff", client=RecordingLambda(status=200))
    with pytest.raises(OutboxError):  # 200 would mean a synchronous invocation ran: not what we asked for
        rejected.publish("notice", {"about": "x"}, "notice:2")
    assert rejected._sent == {}  # not remembered as sent: a retry of the update publishes it again


def test_lambda_outbox_builds_its_client_lazily_with_short_timeouts(monkeypatch: pytest.MonkeyPatch) -> None:
    from botocore.stub import ANY, Stubber

    monkeypatch.setenv("AWS_DEFAULT_REGION", "eu-central-1")
    outbox = LambdaOutbox("clinicbot-handoff")
    config = outbox.client.meta.config
    assert config.connect_timeout == 1.0 and config.read_timeout == 2.0
    assert config.retries["total_max_attempts"] == 3  # the first try and two retries
    with Stubber(outbox.client) as stub:  # the request boto3 would send is a valid Invoke
        stub.add_response(
            "invoke",
            {"StatusCode": 202},
            {"FunctionName": "clinicbot-handoff", "InvocationType": "Event", "Payload": ANY},
        )
        outbox.publish("booking", {"appointment_id": "a-1"}, "booking:a-1:booked")
        stub.assert_no_pending_responses()
