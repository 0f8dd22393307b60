"""The FeedbackTable (see template.yaml), with pynamodb.

Items (one partition per month, so the monthly report is one paginated Query)::

    pk = M#<YYYY-MM>   sk = R#<entry id>   a visit rating     (FeedbackItem, kind "rating")
    pk = M#<YYYY-MM>   sk = N#<entry id>   an NPS answer      (FeedbackItem, kind "nps")

A named answer also has ``owner = USER#<telegram id>`` (plus the MIS patient and visit ids); the sparse
GSI ``owner`` indexes only those, so a patient's export or erasure is one Query. An anonymous answer has
none of these and a random id: nothing in the table leads back to the patient.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    ListAttribute,
    NumberAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.exceptions import PutError
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

from clinicbot.engagement.feedback import Entry, EntryKind

__all__ = ["OWNER_INDEX", "FeedbackItem", "FeedbackRepository", "configure", "owner_key"]

log = logging.getLogger(__name__)

OWNER_INDEX = "owner"
_SK_PREFIX = {EntryKind.RATING: "R#", EntryKind.NPS: "N#"}


def owner_key(telegram_user_id: int) -> str:
    return f"USER#{telegram_user_id}"


def month_pk(month: str) -> str:
    return f"M#{month}"


class OwnerIndex(GlobalSecondaryIndex["FeedbackItem"]):
    class Meta:
        index_name = OWNER_INDEX
        projection = AllProjection()

    owner = UnicodeAttribute(hash_key=True)


class FeedbackItem(Model):
    class Meta:
        table_name = os.environ.get("CLINICBOT_FEEDBACK_TABLE", "clinicbot-feedback")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-central-1"
        host = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL") or None
        connect_timeout_seconds = 1
        read_timeout_seconds = 2
        max_retry_attempts = 2
        base_backoff_ms = 25

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = UnicodeAttribute()
    month = UnicodeAttribute()
    clinic = UnicodeAttribute()
    branch_id = UnicodeAttribute()
    doctor_id = UnicodeAttribute()
    score = NumberAttribute()
    anonymous = BooleanAttribute()
    improvements = ListAttribute(of=UnicodeAttribute, null=True)
    comment = UnicodeAttribute(null=True)
    owner = UnicodeAttribute(null=True)
    patient_id = UnicodeAttribute(null=True)
    appointment_id = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute(null=True)
    owner_index = OwnerIndex()


def configure(
    *,
    table_name: str | None = None,
    region: str | None = None,
    host: str | None = None,
    connect_timeout: float = 1.0,
    read_timeout: float = 2.0,
    max_retries: int = 2,
) -> None:
    """Point the model at a table (and drop a cached connection); like ``clinicbot.storage.models``."""
    meta: Any = FeedbackItem.Meta
    meta.table_name = table_name or os.environ.get("CLINICBOT_FEEDBACK_TABLE", "clinicbot-feedback")
    if region:
        meta.region = region
    meta.host = (
        host or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL") or None
    )
    meta.connect_timeout_seconds = connect_timeout
    meta.read_timeout_seconds = read_timeout
    meta.max_retry_attempts = max_retries
    FeedbackItem._connection = None


def _item(entry: Entry) -> FeedbackItem:
    return FeedbackItem(
        pk=month_pk(entry.month),
        sk=_SK_PREFIX[entry.kind] + entry.entry_id,
        kind=entry.kind.value,
        month=entry.month,
        clinic=entry.clinic,
        branch_id=entry.branch_id,
        doctor_id=entry.doctor_id,
        score=entry.score,
        anonymous=entry.anonymous,
        improvements=list(entry.improvements) or None,
        comment=entry.comment or None,
        owner=None if entry.anonymous or entry.owner is None else owner_key(entry.owner),
        patient_id=entry.patient_id,
        appointment_id=entry.appointment_id,
        created_at=entry.created_at,
    )


def _entry(item: FeedbackItem) -> Entry:
    owner = int(item.owner.split("#", 1)[1]) if item.owner else None
    return Entry(
        kind=EntryKind(item.kind),
        month=item.month,
        clinic=item.clinic,
        branch_id=item.branch_id,
        doctor_id=item.doctor_id,
        score=int(item.score),
        anonymous=bool(item.anonymous),
        improvements=tuple(str(i) for i in (item.improvements or [])),
        comment=item.comment,
        owner=owner,
        patient_id=item.patient_id,
        appointment_id=item.appointment_id,
        created_at=item.created_at,
        entry_id=item.sk.split("#", 1)[1],
    )


def as_export(item: FeedbackItem) -> dict[str, Any]:
    return {
        "kind": item.kind,
        "month": item.month,
        "branch_id": item.branch_id,
        "doctor_id": item.doctor_id,
        "appointment_id": item.appointment_id,
        "score": int(item.score),
        "improvements": list(item.improvements or []),
        "comment": item.comment,
        "created_at": item.created_at.isoformat() if item.created_at else None,
    }


class FeedbackRepository:
    def save(self, entry: Entry) -> bool:
        """Store an answer; False if this named answer exists already (the same visit answered twice)."""
        item = _item(entry)
        try:
            item.save(condition=FeedbackItem.pk.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        log.info("feedback stored", extra={"kind": entry.kind.value, "anonymous": entry.anonymous})
        return True

    def month(self, month: str) -> Iterator[Entry]:
        for item in FeedbackItem.query(month_pk(month)):
            yield _entry(item)

    def owned(self, telegram_user_id: int) -> list[FeedbackItem]:
        return list(FeedbackItem.owner_index.query(owner_key(telegram_user_id)))

    def erase_owned(self, telegram_user_id: int) -> int:
        items = self.owned(telegram_user_id)
        for item in items:
            item.delete()
        return len(items)
