"""The stores of personal data, one per table of ``template.yaml`` (see ``clinicbot.privacy.registry``).

=================  ==========================================================================================
StateTable         the user's partition ``USER#<telegram id>`` (card, dialogue state with the ids of recently
                   handled updates = the webhook's idempotency records, broadcast marks) and their referral
                   link ``REF#<code>``. Slot claims (``SLOT#<slot>``, ``claimed_by`` = MIS patient id, a
                   2-minute lock) cannot be reached by key: :meth:`StateTableStore.sweep` finds them with a
                   filtered Scan, run by the deferred erasure worker (``clinicbot.privacy.erasure``).
FeedbackTable      named ratings and NPS answers, by the ``owner`` GSI (anonymous ones hold nothing personal)
ReminderTable      the user's partition ``U#<telegram id>`` (due items, medication schedules)
HandoffTable       requests with sealed personal fields, request numbers, threads: by the user's partition and
                   the ``owner`` GSI (``DynamoHandoffStore.erase_user``)
UsageTable         metering counters per clinic and month: nothing personal (``NoPersonalData``)
ScheduleTable      reference data and free slots: nothing personal, except the MIS sync's visits cursor (a
                   DynamoDB LastEvaluatedKey of the ``patient`` GSI) when it happens to point at this patient:
                   it is reset by the deferred pass (the next sync pass starts over; it is idempotent)
=================  ==========================================================================================

Every eraser is idempotent and deletes by key (the webhook's role has no Scan). Values are exported as
plain JSON (DynamoDB's typed values unwrapped).
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

from pynamodb.connection.table import TableConnection

__all__ = [
    "FeedbackStore",
    "HandoffStore",
    "ReminderStore",
    "ScheduleCursorStore",
    "StateTableStore",
    "default_registry",
    "plain",
]

log = logging.getLogger(__name__)


# ----------------------------------------------------------------------------------------------- helpers
def plain(value: Any) -> Any:
    """A DynamoDB attribute value (``{"S": "x"}``, ``{"M": {...}}`` ...) or item as plain JSON values."""
    if isinstance(value, dict) and len(value) == 1:
        ((tag, inner),) = value.items()
        if tag == "S":
            return inner
        if tag == "N":
            number = Decimal(inner)
            return int(number) if number == number.to_integral_value() else float(number)
        if tag == "BOOL":
            return bool(inner)
        if tag == "NULL":
            return None
        if tag == "B":
            return base64.b64encode(inner if isinstance(inner, bytes) else str(inner).encode()).decode()
        if tag == "M":
            return {k: plain(v) for k, v in inner.items()}
        if tag == "L":
            return [plain(v) for v in inner]
        if tag in ("SS", "NS", "BS"):
            return sorted(plain({tag[0]: v}) for v in inner)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    return value


def _query_all(connection: TableConnection, hash_key: str, **kwargs: Any) -> Iterator[dict[str, Any]]:
    start: Any = None
    while True:
        answer = connection.query(hash_key, exclusive_start_key=start, **kwargs)
        yield from answer.get("Items", [])
        start = answer.get("LastEvaluatedKey")
        if not start:
            return


def _key(item: dict[str, Any], hash_name: str = "pk", range_name: str = "sk") -> tuple[str, str]:
    return item[hash_name]["S"], item[range_name]["S"]


# ------------------------------------------------------------------------------------------- StateTable
class StateTableStore:
    name = "state"
    tables: tuple[str, ...] = ("StateTable",)

    def _connection(self) -> TableConnection:
        from clinicbot.storage.models import StateItem

        return StateItem._get_connection()

    def _partition(self, telegram_user_id: int) -> list[dict[str, Any]]:
        from clinicbot.storage.models import user_pk

        return list(_query_all(self._connection(), user_pk(telegram_user_id), consistent_read=True))

    def _referral(self, code: str) -> dict[str, Any] | None:
        from clinicbot.engagement.referrals import REF_SK, referral_pk

        answer = self._connection().get_item(referral_pk(code), REF_SK, consistent_read=True)
        item = answer.get("Item")
        return plain(item) if item else None

    def export(self, telegram_user_id: int, patient_id: str | None) -> dict[str, Any]:
        from clinicbot.storage.models import PROFILE_SK

        out: dict[str, Any] = {}
        for raw in self._partition(telegram_user_id):
            item = plain(raw)
            kind, sk = item.pop("kind", None), item.pop("sk")
            item.pop("pk", None)
            if sk == PROFILE_SK:
                out["card"] = item
                code = item.get("referral_code")
                link = self._referral(code) if code else None
                if link:
                    out["referral_link"] = {
                        "code": code,
                        "joined": link.get("joined", 0),
                        "created_at": link.get("created_at"),
                    }
            elif kind == "dialogue":
                out.setdefault("dialogue", []).append({"key": sk, **item})
            elif kind == "broadcast_mark":
                out.setdefault("campaigns_received", []).append({"campaign": sk.split("#", 1)[1], **item})
            else:
                out.setdefault("other", []).append({"key": sk, "kind": kind, **item})
        return out

    def erase(self, telegram_user_id: int, patient_id: str | None) -> int:
        from clinicbot.storage.models import PROFILE_SK

        connection = self._connection()
        deleted = 0
        for raw in self._partition(telegram_user_id):
            pk, sk = _key(raw)
            code = raw.get("referral_code", {}).get("S") if sk == PROFILE_SK else None
            if code:
                deleted += self._delete_referral(code, telegram_user_id)
            connection.delete_item(pk, sk)
            deleted += 1
        return deleted

    def _delete_referral(self, code: str, owner_id: int) -> int:
        from clinicbot.engagement.referrals import ReferralStore

        link = self._referral(code)
        if link is None or int(link.get("owner_id", -1)) != owner_id:
            return 0
        return ReferralStore().delete(code)

    def sweep(self, telegram_user_id: int, patient_id: str | None) -> int:
        """Slot claims of this patient (``claimed_by``): only a Scan finds them. For the deferred worker."""
        if not patient_id:
            return 0
        from clinicbot.storage.models import SlotClaimItem

        connection = self._connection()
        condition = SlotClaimItem.pk.startswith("SLOT#") & (SlotClaimItem.patient_id == patient_id)
        deleted = 0
        start: Any = None
        while True:
            answer = connection.scan(
                filter_condition=condition, exclusive_start_key=start, consistent_read=True
            )
            for raw in answer.get("Items", []):
                connection.delete_item(*_key(raw))
                deleted += 1
            start = answer.get("LastEvaluatedKey")
            if not start:
                return deleted

    def derived_keys(self, telegram_user_id: int, patient_id: str | None) -> set[str]:
        from clinicbot.engagement.referrals import referral_pk
        from clinicbot.storage.models import PROFILE_SK, user_pk

        keys = {user_pk(telegram_user_id)}
        answer = self._connection().get_item(user_pk(telegram_user_id), PROFILE_SK, consistent_read=True)
        code = (answer.get("Item") or {}).get("referral_code", {}).get("S")
        if code:
            # The REF# item is the referrer's. The bare code on a referee's card is the referee's own
            # record of how they came: once the REF# item is gone it leads to nobody.
            keys.add(referral_pk(code))
        return keys


# ---------------------------------------------------------------------------------------- FeedbackTable
class FeedbackStore:
    name = "feedback"
    tables: tuple[str, ...] = ("FeedbackTable",)

    def export(self, telegram_user_id: int, patient_id: str | None) -> dict[str, Any]:
        from clinicbot.engagement.feedback_store import FeedbackRepository, as_export

        items = FeedbackRepository().owned(telegram_user_id)
        return {"answers": [as_export(item) for item in items]} if items else {}

    def erase(self, telegram_user_id: int, patient_id: str | None) -> int:
        from clinicbot.engagement.feedback_store import FeedbackRepository

        return FeedbackRepository().erase_owned(telegram_user_id)

    def derived_keys(self, telegram_user_id: int, patient_id: str | None) -> set[str]:
        from clinicbot.engagement.feedback_store import owner_key

        return {owner_key(telegram_user_id)}


# ---------------------------------------------------------------------------------------- ReminderTable
class ReminderStore:
    """The reminders engineer's ReminderTable: everything of a user is in partition ``U#<id>``."""

    name = "reminders"
    tables: tuple[str, ...] = ("ReminderTable",)

    def _connection(self) -> TableConnection:
        from clinicbot.reminders.models import DueRecord

        return DueRecord._get_connection()

    def _items(self, telegram_user_id: int) -> list[dict[str, Any]]:
        from clinicbot.reminders.models import user_pk

        return list(_query_all(self._connection(), user_pk(telegram_user_id), consistent_read=True))

    def export(self, telegram_user_id: int, patient_id: str | None) -> dict[str, Any]:
        items = []
        for raw in self._items(telegram_user_id):
            item = plain(raw)
            item.pop("pk", None)
            for internal in ("due_bucket", "lease_until", "lease_id"):
                item.pop(internal, None)
            items.append(item)
        return {"items": items} if items else {}

    def erase(self, telegram_user_id: int, patient_id: str | None) -> int:
        connection = self._connection()
        items = self._items(telegram_user_id)
        for raw in items:
            connection.delete_item(*_key(raw))
        return len(items)

    def derived_keys(self, telegram_user_id: int, patient_id: str | None) -> set[str]:
        from clinicbot.reminders.models import user_pk

        return {user_pk(telegram_user_id)}


