"""Slot claims: a short-lived "this slot is being booked by patient X" marker taken BEFORE the MIS is asked.

Two patients pressing "confirm" on the same slot at the same moment (two Lambda instances) race for the
claim; the loser is told at once, without a round trip to the MIS. The MIS stays the final judge: a claim
only filters out the obvious collision, it never books anything by itself.

A claim is idempotent per (patient, slot): the same patient claiming again (a Telegram retry of the same
update, a second press) gets it again, so a crash between the claim and the MIS answer cannot lock the
patient out of their own slot. A claim expires after a short TTL, so a crashed claimer does not lock the
slot for anyone else for long.

The production adapter is :mod:`clinicbot.booking.claims_dynamo` (a conditional write in the StateTable);
:class:`InMemorySlotClaims` is the fake the unit tests use.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["DEFAULT_CLAIM_TTL", "Claim", "Clock", "InMemorySlotClaims", "SlotClaims", "utc_now"]

Clock = Callable[[], datetime]
DEFAULT_CLAIM_TTL = timedelta(minutes=2)


def utc_now() -> datetime:
    return datetime.now(UTC)


@dataclass(frozen=True)
class Claim:
    slot_id: str
    patient_id: str
    request_id: str
    expires_at: datetime


@runtime_checkable
class SlotClaims(Protocol):
    async def claim(self, slot_id: str, *, patient_id: str, request_id: str, ttl: timedelta) -> bool:
        """Take the claim on a slot for a patient. True if the patient holds it now (taken afresh, taken
        over from an expired claim, or already theirs); False if another patient holds a live claim."""
        ...

    async def release(self, slot_id: str, *, patient_id: str) -> None:
        """Give the claim back (only if this patient holds it); releasing nothing is a no-op."""
        ...


class InMemorySlotClaims:
    """Claims in a dict, with the same rules as the DynamoDB adapter."""

    def __init__(self, *, clock: Clock = utc_now) -> None:
        self._clock = clock
        self.claims: dict[str, Claim] = {}
        self.attempts = 0

    async def claim(self, slot_id: str, *, patient_id: str, request_id: str, ttl: timedelta) -> bool:
        self.attempts += 1
        await asyncio.sleep(0)  # a network round trip: let other tasks run, as a real store would
        now = self._clock()
        held = self.claims.get(slot_id)
        if held is not None and held.expires_at >= now and held.patient_id != patient_id:
            return False
        self.claims[slot_id] = Claim(slot_id, patient_id, request_id, now + ttl)
        return True

    async def release(self, slot_id: str, *, patient_id: str) -> None:
        held = self.claims.get(slot_id)
        if held is not None and held.patient_id == patient_id:
            del self.claims[slot_id]
