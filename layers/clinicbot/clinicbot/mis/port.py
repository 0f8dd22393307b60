"""The MIS port: what the bot needs from a clinic's medical information system.

Adapters (the embedded demo clinic, HL7 FHIR R4, commercial REST MISes) implement this protocol;
the contract suite in ``tests/contract`` runs against each of them. Rules every adapter follows:

* all methods are coroutines; instants in and out are aware datetimes in UTC;
* every method that acts on an appointment takes the ``patient_id`` and refuses with ``NotAllowed``
  (or ``NotFound``) when the appointment is not that patient's;
* a slot that is booked or held by someone else raises ``SlotTaken``; unknown ids raise ``NotFound``;
  timeouts and outages raise ``MisUnavailable``; a capability the adapter does not offer raises
  ``Unsupported`` (check ``capabilities`` first);
* nothing personal (names, phones, codes) goes into exception messages.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Protocol, runtime_checkable

from clinicbot.mis.models import (
    Appointment,
    Balance,
    Branch,
    Doctor,
    Patient,
    PatientRegistration,
    PatientVisits,
    Prescription,
    Service,
    Slot,
    SlotHold,
    Specialty,
)

__all__ = ["Capability", "MisPort"]


class Capability(StrEnum):
    """Optional features; ``MisPort.capabilities`` holds the ones an adapter offers."""

    HOLD = "hold"
    """``hold`` / ``release_hold``: reserve a slot for a few minutes while the patient confirms."""
    VERIFICATION = "verification"
    """``request_verification`` / ``check_verification``: a one-time code sent by the MIS."""
    BALANCE = "balance"
    """``balance``: the patient's account."""
    PRESCRIPTIONS = "prescriptions"
    """``prescriptions``: medication courses, for reminders."""


@runtime_checkable
class MisPort(Protocol):
    @property
    def capabilities(self) -> frozenset[str]:
        """Names of the optional features offered (values of ``Capability``)."""
        ...

    # --- reference data -------------------------------------------------------------------------
    async def branches(self) -> list[Branch]: ...

    async def specialties(self) -> list[Specialty]: ...

    async def doctors(self, *, specialty_id: str | None = None, branch_id: str | None = None) -> list[Doctor]:
        """Doctors, optionally only those with a specialty and/or at a branch."""
        ...

    async def services(self, *, specialty_id: str | None = None) -> list[Service]: ...

    # --- schedule -------------------------------------------------------------------------------
    async def free_slots(
        self,
        *,
        start: datetime,
        end: datetime,
        doctor_id: str | None = None,
        specialty_id: str | None = None,
        branch_id: str | None = None,
    ) -> list[Slot]:
        """Free slots starting in ``[start, end)`` and in the future, ordered by start time.

        Filters combine; with none, every doctor's slots. ``start``/``end`` must be aware.
        Unknown doctor or specialty ids raise ``NotFound``.
        """
        ...

    async def slot(self, slot_id: str) -> Slot:
        """One slot by id, free or not (``NotFound`` if the MIS does not know it)."""
        ...

    async def hold(self, patient_id: str, slot_id: str) -> SlotHold:
        """Reserve a free slot for the patient until ``expires_at`` (capability ``hold``)."""
        ...

    async def release_hold(self, patient_id: str, hold_id: str) -> None:
        """Give a held slot back early (capability ``hold``); releasing an expired hold is a no-op."""
        ...

    # --- appointments ---------------------------------------------------------------------------
    async def book(
        self, patient_id: str, slot_id: str, *, service_id: str | None = None, hold_id: str | None = None
    ) -> Appointment:
        """Book a free (or held by this patient) slot. Raises ``SlotTaken`` if it is not free any more."""
        ...

    async def appointment(self, patient_id: str, appointment_id: str) -> Appointment: ...

    async def cancel(self, patient_id: str, appointment_id: str) -> Appointment:
        """Cancel a future visit and free its slot; cancelling a cancelled visit returns it unchanged."""
        ...

    async def reschedule(
        self, patient_id: str, appointment_id: str, new_slot_id: str, *, hold_id: str | None = None
    ) -> Appointment:
        """Move a future visit to another slot: book the new one, then release the old one.

        Atomic from the caller's view: if the new slot cannot be booked (``SlotTaken``, …) the old visit
        stays as it was. Returns the visit at the new time (its id may differ from the old one).
        """
        ...

    async def confirm(self, patient_id: str, appointment_id: str) -> Appointment:
        """The patient confirms they will come (idempotent)."""
        ...

    async def visits(self, patient_id: str) -> PatientVisits: ...

    # --- patients -------------------------------------------------------------------------------
    async def patient(self, patient_id: str) -> Patient: ...

    async def find_patient_by_phone(self, phone: str) -> Patient | None:
        """Look a patient up by phone in any common format; ``None`` if unknown or not a phone number."""
        ...

    async def register_patient(self, registration: PatientRegistration) -> Patient:
        """Create a patient card. Raises ``PatientExists`` if the phone is already registered."""
        ...

    async def balance(self, patient_id: str) -> Balance:
        """The patient's account (capability ``balance``)."""
        ...

    async def request_verification(self, patient_id: str) -> None:
        """Ask the MIS to send the patient a one-time code (capability ``verification``)."""
        ...

    async def check_verification(self, patient_id: str, code: str) -> bool:
        """True once for the right code; a code allows a few attempts and expires."""
        ...

    async def prescriptions(self, patient_id: str) -> list[Prescription]:
        """Medication courses (capability ``prescriptions``), current and future ones."""
        ...