# ----------------------------------------------------------------------------------------- HandoffTable
class HandoffStore:
    """The hand-off engineer's HandoffTable (``clinicbot.handoff.store``): requests with their sealed
    personal fields, request numbers, the patient's threads (forum topic / CRM lead) -- all under the user's
    partition or carrying ``owner = USER#<id>`` (sparse GSI ``owner``). Consumer idempotency records
    (``DONE#<hash>``) and inbound replay records hold nothing personal."""

    name = "handoff"
    tables: tuple[str, ...] = ("HandoffTable",)

    def _store(self) -> Any:
        from clinicbot.handoff.store import DynamoHandoffStore

        return DynamoHandoffStore()

    def _items(self, telegram_user_id: int) -> list[dict[str, Any]]:
        from clinicbot.handoff.store import OWNER_INDEX

        store = self._store()
        owner = {":o": {"S": f"USER#{telegram_user_id}"}}
        found: dict[tuple[str, str], dict[str, Any]] = {}
        queries = (
            {"KeyConditionExpression": "pk = :o", "ConsistentRead": True},
            {
                "IndexName": OWNER_INDEX,
                "KeyConditionExpression": "#o = :o",
                "ExpressionAttributeNames": {"#o": "owner"},
            },
        )
        for query in queries:
            start: Any = None
            while True:
                extra = {"ExclusiveStartKey": start} if start else {}
                answer = store.client.query(
                    TableName=store.table, ExpressionAttributeValues=owner, **query, **extra
                )
                for raw in answer.get("Items", []):
                    found[_key(raw)] = raw
                start = answer.get("LastEvaluatedKey")
                if not start:
                    break
        return [found[k] for k in sorted(found)]

    def export(self, telegram_user_id: int, patient_id: str | None) -> dict[str, Any]:
        items = []
        for raw in self._items(telegram_user_id):
            item = plain(raw)
            item.pop("owner", None)
            items.append(item)
        return {"items": items} if items else {}

    def erase(self, telegram_user_id: int, patient_id: str | None) -> int:
        return int(self._store().erase_user(telegram_user_id))

    def derived_keys(self, telegram_user_id: int, patient_id: str | None) -> set[str]:
        return {f"USER#{telegram_user_id}"}


