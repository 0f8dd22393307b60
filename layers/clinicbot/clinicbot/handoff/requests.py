"""What patients ask the clinic for, as validated models (pure pydantic: no I/O).

Each request travels in two parts: the *payload* on the hand-off queue carries ids, codes and times only
(the outbox refuses personal data, and a dead-letter queue cannot be erased), while the personal
fields (:data:`SEALED_FIELDS`: a phone, the taxpayer's name, INN and date of birth, a message text) are
*sealed* into the HandoffTable under the patient's Telegram id, where the patient's erasure reaches them,
and are deleted once the CRM has them. The consumer joins the two and validates the whole again.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator

from clinicbot.domain.phones import normalize_phone
from clinicbot.handoff.inn import validate_personal_inn

__all__ = [
    "BOOKING_KIND",
    "CALLBACK_KIND",
    "CERTIFICATE_KIND",
    "CHAT_KIND",
    "NOTICE_KIND",
    "SEALED_FIELDS",
    "STAFF_REPLY_KIND",
    "BirthDateError",
    "BookingCopy",
    "CallbackRequest",
    "CallbackTopic",
    "CallbackWindow",
    "CertificateRequest",
    "ContentType",
    "Envelope",
    "NameError_",
    "Notice",
    "NoticeReason",
    "PatientInfo",
    "PatientMessage",
    "Relation",
    "StaffReply",
    "certificate_years",
    "parse_birth_date",
    "validate_full_name",
]

BOOKING_KIND = "booking"  # published by the booking service
CALLBACK_KIND = "callback_request"  # the booking service publishes the "on a visit" ones too
CERTIFICATE_KIND = "certificate_request"
CHAT_KIND = "chat_message"
STAFF_REPLY_KIND = "staff_reply"
NOTICE_KIND = "staff_notice"

SEALED_FIELDS = frozenset(
    {"phone", "taxpayer_full_name", "inn", "birth_date", "text", "file_id", "file_name", "mime_type"}
)
"""Fields that never go on the queue: kept in the HandoffTable until the CRM has them."""

Phone = Annotated[str, AfterValidator(normalize_phone)]


class Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")


class Envelope(Model):
    """A message of the hand-off queue as ``clinicbot.handoff.outbox`` writes it."""

    kind: str = Field(min_length=1)
    idempotency_key: str = Field(min_length=1)
    created_at: datetime | None = None
    payload: dict[str, Any] = Field(default_factory=dict)


# --------------------------------------------------------------------------------- call back
class CallbackWindow(StrEnum):
    ASAP = "asap"
    MORNING = "09-12"
    MIDDAY = "12-15"
    AFTERNOON = "15-18"
    EVENING = "18-21"


class CallbackTopic(StrEnum):
    """Preset, non-medical topics: the patient never types a reason (nothing medical can slip in)."""

    BOOKING = "booking"
    PAYMENT = "payment"
    DOCUMENTS = "documents"
    OTHER = "other"


class CallbackRequest(Model):
    number: str = Field(validation_alias="request_number")
    reason: Literal["menu", "visit"] = "menu"
    user_id: int | None = None
    patient_id: str
    phone: Phone | None = None
    """Sealed. None: the number on the patient's MIS record."""
    window: CallbackWindow | None = None
    topic: CallbackTopic | None = None
    appointment_id: str | None = None
    branch_id: str | None = None
    start: datetime | None = None
    """The visit's start (reason "visit")."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


# ------------------------------------------------------------------------------- certificate
class Relation(StrEnum):
    """Who the taxpayer is to the patient."""

    SELF = "self"
    SPOUSE = "spouse"
    PARENT = "parent"
    CHILD = "child"


_NAME_WORD = re.compile(r"^[A-Za-zА-Яа-яЁё]+(?:[-'’][A-Za-zА-Яа-яЁё]+)*$")


class NameError_(ValueError):
    pass


def validate_full_name(raw: str) -> str:
    """Surname, name and (optionally) patronymic: 2-4 words of letters, hyphens and apostrophes."""
    words = raw.split()
    if not 2 <= len(words) <= 4 or len(" ".join(words)) > 100:
        raise NameError_("expected 2-4 words")
    if not all(_NAME_WORD.match(word) for word in words):
        raise NameError_("letters, hyphens and apostrophes only")
    return " ".join(words)


class BirthDateError(ValueError):
    def __init__(self, problem: Literal["format", "future", "too_young", "too_old"]) -> None:
        super().__init__(problem)
        self.problem = problem


_DATE_FORMATS = ("%d.%m.%Y", "%d/%m/%Y", "%d-%m-%Y", "%Y-%m-%d")
MIN_TAXPAYER_AGE = 14
MAX_AGE = 120


def parse_birth_date(raw: str, today: date) -> date:
    text = raw.strip()
    for fmt in _DATE_FORMATS:
        try:
            born = datetime.strptime(text, fmt).date()
            break
        except ValueError:
            continue
    else:
        raise BirthDateError("format")
    if born >= today:
        raise BirthDateError("future")
    age = today.year - born.year - ((today.month, today.day) < (born.month, born.day))
    if age < MIN_TAXPAYER_AGE:
        raise BirthDateError("too_young")
    if age > MAX_AGE:
        raise BirthDateError("too_old")
    return born


def certificate_years(today: date) -> list[int]:
    """The years a certificate can be asked for: the deduction reaches three years back."""
    return [today.year - 3, today.year - 2, today.year - 1, today.year]


class CertificateRequest(Model):
    number: str = Field(validation_alias="request_number")
    user_id: int
    patient_id: str
    years: tuple[int, ...] = Field(min_length=1, max_length=4)
    relation: Relation
    taxpayer_full_name: str
    inn: str
    birth_date: date

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    @field_validator("years")
    @classmethod
    def _years(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        this_year = datetime.now(UTC).year
        if len(set(value)) != len(value) or any(not 2000 <= y <= this_year for y in value):
            raise ValueError("years must be distinct and not in the future")
        return tuple(sorted(value))

    @field_validator("taxpayer_full_name")
    @classmethod
    def _name(cls, value: str) -> str:
        return validate_full_name(value)

    @field_validator("inn")
    @classmethod
    def _inn(cls, value: str) -> str:
        return validate_personal_inn(value)


# ---------------------------------------------------------------------------------- messages
class ContentType(StrEnum):
    TEXT = "text"
    PHOTO = "photo"
    DOCUMENT = "document"


class PatientMessage(Model):
    """A message the patient wrote to the clinic ("write to the clinic" mode)."""

    number: str = Field(validation_alias="request_number")
    user_id: int
    patient_id: str | None = None
    message_id: int
    """The message in the patient's chat with the bot (the staff group copies it from there)."""
    content_type: ContentType
    first: bool = False
    """The first message of a conversation (the staff see a header card before it)."""
    text: str | None = None
    """Sealed: the text or the caption (only when the CRM is not the staff group, which copies)."""
    file_id: str | None = None
    file_name: str | None = None
    mime_type: str | None = None

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)


