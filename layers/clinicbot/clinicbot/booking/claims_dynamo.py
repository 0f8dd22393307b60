"""Slot claims in the StateTable: one conditional PutItem per claim, no read.

Item ``pk = SLOT#<slot id>``, ``sk = CLAIM`` with the MIS patient id (attribute ``claimed_by``, so claims
stay out of the sparse GSI on ``patient_id``), the Telegram update id and ``expires_at`` (the table's TTL
attribute). The write succeeds when nobody holds the slot, when the claim there has expired, or when it
is this patient's own claim (idempotent per patient and slot)::

    attribute_not_exists(pk) OR expires_at < :now OR claimed_by = :me

DynamoDB's TTL deletes expired items late (up to days), so expiry is decided by the condition, never by
the item's absence.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from pynamodb.exceptions import DeleteError, PutError

from clinicbot.booking.claims import Clock, utc_now
from clinicbot.storage.models import SlotClaimItem

__all__ = ["CLAIM_SK", "DynamoSlotClaims", "slot_pk"]

log = logging.getLogger(__name__)

CLAIM_SK = "CLAIM"


def slot_pk(slot_id: str) -> str:
    return f"SLOT#{slot_id}"


class DynamoSlotClaims:
    """``SlotClaims`` on the StateTable (pynamodb; the table is configured by ``storage.models.configure``)."""

    def __init__(self, *, clock: Clock = utc_now) -> None:
        self._clock = clock

    async def claim(self, slot_id: str, *, patient_id: str, request_id: str, ttl: timedelta) -> bool:
        now = self._clock()
        item = SlotClaimItem(
            pk=slot_pk(slot_id),
            sk=CLAIM_SK,
            patient_id=patient_id,
            request_id=request_id,
            expires_at=now + ttl,
        )
        condition = (
            SlotClaimItem.pk.does_not_exist()
            | (SlotClaimItem.expires_at < now)
            | (SlotClaimItem.patient_id == patient_id)
        )
        try:
            item.save(condition=condition)
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                log.info("slot claim refused: another patient holds it", extra={"slot_id": slot_id})
                return False
            raise
        return True

    async def release(self, slot_id: str, *, patient_id: str) -> None:
        item = SlotClaimItem(pk=slot_pk(slot_id), sk=CLAIM_SK)
        try:
            item.delete(condition=SlotClaimItem.patient_id == patient_id)
        except DeleteError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
