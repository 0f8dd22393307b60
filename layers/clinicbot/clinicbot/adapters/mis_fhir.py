"""The HL7 FHIR R4 adapter of the MIS port.

Talks to any FHIR R4 server over REST (JSON) and maps its scheduling resources onto the port's models.
Everything the server returns is parsed and validated with the ``fhir.resources`` R4B models, and what
the adapter sends is built with them; code values are checked here as well, because ``fhir.resources``
accepts any string where FHIR binds a required value set (``Slot.status``, ``Appointment.status``, …).
A resource with an unknown code, or one the mapping needs and cannot find (a Slot without a known
Schedule, a Patient without a phone), is never guessed at: a single read raises ``InvalidResponse`` (a
``MisUnavailable``), a search leaves it out and logs its id.

Mapping (ids on both sides are the FHIR logical ids):

* ``Location`` → ``Branch``: ``name`` and ``address.text`` (or its lines and city), translations from the
  standard ``translation`` extension on the primitive (``_name``); the time zone from the standard
  ``timezone`` extension (an IANA name in ``valueCode``), else ``default_timezone``; ``position`` →
  lat/lon; ``hoursOfOperation`` → opening hours (``allDay`` = 00:00–23:59); the first phone in ``telecom``.
* ``PractitionerRole.specialty`` (and ``HealthcareService.specialty``) codings → ``Specialty``: the code is
  the id, ``display`` (+ translation) the name; only codings of ``specialty_system`` when one is set.
  ``sensitive`` is ``code in sensitive_specialties`` (configured: FHIR has no such flag).
* ``Practitioner`` + its active ``PractitionerRole`` → ``Doctor``: the name is ``HumanName.text`` (+
  translation), else family and given names; the branch is the role's first ``location``; the profile
  text comes from the complex ``PROFILE_EXT`` extension on the Practitioner, one sub-extension per
  language (``url`` = ``ru`` / ``en``, ``valueString``): R4 has no element for it, and ``fhir.resources``
  keeps no translation extensions on an extension's own value.
* ``HealthcareService`` → ``Service``: the first specialty coding; the price is the ``PRICE_EXT``
  extension (``valueMoney``, currency RUB) — a service without it is left out, since a patient must see
  the price; the length is the ``DURATION_EXT`` extension (``valueDuration`` in min or h), else
  ``default_service_minutes``.
* ``Schedule`` (actor ``Practitioner`` or ``PractitionerRole``) + ``Slot`` → ``Slot``: free slots come from
  ``Slot?schedule=…&status=free&start=ge…&start=lt…`` (following ``next`` links); the doctor is the
  schedule's actor, the branch the doctor's (or a ``Location`` actor of the schedule).
* ``Appointment`` ↔ ``Appointment``: participants carry the patient, the practitioner, the location and
  the ``HealthcareService`` (R4 ``participant.actor`` allows it; ``serviceType`` is only a concept).
  Statuses: ``booked`` → booked, or **confirmed** when the patient's ``participant.status`` is
  ``accepted`` (bookings are created with ``needs-action``: the clinic waits for the patient's answer to a
  reminder; ``confirm`` sets ``accepted``); ``arrived``/``checked-in`` → confirmed; ``pending`` → booked;
  ``fulfilled``, ``cancelled``, ``noshow`` as such; ``proposed``, ``waitlist`` and ``entered-in-error``
  are not visits the bot shows (not listed; read by id they are ``NotFound``). The price is the service's.
* ``Patient`` ↔ ``Patient``: ``name.given`` (joined) / ``name.family``, the first ``telecom`` phone. Phones are
  written in E.164 (``+79161234567``); lookups use the ``phone`` search parameter with the usual written
  forms of the number and then compare normalised digits.

Booking takes the Slot with ``If-Match`` on the version just read (a 412 means someone else got it:
``SlotTaken``), then creates the Appointment (``If-None-Exist`` on the slot, so a retried create cannot
make a second visit); if that fails, the slot is put back (unless the create turns out to have happened).
Cancelling cancels the Appointment first and then frees the Slot. Rescheduling books the new slot first and
only then cancels the old visit. Holds, balance, verification codes and prescriptions have no plain FHIR
equivalent here: they raise ``Unsupported`` and are not in ``capabilities``.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time as monotonic_time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, time, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from fhir.resources.R4B.appointment import Appointment as FhirAppointment
from fhir.resources.R4B.appointment import AppointmentParticipant
from fhir.resources.R4B.codeableconcept import CodeableConcept
from fhir.resources.R4B.contactpoint import ContactPoint
from fhir.resources.R4B.extension import Extension
from fhir.resources.R4B.fhirresourcemodel import FHIRResourceModel
from fhir.resources.R4B.healthcareservice import HealthcareService
from fhir.resources.R4B.humanname import HumanName
from fhir.resources.R4B.location import Location
from fhir.resources.R4B.patient import Patient as FhirPatient
from fhir.resources.R4B.practitioner import Practitioner
from fhir.resources.R4B.practitionerrole import PractitionerRole
from fhir.resources.R4B.reference import Reference
from fhir.resources.R4B.schedule import Schedule
from fhir.resources.R4B.slot import Slot as FhirSlot
from pydantic import ValidationError
from yarl import URL

from clinicbot.adapters.fhir_http import Conflict, FhirHttp, InvalidResponse, PreconditionFailed
from clinicbot.domain.phones import format_phone, normalize_phone
from clinicbot.mis.errors import (
    MisError,
    MisUnavailable,
    NotAllowed,
    NotFound,
    PatientExists,
    SlotTaken,
    Unsupported,
)
from clinicbot.mis.models import (
    Appointment,
    AppointmentStatus,
    Balance,
    Branch,
    Doctor,
    LocalizedText,
    OpeningHours,
    Patient,
    PatientRegistration,
    PatientVisits,
    Prescription,
    Service,
    Slot,
    SlotHold,
    Specialty,
)

__all__ = [
    "APPOINTMENT_STATUSES",
    "DURATION_EXT",
    "PRICE_EXT",
    "PROFILE_EXT",
    "SLOT_STATUSES",
    "SPECIALTY_SYSTEM",
    "TIMEZONE_EXT",
    "TRANSLATION_EXT",
    "FhirMis",
    "InvalidResponse",
    "appointment_status_to_fhir",
    "fhir_instant",
]

logger = logging.getLogger("clinicbot.mis.fhir")

# Standard extensions (FHIR core extensions pack).
TRANSLATION_EXT = "http://hl7.org/fhir/StructureDefinition/translation"
TIMEZONE_EXT = "http://hl7.org/fhir/StructureDefinition/timezone"
# ClinicBot's own extensions and code system, for what R4 has no element for.
CLINICBOT_NS = "http://clinicbot.example/fhir"
SPECIALTY_SYSTEM = f"{CLINICBOT_NS}/CodeSystem/specialty"
PRICE_EXT = f"{CLINICBOT_NS}/StructureDefinition/service-price"
DURATION_EXT = f"{CLINICBOT_NS}/StructureDefinition/service-duration"
PROFILE_EXT = f"{CLINICBOT_NS}/StructureDefinition/practitioner-profile"

# Required value sets (R4).
SLOT_STATUSES = frozenset({"free", "busy", "busy-unavailable", "busy-tentative", "entered-in-error"})
APPOINTMENT_STATUSES = frozenset(
    {
        "proposed",
        "pending",
        "booked",
        "arrived",
        "fulfilled",
        "cancelled",
        "noshow",
        "entered-in-error",
        "checked-in",
        "waitlist",
    }
)
PARTICIPANT_STATUSES = frozenset({"accepted", "declined", "tentative", "needs-action"})
DAYS_OF_WEEK = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
HIDDEN_APPOINTMENT_STATUSES = frozenset({"proposed", "waitlist", "entered-in-error"})
ACTIVE_FHIR_APPOINTMENT = "booked,pending,arrived,checked-in"

_FHIR_ID = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")
_PAGE_SIZE = 500
_MAX_PAGES = 500
_SCHEDULES_PER_QUERY = 40
_UPDATE_ATTEMPTS = 3

M = TypeVar("M", bound=FHIRResourceModel)


def fhir_instant(value: datetime) -> str:
    """An aware datetime as a FHIR instant in UTC with millisecond precision (``…T06:00:00.000Z``)."""
    if value.tzinfo is None:
        raise ValueError("naive datetime: FHIR instants need a time zone")
    return value.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def appointment_status_to_fhir(status: AppointmentStatus) -> tuple[str, str]:
    """The FHIR ``Appointment.status`` and the patient participant's ``status`` for a port status."""
    return {
        AppointmentStatus.BOOKED: ("booked", "needs-action"),
        AppointmentStatus.CONFIRMED: ("booked", "accepted"),
        AppointmentStatus.CANCELLED: ("cancelled", "declined"),
        AppointmentStatus.FULFILLED: ("fulfilled", "accepted"),
        AppointmentStatus.NOSHOW: ("noshow", "accepted"),
    }[status]


