"""Per-update unit of work over the StateTable.

aiogram calls ``get_state`` on every update and ``get_data``/``set_data``/``set_state`` several times per
wizard step. This unit loads the user's whole partition with ONE Query (patient card + dialogue items +
the ids of recently handled updates), serves every FSM call from memory, and writes ONCE at the end:
a conditional PutItem of the dialogue item, or a TransactWriteItems when the card changed too. Nothing is
written for a duplicate, for an update without a user, or for a stranger who has not consented.

Duplicate updates (Telegram retries on timeouts and non-2xx) are detected from the ``recent_updates`` list
folded into the dialogue item, so de-duplication costs no extra request.

Concurrent updates of one chat (two Lambda instances) are reconciled with optimistic locking: every item
carries a version; on a conflict the partition is re-read and *our changes* (state, the data keys we
touched, the card fields we set) are re-applied on top of the other writer's, so neither write is lost.
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from pynamodb.connection import Connection
from pynamodb.exceptions import DeleteError, PutError, TransactWriteError
from pynamodb.transactions import TransactWrite

from clinicbot.domain.patient import PatientCard
from clinicbot.storage.models import (
    DIALOG_PREFIX,
    PROFILE_SK,
    DialogueItem,
    ProfileItem,
    StateItem,
    user_pk,
)

log = logging.getLogger(__name__)

RECENT_UPDATES_KEPT = 32
MAX_CONFLICT_RETRIES = 4
_MISSING = object()
_CARD_FIELDS = (
    "language",
    "consent_at",
    "consent_version",
    "patient_id",
    # reminders
    "reminders_off",
    "reminder_leads",
    "unreachable_at",
    "last_reminder_at",
    # engagement
    "marketing_at",
    "referral_code",
    "referred_by",
    "nps_asked_at",
)


class ConcurrentUpdateError(RuntimeError):
    """Optimistic locking kept failing: the caller should let the update be retried."""


@dataclass(frozen=True)
class DialogueKey:
    """Mirrors aiogram's StorageKey without importing aiogram."""

    bot_id: int
    chat_id: int
    user_id: int
    thread_id: int | None = None
    business_connection_id: str | None = None
    destiny: str = "default"

    @property
    def sk(self) -> str:
        return (
            f"{DIALOG_PREFIX}{self.bot_id}#{self.chat_id}#{self.thread_id or 0}"
            f"#{self.business_connection_id or ''}#{self.destiny}"
        )


@dataclass
class _Dialogue:
    key_sk: str
    item: DialogueItem | None
    state: str | None = None
    data: dict[str, Any] = field(default_factory=dict)
    recent: list[int] = field(default_factory=list)
    # what this update did, kept as a diff so it can be re-applied after a conflict
    state_set: bool = False
    data_set_keys: dict[str, Any] = field(default_factory=dict)
    data_removed_keys: set[str] = field(default_factory=set)
    handled_update: int | None = None
    private: bool = True  # a private chat (chat id == user id); group chats hold staff, not patients

    @classmethod
    def from_item(cls, key_sk: str, item: DialogueItem | None) -> _Dialogue:
        if item is None:
            return cls(key_sk=key_sk, item=None)
        return cls(
            key_sk=key_sk,
            item=item,
            state=item.state,
            data=copy.deepcopy(item.data or {}),
            recent=[int(n) for n in cast(list[int], item.recent_updates or [])],
        )

    @property
    def changed(self) -> bool:
        """Net change against what is stored (setting a value back to what it was is no change)."""
        base_state = self.item.state if self.item else None
        base_data = (self.item.data or {}) if self.item else {}
        return self.state != base_state or self.data != base_data

    def rebase(self, item: DialogueItem | None) -> _Dialogue:
        """Our changes re-applied on top of a freshly read item."""
        fresh = _Dialogue.from_item(self.key_sk, item)
        if self.state_set:
            fresh.state = self.state
        for key, value in self.data_set_keys.items():
            fresh.data[key] = copy.deepcopy(value)
        for key in self.data_removed_keys:
            fresh.data.pop(key, None)
        fresh.state_set = self.state_set
        fresh.data_set_keys = self.data_set_keys
        fresh.data_removed_keys = self.data_removed_keys
        fresh.handled_update = self.handled_update
        return fresh


@dataclass
class _Record:
    user_id: int
    profile: ProfileItem | None
    card: PatientCard | None
    dialogues: dict[str, _Dialogue]
    card_changes: dict[str, Any] = field(default_factory=dict)
    card_created: bool = False
    erased: bool = False