class StaffReply(Model):
    """A staff member's message in a patient's forum topic, to be copied to the patient."""

    group_id: int
    thread_id: int
    message_id: int
    user_id: int
    """The patient (Telegram id)."""


class NoticeReason(StrEnum):
    PATIENT_BLOCKED = "patient_blocked"
    """Telegram answered 403: the patient blocked the bot; the reply did not reach them."""
    UNDELIVERABLE = "undeliverable"
    """Telegram refused the message for good (e.g. the staff member deleted it meanwhile)."""


class Notice(Model):
    """Something the staff must know about a patient's thread."""

    user_id: int
    reason: NoticeReason
    patient_id: str | None = None
    about: str | None = None
    """What did not arrive: a request number, a CRM message id (never the text)."""


class BookingCopy(Model):
    """A booking event mirrored to the CRM (published by ``clinicbot.booking.service``)."""

    event: str
    patient_id: str
    appointment_id: str
    doctor_id: str | None = None
    branch_id: str | None = None
    service_id: str | None = None
    start: datetime
    end: datetime | None = None
    status: str | None = None
    previous_appointment_id: str | None = None
    user_id: int | None = None


class PatientInfo(Model):
    """What the CRM needs to know who a patient is (from the MIS, at delivery time)."""

    patient_id: str
    first_name: str | None = None
    last_name: str | None = None
    phone: str | None = None

    @property
    def display_name(self) -> str:
        return " ".join(p for p in (self.first_name, self.last_name) if p) or self.patient_id
