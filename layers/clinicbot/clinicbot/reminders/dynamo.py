"""``ReminderStore`` on DynamoDB (the ReminderTable; pynamodb). An adapter module.

Every state change is ONE conditional UpdateItem (no read before write); the due-time index follows the
status: ``due_bucket`` is set while an item is pending or sending and removed otherwise (sparse GSI).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

from pynamodb.attributes import Attribute
from pynamodb.exceptions import PutError, UpdateError
from pynamodb.expressions.condition import Condition
from pynamodb.expressions.update import Action

from clinicbot.reminders.items import ActiveStatuses, DueItem, Kind, Status, bucket_of
from clinicbot.reminders.models import (
    CURSOR_PK,
    CURSOR_SK,
    CursorRecord,
    DueRecord,
    SeriesRecord,
    configure,
    user_pk,
)
from clinicbot.reminders.store import CursorState, RunLock

if TYPE_CHECKING:
    from clinicbot.config import Settings

__all__ = ["DynamoReminderStore"]

log = logging.getLogger(__name__)

ITEM_PREFIX = "R#"
SERIES_PREFIX = "S#"
SERIES_TTL = timedelta(days=30)  # after the course ends

_EPOCH_FIELDS = {"due_at", "lease_until"}
_FIELDS = {
    "kind",
    "status",
    "planned_at",
    "due_at",
    "patient_id",
    "tz",
    "appointment_id",
    "start",
    "end",
    "doctor_id",
    "branch_id",
    "service_id",
    "lead_hours",
    "series",
    "lease_until",
    "lease_id",
    "attempts",
    "message_id",
    "sent_at",
    "reason",
    "taken_at",
    "expires_at",
}


def _epoch(value: datetime) -> int:
    return int(value.timestamp())


def _from_epoch(value: float | None) -> datetime | None:
    return None if value is None else datetime.fromtimestamp(int(value), UTC)


def _is_condition_failure(exc: UpdateError | PutError) -> bool:
    return exc.cause_response_code == "ConditionalCheckFailedException"


def to_item(record: DueRecord) -> DueItem:
    due_at = _from_epoch(record.due_at)
    assert due_at is not None
    return DueItem(
        user_id=int(record.pk.split("#", 1)[1]),
        item_id=record.sk[len(ITEM_PREFIX) :],
        kind=Kind(record.kind),
        status=Status(record.status),
        planned_at=record.planned_at,
        due_at=due_at,
        patient_id=record.patient_id,
        tz=record.tz,
        appointment_id=record.appointment_id,
        start=record.start,
        end=record.end,
        doctor_id=record.doctor_id,
        branch_id=record.branch_id,
        service_id=record.service_id,
        lead_hours=int(record.lead_hours) if record.lead_hours is not None else None,
        series=record.series,
        lease_until=_from_epoch(record.lease_until),
        lease_id=record.lease_id,
        attempts=int(record.attempts or 0),
        message_id=int(record.message_id) if record.message_id is not None else None,
        sent_at=record.sent_at,
        reason=record.reason,
        taken_at=record.taken_at,
        expires_at=record.expires_at,
    )


def to_record(item: DueItem) -> DueRecord:
    record = DueRecord(pk=user_pk(item.user_id), sk=ITEM_PREFIX + item.item_id)
    for name in _FIELDS:
        value = getattr(item, name)
        if name in _EPOCH_FIELDS and value is not None:
            value = _epoch(value)
        elif name in {"kind", "status"}:
            value = str(value)
        setattr(record, name, value)
    record.due_bucket = bucket_of(item.due_at) if item.status in ActiveStatuses else None
    return record


def _actions(changes: Mapping[str, Any]) -> list[Action]:
    actions: list[Action] = []
    for name, value in changes.items():
        if name not in _FIELDS:
            raise ValueError(f"unknown due item field {name!r}")
        attribute: Attribute[Any] = getattr(DueRecord, name)
        if value is None:
            actions.append(attribute.remove())
            continue
        if name in _EPOCH_FIELDS:
            value = _epoch(value)
        elif name in {"kind", "status"}:
            value = str(value)
        actions.append(attribute.set(value))
    return actions


class DynamoReminderStore:
    """The ReminderTable through pynamodb (configure the models first, or use :meth:`configured`)."""

    def __init__(self) -> None:
        self.requests = 0  # DynamoDB requests made, for logs and benches

    @classmethod
    def configured(cls, settings: Settings) -> DynamoReminderStore:
        configure(
            table_name=settings.reminder_table,
            connect_timeout=settings.ddb_connect_timeout_seconds,
            read_timeout=settings.ddb_read_timeout_seconds,
            max_retries=settings.ddb_max_retries,
        )
        return cls()

    # ------------------------------------------------------------------ per patient
    def user_items(self, user_id: int, prefix: str = "", *, consistent: bool = True) -> list[DueItem]:
        self.requests += 1
        records = DueRecord.query(
            user_pk(user_id), DueRecord.sk.startswith(ITEM_PREFIX + prefix), consistent_read=consistent
        )
        return [to_item(r) for r in records]

    def get(self, user_id: int, item_id: str) -> DueItem | None:
        self.requests += 1
        try:
            return to_item(DueRecord.get(user_pk(user_id), ITEM_PREFIX + item_id, consistent_read=True))
        except DueRecord.DoesNotExist:
            return None

    def create(self, item: DueItem) -> bool:
        self.requests += 1
        try:
            to_record(item).save(condition=DueRecord.pk.does_not_exist())
        except PutError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def _update(self, item: DueItem, actions: Sequence[Action], condition: Condition) -> DueItem | None:
        self.requests += 1
        record = DueRecord(pk=user_pk(item.user_id), sk=ITEM_PREFIX + item.item_id)
        try:
            record.update(actions=list(actions), condition=condition)
        except UpdateError as exc:
            if _is_condition_failure(exc):
                return None
            raise
        return to_item(record)

    def update(self, item: DueItem, *, expect: Iterable[Status], **changes: Any) -> DueItem | None:
        expected = [str(s) for s in expect]
        status = Status(changes.get("status", item.status))
        actions = _actions(changes)
        if "status" in changes or "due_at" in changes:
            if status in ActiveStatuses:
                actions.append(DueRecord.due_bucket.set(bucket_of(changes.get("due_at", item.due_at))))
            else:
                actions.append(DueRecord.due_bucket.remove())
        return self._update(item, actions, DueRecord.status.is_in(*expected))

    def mark_taken(self, user_id: int, item_id: str, at: datetime) -> DueItem | None:
        item = DueItem(user_id, item_id, Kind.MED, at, at)
        condition = (DueRecord.status == str(Status.SENT)) & (DueRecord.kind == str(Kind.MED))
        updated = self._update(item, [DueRecord.taken_at.set(DueRecord.taken_at | at)], condition)
        return updated

    def put_series(self, user_id: int, series: Mapping[str, Any]) -> None:
        self.requests += 1
        end = datetime.fromisoformat(str(series["end"])).replace(tzinfo=UTC)
        SeriesRecord(
            pk=user_pk(user_id),
            sk=SERIES_PREFIX + str(series["id"]),
            series=dict(series),
            expires_at=end + SERIES_TTL,
        ).save()

    def list_series(self, user_id: int) -> list[dict[str, Any]]:
        self.requests += 1
        records = SeriesRecord.query(
            user_pk(user_id), SeriesRecord.sk.startswith(SERIES_PREFIX), consistent_read=True
        )
        return [dict(r.series) for r in records]

    def delete_series(self, user_id: int, series_id: str) -> None:
        self.requests += 1
        SeriesRecord(pk=user_pk(user_id), sk=SERIES_PREFIX + series_id).delete()

    # ------------------------------------------------------------------ the run
    def due(self, bucket: str, now: datetime) -> Iterator[DueItem]:
        self.requests += 1
        for record in DueRecord.due_index.query(bucket, DueRecord.due_at <= _epoch(now)):
            yield to_item(record)

    def claim(self, item: DueItem, *, now: datetime, lease_until: datetime, lease_id: str) -> DueItem | None:
        t = _epoch(now)
        condition = ((DueRecord.status == str(Status.PENDING)) & (DueRecord.due_at <= t)) | (
            (DueRecord.status == str(Status.SENDING)) & (DueRecord.lease_until <= t)
        )
        # The item stays where it is on the due-time index (same due_bucket and due_at): the index entry is
        # updated in place (one index write) instead of moved (a delete and a put). A claim that dies with
        # its run is found again in its bucket (due_at <= now) and claimed once its lease is over; the run
        # never moves the cursor past a bucket that still holds a live claim (see the runner).
        actions = [
            DueRecord.status.set(str(Status.SENDING)),
            DueRecord.lease_until.set(_epoch(lease_until)),
            DueRecord.lease_id.set(lease_id),
            DueRecord.attempts.add(1),
        ]
        return self._update(item, actions, condition)

    def finish(self, item: DueItem, *, lease_id: str, **changes: Any) -> DueItem | None:
        status = Status(changes.get("status", Status.SENDING))
        actions = _actions(changes)
        if status in ActiveStatuses:
            actions.append(DueRecord.due_bucket.set(bucket_of(changes.get("due_at", item.due_at))))
        else:
            actions.append(DueRecord.due_bucket.remove())
        if status is not Status.SENDING:
            actions += [DueRecord.lease_id.remove(), DueRecord.lease_until.remove()]
        condition = (DueRecord.status == str(Status.SENDING)) & (DueRecord.lease_id == lease_id)
        return self._update(item, actions, condition)

    def read_cursor(self) -> CursorState:
        self.requests += 1
        try:
            record = CursorRecord.get(CURSOR_PK, CURSOR_SK)  # eventually consistent: half a read unit
        except CursorRecord.DoesNotExist:
            return CursorState()
        return CursorState(
            cursor=record.cursor,
            version=int(record.runs or 0),
            locked_until=_from_epoch(record.run_until),
        )

    def advance_cursor(self, *, old: str | None, new: str, now: datetime) -> bool:
        self.requests += 1
        record = CursorRecord(pk=CURSOR_PK, sk=CURSOR_SK)
        same = CursorRecord.cursor.does_not_exist() if old is None else CursorRecord.cursor == old
        unlocked = CursorRecord.run_until.does_not_exist() | (CursorRecord.run_until <= _epoch(now))
        try:
            record.update(actions=[CursorRecord.cursor.set(new)], condition=same & unlocked)
        except UpdateError as exc:
            if _is_condition_failure(exc):
                return False
            raise
        return True

    def lock(self, *, run_id: str, now: datetime, until: datetime) -> RunLock | None:
        self.requests += 1
        record = CursorRecord(pk=CURSOR_PK, sk=CURSOR_SK)
        condition = CursorRecord.run_until.does_not_exist() | (CursorRecord.run_until <= _epoch(now))
        try:
            record.update(
                actions=[
                    CursorRecord.run_id.set(run_id),
                    CursorRecord.run_until.set(_epoch(until)),
                    CursorRecord.runs.add(1),
                ],
                condition=condition,
            )
        except UpdateError as exc:
            if _is_condition_failure(exc):
                return None
            raise
        return RunLock(run_id, record.cursor, int(record.runs or 0))

    def unlock(self, lock: RunLock, *, cursor: str) -> bool:
        self.requests += 1
        record = CursorRecord(pk=CURSOR_PK, sk=CURSOR_SK)
        try:
            record.update(
                actions=[
                    CursorRecord.cursor.set(cursor),
                    CursorRecord.run_id.remove(),
                    CursorRecord.run_until.remove(),
                ],
                condition=CursorRecord.run_id == lock.run_id,
            )
        except UpdateError as exc:
            if not _is_condition_failure(exc):
                raise
            log.warning("the run lock expired before the run ended; the cursor was left to the next run")
            return False
        return True