@dataclass(frozen=True)
class _Directory:
    """Reference data, loaded together (a few searches) and kept for ``directory_ttl`` seconds."""

    branches: dict[str, Branch]
    specialties: dict[str, Specialty]
    doctors: dict[str, Doctor]
    services: dict[str, Service]
    schedule_doctor: dict[str, str]
    schedule_branch: dict[str, str]
    role_practitioner: dict[str, str]
    loaded_at: float
    doctor_schedules: dict[str, tuple[str, ...]] = field(default_factory=dict)


@dataclass(frozen=True)
class _Read:
    """A resource as read: its JSON (for ``meta.versionId``) and the validated ``fhir.resources`` model."""

    raw: dict[str, Any]
    model: Any

    @property
    def version(self) -> str | None:
        meta = self.raw.get("meta") or {}
        version = meta.get("versionId")
        return str(version) if version else None


class FhirMis:
    """The MIS port over an HL7 FHIR R4 server (implements ``clinicbot.mis.MisPort``).

    ``base_url`` is the FHIR base (``https://mis.example/fhir/R4``). ``timeout`` is the total time of one
    HTTP attempt, ``retries`` how many more attempts a safe request gets; ``token`` is sent as a Bearer
    token. ``language`` is the language of the server's own texts (translations come from the
    ``translation`` extension). The rest configures the mapping (see the module docstring).
    """

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        token: str | None = None,
        language: str = "ru",
        default_timezone: str = "Europe/Moscow",
        specialty_system: str | None = SPECIALTY_SYSTEM,
        sensitive_specialties: Iterable[str] = (),
        default_service_minutes: int = 30,
        directory_ttl: float = 300.0,
        backoff: float = 0.2,
        page_size: int = _PAGE_SIZE,
    ) -> None:
        ZoneInfo(default_timezone)
        self._http = FhirHttp(base_url, timeout=timeout, retries=retries, token=token, backoff=backoff)
        self.language = language.lower()
        self.default_timezone = default_timezone
        self.specialty_system = specialty_system
        self.sensitive_specialties = frozenset(sensitive_specialties)
        self.default_service_minutes = default_service_minutes
        self.directory_ttl = directory_ttl
        self.page_size = page_size
        self._directory_cache: _Directory | None = None
        self._directory_lock: dict[int, asyncio.Lock] = {}

    def __repr__(self) -> str:
        return f"FhirMis({self._http.base!s})"

    @property
    def base_url(self) -> str:
        return str(self._http.base)

    async def close(self) -> None:
        """Close the HTTP session of the running event loop."""
        await self._http.close()

    # --- capabilities ---------------------------------------------------------------------------------

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset()

    # --- reference data -------------------------------------------------------------------------------

    async def branches(self) -> list[Branch]:
        return list((await self._directory()).branches.values())

    async def specialties(self) -> list[Specialty]:
        return list((await self._directory()).specialties.values())

    async def doctors(self, *, specialty_id: str | None = None, branch_id: str | None = None) -> list[Doctor]:
        directory = await self._directory()
        return [
            d
            for d in directory.doctors.values()
            if (specialty_id is None or specialty_id in d.specialty_ids)
            and (branch_id is None or d.branch_id == branch_id)
        ]

    async def services(self, *, specialty_id: str | None = None) -> list[Service]:
        directory = await self._directory()
        return [
            s for s in directory.services.values() if specialty_id is None or s.specialty_id == specialty_id
        ]

    # --- schedule -------------------------------------------------------------------------------------

    async def free_slots(
        self,
        *,
        start: datetime,
        end: datetime,
        doctor_id: str | None = None,
        specialty_id: str | None = None,
        branch_id: str | None = None,
    ) -> list[Slot]:
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("free_slots needs aware datetimes")
        directory = await self._directory()
        if doctor_id is not None and doctor_id not in directory.doctors:
            raise NotFound(f"doctor {doctor_id}")
        if specialty_id is not None and specialty_id not in directory.specialties:
            raise NotFound(f"specialty {specialty_id}")
        doctors = {
            d.id
            for d in directory.doctors.values()
            if (doctor_id is None or d.id == doctor_id)
            and (specialty_id is None or specialty_id in d.specialty_ids)
            and (branch_id is None or d.branch_id == branch_id)
        }
        earliest = max(start.astimezone(UTC), _now() + timedelta(microseconds=1))
        end = end.astimezone(UTC)
        if not doctors or earliest >= end:
            return []
        base_params: dict[str, str | list[str]] = {
            "status": "free",
            "start": [f"ge{fhir_instant(earliest)}", f"lt{fhir_instant(end)}"],
        }
        queries: list[dict[str, str | list[str]]] = []
        if doctor_id is None and specialty_id is None and branch_id is None:
            queries.append(base_params)  # every schedule; slots of schedules we do not know are dropped
        else:
            schedules = sorted(s for d in doctors for s in directory.doctor_schedules.get(d, ()))
            for i in range(0, len(schedules), _SCHEDULES_PER_QUERY):
                chunk = schedules[i : i + _SCHEDULES_PER_QUERY]
                # The most selective parameter first: simple servers apply them in order.
                queries.append({"schedule": ",".join(f"Schedule/{s}" for s in chunk), **base_params})
        pages = await asyncio.gather(*(self._search("Slot", FhirSlot, q) for q in queries))
        found: dict[str, Slot] = {}
        for page in pages:
            for read in page:
                slot = self._try_slot(read, directory)
                if (
                    slot is not None
                    and read.model.status == "free"
                    and slot.doctor_id in doctors
                    and earliest <= slot.start < end
                ):
                    found[slot.id] = slot
        return sorted(found.values(), key=lambda s: (s.start, s.doctor_id))

    async def slot(self, slot_id: str) -> Slot:
        directory = await self._directory()
        read = await self._read("Slot", slot_id, FhirSlot)
        return self._map_slot(read, directory)

    async def hold(self, patient_id: str, slot_id: str) -> SlotHold:
        raise Unsupported("holds are not offered by the FHIR adapter")

    async def release_hold(self, patient_id: str, hold_id: str) -> None:
        raise Unsupported("holds are not offered by the FHIR adapter")

    # --- appointments ---------------------------------------------------------------------------------

    async def book(
        self, patient_id: str, slot_id: str, *, service_id: str | None = None, hold_id: str | None = None
    ) -> Appointment:
        if hold_id is not None:
            raise Unsupported("holds are not offered by the FHIR adapter")
        directory, _, slot_read = await asyncio.gather(
            self._directory(),
            self._read("Patient", patient_id, FhirPatient),
            self._read("Slot", slot_id, FhirSlot),
        )
        slot = self._map_slot(slot_read, directory)
        doctor = directory.doctors[slot.doctor_id]
        service = self._check_service(directory, doctor, service_id)
        self._check_bookable(slot_read, slot)
        return await self._take_and_book(directory, patient_id, slot_read, slot, service)

    async def appointment(self, patient_id: str, appointment_id: str) -> Appointment:
        directory = await self._directory()
        _, appointment = await self._owned(directory, patient_id, appointment_id)
        return appointment

    async def cancel(self, patient_id: str, appointment_id: str) -> Appointment:
        directory = await self._directory()
        read, appointment = await self._owned(directory, patient_id, appointment_id)
        if appointment.status is AppointmentStatus.CANCELLED:
            return appointment
        if not appointment.is_active or appointment.start <= _now():
            raise NotAllowed(f"appointment {appointment_id} cannot be cancelled any more")
        return await self._cancel(directory, patient_id, read)

    async def reschedule(
        self, patient_id: str, appointment_id: str, new_slot_id: str, *, hold_id: str | None = None
    ) -> Appointment:
        if hold_id is not None:
            raise Unsupported("holds are not offered by the FHIR adapter")
        directory = await self._directory()
        old_read, old = await self._owned(directory, patient_id, appointment_id)
        if not old.is_active or old.start <= _now():
            raise NotAllowed(f"appointment {appointment_id} cannot be moved any more")
        if new_slot_id in _slot_ids(old_read.model):
            return old
        slot_read = await self._read("Slot", new_slot_id, FhirSlot)
        slot = self._map_slot(slot_read, directory)
        doctor = directory.doctors[slot.doctor_id]
        service = directory.services.get(old.service_id) if old.service_id else None
        if service is not None and service.specialty_id not in doctor.specialty_ids:
            service = None
        self._check_bookable(slot_read, slot)
        new = await self._take_and_book(directory, patient_id, slot_read, slot, service)
        try:
            await self._cancel(directory, patient_id, old_read)
        except Exception:
            logger.warning("FHIR reschedule: old appointment %s not cancelled; undoing the new one", old.id)
            try:
                new_read = await self._read("Appointment", new.id, FhirAppointment)
                await self._cancel(directory, patient_id, new_read)
            except MisError:
                logger.error("FHIR reschedule: appointments %s and %s are both active", old.id, new.id)
            raise
        return new

    async def confirm(self, patient_id: str, appointment_id: str) -> Appointment:
        directory = await self._directory()
        for _ in range(_UPDATE_ATTEMPTS):
            read, appointment = await self._owned(directory, patient_id, appointment_id)
            if appointment.status is AppointmentStatus.CONFIRMED:
                return appointment
            if appointment.status is not AppointmentStatus.BOOKED or appointment.start <= _now():
                raise NotAllowed(f"appointment {appointment_id} cannot be confirmed")
            model: FhirAppointment = read.model
            participants = []
            for p in model.participant or []:
                if _ref_is(p.actor, "Patient", patient_id):
                    p = p.model_copy(update={"status": "accepted"})
                participants.append(p)
            if model.status == "pending":
                model = model.model_copy(update={"status": "booked"})
            updated = _without_meta(model.model_copy(update={"participant": participants}))
            try:
                saved = await self._update("Appointment", appointment_id, updated, read.version)
            except (PreconditionFailed, Conflict):
                continue  # changed in between: read it again
            return self._map_appointment(saved, directory)
        raise MisUnavailable(f"appointment {appointment_id} keeps changing")

    async def visits(self, patient_id: str) -> PatientVisits:
        directory, _ = await asyncio.gather(self._directory(), self._read("Patient", patient_id, FhirPatient))
        reads = await self._search("Appointment", FhirAppointment, {"patient": f"Patient/{patient_id}"})
        now = _now()
        mine: list[Appointment] = []
        for read in reads:
            appointment = self._try_appointment(read, directory)
            if appointment is not None and appointment.patient_id == patient_id:
                mine.append(appointment)
        upcoming = sorted((a for a in mine if a.start >= now and a.is_active), key=lambda a: a.start)
        past = sorted((a for a in mine if a.start < now), key=lambda a: a.start, reverse=True)
        return PatientVisits(upcoming=tuple(upcoming), past=tuple(past))

    # --- patients -------------------------------------------------------------------------------------

    async def patient(self, patient_id: str) -> Patient:
        read = await self._read("Patient", patient_id, FhirPatient)
        return self._map_patient(read)

    async def find_patient_by_phone(self, phone: str) -> Patient | None:
        try:
            digits = normalize_phone(phone)
        except ValueError:
            return None
        reads = await self._search("Patient", FhirPatient, {"phone": ",".join(_phone_forms(digits))})
        matches: list[tuple[bool, str, Patient]] = []
        for read in reads:
            patient = self._try_patient(read)
            if patient is not None and patient.phone == digits:
                matches.append((read.model.active is False, patient.id, patient))
        return min(matches, key=lambda m: m[:2])[2] if matches else None

    async def register_patient(self, registration: PatientRegistration) -> Patient:
        if await self.find_patient_by_phone(registration.phone) is not None:
            raise PatientExists("a patient with this phone is already registered")
        e164 = "+" + registration.phone
        resource = FhirPatient(
            active=True,
            name=[
                HumanName(
                    use="official",
                    family=registration.last_name,
                    given=[registration.first_name],
                )
            ],
            telecom=[ContactPoint(system="phone", value=e164, use="mobile")],
        )
        try:
            response = await self._http.request(
                "POST",
                self._http.url("Patient"),
                body=_to_json(resource),
                headers={"If-None-Exist": str(URL.build(query={"phone": e164}).raw_query_string)},
            )
        except (PreconditionFailed, Conflict):
            raise PatientExists("a patient with this phone is already registered") from None
        if response.status == 200:  # If-None-Exist found one (registered a moment ago)
            raise PatientExists("a patient with this phone is already registered")
        read = self._validate(response.body, FhirPatient, "Patient")
        return self._map_patient(read)

    # --- not in plain FHIR ----------------------------------------------------------------------------

    async def balance(self, patient_id: str) -> Balance:
        raise Unsupported("the FHIR adapter has no patient balance")

    async def request_verification(self, patient_id: str) -> None:
        raise Unsupported("the FHIR adapter cannot send verification codes")

    async def check_verification(self, patient_id: str, code: str) -> bool:
        raise Unsupported("the FHIR adapter cannot send verification codes")

    async def prescriptions(self, patient_id: str) -> list[Prescription]:
        raise Unsupported("the FHIR adapter does not read prescriptions")

    # --- booking internals ----------------------------------------------------------------------------

    @staticmethod
    def _check_bookable(read: _Read, slot: Slot) -> None:
        if slot.start <= _now():
            raise NotAllowed(f"slot {slot.id} is in the past")
        if read.model.status != "free":
            raise SlotTaken(f"slot {slot.id}")

    @staticmethod
    def _check_service(directory: _Directory, doctor: Doctor, service_id: str | None) -> Service | None:
        if service_id is None:
            return None
        service = directory.services.get(service_id)
        if service is None:
            raise NotFound(f"service {service_id}")
        if service.specialty_id not in doctor.specialty_ids:
            raise NotAllowed(f"doctor {doctor.id} does not offer service {service_id}")
        return service

    async def _take_and_book(
        self, directory: _Directory, patient_id: str, slot_read: _Read, slot: Slot, service: Service | None
    ) -> Appointment:
        """Mark the slot busy (guarded by its version), then create the appointment; undo on failure."""
        busy = _without_meta(slot_read.model.model_copy(update={"status": "busy"}))
        try:
            taken = await self._update("Slot", slot.id, busy, slot_read.version)
        except (PreconditionFailed, Conflict):
            raise SlotTaken(f"slot {slot.id}") from None

        appointment = self._build_appointment(directory, patient_id, slot, service)
        try:
            response = await self._http.request(
                "POST",
                self._http.url("Appointment"),
                body=_to_json(appointment),
                headers={
                    "If-None-Exist": str(
                        URL.build(
                            query={"slot": f"Slot/{slot.id}", "status": ACTIVE_FHIR_APPOINTMENT}
                        ).raw_query_string
                    )
                },
            )
        except (PreconditionFailed, Conflict):
            # If-None-Exist found several active visits on this slot: it is taken, whatever it said.
            raise SlotTaken(f"slot {slot.id}") from None
        except MisUnavailable:
            existing = await self._find_booking(directory, patient_id, slot.id)
            if existing is not None:  # the create went through; only its answer was lost
                return existing
            await self._give_back(slot.id, taken.version)
            raise
        except Exception:
            await self._give_back(slot.id, taken.version)
            raise
        created = self._validate(response.body, FhirAppointment, "Appointment")
        booked = self._map_appointment(created, directory)
        if response.status == 200 and booked.patient_id != patient_id:
            # If-None-Exist found someone else's visit on a slot that said "free": it is taken after all.
            raise SlotTaken(f"slot {slot.id}")
        return booked

    def _build_appointment(
        self, directory: _Directory, patient_id: str, slot: Slot, service: Service | None
    ) -> FhirAppointment:
        status, patient_status = appointment_status_to_fhir(AppointmentStatus.BOOKED)
        participants = [
            AppointmentParticipant(actor=Reference(reference=f"Patient/{patient_id}"), status=patient_status),
            AppointmentParticipant(
                actor=Reference(reference=f"Practitioner/{slot.doctor_id}"),
                required="required",
                status="accepted",
            ),
            AppointmentParticipant(
                actor=Reference(reference=f"Location/{slot.branch_id}"), status="accepted"
            ),
        ]
        if service is not None:
            participants.append(
                AppointmentParticipant(
                    actor=Reference(reference=f"HealthcareService/{service.id}"), status="accepted"
                )
            )
        doctor = directory.doctors[slot.doctor_id]
        specialty = service.specialty_id if service else doctor.specialty_ids[0]
        return FhirAppointment(
            status=status,
            start=slot.start,
            end=slot.end,
            minutesDuration=max(1, int((slot.end - slot.start).total_seconds() // 60)),
            slot=[Reference(reference=f"Slot/{slot.id}")],
            specialty=[self._specialty_concept(specialty)],
            created=_now(),
            participant=participants,
        )

    def _specialty_concept(self, code: str) -> CodeableConcept:
        coding: dict[str, Any] = {"code": code}
        if self.specialty_system:
            coding["system"] = self.specialty_system
        return CodeableConcept.model_validate({"coding": [coding]})

    async def _find_booking(self, directory: _Directory, patient_id: str, slot_id: str) -> Appointment | None:
        """After a create whose answer was lost: the patient's active appointment on the slot, if any."""
        try:
            reads = await self._search(
                "Appointment",
                FhirAppointment,
                {
                    "slot": f"Slot/{slot_id}",
                    "patient": f"Patient/{patient_id}",
                    "status": ACTIVE_FHIR_APPOINTMENT,
                },
            )
        except MisError:
            return None
        for read in reads:
            appointment = self._try_appointment(read, directory)
            if appointment is not None and appointment.patient_id == patient_id and appointment.is_active:
                return appointment
        return None

    async def _give_back(self, slot_id: str, version: str | None) -> None:
        """Compensation: free a slot we took, unless someone changed it since (then it is theirs)."""
        try:
            read = await self._read("Slot", slot_id, FhirSlot)
            if read.model.status != "busy" or (version is not None and read.version != version):
                logger.warning("FHIR slot %s changed after we took it; not freeing it", slot_id)
                return
            await self._update(
                "Slot", slot_id, _without_meta(read.model.model_copy(update={"status": "free"})), read.version
            )
        except MisError as exc:
            logger.error("FHIR slot %s stays busy without an appointment: %s", slot_id, type(exc).__name__)

    async def _cancel(self, directory: _Directory, patient_id: str, read: _Read) -> Appointment:
        """Cancel the appointment (guarded by its version, re-read on conflicts), then free its slots."""
        appointment_id = read.model.id
        for _ in range(_UPDATE_ATTEMPTS):
            model: FhirAppointment = read.model
            if model.status == "cancelled":
                return self._map_appointment(read, directory)
            participants = [
                p.model_copy(update={"status": "declined"}) if _ref_is(p.actor, "Patient", patient_id) else p
                for p in model.participant or []
            ]
            cancelled = _without_meta(
                model.model_copy(
                    update={
                        "status": "cancelled",
                        "participant": participants,
                        "cancelationReason": CodeableConcept.model_validate(
                            {
                                "coding": [
                                    {
                                        "system": "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason",
                                        "code": "pat",
                                    }
                                ]
                            }
                        ),
                    }
                )
            )
            try:
                saved = await self._update("Appointment", appointment_id, cancelled, read.version)
            except (PreconditionFailed, Conflict):
                read = await self._read("Appointment", appointment_id, FhirAppointment)
                current = self._map_appointment(read, directory)
                if current.status is not AppointmentStatus.CANCELLED and (
                    not current.is_active or current.start <= _now()
                ):
                    raise NotAllowed(f"appointment {appointment_id} cannot be cancelled any more") from None
                continue
            for slot_id in _slot_ids(model):
                await self._free_slot(slot_id)
            return self._map_appointment(saved, directory)
        raise MisUnavailable(f"appointment {appointment_id} keeps changing")

    async def _free_slot(self, slot_id: str) -> None:
        for _ in range(_UPDATE_ATTEMPTS):
            try:
                read = await self._read("Slot", slot_id, FhirSlot)
                if read.model.status != "busy":
                    return
                free = _without_meta(read.model.model_copy(update={"status": "free"}))
                await self._update("Slot", slot_id, free, read.version)
                return
            except (PreconditionFailed, Conflict):
                continue
            except MisError as exc:
                logger.error("FHIR slot %s not freed after a cancellation: %s", slot_id, type(exc).__name__)
                return
        logger.error("FHIR slot %s not freed after a cancellation: it keeps changing", slot_id)

    async def _owned(
        self, directory: _Directory, patient_id: str, appointment_id: str
    ) -> tuple[_Read, Appointment]:
        patient_read, read = await asyncio.gather(
            self._read("Patient", patient_id, FhirPatient),
            self._read("Appointment", appointment_id, FhirAppointment),
            return_exceptions=True,
        )
        if isinstance(patient_read, BaseException):
            raise patient_read
        if isinstance(read, BaseException):
            raise read
        if read.model.status in HIDDEN_APPOINTMENT_STATUSES:
            raise NotFound(f"appointment {appointment_id}")
        appointment = self._map_appointment(read, directory)
        if appointment.patient_id != patient_id:
            raise NotAllowed(f"appointment {appointment_id} belongs to another patient")
        return read, appointment

    # --- HTTP helpers ---------------------------------------------------------------------------------

    async def _read(self, resource_type: str, resource_id: str, model: type[M]) -> _Read:
        if not _FHIR_ID.match(resource_id):
            raise NotFound(f"{resource_type} with a malformed id")
        body = await self._http.get(self._http.url(resource_type, resource_id))
        return self._validate(body, model, resource_type)

    async def _update(
        self, resource_type: str, resource_id: str, resource: FHIRResourceModel, version: str | None
    ) -> _Read:
        headers = {"If-Match": f'W/"{version}"'} if version else {}
        response = await self._http.request(
            "PUT", self._http.url(resource_type, resource_id), body=_to_json(resource), headers=headers
        )
        return self._validate(response.body, type(resource), resource_type)

    async def _search(
        self, resource_type: str, model: type[M], params: Mapping[str, str | list[str]]
    ) -> list[_Read]:
        """Every match of a search, following ``next`` links; invalid resources are logged and left out."""
        url: URL | None = self._http.url(resource_type)
        query: dict[str, str | list[str]] | None = {**params, "_count": str(self.page_size)}
        found: list[_Read] = []
        for _ in range(_MAX_PAGES):
            assert url is not None
            bundle = await self._http.get(url, query)
            if bundle.get("resourceType") != "Bundle" or bundle.get("type") != "searchset":
                raise InvalidResponse(f"a {resource_type} search did not return a searchset Bundle")
            for entry in bundle.get("entry") or []:
                raw = entry.get("resource") if isinstance(entry, dict) else None
                if not isinstance(raw, dict) or raw.get("resourceType") != resource_type:
                    continue  # _include'd or OperationOutcome entries
                if (entry.get("search") or {}).get("mode", "match") != "match":
                    continue
                try:
                    found.append(self._validate(raw, model, resource_type))
                except InvalidResponse as exc:
                    logger.warning("FHIR %s/%s left out: %s", resource_type, raw.get("id"), exc)
            url = _next_link(bundle)
            query = None  # the next link carries the query
            if url is None:
                return found
        raise InvalidResponse(f"a {resource_type} search has more than {_MAX_PAGES} pages")

    def _validate(self, raw: Mapping[str, Any], model: type[M], resource_type: str) -> _Read:
        if raw.get("resourceType") != resource_type:
            raise InvalidResponse(f"expected a {resource_type}")
        clean = dict(raw)
        meta = clean.get("meta")
        if isinstance(meta, dict):  # servers add their own bookkeeping to meta; keep what FHIR defines
            clean["meta"] = {k: meta[k] for k in ("versionId", "lastUpdated") if k in meta}
        try:
            parsed = model.model_validate(clean)
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in e["loc"][:2]) for e in exc.errors()})
            raise InvalidResponse(
                f"{resource_type}/{raw.get('id')} is not valid FHIR R4 ({fields})"
            ) from None
        _check_codes(parsed)
        return _Read(raw=clean, model=parsed)

    # --- the directory --------------------------------------------------------------------------------

    async def _directory(self) -> _Directory:
        cached = self._directory_cache
        if cached is not None and monotonic_time.monotonic() - cached.loaded_at < self.directory_ttl:
            return cached
        loop_key = id(asyncio.get_running_loop())
        lock = self._directory_lock.get(loop_key)
        if lock is None:
            self._directory_lock.clear()
            lock = self._directory_lock[loop_key] = asyncio.Lock()
        async with lock:
            cached = self._directory_cache
            if cached is not None and monotonic_time.monotonic() - cached.loaded_at < self.directory_ttl:
                return cached
            self._directory_cache = await self._load_directory()
            return self._directory_cache

    async def _load_directory(self) -> _Directory:
        locations, roles, practitioners, services, schedules = await asyncio.gather(
            self._search("Location", Location, {}),
            self._search("PractitionerRole", PractitionerRole, {}),
            self._search("Practitioner", Practitioner, {}),
            self._search("HealthcareService", HealthcareService, {}),
            self._search("Schedule", Schedule, {}),
        )
        branches: dict[str, Branch] = {}
        for read in locations:
            if read.model.status in (None, "active"):
                branch = self._quietly(self._map_branch, read)
                if branch is not None:
                    branches[branch.id] = branch

        specialties: dict[str, Specialty] = {}

        def note_specialties(concepts: Sequence[CodeableConcept] | None) -> list[str]:
            codes = []
            for code, name in self._specialty_codes(concepts):
                codes.append(code)
                if code not in specialties:
                    specialties[code] = Specialty(
                        id=code, name=name, sensitive=code in self.sensitive_specialties
                    )
            return codes

        by_practitioner = {r.model.id: r for r in practitioners if r.model.active is not False}
        role_practitioner: dict[str, str] = {}
        doctors: dict[str, Doctor] = {}
        for read in roles:
            role: PractitionerRole = read.model
            practitioner_id = _ref_id(role.practitioner, "Practitioner")
            if practitioner_id is None:
                continue
            if role.id is None:
                continue
            role_practitioner[role.id] = practitioner_id
            if role.active is False or practitioner_id in doctors:
                continue
            practitioner = by_practitioner.get(practitioner_id)
            branch_id = next(
                (b for b in (_ref_id(loc, "Location") for loc in role.location or []) if b in branches), None
            )
            codes = note_specialties(role.specialty)
            if practitioner is None or branch_id is None or not codes:
                logger.warning(
                    "FHIR PractitionerRole %s left out: no practitioner, branch or specialty", role.id
                )
                continue
            doctor = self._quietly(self._map_doctor, practitioner, codes, branch_id)
            if doctor is not None:
                doctors[doctor.id] = doctor

        service_map: dict[str, Service] = {}
        for read in services:
            if read.model.active is False:
                continue
            codes = note_specialties(read.model.specialty)
            service = self._quietly(self._map_service, read, codes)
            if service is not None:
                service_map[service.id] = service

        schedule_doctor: dict[str, str] = {}
        schedule_branch: dict[str, str] = {}
        for read in schedules:
            schedule: Schedule = read.model
            if schedule.active is False:
                continue
            doctor_id = None
            for actor in schedule.actor or []:
                doctor_id = doctor_id or _ref_id(actor, "Practitioner")
                role_id = _ref_id(actor, "PractitionerRole")
                if doctor_id is None and role_id is not None:
                    doctor_id = role_practitioner.get(role_id)
                location_id = _ref_id(actor, "Location")
                if location_id is not None and location_id in branches and schedule.id is not None:
                    schedule_branch[schedule.id] = location_id
            if doctor_id is not None and doctor_id in doctors and schedule.id is not None:
                schedule_doctor[schedule.id] = doctor_id
        doctor_schedules: dict[str, list[str]] = {}
        for schedule_id, doctor_id in schedule_doctor.items():
            doctor_schedules.setdefault(doctor_id, []).append(schedule_id)
        return _Directory(
            branches=branches,
            specialties=specialties,
            doctors=doctors,
            services=service_map,
            schedule_doctor=schedule_doctor,
            schedule_branch=schedule_branch,
            role_practitioner=role_practitioner,
            loaded_at=monotonic_time.monotonic(),
            doctor_schedules={k: tuple(v) for k, v in doctor_schedules.items()},
        )

    @staticmethod
    def _quietly(mapper: Any, *args: Any) -> Any:
        try:
            return mapper(*args)
        except (ValueError, InvalidResponse) as exc:
            first = args[0]
            model = getattr(first, "model", first)
            logger.warning(
                "FHIR %s/%s left out: %s", type(model).__name__, getattr(model, "id", "?"), type(exc).__name__
            )
            return None

    # --- mapping: FHIR → port -------------------------------------------------------------------------

    def _text(self, value: str | None, ext: Any) -> LocalizedText | None:
        """A string and its translations as ``LocalizedText`` (the server's own language is ``language``)."""
        if not value:
            return None
        translations = _translations(ext)
        if self.language.startswith("ru"):
            return LocalizedText(ru=value, en=translations.get("en"))
        ru = translations.get("ru") or value
        en = value if self.language.startswith("en") else translations.get("en")
        return LocalizedText(ru=ru, en=en)

    def _map_branch(self, read: _Read) -> Branch:
        location: Location = read.model
        name = self._text(location.name, location.name__ext)
        if name is None:
            raise InvalidResponse("a Location without a name")
        address = None
        if location.address is not None:
            address = self._text(location.address.text, location.address.text__ext)
            if address is None:
                parts = [*(location.address.line or []), location.address.city]
                address = self._text(", ".join(p for p in parts if p), None)
        timezone = self.default_timezone
        zone = _extension(location.extension, TIMEZONE_EXT)
        if zone is not None and zone.valueCode:
            try:
                ZoneInfo(zone.valueCode)
                timezone = zone.valueCode
            except (ZoneInfoNotFoundError, ValueError):
                logger.warning("FHIR Location %s: unknown time zone; using the default", location.id)
        hours: list[OpeningHours] = []
        for entry in location.hoursOfOperation or []:
            opens, closes = entry.openingTime, entry.closingTime
            if entry.allDay:
                opens, closes = time(0), time(23, 59)
            if opens is None or closes is None:
                continue
            for day in entry.daysOfWeek or []:
                if day not in DAYS_OF_WEEK:
                    raise InvalidResponse(f"Location {location.id}: unknown day of week")
                hours.append(OpeningHours(weekday=DAYS_OF_WEEK.index(day), opens=opens, closes=closes))
        position = location.position
        return Branch(
            id=location.id,
            name=name,
            address=address or name,
            timezone=timezone,
            opening_hours=tuple(sorted(hours, key=lambda h: (h.weekday, h.opens))),
            lat=float(position.latitude) if position is not None and position.latitude is not None else None,
            lon=float(position.longitude)
            if position is not None and position.longitude is not None
            else None,
            phone=_first_phone(location.telecom),
        )

    def _specialty_codes(self, concepts: Sequence[CodeableConcept] | None) -> list[tuple[str, LocalizedText]]:
        result = []
        for concept in concepts or []:
            for coding in concept.coding or []:
                if not coding.code or (self.specialty_system and coding.system != self.specialty_system):
                    continue
                name = self._text(coding.display, coding.display__ext) or self._text(concept.text, None)
                result.append((coding.code, name or LocalizedText(ru=coding.code)))
                break
        return result

    def _map_doctor(self, read: _Read, specialty_ids: list[str], branch_id: str) -> Doctor:
        practitioner: Practitioner = read.model
        names = practitioner.name or []
        name = next((n for n in names if n.use == "official"), names[0] if names else None)
        if name is None:
            raise InvalidResponse("a Practitioner without a name")
        full_name = self._text(name.text, name.text__ext) or self._text(
            " ".join(p for p in [name.family, *(name.given or [])] if p), None
        )
        if full_name is None:
            raise InvalidResponse("a Practitioner without a name")
        profile = _by_language(_extension(practitioner.extension, PROFILE_EXT))
        return Doctor(
            id=practitioner.id,
            full_name=full_name,
            specialty_ids=tuple(dict.fromkeys(specialty_ids)),
            branch_id=branch_id,
            profile=profile,
        )

    def _map_service(self, read: _Read, specialty_ids: list[str]) -> Service:
        service: HealthcareService = read.model
        name = self._text(service.name, service.name__ext)
        if name is None or not specialty_ids:
            raise InvalidResponse("a HealthcareService without a name or specialty")
        price_ext = _extension(service.extension, PRICE_EXT)
        money = price_ext.valueMoney if price_ext is not None else None
        if money is None or money.value is None or (money.currency or "RUB") != "RUB":
            raise InvalidResponse("a HealthcareService without a price in RUB")
        minutes = self.default_service_minutes
        duration_ext = _extension(service.extension, DURATION_EXT)
        duration = duration_ext.valueDuration if duration_ext is not None else None
        if duration is not None and duration.value is not None:
            unit = (duration.code or duration.unit or "min").lower()
            factor = {"min": 1, "h": 60, "hour": 60, "hours": 60}.get(unit)
            if factor is None:
                raise InvalidResponse("a HealthcareService duration in an unknown unit")
            minutes = int(Decimal(duration.value) * factor)
        try:
            price = Decimal(money.value).quantize(Decimal("0.01"))
        except InvalidOperation:
            raise InvalidResponse("a HealthcareService with a malformed price") from None
        return Service(
            id=service.id, name=name, specialty_id=specialty_ids[0], price=price, duration_minutes=minutes
        )

    def _map_slot(self, read: _Read, directory: _Directory) -> Slot:
        model: FhirSlot = read.model
        schedule_id = _ref_id(model.schedule, "Schedule")
        doctor_id = directory.schedule_doctor.get(schedule_id or "")
        if doctor_id is None:
            raise InvalidResponse(f"Slot/{model.id} belongs to no known doctor's schedule")
        branch_id = directory.schedule_branch.get(schedule_id or "") or directory.doctors[doctor_id].branch_id
        try:
            return Slot(
                id=model.id, doctor_id=doctor_id, branch_id=branch_id, start=model.start, end=model.end
            )
        except ValidationError:
            raise InvalidResponse(f"Slot/{model.id} has no valid start and end") from None

    def _try_slot(self, read: _Read, directory: _Directory) -> Slot | None:
        try:
            return self._map_slot(read, directory)
        except InvalidResponse as exc:
            logger.warning("FHIR Slot/%s left out: %s", read.model.id, exc)
            return None

    def _try_appointment(self, read: _Read, directory: _Directory) -> Appointment | None:
        try:
            return self._map_appointment(read, directory)
        except InvalidResponse as exc:
            if read.model.status not in HIDDEN_APPOINTMENT_STATUSES:
                logger.warning("FHIR Appointment/%s left out: %s", read.model.id, exc)
            return None

    def _map_appointment(self, read: _Read, directory: _Directory) -> Appointment:
        model: FhirAppointment = read.model
        try:
            return self._appointment_from(model, directory)
        except ValidationError:
            raise InvalidResponse(f"Appointment/{model.id} has no valid start and end") from None

    def _appointment_from(self, model: FhirAppointment, directory: _Directory) -> Appointment:
        if model.status in HIDDEN_APPOINTMENT_STATUSES:
            raise InvalidResponse(f"Appointment/{model.id} is not a visit ({model.status})")
        patient_id = doctor_id = branch_id = service_id = None
        patient_status = None
        for participant in model.participant or []:
            actor = participant.actor
            if _ref_id(actor, "Patient") and patient_id is None:
                patient_id, patient_status = _ref_id(actor, "Patient"), participant.status
            doctor_id = doctor_id or _ref_id(actor, "Practitioner")
            role_id = _ref_id(actor, "PractitionerRole")
            if doctor_id is None and role_id is not None:
                doctor_id = directory.role_practitioner.get(role_id)
            branch_id = branch_id or _ref_id(actor, "Location")
            service_id = service_id or _ref_id(actor, "HealthcareService")
        if patient_id is None or doctor_id is None or model.start is None or model.end is None:
            raise InvalidResponse(f"Appointment/{model.id} has no patient, practitioner, start or end")
        if branch_id is None and doctor_id in directory.doctors:
            branch_id = directory.doctors[doctor_id].branch_id
        if branch_id is None:
            raise InvalidResponse(f"Appointment/{model.id} has no branch")
        status = {
            "booked": AppointmentStatus.CONFIRMED
            if patient_status == "accepted"
            else AppointmentStatus.BOOKED,
            "pending": AppointmentStatus.BOOKED,
            "arrived": AppointmentStatus.CONFIRMED,
            "checked-in": AppointmentStatus.CONFIRMED,
            "fulfilled": AppointmentStatus.FULFILLED,
            "cancelled": AppointmentStatus.CANCELLED,
            "noshow": AppointmentStatus.NOSHOW,
        }[model.status or ""]
        service = directory.services.get(service_id) if service_id else None
        return Appointment(
            id=model.id,
            patient_id=patient_id,
            doctor_id=doctor_id,
            branch_id=branch_id,
            start=model.start,
            end=model.end,
            status=status,
            service_id=service_id,
            price=service.price if service else None,
        )

    def _try_patient(self, read: _Read) -> Patient | None:
        try:
            return self._map_patient(read)
        except InvalidResponse as exc:
            logger.warning("FHIR Patient/%s left out: %s", read.model.id, exc)
            return None

    def _map_patient(self, read: _Read) -> Patient:
        model: FhirPatient = read.model
        names = model.name or []
        name = next((n for n in names if n.use == "official"), names[0] if names else None)
        first = " ".join(g for g in name.given or [] if g) if name is not None else ""
        if not first and name is not None and name.text:
            first = name.text
        phone = _first_phone(model.telecom, normalised=True)
        try:
            return Patient(
                id=model.id, first_name=first, last_name=name.family if name else None, phone=phone
            )
        except ValidationError:
            raise InvalidResponse(f"Patient/{model.id} has no usable name or phone") from None


