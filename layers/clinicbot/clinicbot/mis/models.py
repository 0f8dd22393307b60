"""Typed models the MIS port speaks. Pure pydantic v2; no I/O.

All instants are timezone-aware UTC datetimes (any aware datetime is accepted and converted);
show them to people in the branch's time zone (``Branch.tz`` / ``Branch.local``). Money is
``Decimal`` roubles. Models are frozen: adapters return fresh copies, callers never mutate.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from clinicbot.domain.phones import normalize_phone

__all__ = [
    "Appointment",
    "AppointmentStatus",
    "Balance",
    "Branch",
    "Doctor",
    "LocalizedText",
    "OpeningHours",
    "Patient",
    "PatientRegistration",
    "PatientVisits",
    "Prescription",
    "Service",
    "Slot",
    "SlotHold",
    "Specialty",
    "UtcDateTime",
]


def _to_utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def _check_zone(value: str) -> str:
    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {value!r}") from exc
    return value


UtcDateTime = Annotated[AwareDatetime, AfterValidator(_to_utc)]
"""An aware datetime, stored in UTC. Naive datetimes are rejected."""

TimeZoneName = Annotated[str, AfterValidator(_check_zone)]
Phone = Annotated[str, AfterValidator(normalize_phone)]
Money = Annotated[Decimal, Field(ge=0, decimal_places=2)]


class MisModel(BaseModel):
    model_config = ConfigDict(frozen=True)


class LocalizedText(MisModel):
    """A text in Russian and, where the MIS has it, English."""

    ru: str
    en: str | None = None

    def get(self, lang: str | None = None) -> str:
        """The text for a language code (``"en"``, ``"en-GB"``, ``"ru"``); Russian is the fallback."""
        if lang and lang.lower().startswith("en") and self.en:
            return self.en
        return self.ru


class OpeningHours(MisModel):
    """One opening interval of a branch on a weekday (Monday = 0), in the branch's local time."""

    weekday: int = Field(ge=0, le=6)
    opens: time
    closes: time

    @model_validator(mode="after")
    def _ordered(self) -> OpeningHours:
        if self.closes <= self.opens:
            raise ValueError("a branch closes after it opens")
        return self


class Branch(MisModel):
    id: str
    name: LocalizedText
    address: LocalizedText
    timezone: TimeZoneName
    opening_hours: tuple[OpeningHours, ...] = ()
    lat: float | None = Field(default=None, ge=-90, le=90)
    lon: float | None = Field(default=None, ge=-180, le=180)
    phone: str | None = None

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, instant: datetime) -> datetime:
        """An aware instant as the branch's wall-clock time (what the patient is shown)."""
        if instant.tzinfo is None:
            raise ValueError("naive datetime: MIS instants are aware UTC datetimes")
        return instant.astimezone(self.tz)

    def hours_on(self, weekday: int) -> tuple[OpeningHours, ...]:
        """Opening intervals on a weekday (Monday = 0); empty when the branch is closed."""
        return tuple(h for h in self.opening_hours if h.weekday == weekday)


class Specialty(MisModel):
    id: str
    name: LocalizedText
    sensitive: bool = False
    """The name implies a condition (urology, gynaecology, psychiatry, …): keep it out of reminders
    and anything a third party may see (323-FZ art. 13)."""


class Doctor(MisModel):
    id: str
    full_name: LocalizedText
    specialty_ids: tuple[str, ...] = Field(min_length=1)
    branch_id: str
    profile: LocalizedText | None = None


class Service(MisModel):
    id: str
    name: LocalizedText
    specialty_id: str
    price: Money
    """Roubles."""
    duration_minutes: int = Field(gt=0)


class Slot(MisModel):
    """A free (when listed by ``free_slots``) interval in a doctor's schedule."""

    id: str
    doctor_id: str
    branch_id: str
    start: UtcDateTime
    end: UtcDateTime
    service_id: str | None = None

    @model_validator(mode="after")
    def _ordered(self) -> Slot:
        if self.end <= self.start:
            raise ValueError("a slot ends after it starts")
        return self

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


class SlotHold(MisModel):
    """A short reservation of a slot for one patient while they confirm the booking."""

    id: str
    slot_id: str
    patient_id: str
    expires_at: UtcDateTime


class AppointmentStatus(StrEnum):
    BOOKED = "booked"
    CONFIRMED = "confirmed"
    CANCELLED = "cancelled"
    FULFILLED = "fulfilled"
    NOSHOW = "noshow"


ACTIVE_STATUSES = frozenset({AppointmentStatus.BOOKED, AppointmentStatus.CONFIRMED})


class Appointment(MisModel):
    id: str
    patient_id: str
    doctor_id: str
    branch_id: str
    start: UtcDateTime
    end: UtcDateTime
    status: AppointmentStatus
    service_id: str | None = None
    price: Money | None = None
    """Roubles; ``None`` when the MIS does not know the price in advance."""

    @model_validator(mode="after")
    def _ordered(self) -> Appointment:
        if self.end <= self.start:
            raise ValueError("an appointment ends after it starts")
        return self

    @property
    def is_active(self) -> bool:
        """Booked or confirmed: the patient is expected to come."""
        return self.status in ACTIVE_STATUSES


class PatientVisits(MisModel):
    """A patient's visits: ``upcoming`` are active visits not yet started, soonest first; ``past`` are
    visits that started before now, whatever their status, latest first. Cancelled future visits are in
    neither list."""

    upcoming: tuple[Appointment, ...] = ()
    past: tuple[Appointment, ...] = ()


class Balance(MisModel):
    """The patient's account with the clinic: positive = prepaid credit, negative = debt."""

    amount: Decimal
    currency: Literal["RUB"] = "RUB"


class Patient(MisModel):
    id: str
    first_name: str
    last_name: str | None = None
    phone: Phone
    """Normalised digits with the country code, e.g. ``"79161234567"``."""


class PatientRegistration(MisModel):
    first_name: str = Field(min_length=1)
    last_name: str | None = None
    phone: Phone
    """Any common format; normalised on validation."""


class Prescription(MisModel):
    """A medication course the doctor prescribed, for reminders: take ``label`` at each of
    ``times_of_day`` (wall-clock time in ``timezone``) every day from ``start`` to ``end`` inclusive."""

    id: str
    patient_id: str
    label: str
    times_of_day: tuple[time, ...] = Field(min_length=1)
    start: date
    end: date
    timezone: TimeZoneName = "Europe/Moscow"

    @model_validator(mode="after")
    def _ordered(self) -> Prescription:
        if self.end < self.start:
            raise ValueError("a course ends on or after the day it starts")
        return self
