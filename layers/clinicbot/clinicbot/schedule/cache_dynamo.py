"""The schedule cache in DynamoDB (the ScheduleTable, pynamodb): the sync's writer and the bot's reader.

Reads are Queries on one partition (``REF``, or one doctor's ``SLOTS#<doctor>``), never a Scan. Writes are
BatchWriteItem requests of at most 25 items; unprocessed items (throttling) are resent with exponential
backoff and full jitter, and the run fails if some are still left after the last attempt -- the next run's
diff then finds and rewrites them.
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import replace
from datetime import date, datetime
from typing import Any

from pynamodb.exceptions import DoesNotExist

from clinicbot.schedule.index import DoctorIndex
from clinicbot.schedule.models import (
    DAYS_PREFIX,
    REF_PK,
    STATE_SK,
    SYNC_PK,
    VISITS_SK,
    DayIndexItem,
    DayItem,
    RefItem,
    ScheduleItem,
    SyncStateItem,
    VisitsCursorItem,
    slots_pk,
)
from clinicbot.schedule.sync import DayKey, DayRecord, Plan, RefRecord, SyncRead, SyncState
from clinicbot.schedule.visits import VisitsCursor

__all__ = ["BATCH_LIMIT", "DynamoScheduleCache", "IncompleteWrite"]

log = logging.getLogger(__name__)

BATCH_LIMIT = 25
"""DynamoDB's limit of items per BatchWriteItem request."""


class IncompleteWrite(RuntimeError):
    """Some items were still unprocessed after the last retry."""


def _day_item(record: DayRecord) -> DayItem:
    return DayItem(
        pk=slots_pk(record.doctor_id),
        sk=record.day.isoformat(),
        content_hash=record.hash,
        branch_id=record.branch_id,
        first_start=record.first_start,
        slots=record.slots,
        slot_count=record.count,
        expires_at=record.expires_at,
    )


def _day_record(item: DayItem) -> DayRecord:
    return DayRecord(
        doctor_id=item.pk.removeprefix("SLOTS#"),
        day=date.fromisoformat(item.sk),
        branch_id=item.branch_id,
        first_start=int(item.first_start),
        slots=item.slots,
        hash=item.content_hash,
        count=int(item.slot_count),
        expires_at=item.expires_at,
    )


def _state(item: SyncStateItem) -> SyncState:
    return SyncState(
        last_success_at=item.last_success_at,
        covers_until=item.covers_until,
        ref_hash=item.ref_hash,
        days=int(item.days),
        counts=dict(item.counts or {}),
        index=int(item.index) if item.index is not None else None,
        dirty=bool(item.dirty),
    )


def _state_item(state: SyncState) -> SyncStateItem:
    return SyncStateItem(
        pk=SYNC_PK,
        sk=STATE_SK,
        last_success_at=state.last_success_at,
        covers_until=state.covers_until,
        ref_hash=state.ref_hash,
        days=state.days,
        counts=dict(state.counts),
        index=state.index,
        dirty=True if state.dirty else None,
    )


def _index_item(index: DoctorIndex) -> DayIndexItem:
    base, entries = index.encode()
    return DayIndexItem(
        pk=SYNC_PK,
        sk=DAYS_PREFIX + index.doctor_id,
        version=index.version,
        days_setting=index.days_setting,
        written_at=index.written_at,
        base=base or None,
        entries=entries or None,
    )


def _index(item: DayIndexItem) -> DoctorIndex:
    return DoctorIndex.decode(
        item.sk.removeprefix(DAYS_PREFIX),
        base=item.base or "",
        text=item.entries or "",
        days_setting=int(item.days_setting),
        written_at=item.written_at,
        version=int(item.version),
    )