# --- module helpers ---------------------------------------------------------------------------------------


def _now() -> datetime:
    return datetime.now(UTC)


def _to_json(resource: FHIRResourceModel) -> dict[str, Any]:
    _check_codes(resource)
    dumped: dict[str, Any] = resource.model_dump(mode="json")
    return dumped


def _without_meta(resource: M) -> M:
    """A copy to send back: the server keeps ``meta.versionId`` / ``lastUpdated`` itself."""
    return resource.model_copy(update={"meta": None})


def _check_codes(resource: Any) -> None:
    """Reject code values outside the required value sets that ``fhir.resources`` does not check."""
    if isinstance(resource, FhirSlot) and resource.status not in SLOT_STATUSES:
        raise InvalidResponse(f"Slot/{resource.id}: unknown status")
    if isinstance(resource, FhirAppointment):
        if resource.status not in APPOINTMENT_STATUSES:
            raise InvalidResponse(f"Appointment/{resource.id}: unknown status")
        for participant in resource.participant or []:
            if participant.status not in PARTICIPANT_STATUSES:
                raise InvalidResponse(f"Appointment/{resource.id}: unknown participant status")


def _ref_id(reference: Reference | None, resource_type: str) -> str | None:
    """The id of a relative reference ``Type/id`` (or an absolute one ending so) of the given type."""
    if reference is None or not reference.reference:
        return None
    parts = reference.reference.split("/")
    if "_history" in parts:
        parts = parts[: parts.index("_history")]
    if len(parts) >= 2 and parts[-2] == resource_type and _FHIR_ID.match(parts[-1]):
        return parts[-1]
    return None


