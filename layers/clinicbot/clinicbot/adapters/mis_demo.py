"""The embedded demo clinic: an in-memory MIS seeded from ``clinicbot/data/demo_clinic.json``.

It is the default MIS adapter (local runs, tests, demos) and behaves like a real MIS: a 30-day schedule
is generated from each doctor's weekly template starting at ``today``; some slots are already taken by
"other patients" (chosen by a seeded hash of doctor and time, so every instance built for the same day
is identical); booking, cancelling, rescheduling and holds change the schedule under an asyncio lock.
Everything in the data file is fictional.

Verification codes are written to the log (logger ``clinicbot.mis.demo``, INFO) instead of being sent
by SMS, so a local run can show them; only patient ids are logged, never names or phones.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import itertools
import json
import logging
import secrets
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from importlib import resources
from typing import ClassVar, Literal
from zoneinfo import ZoneInfo

from pydantic import BaseModel, ConfigDict, Field, model_validator

from clinicbot.domain.phones import normalize_phone
from clinicbot.mis.errors import MisUnavailable, NotAllowed, NotFound, PatientExists, SlotTaken
from clinicbot.mis.models import (
    Appointment,
    AppointmentStatus,
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
from clinicbot.mis.port import Capability

__all__ = ["DemoClinic", "DemoData", "DemoDoctor", "load_demo_data"]

logger = logging.getLogger("clinicbot.mis.demo")

Clock = Callable[[], datetime]
Weekday = Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
WEEKDAYS: tuple[Weekday, ...] = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")

VERIFICATION_ATTEMPTS = 3
VERIFICATION_TTL = timedelta(minutes=5)


# --- the data file ----------------------------------------------------------------------------------


class DemoDoctor(Doctor):
    """A doctor plus the weekly template the schedule is generated from (branch-local times)."""

    slot_minutes: int = Field(gt=0, le=240)
    week: dict[Weekday, tuple[tuple[time, time], ...]]
    """Working intervals per weekday; a gap between intervals is the lunch break, a missing day is off."""

    @model_validator(mode="after")
    def _intervals_ordered(self) -> DemoDoctor:
        for intervals in self.week.values():
            previous_end: time | None = None
            for start, end in intervals:
                if end <= start or (previous_end is not None and start < previous_end):
                    raise ValueError(f"doctor {self.id}: working intervals must be ordered and disjoint")
                previous_end = end
        return self

    def as_doctor(self) -> Doctor:
        return Doctor.model_validate(self.model_dump(include=set(Doctor.model_fields)))

    def intervals_on(self, day: date) -> tuple[tuple[time, time], ...]:
        return self.week.get(WEEKDAYS[day.weekday()], ())


class DemoPatient(Patient):
    balance: Decimal = Decimal("0")

    def as_patient(self) -> Patient:
        return Patient.model_validate(self.model_dump(include=set(Patient.model_fields)))


class DemoVisit(BaseModel):
    """A seeded visit ``days`` from today at ``time`` (branch-local); moved to the nearest day the doctor
    works at that time (forward for future visits, backward for past ones)."""

    model_config = ConfigDict(frozen=True)

    id: str
    patient_id: str
    doctor_id: str
    service_id: str | None = None
    days: int
    time: time
    status: AppointmentStatus


class DemoPrescription(BaseModel):
    model_config = ConfigDict(frozen=True)

    id: str
    patient_id: str
    label: str
    times_of_day: tuple[time, ...]
    start_days: int
    end_days: int
    timezone: str = "Europe/Moscow"


class DemoData(BaseModel):
    model_config = ConfigDict(frozen=True)

    about: str = ""
    seed: str
    horizon_days: int = Field(default=30, gt=0)
    taken_share: float = Field(default=0.3, ge=0, lt=1)
    hold_minutes: int = Field(default=10, gt=0)
    branches: tuple[Branch, ...]
    specialties: tuple[Specialty, ...]
    services: tuple[Service, ...]
    doctors: tuple[DemoDoctor, ...]
    patients: tuple[DemoPatient, ...]
    visits: tuple[DemoVisit, ...] = ()
    prescriptions: tuple[DemoPrescription, ...] = ()

    @model_validator(mode="after")
    def _consistent(self) -> DemoData:
        branches = {b.id for b in self.branches}
        specialties = {s.id for s in self.specialties}
        doctors = {d.id for d in self.doctors}
        patients = {p.id for p in self.patients}
        services = {s.id for s in self.services}
        for doctor in self.doctors:
            if doctor.branch_id not in branches or not set(doctor.specialty_ids) <= specialties:
                raise ValueError(f"doctor {doctor.id}: unknown branch or specialty")
        for service in self.services:
            if service.specialty_id not in specialties:
                raise ValueError(f"service {service.id}: unknown specialty")
        for visit in self.visits:
            if visit.doctor_id not in doctors or visit.patient_id not in patients:
                raise ValueError(f"visit {visit.id}: unknown doctor or patient")
            if visit.service_id is not None and visit.service_id not in services:
                raise ValueError(f"visit {visit.id}: unknown service")
        for rx in self.prescriptions:
            if rx.patient_id not in patients:
                raise ValueError(f"prescription {rx.id}: unknown patient")
        if len({p.phone for p in self.patients}) != len(self.patients):
            raise ValueError("two demo patients share a phone")
        return self


@functools.cache
def load_demo_data() -> DemoData:
    """Parse the packaged ``clinicbot/data/demo_clinic.json`` (once per process; the result is frozen)."""
    text = resources.files("clinicbot.data").joinpath("demo_clinic.json").read_text(encoding="utf-8")
    return DemoData.model_validate(json.loads(text))


# --- mutable state ----------------------------------------------------------------------------------


@dataclass
class _Code:
    code: str
    expires_at: datetime
    attempts_left: int


def _slot_id(doctor_id: str, start: datetime) -> str:
    return f"{doctor_id}@{start.astimezone(UTC):%Y%m%dT%H%M}Z"


class DemoClinic:
    """The embedded demo MIS (implements ``clinicbot.mis.MisPort``).

    ``today`` is the first day of the generated schedule (default: the current date in UTC); seeded visits
    and prescriptions are placed relative to it. ``clock`` returns "now" as an aware datetime; by default
    it is the real time when ``today`` is not given, and otherwise a clock that starts at midnight UTC of
    ``today`` and ticks with real time (so a fixed ``today`` still has a future to book).
    """

    _shared: ClassVar[DemoClinic | None] = None

    def __init__(
        self, today: date | None = None, *, clock: Clock | None = None, data: DemoData | None = None
    ) -> None:
        self._clock = clock or _default_clock(today)
        self.today = today or datetime.now(UTC).date()
        self._data = data or load_demo_data()
        self.unavailable = False
        """Set to True to make every call raise ``MisUnavailable`` (to exercise the outage path)."""

        self._branches = {b.id: b for b in self._data.branches}
        self._specialties = {s.id: s for s in self._data.specialties}
        self._services = {s.id: s for s in self._data.services}
        self._doctors = {d.id: d for d in self._data.doctors}
        self._patients: dict[str, Patient] = {p.id: p.as_patient() for p in self._data.patients}
        self._by_phone = {p.phone: p.id for p in self._patients.values()}
        self._balances = {p.id: p.balance for p in self._data.patients}

        self._slots: dict[str, Slot] = {}
        self._taken: set[str] = set()  # by "other patients", from the seeded hash
        self._booked: dict[str, str] = {}  # slot id -> appointment id
        self._holds: dict[str, SlotHold] = {}  # slot id -> hold
        self._appointments: dict[str, Appointment] = {}
        self._appointment_slot: dict[str, str] = {}
        self._codes: dict[str, _Code] = {}
        self._ids = itertools.count(1001)
        self._lock: asyncio.Lock | None = None
        self._lock_loop: asyncio.AbstractEventLoop | None = None

        self._generate_schedule()
        self._seed_visits()
        self._prescriptions = [
            Prescription(
                id=rx.id,
                patient_id=rx.patient_id,
                label=rx.label,
                times_of_day=rx.times_of_day,
                start=self.today + timedelta(days=rx.start_days),
                end=self.today + timedelta(days=rx.end_days),
                timezone=rx.timezone,
            )
            for rx in self._data.prescriptions
        ]

    @classmethod
    def shared(cls, today: date | None = None) -> DemoClinic:
        """One instance per process (the local run and warm Lambda invocations share its state).

        ``today`` is only used by the first call.
        """
        if cls._shared is None:
            cls._shared = cls(today)
        return cls._shared

    # --- schedule generation ------------------------------------------------------------------------

    def _generate_schedule(self) -> None:
        cached = _SCHEDULES.get(self.today)
        if cached is None or cached[0] is not self._data:
            cached = (self._data, *_generate_schedule(self._data, self.today))
            if len(_SCHEDULES) >= _SCHEDULES_KEPT:
                _SCHEDULES.clear()
            _SCHEDULES[self.today] = cached
        _, slots, taken = cached
        self._slots = dict(slots)
        self._taken = set(taken)

    def _seed_visits(self) -> None:
        for visit in self._data.visits:
            doctor = self._doctors[visit.doctor_id]
            start = self._place_visit(doctor, visit)
            service = self._services.get(visit.service_id) if visit.service_id else None
            appointment = Appointment(
                id=visit.id,
                patient_id=visit.patient_id,
                doctor_id=doctor.id,
                branch_id=doctor.branch_id,
                start=start,
                end=start + timedelta(minutes=doctor.slot_minutes),
                status=visit.status,
                service_id=visit.service_id,
                price=service.price if service else None,
            )
            self._appointments[appointment.id] = appointment
            slot_id = _slot_id(doctor.id, start)
            if slot_id in self._slots and appointment.is_active:
                self._taken.discard(slot_id)
                self._booked[slot_id] = appointment.id
                self._appointment_slot[appointment.id] = slot_id

    def _place_visit(self, doctor: DemoDoctor, visit: DemoVisit) -> datetime:
        tz = self._branches[doctor.branch_id].tz
        step = timedelta(minutes=doctor.slot_minutes)
        direction = 1 if visit.days > 0 else -1
        for shift in range(14):
            day = self.today + timedelta(days=visit.days + direction * shift)
            for opens, closes in doctor.intervals_on(day):
                local = datetime.combine(day, opens, tz)
                wanted = datetime.combine(day, visit.time, tz)
                until = datetime.combine(day, closes, tz)
                if local <= wanted and wanted + step <= until and (wanted - local) % step == timedelta(0):
                    return wanted.astimezone(UTC)
        raise ValueError(f"demo visit {visit.id}: doctor {doctor.id} never works at {visit.time}")

    # --- helpers ------------------------------------------------------------------------------------

    def _now(self) -> datetime:
        now = self._clock()
        if now.tzinfo is None:
            raise ValueError("the demo clinic's clock must return aware datetimes")
        return now.astimezone(UTC)

    def _available(self) -> None:
        if self.unavailable:
            raise MisUnavailable("the demo MIS is switched to 'unavailable'")

    def _guard(self) -> asyncio.Lock:
        """The mutation lock, created per event loop (tests run several loops one after another)."""
        loop = asyncio.get_running_loop()
        if self._lock is None or self._lock_loop is not loop:
            self._lock, self._lock_loop = asyncio.Lock(), loop
        return self._lock

    def _next_id(self, prefix: str) -> str:
        return f"{prefix}-{next(self._ids)}"

    def _require_patient(self, patient_id: str) -> Patient:
        try:
            return self._patients[patient_id]
        except KeyError:
            raise NotFound(f"patient {patient_id}") from None

    def _require_slot(self, slot_id: str) -> Slot:
        try:
            return self._slots[slot_id]
        except KeyError:
            raise NotFound(f"slot {slot_id}") from None

    def _owned(self, patient_id: str, appointment_id: str) -> Appointment:
        self._require_patient(patient_id)
        appointment = self._appointments.get(appointment_id)
        if appointment is None:
            raise NotFound(f"appointment {appointment_id}")
        if appointment.patient_id != patient_id:
            raise NotAllowed(f"appointment {appointment_id} belongs to another patient")
        return appointment

    def _live_hold(self, slot_id: str, now: datetime) -> SlotHold | None:
        hold = self._holds.get(slot_id)
        if hold is not None and hold.expires_at <= now:
            del self._holds[slot_id]
            return None
        return hold

    def _is_free(self, slot_id: str, now: datetime) -> bool:
        return (
            slot_id not in self._taken and slot_id not in self._booked and not self._live_hold(slot_id, now)
        )

    def _check_bookable(self, patient_id: str, slot: Slot, hold_id: str | None, now: datetime) -> None:
        """Raise unless ``patient_id`` may book ``slot`` now (free, or held by this patient)."""
        if slot.start <= now:
            raise NotAllowed(f"slot {slot.id} is in the past")
        if slot.id in self._taken or slot.id in self._booked:
            raise SlotTaken(f"slot {slot.id}")
        hold = self._live_hold(slot.id, now)
        if hold is not None and hold.patient_id != patient_id:
            raise SlotTaken(f"slot {slot.id} is held")
        if hold_id is not None and (hold is None or hold.id != hold_id):
            raise NotFound(f"hold {hold_id} (expired or for another slot)")

    def _check_service(self, doctor: DemoDoctor, service_id: str | None) -> Service | None:
        if service_id is None:
            return None
        service = self._services.get(service_id)
        if service is None:
            raise NotFound(f"service {service_id}")
        if service.specialty_id not in doctor.specialty_ids:
            raise NotAllowed(f"doctor {doctor.id} does not offer service {service_id}")
        return service

    def _create_appointment(
        self, patient_id: str, slot: Slot, service: Service | None, status: AppointmentStatus
    ) -> Appointment:
        appointment = Appointment(
            id=self._next_id("a"),
            patient_id=patient_id,
            doctor_id=slot.doctor_id,
            branch_id=slot.branch_id,
            start=slot.start,
            end=slot.end,
            status=status,
            service_id=service.id if service else None,
            price=service.price if service else None,
        )
        self._appointments[appointment.id] = appointment
        self._booked[slot.id] = appointment.id
        self._appointment_slot[appointment.id] = slot.id
        self._holds.pop(slot.id, None)
        return appointment

    def _release(self, appointment: Appointment) -> Appointment:
        cancelled = appointment.model_copy(update={"status": AppointmentStatus.CANCELLED})
        self._appointments[appointment.id] = cancelled
        slot_id = self._appointment_slot.pop(appointment.id, None)
        if slot_id is not None and self._booked.get(slot_id) == appointment.id:
            del self._booked[slot_id]
        return cancelled

    @staticmethod
    async def _io() -> None:
        """Stand-in for the network round trip inside a transaction: lets other tasks run, which is what
        makes the lock matter."""
        await asyncio.sleep(0)

    # --- MisPort: capabilities and reference data ---------------------------------------------------

    @property
    def capabilities(self) -> frozenset[str]:
        return frozenset(
            {Capability.HOLD, Capability.VERIFICATION, Capability.BALANCE, Capability.PRESCRIPTIONS}
        )

    async def branches(self) -> list[Branch]:
        self._available()
        return list(self._branches.values())

    async def specialties(self) -> list[Specialty]:
        self._available()
        return list(self._specialties.values())

    async def doctors(self, *, specialty_id: str | None = None, branch_id: str | None = None) -> list[Doctor]:
        self._available()
        return [
            d.as_doctor()
            for d in self._doctors.values()
            if (specialty_id is None or specialty_id in d.specialty_ids)
            and (branch_id is None or d.branch_id == branch_id)
        ]

    async def services(self, *, specialty_id: str | None = None) -> list[Service]:
        self._available()
        return [s for s in self._services.values() if specialty_id is None or s.specialty_id == specialty_id]

    # --- MisPort: schedule --------------------------------------------------------------------------

    async def free_slots(
        self,
        *,
        start: datetime,
        end: datetime,
        doctor_id: str | None = None,
        specialty_id: str | None = None,
        branch_id: str | None = None,
    ) -> list[Slot]:
        self._available()
        if start.tzinfo is None or end.tzinfo is None:
            raise ValueError("free_slots needs aware datetimes")
        if doctor_id is not None and doctor_id not in self._doctors:
            raise NotFound(f"doctor {doctor_id}")
        if specialty_id is not None and specialty_id not in self._specialties:
            raise NotFound(f"specialty {specialty_id}")
        doctors = {
            d.id
            for d in self._doctors.values()
            if (doctor_id is None or d.id == doctor_id)
            and (specialty_id is None or specialty_id in d.specialty_ids)
            and (branch_id is None or d.branch_id == branch_id)
        }
        now = self._now()
        earliest = max(start.astimezone(UTC), now + timedelta(microseconds=1))
        slots = [
            s
            for s in self._slots.values()
            if s.doctor_id in doctors and earliest <= s.start < end and self._is_free(s.id, now)
        ]
        return sorted(slots, key=lambda s: (s.start, s.doctor_id))

    async def slot(self, slot_id: str) -> Slot:
        self._available()
        return self._require_slot(slot_id)

    async def hold(self, patient_id: str, slot_id: str) -> SlotHold:
        self._available()
        async with self._guard():
            self._require_patient(patient_id)
            slot = self._require_slot(slot_id)
            now = self._now()
            self._check_bookable(patient_id, slot, None, now)
            await self._io()
            for held_slot, held in list(self._holds.items()):  # one hold per patient
                if held.patient_id == patient_id:
                    del self._holds[held_slot]
            hold = SlotHold(
                id=self._next_id("h"),
                slot_id=slot.id,
                patient_id=patient_id,
                expires_at=now + timedelta(minutes=self._data.hold_minutes),
            )
            self._holds[slot.id] = hold
            return hold

    async def release_hold(self, patient_id: str, hold_id: str) -> None:
        self._available()
        async with self._guard():
            self._require_patient(patient_id)
            for slot_id, held in list(self._holds.items()):
                if held.id == hold_id:
                    if held.patient_id != patient_id:
                        raise NotAllowed(f"hold {hold_id} belongs to another patient")
                    del self._holds[slot_id]

    # --- MisPort: appointments ----------------------------------------------------------------------

    async def book(
        self, patient_id: str, slot_id: str, *, service_id: str | None = None, hold_id: str | None = None
    ) -> Appointment:
        self._available()
        async with self._guard():
            self._require_patient(patient_id)
            slot = self._require_slot(slot_id)
            service = self._check_service(self._doctors[slot.doctor_id], service_id)
            self._check_bookable(patient_id, slot, hold_id, self._now())
            await self._io()
            return self._create_appointment(patient_id, slot, service, AppointmentStatus.BOOKED)

    async def appointment(self, patient_id: str, appointment_id: str) -> Appointment:
        self._available()
        return self._owned(patient_id, appointment_id)

    async def cancel(self, patient_id: str, appointment_id: str) -> Appointment:
        self._available()
        async with self._guard():
            appointment = self._owned(patient_id, appointment_id)
            if appointment.status is AppointmentStatus.CANCELLED:
                return appointment
            if not appointment.is_active or appointment.start <= self._now():
                raise NotAllowed(f"appointment {appointment_id} cannot be cancelled any more")
            await self._io()
            return self._release(appointment)

    async def reschedule(
        self, patient_id: str, appointment_id: str, new_slot_id: str, *, hold_id: str | None = None
    ) -> Appointment:
        self._available()
        async with self._guard():
            old = self._owned(patient_id, appointment_id)
            now = self._now()
            if not old.is_active or old.start <= now:
                raise NotAllowed(f"appointment {appointment_id} cannot be moved any more")
            if self._appointment_slot.get(old.id) == new_slot_id:
                return old
            slot = self._require_slot(new_slot_id)
            doctor = self._doctors[slot.doctor_id]
            service = self._services.get(old.service_id) if old.service_id else None
            if service is not None and service.specialty_id not in doctor.specialty_ids:
                service = None
            self._check_bookable(patient_id, slot, hold_id, now)
            await self._io()
            new = self._create_appointment(patient_id, slot, service, AppointmentStatus.BOOKED)
            self._release(old)
            return new

    async def confirm(self, patient_id: str, appointment_id: str) -> Appointment:
        self._available()
        async with self._guard():
            appointment = self._owned(patient_id, appointment_id)
            if appointment.status is AppointmentStatus.CONFIRMED:
                return appointment
            if appointment.status is not AppointmentStatus.BOOKED or appointment.start <= self._now():
                raise NotAllowed(f"appointment {appointment_id} cannot be confirmed")
            await self._io()
            confirmed = appointment.model_copy(update={"status": AppointmentStatus.CONFIRMED})
            self._appointments[appointment.id] = confirmed
            return confirmed

    async def visits(self, patient_id: str) -> PatientVisits:
        self._available()
        self._require_patient(patient_id)
        now = self._now()
        mine = [a for a in self._appointments.values() if a.patient_id == patient_id]
        upcoming = sorted((a for a in mine if a.start >= now and a.is_active), key=lambda a: a.start)
        past = sorted((a for a in mine if a.start < now), key=lambda a: a.start, reverse=True)
        return PatientVisits(upcoming=tuple(upcoming), past=tuple(past))

    # --- MisPort: patients --------------------------------------------------------------------------

    async def patient(self, patient_id: str) -> Patient:
        self._available()
        return self._require_patient(patient_id)

    async def find_patient_by_phone(self, phone: str) -> Patient | None:
        self._available()
        try:
            digits = normalize_phone(phone)
        except ValueError:
            return None
        patient_id = self._by_phone.get(digits)
        return self._patients[patient_id] if patient_id else None

    async def register_patient(self, registration: PatientRegistration) -> Patient:
        self._available()
        async with self._guard():
            if registration.phone in self._by_phone:
                raise PatientExists("a patient with this phone is already registered")
            await self._io()
            patient = Patient(
                id=self._next_id("p"),
                first_name=registration.first_name,
                last_name=registration.last_name,
                phone=registration.phone,
            )
            self._patients[patient.id] = patient
            self._by_phone[patient.phone] = patient.id
            self._balances[patient.id] = Decimal("0")
            return patient

    async def balance(self, patient_id: str) -> Balance:
        self._available()
        self._require_patient(patient_id)
        return Balance(amount=self._balances.get(patient_id, Decimal("0")))

    async def request_verification(self, patient_id: str) -> None:
        self._available()
        async with self._guard():
            self._require_patient(patient_id)
            code = f"{secrets.randbelow(10_000):04d}"
            self._codes[patient_id] = _Code(code, self._now() + VERIFICATION_TTL, VERIFICATION_ATTEMPTS)
            logger.info("demo MIS verification code for patient %s: %s", patient_id, code)

    async def check_verification(self, patient_id: str, code: str) -> bool:
        self._available()
        async with self._guard():
            self._require_patient(patient_id)
            pending = self._codes.get(patient_id)
            if pending is None:
                return False
            if pending.expires_at <= self._now():
                del self._codes[patient_id]
                return False
            if secrets.compare_digest(pending.code.encode(), code.strip().encode()):
                del self._codes[patient_id]
                return True
            pending.attempts_left -= 1
            if pending.attempts_left <= 0:
                del self._codes[patient_id]
            return False

    async def prescriptions(self, patient_id: str) -> list[Prescription]:
        self._available()
        self._require_patient(patient_id)
        today = self._now().date()
        return [rx for rx in self._prescriptions if rx.patient_id == patient_id and rx.end >= today]

    # --- demo-only helpers (not part of the port) ---------------------------------------------------

    def all_slots(self, doctor_id: str | None = None) -> list[Slot]:
        """Every generated slot, free or not, ordered by start time."""
        slots = [s for s in self._slots.values() if doctor_id is None or s.doctor_id == doctor_id]
        return sorted(slots, key=lambda s: (s.start, s.doctor_id))

    def template(self, doctor_id: str) -> DemoDoctor:
        """The doctor's weekly template from the data file."""
        return self._doctors[doctor_id]


