"""Booking, rescheduling, cancelling and call-back requests, with no double booking.

The path of a booking (``BookingService.book``)::

    MIS: does the slot exist, is it in the future?      -> no: GONE
    claim the slot (conditional write, short TTL)        -> someone else holds it: TAKEN + alternatives
    MIS: does the patient already have this slot?        -> yes (a retry after a crash): ALREADY
    MIS: book                                            -> SlotTaken: release the claim, TAKEN + alternatives
    outbox: a CRM copy, key booking:<appointment id>:booked

The claim is idempotent per (patient, slot), so a retried update passes it again and the visits check
keeps it from booking twice; when two requests of the same patient race (a double tap on two devices),
the MIS refuses the second and the visits check turns that into ALREADY. The claim is kept after a success (it expires by itself: no extra write)
and after an MIS outage (the outcome is unknown; the patient's own retry passes it). The MIS is the final
judge: a claim only spares the loser a round trip and tells them at once.

No aiogram, boto3 or pynamodb here: the claims, the outbox and the MIS come in as ports.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum
from typing import Any

from clinicbot.booking.claims import DEFAULT_CLAIM_TTL, Clock, SlotClaims, utc_now
from clinicbot.booking.schedule import HORIZON, ScheduleReader, SlotFilter
from clinicbot.handoff.outbox import Outbox
from clinicbot.mis.errors import NotAllowed, NotFound, SlotTaken
from clinicbot.mis.models import Appointment, AppointmentStatus, Slot
from clinicbot.mis.port import MisPort

__all__ = [
    "BOOKING_KIND",
    "CALLBACK_KIND",
    "BookingService",
    "Outcome",
    "Result",
    "request_number",
]

log = logging.getLogger(__name__)

BOOKING_KIND = "booking"
CALLBACK_KIND = "callback_request"
ALTERNATIVES = 6


class Outcome(StrEnum):
    DONE = "done"
    """Booked, moved or cancelled just now."""
    ALREADY = "already"
    """It was already so (a retried request, a second press): nothing changed in the MIS."""
    TAKEN = "taken"
    """Someone else has the slot; ``alternatives`` holds the nearest free ones."""
    GONE = "gone"
    """The slot does not exist any more or is in the past."""
    NOT_ALLOWED = "not_allowed"
    """The visit is not the patient's, or cannot be changed any more (cancelled, past)."""


@dataclass(frozen=True)
class Result:
    outcome: Outcome
    appointment: Appointment | None = None
    slot: Slot | None = None
    alternatives: tuple[Slot, ...] = ()
    previous: Appointment | None = None

    @property
    def ok(self) -> bool:
        return self.outcome in (Outcome.DONE, Outcome.ALREADY)


def request_number(idempotency_key: str) -> str:
    """A human-friendly number for a request, stable for its idempotency key: ``"4711-0815"``."""
    n = int.from_bytes(hashlib.sha256(idempotency_key.encode()).digest()[:6], "big") % 10**8
    return f"{n // 10**4:04d}-{n % 10**4:04d}"