def _key(pk: str, sk: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": pk}, "sk": {"S": sk}}


class DynamoScheduleCache:
    """``ScheduleCache`` on the ScheduleTable (configure the table with ``schedule.models.configure``)."""

    def __init__(
        self,
        *,
        max_attempts: int = 8,
        base_backoff: float = 0.05,
        max_backoff: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._max_attempts = max_attempts
        self._base_backoff = base_backoff
        self._max_backoff = max_backoff
        self._sleep = sleep
        self.requests = 0
        """BatchWriteItem requests made by this instance (retries included)."""

    # ----------------------------------------------------------------------------------- reads
    def reference_items(self) -> dict[str, RefRecord]:
        return {i.sk: RefRecord(i.sk, i.data, i.content_hash) for i in RefItem.query(REF_PK)}

    def cached_days(self, doctor_ids: Iterable[str], since: date) -> dict[DayKey, DayRecord]:
        out: dict[DayKey, DayRecord] = {}
        for doctor_id in sorted(set(doctor_ids)):
            for item in DayItem.query(slots_pk(doctor_id), DayItem.sk >= since.isoformat()):
                record = _day_record(item)
                out[record.key] = record
        return out

    def days(self, doctor_id: str, first: date, last: date) -> list[DayRecord]:
        condition = DayItem.sk.between(first.isoformat(), last.isoformat())
        return [_day_record(i) for i in DayItem.query(slots_pk(doctor_id), condition)]

    def load_state(self) -> SyncState | None:
        try:
            item = SyncStateItem.get(SYNC_PK, STATE_SK)
        except DoesNotExist:
            return None
        return _state(item)

    def load_sync(self) -> SyncRead:
        """One eventually consistent Query of the ``SYNC`` partition: the state, the visits cursor and the
        day indexes (the previous run wrote them minutes ago). An index that does not parse is left out
        (its doctor's days are read instead)."""
        state: SyncState | None = None
        cursor = VisitsCursor()
        indexes: dict[str, DoctorIndex] = {}
        for item in ScheduleItem.query(SYNC_PK):
            if isinstance(item, SyncStateItem):
                state = _state(item)
            elif isinstance(item, VisitsCursorItem):
                cursor = VisitsCursor(cursor=item.cursor, cycle_started_at=item.cycle_started_at)
            elif isinstance(item, DayIndexItem):
                try:
                    index = _index(item)
                except (ValueError, TypeError, AttributeError):
                    log.warning("day index unreadable; its doctor's days are read", extra={"sk": item.sk})
                    continue
                indexes[index.doctor_id] = index
        return SyncRead(state=state, indexes=indexes, cursor=cursor)

    def load_cursor(self) -> VisitsCursor:
        """One eventually consistent GetItem (half a read unit): the item was written a run ago."""
        try:
            item = VisitsCursorItem.get(SYNC_PK, VISITS_SK)
        except DoesNotExist:
            return VisitsCursor()
        return VisitsCursor(cursor=item.cursor, cycle_started_at=item.cycle_started_at)

    # ---------------------------------------------------------------------------------- writes
    def save_state(self, state: SyncState) -> None:
        _state_item(state).save()

    def mark_dirty(self, state: SyncState) -> None:
        _state_item(replace(state, dirty=True)).save()

    def save_cursor(
        self, cursor: dict[str, Any] | None, *, now: datetime, cycle_started_at: datetime | None
    ) -> None:
        VisitsCursorItem(
            pk=SYNC_PK, sk=VISITS_SK, cursor=cursor, updated_at=now, cycle_started_at=cycle_started_at
        ).save()

    def apply(self, plan: Plan) -> int:
        """Slots first, then reference data, then the day indexes: see ``Plan``. Returns the
        BatchWriteItem requests made."""
        before = self.requests
        self._write(
            puts=[_day_item(r).serialize() for r in plan.put_days],
            deletes=[_key(slots_pk(k.doctor_id), k.day.isoformat()) for k in plan.delete_days],
        )
        self._write(
            puts=[
                RefItem(pk=REF_PK, sk=r.sk, content_hash=r.hash, data=r.data).serialize()
                for r in plan.put_refs
            ],
            deletes=[_key(REF_PK, sk) for sk in plan.delete_refs],
        )
        self._write(
            puts=[_index_item(i).serialize() for i in plan.put_index],
            deletes=[_key(SYNC_PK, DAYS_PREFIX + d) for d in plan.delete_index],
        )
        return self.requests - before

    def _write(self, *, puts: Sequence[dict[str, Any]], deletes: Sequence[dict[str, Any]]) -> None:
        requests: list[dict[str, Any]] = [{"PutRequest": {"Item": p}} for p in puts]
        requests += [{"DeleteRequest": {"Key": k}} for k in deletes]
        for i in range(0, len(requests), BATCH_LIMIT):
            self._write_batch(requests[i : i + BATCH_LIMIT])

    def _write_batch(self, batch: list[dict[str, Any]]) -> None:
        table = ScheduleItem.Meta.table_name
        connection = ScheduleItem._get_connection()
        pending = batch
        for attempt in range(self._max_attempts):
            if attempt:
                delay = min(self._max_backoff, self._base_backoff * 2**attempt)
                self._sleep(random.uniform(0, delay))  # full jitter
            self.requests += 1
            data = connection.batch_write_item(
                put_items=[r["PutRequest"]["Item"] for r in pending if "PutRequest" in r],
                delete_items=[r["DeleteRequest"]["Key"] for r in pending if "DeleteRequest" in r],
            )
            pending = (data or {}).get("UnprocessedItems", {}).get(table) or []
            if not pending:
                return
            log.info("batch write: items unprocessed, retrying", extra={"unprocessed": len(pending)})
        raise IncompleteWrite(f"{len(pending)} item(s) unprocessed after {self._max_attempts} attempts")