# The generated schedule depends only on the data and the day: instances built for the same day share it
# (slots are frozen; each instance copies the containers it mutates). One entry per day, latest data wins.
_SCHEDULES_KEPT = 8
_SCHEDULES: dict[date, tuple[DemoData, dict[str, Slot], frozenset[str]]] = {}


def _generate_schedule(data: DemoData, today: date) -> tuple[dict[str, Slot], frozenset[str]]:
    """Every slot of the ``horizon_days`` from ``today``, and those already taken by "other patients"."""
    slots: dict[str, Slot] = {}
    taken: set[str] = set()
    threshold = int(data.taken_share * 2**32)
    branches = {b.id: b for b in data.branches}
    for doctor in data.doctors:
        branch = branches[doctor.branch_id]
        for start, end in _template_slots(doctor, branch.tz, today, data.horizon_days):
            slot = Slot.model_construct(
                id=_slot_id(doctor.id, start),
                doctor_id=doctor.id,
                branch_id=branch.id,
                start=start,
                end=end,
                service_id=None,
            )
            slots[slot.id] = slot
            digest = hashlib.sha256(f"{data.seed}|{doctor.id}|{start.isoformat()}".encode()).digest()
            if int.from_bytes(digest[:4], "big") < threshold:
                taken.add(slot.id)
    return slots, frozenset(taken)


def _template_slots(
    doctor: DemoDoctor, tz: ZoneInfo, today: date, days: int
) -> Iterable[tuple[datetime, datetime]]:
    step = timedelta(minutes=doctor.slot_minutes)
    for offset in range(days):
        day = today + timedelta(days=offset)
        for opens, closes in doctor.intervals_on(day):
            local = datetime.combine(day, opens, tz)
            until = datetime.combine(day, closes, tz)
            while local + step <= until:
                yield local.astimezone(UTC), (local + step).astimezone(UTC)
                local += step


def _default_clock(today: date | None) -> Clock:
    if today is None:
        return lambda: datetime.now(UTC)
    anchor = datetime.combine(today, time(0), UTC)
    started = datetime.now(UTC)
    return lambda: anchor + (datetime.now(UTC) - started)