class BookingService:
    def __init__(
        self,
        mis: MisPort,
        claims: SlotClaims,
        outbox: Outbox,
        schedule: ScheduleReader,
        *,
        clock: Clock = utc_now,
        claim_ttl: timedelta = DEFAULT_CLAIM_TTL,
    ) -> None:
        self._mis = mis
        self._claims = claims
        self._outbox = outbox
        self._schedule = schedule
        self._clock = clock
        self._claim_ttl = claim_ttl

    # ------------------------------------------------------------------ booking
    async def book(
        self, patient_id: str, slot_id: str, *, request_id: str, specialty_id: str | None = None
    ) -> Result:
        slot = await self._live_slot(slot_id)
        if slot is None:
            return Result(Outcome.GONE)
        if not await self._claim(slot, patient_id, request_id):
            return await self._taken(slot, specialty_id)
        existing = await self._existing(patient_id, slot)
        if existing is not None:
            self._publish_booking(existing, "booked")  # idempotent: re-sent if a crash lost it
            return Result(Outcome.ALREADY, existing, slot)
        try:
            appointment = await self._mis.book(patient_id, slot.id)
        except SlotTaken:
            mine = await self._existing(patient_id, slot)
            if mine is not None:  # the same patient's other request (a double tap, two devices) won
                return Result(Outcome.ALREADY, mine, slot)
            await self._claims.release(slot.id, patient_id=patient_id)
            return await self._taken(slot, specialty_id)
        except (NotFound, NotAllowed):
            await self._claims.release(slot.id, patient_id=patient_id)
            return Result(Outcome.GONE, slot=slot)
        log.info("booked", extra={"appointment_id": appointment.id, "slot_id": slot.id})
        self._publish_booking(appointment, "booked")
        return Result(Outcome.DONE, appointment, slot)

    async def reschedule(
        self,
        patient_id: str,
        appointment_id: str,
        new_slot_id: str,
        *,
        request_id: str,
        specialty_id: str | None = None,
    ) -> Result:
        """Move a visit; the old time is released by the MIS only once the new one is booked."""
        slot = await self._live_slot(new_slot_id)
        if slot is None:
            return Result(Outcome.GONE)
        if not await self._claim(slot, patient_id, request_id):
            return await self._taken(slot, specialty_id)
        visits = await self._mis.visits(patient_id)
        existing = next((a for a in visits.upcoming if _at(a, slot)), None)
        if existing is not None:  # moved already (a retry after a crash), or moved onto itself
            if existing.id != appointment_id:
                self._publish_booking(existing, "rescheduled", previous_id=appointment_id)
            return Result(Outcome.ALREADY, existing, slot)
        old = next((a for a in visits.upcoming if a.id == appointment_id), None)
        if old is None:
            await self._claims.release(slot.id, patient_id=patient_id)
            return Result(Outcome.NOT_ALLOWED, slot=slot)
        try:
            new = await self._mis.reschedule(patient_id, appointment_id, slot.id)
        except SlotTaken:
            mine = await self._existing(patient_id, slot)
            if mine is not None:  # moved there by the same patient's other request
                return Result(Outcome.ALREADY, mine, slot)
            await self._claims.release(slot.id, patient_id=patient_id)
            return await self._taken(slot, specialty_id)
        except NotFound:
            await self._claims.release(slot.id, patient_id=patient_id)
            return Result(Outcome.GONE, slot=slot)
        except NotAllowed:
            await self._claims.release(slot.id, patient_id=patient_id)
            return Result(Outcome.NOT_ALLOWED, slot=slot)
        log.info("rescheduled", extra={"appointment_id": new.id, "previous_id": old.id, "slot_id": slot.id})
        self._publish_booking(new, "rescheduled", previous_id=old.id)
        return Result(Outcome.DONE, new, slot, previous=old)

    async def cancel(self, patient_id: str, appointment_id: str) -> Result:
        try:
            appointment = await self._mis.appointment(patient_id, appointment_id)
        except (NotFound, NotAllowed):
            return Result(Outcome.NOT_ALLOWED)
        if appointment.status is AppointmentStatus.CANCELLED:
            if appointment.start > self._clock():
                self._publish_booking(appointment, "cancelled")  # idempotent
            return Result(Outcome.ALREADY, appointment)
        if not appointment.is_active or appointment.start <= self._clock():
            return Result(Outcome.NOT_ALLOWED, appointment)
        try:
            cancelled = await self._mis.cancel(patient_id, appointment_id)
        except (NotFound, NotAllowed):
            return Result(Outcome.NOT_ALLOWED, appointment)
        log.info("cancelled", extra={"appointment_id": cancelled.id})
        self._publish_booking(cancelled, "cancelled")
        return Result(Outcome.DONE, cancelled)

    async def request_callback(self, patient_id: str, appointment: Appointment) -> str:
        """Ask the front desk to call the patient about a visit; returns the request number. One request
        per visit per day: pressing again gives the same number and queues nothing new."""
        day = self._clock().date().isoformat()
        key = f"callback:{appointment.id}:{day}"
        number = request_number(key)
        self._outbox.publish(
            CALLBACK_KIND,
            {
                "request_number": number,
                "reason": "visit",
                "patient_id": patient_id,
                "appointment_id": appointment.id,
                "doctor_id": appointment.doctor_id,
                "branch_id": appointment.branch_id,
                "start": appointment.start.isoformat(),
            },
            key,
        )
        log.info("call-back requested", extra={"appointment_id": appointment.id, "request": number})
        return number

    # ------------------------------------------------------------------ alternatives
    async def alternatives(
        self, slot: Slot, *, specialty_id: str | None = None, limit: int = ALTERNATIVES
    ) -> list[Slot]:
        """The free slots nearest in time to ``slot``: half with the same doctor, half with other doctors
        of the same specialty (topped up from either side), in time order."""
        now = self._clock()
        end = now + HORIZON
        if specialty_id is None:
            doctor = await self._schedule.doctor(slot.doctor_id)
            specialty_id = doctor.specialty_ids[0] if doctor else None
        same_doctor = await self._schedule.free_slots(
            SlotFilter(doctor_id=slot.doctor_id), start=now, end=end
        )
        same_specialty = (
            await self._schedule.free_slots(SlotFilter(specialty_id=specialty_id), start=now, end=end)
            if specialty_id
            else []
        )

        def nearest(slots: Sequence[Slot]) -> list[Slot]:
            return sorted((s for s in slots if s.id != slot.id), key=lambda s: abs(s.start - slot.start))

        mine = nearest(same_doctor)
        others = nearest([s for s in same_specialty if s.doctor_id != slot.doctor_id])
        half = limit // 2
        picked = mine[:half] + others[:half]
        rest = mine[half:] + others[half:]
        picked += sorted(rest, key=lambda s: abs(s.start - slot.start))[: limit - len(picked)]
        return sorted(picked, key=lambda s: (s.start, s.doctor_id))

    # ------------------------------------------------------------------ helpers
    async def _live_slot(self, slot_id: str) -> Slot | None:
        try:
            slot = await self._mis.slot(slot_id)
        except NotFound:
            return None
        return slot if slot.start > self._clock() else None

    async def _claim(self, slot: Slot, patient_id: str, request_id: str) -> bool:
        return await self._claims.claim(
            slot.id, patient_id=patient_id, request_id=request_id, ttl=self._claim_ttl
        )

    async def _taken(self, slot: Slot, specialty_id: str | None) -> Result:
        alternatives = await self.alternatives(slot, specialty_id=specialty_id)
        return Result(Outcome.TAKEN, slot=slot, alternatives=tuple(alternatives))

    async def _existing(self, patient_id: str, slot: Slot) -> Appointment | None:
        visits = await self._mis.visits(patient_id)
        return next((a for a in visits.upcoming if _at(a, slot)), None)

    def _publish_booking(
        self, appointment: Appointment, event: str, *, previous_id: str | None = None
    ) -> None:
        payload: dict[str, Any] = {
            "event": event,
            "patient_id": appointment.patient_id,
            "appointment_id": appointment.id,
            "doctor_id": appointment.doctor_id,
            "branch_id": appointment.branch_id,
            "start": appointment.start.isoformat(),
            "end": appointment.end.isoformat(),
            "status": appointment.status.value,
        }
        if appointment.service_id:
            payload["service_id"] = appointment.service_id
        if previous_id:
            payload["previous_appointment_id"] = previous_id
        key = f"booking:{appointment.id}:{event}"
        try:
            self._outbox.publish(BOOKING_KIND, payload, key)
        except Exception:
            # The visit stands in the MIS (the source of truth); a lost CRM copy must not undo it or
            # frighten the patient. Ids only in the log.
            log.exception("could not queue the CRM copy", extra={"idempotency_key": key})


def _at(appointment: Appointment, slot: Slot) -> bool:
    return appointment.doctor_id == slot.doctor_id and appointment.start == slot.start
