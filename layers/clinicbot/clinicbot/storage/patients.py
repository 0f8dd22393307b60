"""The patient cards as the reminders see them (``clinicbot.reminders.store.PatientDirectory``).

* ``cards``: one BatchGetItem per 100 users (eventually consistent: 0.5 RCU per card);
* ``mark_unreachable`` / ``note_reminded``: one UpdateItem that also bumps the card's ``version``, so a
  webhook holding an older copy fails its conditional write, re-reads and re-applies its own changes
  on top (``StateUnit``): neither write is lost. Never creates a card (an erased patient stays erased);
* ``telegram_user_of``: the Telegram user of an MIS patient, by the sparse GSI ``patient`` on
  ``patient_id`` (KEYS_ONLY): for visits booked by phone.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from datetime import datetime

from pynamodb.exceptions import UpdateError

from clinicbot.domain.patient import PatientCard
from clinicbot.storage.models import PROFILE_SK, ProfileItem, StateItem, user_pk
from clinicbot.storage.unit import _card_of

__all__ = ["PATIENT_INDEX", "DynamoPatientDirectory"]

log = logging.getLogger(__name__)

PATIENT_INDEX = "patient"
BATCH = 100


class DynamoPatientDirectory:
    def __init__(self) -> None:
        self.requests = 0

    def card(self, user_id: int) -> PatientCard | None:
        self.requests += 1
        try:
            item = StateItem.get(user_pk(user_id), PROFILE_SK)
        except StateItem.DoesNotExist:
            return None
        return _card_of(item) if isinstance(item, ProfileItem) else None

    def cards(self, user_ids: Iterable[int]) -> dict[int, PatientCard]:
        wanted = sorted(set(user_ids))
        found: dict[int, PatientCard] = {}
        for offset in range(0, len(wanted), BATCH):
            self.requests += 1
            keys = [(user_pk(u), PROFILE_SK) for u in wanted[offset : offset + BATCH]]
            for item in StateItem.batch_get(keys):
                card = _card_of(item) if isinstance(item, ProfileItem) else None
                if card is not None:
                    found[card.user_id] = card
        return found

    def _touch(self, user_id: int, field: str, at: datetime) -> None:
        self.requests += 1
        connection = StateItem._get_connection()
        attribute = getattr(ProfileItem, field)
        try:
            connection.update_item(
                user_pk(user_id),
                PROFILE_SK,
                actions=[attribute.set(at), ProfileItem.version.add(1)],
                condition=ProfileItem.pk.exists(),
            )
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            log.info("no card to update (erased meanwhile)", extra={"field": field})

    def mark_unreachable(self, user_id: int, at: datetime) -> None:
        self._touch(user_id, "unreachable_at", at)

    def note_reminded(self, user_id: int, at: datetime) -> None:
        self._touch(user_id, "last_reminder_at", at)

    def telegram_user_of(self, patient_id: str) -> int | None:
        self.requests += 1
        # The model does not declare the index (it is the reminders' business), so the Query is spelled out.
        connection = StateItem._get_connection().connection
        answer = connection._make_api_call(
            "Query",
            {
                "TableName": StateItem.Meta.table_name,
                "IndexName": PATIENT_INDEX,
                "KeyConditionExpression": "#p = :p",
                "ExpressionAttributeNames": {"#p": "patient_id"},
                "ExpressionAttributeValues": {":p": {"S": patient_id}},
            },
        )
        for raw in answer.get("Items", []):
            if raw.get("sk", {}).get("S") == PROFILE_SK:
                return int(raw["pk"]["S"].split("#", 1)[1])
        return None
