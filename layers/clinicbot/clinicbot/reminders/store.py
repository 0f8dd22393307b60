"""The ports the reminder logic needs, and in-memory adapters for tests and local tools.

``ReminderStore`` is the ReminderTable (DynamoDB adapter: ``clinicbot.reminders.dynamo``);
``PatientDirectory`` is what the reminders need of the patient cards in the StateTable (DynamoDB adapter:
``clinicbot.storage.patients``). Every state change of an item is conditional, so the in-memory store and
the DynamoDB store answer the same way to races (``tests/integration/test_reminders_store.py`` runs one
contract suite against both).
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Protocol

from clinicbot.domain.patient import PatientCard
from clinicbot.reminders.items import ActiveStatuses, DueItem, Status, bucket_of

__all__ = [
    "CursorState",
    "InMemoryDirectory",
    "InMemoryReminderStore",
    "PatientDirectory",
    "ReminderStore",
    "RunLock",
]


@dataclass(frozen=True)
class RunLock:
    """The run's lock on the cursor item: ``cursor`` is the first hour bucket that may still hold due
    items (None on the very first run); ``version`` counts the locks ever taken (this one included), so a
    run that read the cursor item before locking can tell whether another run went in between."""

    run_id: str
    cursor: str | None
    version: int | None = None


@dataclass(frozen=True)
class CursorState:
    """The cursor item as a run reads it before deciding whether it needs the lock at all."""

    cursor: str | None = None
    version: int = 0
    """Locks taken so far (see ``RunLock.version``)."""
    locked_until: datetime | None = None
    """While another run holds the lock: when its lock ends."""


class ReminderStore(Protocol):
    # --- per patient (planner, bot) -------------------------------------------------------------
    def user_items(self, user_id: int, prefix: str = "", *, consistent: bool = True) -> list[DueItem]:
        """Every item of the user whose id starts with ``prefix`` (one Query of the user's partition).
        ``consistent=False``: an eventually consistent read (half the price), for callers whose every
        write is conditional anyway (the MIS sync's planner)."""
        ...

    def get(self, user_id: int, item_id: str) -> DueItem | None: ...

    def create(self, item: DueItem) -> bool:
        """Write a new item; False (nothing written) if one with this id exists."""
        ...

    def update(self, item: DueItem, *, expect: Iterable[Status], **changes: Any) -> DueItem | None:
        """Change fields of an item whose status is one of ``expect``; None if it is not (or is gone).
        The due-time index follows ``status`` and ``due_at``."""
        ...

    def mark_taken(self, user_id: int, item_id: str, at: datetime) -> DueItem | None:
        """Record "taken" on a sent medication reminder (idempotent: the first time is kept)."""
        ...

    def put_series(self, user_id: int, series: Mapping[str, Any]) -> None: ...

    def list_series(self, user_id: int) -> list[dict[str, Any]]: ...

    def delete_series(self, user_id: int, series_id: str) -> None: ...

    # --- the run ----------------------------------------------------------------------------------
    def due(self, bucket: str, now: datetime) -> Iterator[DueItem]:
        """Active items of an hour bucket with ``due_at <= now`` (a Query on the due-time index)."""
        ...

    def claim(self, item: DueItem, *, now: datetime, lease_until: datetime, lease_id: str) -> DueItem | None:
        """pending and due, or sending with an expired lease -> sending, ours until ``lease_until``.
        None if someone else got it first or it changed. ``due_at`` is left alone: the item keeps its
        place on the due-time index (an update in place of the index entry, not a move)."""
        ...

    def finish(self, item: DueItem, *, lease_id: str, **changes: Any) -> DueItem | None:
        """Change an item we hold (status sending, our lease); None if we lost it."""
        ...

    def read_cursor(self) -> CursorState:
        """The cursor item, read without a write (eventually consistent: a stale answer is an older cursor,
        which only makes the run query more buckets, or an older version, which makes it query again)."""
        ...

    def advance_cursor(self, *, old: str | None, new: str, now: datetime) -> bool:
        """Move the cursor from ``old`` to ``new`` without taking the lock (a run that found nothing due):
        only if it still is ``old`` and no live run holds the lock. False: nothing written."""
        ...

    def lock(self, *, run_id: str, now: datetime, until: datetime) -> RunLock | None:
        """Take the run lock (None while another live run holds it)."""
        ...

    def unlock(self, lock: RunLock, *, cursor: str) -> bool:
        """Release the lock and set the cursor; False if the lock had expired (nothing written)."""
        ...


class PatientDirectory(Protocol):
    def card(self, user_id: int) -> PatientCard | None: ...

    def cards(self, user_ids: Iterable[int]) -> dict[int, PatientCard]: ...

    def mark_unreachable(self, user_id: int, at: datetime) -> None: ...

    def note_reminded(self, user_id: int, at: datetime) -> None: ...

    def telegram_user_of(self, patient_id: str) -> int | None: ...


# =============================================================================== in memory


class InMemoryReminderStore:
    """A ``ReminderStore`` in a dict, with the same conditional semantics (thread-safe)."""

    def __init__(self) -> None:
        self.items: dict[tuple[int, str], DueItem] = {}
        self.series: dict[tuple[int, str], dict[str, Any]] = {}
        self.cursor: str | None = None
        self.version = 0
        self._run: tuple[str, datetime] | None = None
        self._lock = threading.RLock()

    @staticmethod
    def _copy(item: DueItem) -> DueItem:
        return copy.deepcopy(item)

    def user_items(self, user_id: int, prefix: str = "", *, consistent: bool = True) -> list[DueItem]:
        with self._lock:
            return [
                self._copy(i)
                for (uid, iid), i in sorted(self.items.items())
                if uid == user_id and iid.startswith(prefix)
            ]

    def get(self, user_id: int, item_id: str) -> DueItem | None:
        with self._lock:
            item = self.items.get((user_id, item_id))
            return self._copy(item) if item else None

    def create(self, item: DueItem) -> bool:
        with self._lock:
            key = (item.user_id, item.item_id)
            if key in self.items:
                return False
            self.items[key] = self._copy(item)
            return True

    def update(self, item: DueItem, *, expect: Iterable[Status], **changes: Any) -> DueItem | None:
        with self._lock:
            current = self.items.get((item.user_id, item.item_id))
            if current is None or current.status not in set(expect):
                return None
            new = replace(current, **changes)
            self.items[(item.user_id, item.item_id)] = new
            return self._copy(new)

    def mark_taken(self, user_id: int, item_id: str, at: datetime) -> DueItem | None:
        with self._lock:
            current = self.items.get((user_id, item_id))
            if current is None or current.status is not Status.SENT:
                return None
            if current.taken_at is None:
                current.taken_at = at
            return self._copy(current)

    def put_series(self, user_id: int, series: Mapping[str, Any]) -> None:
        with self._lock:
            self.series[(user_id, str(series["id"]))] = dict(series)

    def list_series(self, user_id: int) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(s) for (uid, _), s in sorted(self.series.items()) if uid == user_id]

    def delete_series(self, user_id: int, series_id: str) -> None:
        with self._lock:
            self.series.pop((user_id, series_id), None)

    def due(self, bucket: str, now: datetime) -> Iterator[DueItem]:
        with self._lock:
            found = [
                self._copy(i)
                for i in self.items.values()
                if i.status in ActiveStatuses and bucket_of(i.due_at) == bucket and i.due_at <= now
            ]
        yield from sorted(found, key=lambda i: (i.due_at, i.user_id, i.item_id))

    def claim(self, item: DueItem, *, now: datetime, lease_until: datetime, lease_id: str) -> DueItem | None:
        with self._lock:
            current = self.items.get((item.user_id, item.item_id))
            if current is None:
                return None
            pending_due = current.status is Status.PENDING and current.due_at <= now
            lease_over = (
                current.status is Status.SENDING
                and current.lease_until is not None
                and current.lease_until <= now
            )
            if not (pending_due or lease_over):
                return None
            new = replace(
                current,
                status=Status.SENDING,
                lease_until=lease_until,
                lease_id=lease_id,
                attempts=current.attempts + 1,
            )
            self.items[(item.user_id, item.item_id)] = new
            return self._copy(new)

    def finish(self, item: DueItem, *, lease_id: str, **changes: Any) -> DueItem | None:
        with self._lock:
            current = self.items.get((item.user_id, item.item_id))
            if current is None or current.status is not Status.SENDING or current.lease_id != lease_id:
                return None
            new = replace(current, **changes)
            if new.status is not Status.SENDING:
                new.lease_id = None
                new.lease_until = None
            self.items[(item.user_id, item.item_id)] = new
            return self._copy(new)

    def read_cursor(self) -> CursorState:
        with self._lock:
            return CursorState(self.cursor, self.version, self._run[1] if self._run else None)

    def advance_cursor(self, *, old: str | None, new: str, now: datetime) -> bool:
        with self._lock:
            if self.cursor != old or (self._run is not None and self._run[1] > now):
                return False
            self.cursor = new
            return True

    def lock(self, *, run_id: str, now: datetime, until: datetime) -> RunLock | None:
        with self._lock:
            if self._run is not None and self._run[1] > now:
                return None
            self._run = (run_id, until)
            self.version += 1
            return RunLock(run_id, self.cursor, self.version)

    def unlock(self, lock: RunLock, *, cursor: str) -> bool:
        with self._lock:
            if self._run is not None and self._run[0] == lock.run_id:
                self._run = None
                self.cursor = cursor
                return True
            return False


class InMemoryDirectory:
    """``PatientDirectory`` over a dict of cards."""

    def __init__(self, cards: Iterable[PatientCard] = ()) -> None:
        self.by_user: dict[int, PatientCard] = {c.user_id: c for c in cards}
        self.reads = 0

    def add(self, card: PatientCard) -> None:
        self.by_user[card.user_id] = card

    def card(self, user_id: int) -> PatientCard | None:
        self.reads += 1
        return self.by_user.get(user_id)

    def cards(self, user_ids: Iterable[int]) -> dict[int, PatientCard]:
        self.reads += 1
        return {u: self.by_user[u] for u in set(user_ids) if u in self.by_user}

    def mark_unreachable(self, user_id: int, at: datetime) -> None:
        card = self.by_user.get(user_id)
        if card is not None:
            self.by_user[user_id] = card.with_changes(unreachable_at=at)

    def note_reminded(self, user_id: int, at: datetime) -> None:
        card = self.by_user.get(user_id)
        if card is not None:
            self.by_user[user_id] = card.with_changes(last_reminder_at=at)

    def telegram_user_of(self, patient_id: str) -> int | None:
        for card in self.by_user.values():
            if card.patient_id == patient_id:
                return card.user_id
        return None