# ---------------------------------------------------------------------------------------- ScheduleTable
class ScheduleCursorStore:
    """The ScheduleTable (MIS sync) caches reference data and free slots: nothing about patients. Its one
    trace of a patient is the visits pass's cursor, a LastEvaluatedKey of the StateTable's ``patient``
    GSI, when it points at this patient: reset, so the next pass starts over (it is idempotent). The
    webhook may only read this table, so the reset is done by the deferred erasure pass (:meth:`sweep`)."""

    name = "schedule"
    tables: tuple[str, ...] = ("ScheduleTable",)

    def export(self, telegram_user_id: int, patient_id: str | None) -> dict[str, Any]:
        return {}

    def erase(self, telegram_user_id: int, patient_id: str | None) -> int:
        return 0  # the webhook only reads the schedule cache: the reset is the deferred pass's (sweep)

    def sweep(self, telegram_user_id: int, patient_id: str | None) -> int:
        from pynamodb.exceptions import UpdateError

        from clinicbot.schedule.models import SYNC_PK, VISITS_SK, VisitsCursorItem
        from clinicbot.storage.models import user_pk

        for _attempt in range(3):
            try:
                item = VisitsCursorItem.get(SYNC_PK, VISITS_SK, consistent_read=True)
            except VisitsCursorItem.DoesNotExist:
                return 0
            cursor = item.cursor or {}
            values = {str(plain(v)) for v in cursor.values()} if isinstance(cursor, dict) else set()
            if user_pk(telegram_user_id) not in values and (not patient_id or patient_id not in values):
                return 0
            try:
                VisitsCursorItem._get_connection().update_item(
                    SYNC_PK,
                    VISITS_SK,
                    actions=[VisitsCursorItem.cursor.remove()],
                    condition=VisitsCursorItem.updated_at == item.updated_at,  # the sync did not move it
                )
            except UpdateError as exc:
                if exc.cause_response_code == "ConditionalCheckFailedException":
                    continue
                raise
            log.info("MIS sync visits cursor reset: it pointed at an erased patient")
            return 1
        return 0


# ------------------------------------------------------------------------------------------- assembly
def default_registry() -> Any:
    """Every store of this build. Stores are cheap: build one per use or keep one per cold start."""
    from clinicbot.privacy.registry import NoPersonalData, Registry

    return Registry(
        [
            StateTableStore(),
            FeedbackStore(),
            ReminderStore(),
            ScheduleCursorStore(),
            HandoffStore(),
            NoPersonalData(
                "usage",
                ("UsageTable",),
                "clinicbot.metering: counters per clinic and month (pk USAGE#<month>, sk CLINIC#<id>), no ids",
            ),
        ]
    )
