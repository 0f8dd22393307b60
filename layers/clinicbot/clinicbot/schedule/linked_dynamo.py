"""Linked patients, page by page, from the StateTable's sparse GSI ``patient`` (hash key ``patient_id``,
KEYS_ONLY; the reminders use it for the reverse lookup, ``clinicbot.storage.patients``).

Only items with a ``patient_id`` are in the index -- the cards of linked patients (``USER#<id> / PROFILE``)
and short-lived slot claims -- so paging through it reads the linked patients and nothing else: the
dialogue items, which are most of the table, are never read. A page ends with DynamoDB's
``LastEvaluatedKey``, the cursor the next run continues from.
"""

from __future__ import annotations

from typing import Any

from clinicbot.schedule.visits import LinkedPatient
from clinicbot.storage.models import PROFILE_SK, StateItem
from clinicbot.storage.patients import PATIENT_INDEX

__all__ = ["PATIENT_INDEX", "DynamoLinkedPatients"]


class DynamoLinkedPatients:
    def page(
        self, cursor: dict[str, Any] | None, limit: int
    ) -> tuple[list[LinkedPatient], dict[str, Any] | None]:
        """Up to ``limit`` index entries after ``cursor``; the linked patients among them and the next
        cursor (None at the end of the index)."""
        data = StateItem._get_connection().scan(
            index_name=PATIENT_INDEX,
            exclusive_start_key=cursor,  # type: ignore[arg-type]  # pynamodb's hint says str; a key map works
            limit=limit,
            attributes_to_get=["pk", "sk", "patient_id"],
        )
        patients = []
        for item in data.get("Items", []):
            pk = item.get("pk", {}).get("S", "")
            if item.get("sk", {}).get("S") != PROFILE_SK or not pk.startswith("USER#"):
                continue  # a slot claim
            patient_id = item.get("patient_id", {}).get("S")
            user = pk.removeprefix("USER#")
            if patient_id and user.lstrip("-").isdigit():
                patients.append(LinkedPatient(telegram_user_id=int(user), patient_id=patient_id))
        next_cursor: dict[str, Any] | None = data.get("LastEvaluatedKey") or None
        return patients, next_cursor
