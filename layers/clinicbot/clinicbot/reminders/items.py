"""Due items: one reminder, memo, survey trigger or medication reminder to send at a given time.

Pure data and key formats; no storage types. The item's life (see ``clinicbot.reminders.runner``)::

    pending --claim--> sending --sent-->  sent
       ^                 |  \\--403-->    blocked      (the patient is marked unreachable)
       |                 |   \\--400 / retries exhausted--> failed
       +--deferred / 5xx / lease expired (reclaimable)
    pending --planner: visit cancelled or moved--> cancelled
    pending --run: setting off, visit over, unreachable, erased--> skipped

Keys (ReminderTable, see ``clinicbot.reminders.models``): ``pk = U#<telegram user id>``,
``sk = R#<item id>``. Item ids are deterministic, so planning is an idempotent upsert::

    a#<appointment ref>#<start, UTC yyyymmddHHMM>#r<lead hours>   appointment reminder
    a#<appointment ref>#<start>#mb | #ma | #sv                     memo before / memo after / survey
    m#<series id>#<occurrence, UTC yyyymmddHHMM>                  medication reminder

A moved visit has another start, hence other ids: its old items are cancelled and new ones created.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

from clinicbot.booking.refs import ref_of

__all__ = [
    "ITEM_ID_PATTERN",
    "ActiveStatuses",
    "DueItem",
    "Kind",
    "SettingKind",
    "Status",
    "appointment_prefix",
    "bucket_of",
    "buckets_between",
    "item_id_for_appointment",
    "item_id_for_medication",
    "stamp",
]


class Kind(StrEnum):
    VISIT = "visit"  # appointment reminder at a lead time, with Confirm / Cancel / Reschedule
    MEMO_BEFORE = "memo_before"
    MEMO_AFTER = "memo_after"
    SURVEY = "survey"  # the post-visit survey trigger
    MED = "med"  # medication reminder with a "taken" button


class SettingKind(StrEnum):
    """What a patient can switch on or off in the settings menu."""

    VISIT = "visit"
    MEMO = "memo"
    MED = "med"
    SURVEY = "survey"


SETTING_OF: dict[Kind, SettingKind] = {
    Kind.VISIT: SettingKind.VISIT,
    Kind.MEMO_BEFORE: SettingKind.MEMO,
    Kind.MEMO_AFTER: SettingKind.MEMO,
    Kind.SURVEY: SettingKind.SURVEY,
    Kind.MED: SettingKind.MED,
}


class Status(StrEnum):
    PENDING = "pending"
    SENDING = "sending"
    SENT = "sent"
    CANCELLED = "cancelled"
    SKIPPED = "skipped"
    FAILED = "failed"
    BLOCKED = "blocked"


ActiveStatuses = frozenset({Status.PENDING, Status.SENDING})
"""Items in these states are on the due-time index; the others have left it (sparse index)."""

ITEM_ID_PATTERN = r"^[A-Za-z0-9_.@~#-]{1,56}$"
_ITEM_ID = re.compile(ITEM_ID_PATTERN)


def stamp(instant: datetime) -> str:
    """``yyyymmddHHMM`` in UTC."""
    return instant.astimezone(UTC).strftime("%Y%m%d%H%M")


def appointment_prefix(appointment_id: str) -> str:
    return f"a#{ref_of(appointment_id)}#"


def item_id_for_appointment(appointment_id: str, start: datetime, suffix: str) -> str:
    """``suffix``: ``r<lead hours>``, ``mb``, ``ma`` or ``sv``."""
    return f"{appointment_prefix(appointment_id)}{stamp(start)}#{suffix}"


def item_id_for_medication(series_id: str, occurrence: datetime) -> str:
    return f"m#{series_id}#{stamp(occurrence)}"


def is_item_id(value: str) -> bool:
    return bool(_ITEM_ID.match(value))


# --- the due-time index: hour buckets -------------------------------------------------------------

BUCKET = timedelta(hours=1)


def bucket_of(instant: datetime) -> str:
    """The due-time index's partition key: the UTC hour, ``H#yyyymmddHH``."""
    return "H#" + instant.astimezone(UTC).strftime("%Y%m%d%H")


def bucket_start(bucket: str) -> datetime:
    return datetime.strptime(bucket[2:], "%Y%m%d%H").replace(tzinfo=UTC)


def buckets_between(first: str, now: datetime) -> list[str]:
    """Every hour bucket from ``first`` up to the one holding ``now`` (inclusive)."""
    start = bucket_start(first)
    last = bucket_start(bucket_of(now))
    out: list[str] = []
    while start <= last:
        out.append(bucket_of(start))
        start += BUCKET
    return out


@dataclass
class DueItem:
    """One thing to send at ``due_at`` to Telegram user ``user_id``.

    ``planned_at`` is when it was meant to go (after quiet hours); ``due_at`` is when it is next
    eligible (the same while pending, and while being sent: ``lease_until`` is when the claim ends; later
    after a retryable failure).
    Appointment fields are copied from the MIS at planning time (ids and instants only); ``tz`` is the
    branch's (or the course's) time zone, for quiet hours and for showing times.
    """

    user_id: int
    item_id: str
    kind: Kind
    planned_at: datetime
    due_at: datetime
    status: Status = Status.PENDING
    patient_id: str | None = None
    tz: str = "Europe/Moscow"
    # appointment items
    appointment_id: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    doctor_id: str | None = None
    branch_id: str | None = None
    service_id: str | None = None
    lead_hours: int | None = None
    # medication items
    series: dict[str, Any] | None = None
    # run bookkeeping
    lease_until: datetime | None = None
    lease_id: str | None = None
    attempts: int = 0
    message_id: int | None = None
    sent_at: datetime | None = None
    reason: str | None = None
    taken_at: datetime | None = None
    expires_at: datetime | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def is_active(self) -> bool:
        return self.status in ActiveStatuses

    @property
    def setting(self) -> SettingKind:
        return SETTING_OF[self.kind]

    @property
    def series_id(self) -> str | None:
        return str(self.series["id"]) if self.series else None

    def with_changes(self, **changes: Any) -> DueItem:
        return replace(self, **changes)


def default_expiry(item: DueItem) -> datetime:
    """Items are kept 30 days after they stop mattering (DynamoDB TTL deletes them)."""
    last = max(t for t in (item.planned_at, item.end, item.start) if t is not None)
    return last + timedelta(days=30)