def _ref_is(reference: Reference | None, resource_type: str, resource_id: str) -> bool:
    return _ref_id(reference, resource_type) == resource_id


def _slot_ids(appointment: FhirAppointment) -> list[str]:
    return [s for s in (_ref_id(r, "Slot") for r in appointment.slot or []) if s]


def _extension(extensions: Sequence[Extension] | None, url: str) -> Extension | None:
    return next((e for e in extensions or [] if e.url == url), None)


def _by_language(extension: Extension | None) -> LocalizedText | None:
    """A complex extension whose sub-extensions are named by language (``ru``, ``en``) → ``LocalizedText``."""
    if extension is None:
        return None
    texts = {
        (sub.url or "").lower(): text
        for sub in extension.extension or []
        if (text := sub.valueString or sub.valueMarkdown)
    }
    if not texts:
        return None
    return LocalizedText(ru=texts.get("ru") or next(iter(texts.values())), en=texts.get("en"))


def _translations(element: Any) -> dict[str, str]:
    result: dict[str, str] = {}
    for ext in (element.extension or []) if element is not None else []:
        if ext.url != TRANSLATION_EXT:
            continue
        lang = _extension(ext.extension, "lang")
        content = _extension(ext.extension, "content")
        if lang is not None and content is not None and lang.valueCode and content.valueString:
            result.setdefault(lang.valueCode.lower().split("-")[0], content.valueString)
    return result


def _first_phone(telecom: Sequence[ContactPoint] | None, *, normalised: bool = False) -> str | None:
    for point in telecom or []:
        if point.system == "phone" and point.value:
            if not normalised:
                return point.value
            try:
                return normalize_phone(point.value)
            except ValueError:
                continue
    return None


def _phone_forms(digits: str) -> list[str]:
    """The ways a phone is commonly written in an MIS, for an exact-match token search."""
    forms = ["+" + digits, digits]
    if digits.startswith("7") and len(digits) == 11:
        forms += ["8" + digits[1:], format_phone(digits), digits[1:]]
    return list(dict.fromkeys(forms))


def _next_link(bundle: Mapping[str, Any]) -> URL | None:
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and link.get("url"):
            return URL(str(link["url"]))
    return None
