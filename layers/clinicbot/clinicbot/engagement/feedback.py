"""Visit feedback and NPS: the domain (no aiogram, no storage types).

A patient rates a visit 1-5, may tick what could be better (five fixed options) and add a comment, and
sends it either named or anonymous. An anonymous answer keeps only the clinic, branch, doctor and month
(no Telegram id, no MIS patient or visit id, no date): nothing links it back to the patient. The NPS
question (0-10, "would you recommend us") follows a rating at most once every ``nps_interval_months``.

The monthly report (:func:`monthly_report`) gives per doctor the average rating and the NPS
(% promoters 9-10 minus % detractors 0-6), anonymous and named answers alike.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from zoneinfo import ZoneInfo

__all__ = [
    "IMPROVEMENTS",
    "LOW_RATING_KIND",
    "MAX_COMMENT",
    "DoctorMonth",
    "Entry",
    "EntryKind",
    "month_of",
    "monthly_report",
    "net_promoter_score",
    "nps_due",
]

LOW_RATING_KIND = "low_rating"
"""Outbox kind of a low rating handed to the staff."""

IMPROVEMENTS: tuple[str, ...] = ("waiting", "doctor", "staff", "comfort", "price")
"""The fixed "what could be better" options (i18n ``feedback.imp.<key>``); callbacks carry the index."""

MAX_COMMENT = 500
MONTH_FORMAT = "%Y-%m"


class EntryKind(StrEnum):
    RATING = "rating"
    NPS = "nps"


@dataclass(frozen=True)
class Entry:
    """One answer as stored. ``owner`` (Telegram user id), ``patient_id`` and ``appointment_id`` are None
    for an anonymous answer."""

    kind: EntryKind
    month: str
    clinic: str
    branch_id: str
    doctor_id: str
    score: int
    anonymous: bool
    improvements: tuple[str, ...] = ()
    comment: str | None = None
    owner: int | None = None
    patient_id: str | None = None
    appointment_id: str | None = None
    created_at: datetime | None = None
    entry_id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def __post_init__(self) -> None:
        low, high = (1, 5) if self.kind is EntryKind.RATING else (0, 10)
        if not low <= self.score <= high:
            raise ValueError(f"{self.kind} score out of range")
        unknown = set(self.improvements) - set(IMPROVEMENTS)
        if unknown:
            raise ValueError(f"unknown improvement options: {sorted(unknown)}")
        if self.anonymous and (self.owner or self.patient_id or self.appointment_id or self.created_at):
            raise ValueError("an anonymous answer carries no link to the patient")
        if not self.anonymous and self.owner is None:
            raise ValueError("a named answer needs its owner")
        if self.comment is not None and len(self.comment) > MAX_COMMENT:
            raise ValueError("comment too long")

    @classmethod
    def named_id(cls, kind: EntryKind, appointment_id: str) -> str:
        """A named answer's id is fixed per visit, so a second answer to the same visit is refused."""
        return f"{kind.value}-{appointment_id}"


def month_of(instant: datetime, tz: str | None = None) -> str:
    """``YYYY-MM`` of an instant, in the branch's time zone when given."""
    local = instant.astimezone(ZoneInfo(tz)) if tz else instant.astimezone(UTC)
    return local.strftime(MONTH_FORMAT)


def _months_between(earlier: datetime, later: datetime) -> int:
    months = (later.year - earlier.year) * 12 + (later.month - earlier.month)
    if later.day < earlier.day:
        months -= 1
    return months


def nps_due(last_asked: datetime | None, now: datetime, interval_months: int) -> bool:
    """True if the patient was never asked, or last asked at least ``interval_months`` ago."""
    return last_asked is None or _months_between(last_asked, now) >= interval_months


def net_promoter_score(scores: Iterable[int]) -> float | None:
    """% promoters (9-10) minus % detractors (0-6), -100..100; None without answers."""
    values = list(scores)
    if not values:
        return None
    promoters = sum(1 for s in values if s >= 9)
    detractors = sum(1 for s in values if s <= 6)
    return round(100.0 * (promoters - detractors) / len(values), 1)


@dataclass
class DoctorMonth:
    month: str
    doctor_id: str
    ratings: list[int] = field(default_factory=list)
    nps_scores: list[int] = field(default_factory=list)

    @property
    def average(self) -> float | None:
        return round(sum(self.ratings) / len(self.ratings), 2) if self.ratings else None

    @property
    def nps(self) -> float | None:
        return net_promoter_score(self.nps_scores)


def monthly_report(entries: Iterable[Entry]) -> list[DoctorMonth]:
    """Per (month, doctor): ratings and NPS answers, ordered by month then doctor id."""
    rows: dict[tuple[str, str], DoctorMonth] = defaultdict(lambda: DoctorMonth("", ""))
    for entry in entries:
        key = (entry.month, entry.doctor_id)
        row = rows.get(key)
        if row is None:
            row = rows[key] = DoctorMonth(entry.month, entry.doctor_id)
        (row.ratings if entry.kind is EntryKind.RATING else row.nps_scores).append(entry.score)
    return [rows[key] for key in sorted(rows)]