class StateUnit:
    """The state of one update. Create one per update; call :meth:`flush` when the update is done."""

    def __init__(
        self,
        *,
        dialogue_ttl_seconds: int,
        now: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        self._ttl = dialogue_ttl_seconds
        self._now = now
        self._records: dict[int, _Record] = {}
        self.reads = 0
        self.writes = 0

    # ----------------------------------------------------------------- loading
    def _record(self, user_id: int) -> _Record:
        record = self._records.get(user_id)
        if record is None:
            record = self._load(user_id)
            self._records[user_id] = record
        return record

    def _load(self, user_id: int) -> _Record:
        self.reads += 1
        profile: ProfileItem | None = None
        dialogues: dict[str, _Dialogue] = {}
        for item in StateItem.query(user_pk(user_id), consistent_read=True):
            if isinstance(item, ProfileItem):
                profile = item
            elif isinstance(item, DialogueItem):
                dialogues[item.sk] = _Dialogue.from_item(item.sk, item)
        return _Record(user_id=user_id, profile=profile, card=_card_of(profile), dialogues=dialogues)

    def preload(self, user_id: int) -> None:
        self._record(user_id)

    def _dialogue(self, key: DialogueKey) -> _Dialogue:
        record = self._record(key.user_id)
        dialogue = record.dialogues.get(key.sk)
        if dialogue is None:
            dialogue = _Dialogue(key_sk=key.sk, item=None, private=key.chat_id == key.user_id)
            record.dialogues[key.sk] = dialogue
        return dialogue

    # ----------------------------------------------------------------- updates
    def seen_update(self, key: DialogueKey, update_id: int) -> bool:
        """True if this update was already handled (a Telegram retry)."""
        recent = self._dialogue(key).recent
        if update_id in recent:
            return True
        # Older than everything we remember while the window is full: treat as already handled.
        return len(recent) >= RECENT_UPDATES_KEPT and update_id < min(recent)

    def mark_handled(self, key: DialogueKey, update_id: int) -> None:
        self._dialogue(key).handled_update = update_id

    # ----------------------------------------------------------------- FSM
    def get_state(self, key: DialogueKey) -> str | None:
        return self._dialogue(key).state

    def set_state(self, key: DialogueKey, state: str | None) -> None:
        dialogue = self._dialogue(key)
        dialogue.state = state
        dialogue.state_set = state != (dialogue.item.state if dialogue.item else None)

    def get_data(self, key: DialogueKey) -> dict[str, Any]:
        return copy.deepcopy(self._dialogue(key).data)

    def set_data(self, key: DialogueKey, data: dict[str, Any]) -> None:
        dialogue = self._dialogue(key)
        new = copy.deepcopy(dict(data))
        for name, value in new.items():
            if dialogue.data.get(name, _MISSING) != value:
                dialogue.data_set_keys[name] = value
                dialogue.data_removed_keys.discard(name)
        for name in set(dialogue.data) - set(new):
            dialogue.data_removed_keys.add(name)
            dialogue.data_set_keys.pop(name, None)
        dialogue.data = new

    # ----------------------------------------------------------------- patient card
    def card(self, user_id: int) -> PatientCard | None:
        return self._record(user_id).card

    def save_card(self, user_id: int, **changes: Any) -> PatientCard:
        """Create or change the patient card (only the fields in ``_CARD_FIELDS``)."""
        unknown = set(changes) - set(_CARD_FIELDS)
        if unknown:
            raise ValueError(f"unknown card fields: {sorted(unknown)}")
        record = self._record(user_id)
        if record.card is None:
            record.card = PatientCard(user_id=user_id, created_at=self._now())
            record.card_created = True
            record.erased = False
        record.card = record.card.with_changes(**changes)
        record.card_changes.update(changes)
        return record.card

    def erase_user(self, user_id: int) -> None:
        """Forget everything stored under this user (carried out at flush, after the handler)."""
        record = self._record(user_id)
        record.erased = True
        record.card = None
        record.card_changes.clear()
        record.card_created = False
        for dialogue in record.dialogues.values():
            dialogue.state, dialogue.data = None, {}
            dialogue.state_set = False
            dialogue.data_set_keys.clear()
            dialogue.data_removed_keys.clear()
            dialogue.handled_update = None

    # ----------------------------------------------------------------- flush
    def flush(self) -> None:
        """Write what changed, once per user partition (a handled update's id counts as a change for a
        known user, so a retried update is recognised; a stranger's is never stored)."""
        for record in self._records.values():
            self._flush_record(record)

    def _flush_record(self, record: _Record) -> None:
        if record.erased:
            self._erase(record)
            return
        for _attempt in range(MAX_CONFLICT_RETRIES):
            writes = self._pending_writes(record)
            if not writes:
                return
            try:
                self._write(writes)
                return
            except (PutError, TransactWriteError) as exc:
                if not _is_conflict(exc):
                    raise
                log.info("state conflict for a user partition; re-reading and re-applying our changes")
                self._rebase(record)
        raise ConcurrentUpdateError("the dialogue kept changing under us")

    def _pending_writes(self, record: _Record) -> list[StateItem]:
        now = self._now()
        writes: list[StateItem] = []
        known_user = record.profile is not None or record.card_created
        for dialogue in record.dialogues.values():
            new_id = dialogue.handled_update
            # The "handled" marker never creates an item for a stranger in a private chat (no consent:
            # store nothing); in a group (the staff group) it always may.
            marker_needed = new_id is not None and (
                dialogue.item is not None or known_user or not dialogue.private
            )
            if not (dialogue.changed or marker_needed):
                continue
            item = dialogue.item or DialogueItem(pk=user_pk(record.user_id), sk=dialogue.key_sk)
            item.state = dialogue.state
            item.data = dialogue.data or None
            recent = list(dialogue.recent)
            if new_id is not None and new_id not in recent:
                recent = [*recent, new_id][-RECENT_UPDATES_KEPT:]
            item.recent_updates = cast(Any, recent or None)
            item.expires_at = now + timedelta(seconds=self._ttl)
            writes.append(item)
        if record.card_changes or record.card_created:
            created_at = record.card.created_at if record.card else now
            profile = record.profile or ProfileItem(
                pk=user_pk(record.user_id), sk=PROFILE_SK, created_at=created_at
            )
            for name, value in record.card_changes.items():
                setattr(profile, name, value)
            writes.append(profile)
        return writes

    def _write(self, writes: list[StateItem]) -> None:
        self.writes += 1
        if len(writes) == 1:
            writes[0].save()
        else:
            connection: Connection = StateItem._get_connection().connection
            with TransactWrite(connection=connection) as transaction:
                for item in writes:
                    transaction.save(item)
        self._after_write(writes)

    def _after_write(self, writes: list[StateItem]) -> None:
        # Committed: the written items become the new baseline, so a second flush writes nothing.
        for record in self._records.values():
            for item in writes:
                if item.pk != user_pk(record.user_id):
                    continue
                if isinstance(item, DialogueItem):
                    record.dialogues[item.sk] = _Dialogue.from_item(item.sk, item)
                elif isinstance(item, ProfileItem):
                    record.profile = item
                    record.card = _card_of(item)
                    record.card_changes.clear()
                    record.card_created = False

    def _rebase(self, record: _Record) -> None:
        fresh = self._load(record.user_id)
        for sk, dialogue in record.dialogues.items():
            fresh_item = fresh.dialogues[sk].item if sk in fresh.dialogues else None
            fresh.dialogues[sk] = dialogue.rebase(fresh_item)
        record.dialogues = fresh.dialogues
        record.profile = fresh.profile
        if record.card_created and fresh.profile is not None:
            record.card_created = False  # someone created it meanwhile: apply our fields on top
        base = _card_of(fresh.profile)
        if base is not None:
            record.card = base.with_changes(**record.card_changes)

    def _erase(self, record: _Record) -> None:
        items = list(StateItem.query(user_pk(record.user_id), consistent_read=True))
        self.reads += 1
        for item in items:
            self.writes += 1
            try:
                item.delete(add_version_condition=False)
            except DeleteError:
                log.exception("could not delete a state item during erasure")
                raise
        record.profile, record.card, record.dialogues = None, None, {}
        record.erased = False


def _card_of(profile: ProfileItem | None) -> PatientCard | None:
    if profile is None:
        return None
    return PatientCard(
        user_id=int(profile.pk.split("#", 1)[1]),
        created_at=profile.created_at,
        language=profile.language,
        consent_at=profile.consent_at,
        consent_version=profile.consent_version,
        patient_id=profile.patient_id,
        reminders_off=tuple(str(k) for k in (profile.reminders_off or ())),
        reminder_leads=(
            tuple(int(h) for h in cast(list[int], profile.reminder_leads))
            if profile.reminder_leads is not None
            else None
        ),
        unreachable_at=profile.unreachable_at,
        last_reminder_at=profile.last_reminder_at,
        marketing_at=profile.marketing_at,
        referral_code=profile.referral_code,
        referred_by=profile.referred_by,
        nps_asked_at=profile.nps_asked_at,
    )


def _is_conflict(exc: PutError | TransactWriteError) -> bool:
    code = exc.cause_response_code
    if code == "ConditionalCheckFailedException":
        return True
    if code == "TransactionCanceledException":
        reasons = getattr(exc, "cancellation_reasons", None) or []
        return any(r is not None and r.code == "ConditionalCheckFailed" for r in reasons)
    return False


__all__ = ["ConcurrentUpdateError", "DialogueKey", "StateUnit"]
