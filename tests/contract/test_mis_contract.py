"""What every MIS adapter must do; runs once per adapter (see ``conftest.py``).

The tests only use the port: they register their own patients (with fresh phone numbers) and book slots
they found free, so they hold for any clinic data and any server that keeps state between tests.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest

from clinicbot.mis import (
    Appointment,
    Capability,
    MisPort,
    NotAllowed,
    NotFound,
    Patient,
    PatientExists,
    PatientRegistration,
    Slot,
    SlotTaken,
    Unsupported,
)

T = TypeVar("T")
WINDOW = timedelta(days=14)


def run(coro: Coroutine[Any, Any, T]) -> T:
    """Drive one test body; each test uses one event loop from start to end."""
    return asyncio.run(coro)


def fresh_phone() -> str:
    return f"7999{uuid.uuid4().int % 10**7:07d}"


async def new_patient(mis: MisPort, phone: str | None = None) -> Patient:
    return await mis.register_patient(PatientRegistration(first_name="Тест", phone=phone or fresh_phone()))


async def free(mis: MisPort, **filters: str) -> list[Slot]:
    now = datetime.now(UTC)
    return await mis.free_slots(start=now, end=now + WINDOW, **filters)


async def free_ids(mis: MisPort, **filters: str) -> set[str]:
    return {s.id for s in await free(mis, **filters)}


async def two_slots(mis: MisPort) -> tuple[Slot, Slot]:
    slots = await free(mis)
    assert len(slots) >= 2, "the adapter needs free slots in the next two weeks for the contract tests"
    return slots[0], slots[len(slots) // 2]


def is_utc(instant: datetime) -> bool:
    return instant.tzinfo is not None and instant.utcoffset() == timedelta(0)


# --- reference data ---------------------------------------------------------------------------------


def test_reference_data_is_present_and_consistent(mis: MisPort) -> None:
    async def body() -> None:
        branches = await mis.branches()
        specialties = await mis.specialties()
        doctors = await mis.doctors()
        services = await mis.services()
        assert branches and specialties and doctors and services

        branch_ids = {b.id for b in branches}
        specialty_ids = {s.id for s in specialties}
        assert len(branch_ids) == len(branches) and len(specialty_ids) == len(specialties)
        assert len({d.id for d in doctors}) == len(doctors)
        for branch in branches:
            ZoneInfo(branch.timezone)
            assert branch.name.get("ru") and branch.address.get("en")
        for doctor in doctors:
            assert doctor.branch_id in branch_ids
            assert doctor.specialty_ids and set(doctor.specialty_ids) <= specialty_ids
            assert doctor.full_name.get("ru")
        for service in services:
            assert service.specialty_id in specialty_ids
            assert service.price >= 0 and service.duration_minutes > 0

        specialty = doctors[0].specialty_ids[0]
        by_specialty = await mis.doctors(specialty_id=specialty)
        assert doctors[0].id in {d.id for d in by_specialty}
        assert all(specialty in d.specialty_ids for d in by_specialty)
        by_branch = await mis.doctors(branch_id=doctors[0].branch_id)
        assert by_branch and all(d.branch_id == doctors[0].branch_id for d in by_branch)
        some_service = services[0]
        assert all(
            s.specialty_id == some_service.specialty_id
            for s in await mis.services(specialty_id=some_service.specialty_id)
        )

    run(body())


# --- free slots -------------------------------------------------------------------------------------


def test_free_slots_by_doctor_are_that_doctors_in_range_and_in_the_future(mis: MisPort) -> None:
    async def body() -> None:
        now = datetime.now(UTC)
        doctors = await mis.doctors()
        checked = 0
        for doctor in doctors:
            slots = await mis.free_slots(start=now, end=now + WINDOW, doctor_id=doctor.id)
            checked += bool(slots)
            assert len({s.id for s in slots}) == len(slots)
            assert [s.start for s in slots] == sorted(s.start for s in slots)
            for slot in slots:
                assert slot.doctor_id == doctor.id and slot.branch_id == doctor.branch_id
                assert is_utc(slot.start) and is_utc(slot.end)
                assert now < slot.start < now + WINDOW and slot.end > slot.start
        assert checked, "no doctor has free slots in the next two weeks"

    run(body())


def test_free_slots_by_specialty_are_the_union_of_its_doctors(mis: MisPort) -> None:
    async def body() -> None:
        now = datetime.now(UTC)
        for specialty in await mis.specialties():
            doctors = await mis.doctors(specialty_id=specialty.id)
            by_specialty = await mis.free_slots(start=now, end=now + WINDOW, specialty_id=specialty.id)
            union: set[str] = set()
            for doctor in doctors:
                union |= {
                    s.id for s in await mis.free_slots(start=now, end=now + WINDOW, doctor_id=doctor.id)
                }
            assert {s.id for s in by_specialty} == union
            assert all(now < s.start < now + WINDOW for s in by_specialty)

    run(body())


def test_free_slots_respect_a_narrow_range(mis: MisPort) -> None:
    async def body() -> None:
        start = datetime.now(UTC) + timedelta(days=2)
        end = start + timedelta(days=1)
        slots = await mis.free_slots(start=start, end=end)
        assert all(start <= s.start < end for s in slots)
        past = await mis.free_slots(start=start - timedelta(days=30), end=start - timedelta(days=20))
        assert past == []

    run(body())


def test_slot_lookup(mis: MisPort) -> None:
    async def body() -> None:
        slot = (await free(mis))[0]
        assert await mis.slot(slot.id) == slot
        with pytest.raises(NotFound):
            await mis.slot("no-such-slot")

    run(body())


# --- booking ----------------------------------------------------------------------------------------


def test_book_takes_the_slot_and_a_second_booking_fails(mis: MisPort) -> None:
    async def body() -> None:
        alice, bob = await new_patient(mis), await new_patient(mis)
        slot, _ = await two_slots(mis)
        appointment = await mis.book(alice.id, slot.id)
        assert appointment.patient_id == alice.id
        assert (appointment.doctor_id, appointment.branch_id) == (slot.doctor_id, slot.branch_id)
        assert (appointment.start, appointment.end) == (slot.start, slot.end)
        assert appointment.is_active and is_utc(appointment.start)
        assert slot.id not in await free_ids(mis)
        assert slot.id not in await free_ids(mis, doctor_id=slot.doctor_id)
        with pytest.raises(SlotTaken):
            await mis.book(bob.id, slot.id)
        with pytest.raises(SlotTaken):
            await mis.book(alice.id, slot.id)
        assert await mis.appointment(alice.id, appointment.id) == appointment

    run(body())


def test_book_with_a_service(mis: MisPort) -> None:
    async def body() -> None:
        patient = await new_patient(mis)
        slot = (await free(mis))[0]
        doctor = next(d for d in await mis.doctors() if d.id == slot.doctor_id)
        services = await mis.services(specialty_id=doctor.specialty_ids[0])
        if not services:
            pytest.skip("the doctor's specialty has no services")
        appointment = await mis.book(patient.id, slot.id, service_id=services[0].id)
        assert appointment.service_id == services[0].id
        assert appointment.price in (None, services[0].price)

    run(body())


def test_cancel_frees_the_slot(mis: MisPort) -> None:
    async def body() -> None:
        patient = await new_patient(mis)
        slot, _ = await two_slots(mis)
        appointment = await mis.book(patient.id, slot.id)
        cancelled = await mis.cancel(patient.id, appointment.id)
        assert cancelled.id == appointment.id and cancelled.status == "cancelled" and not cancelled.is_active
        assert slot.id in await free_ids(mis)
        assert appointment.id not in {a.id for a in (await mis.visits(patient.id)).upcoming}
        again = await mis.cancel(patient.id, appointment.id)
        assert again.status == "cancelled"
        assert slot.id in await free_ids(mis)

    run(body())


def test_confirm(mis: MisPort) -> None:
    async def body() -> None:
        patient = await new_patient(mis)
        appointment = await mis.book(patient.id, (await free(mis))[0].id)
        confirmed = await mis.confirm(patient.id, appointment.id)
        assert confirmed.id == appointment.id and confirmed.status == "confirmed" and confirmed.is_active
        assert (await mis.confirm(patient.id, appointment.id)).status == "confirmed"
        assert (await mis.appointment(patient.id, appointment.id)).status == "confirmed"

    run(body())


def test_reschedule_moves_the_visit(mis: MisPort) -> None:
    async def body() -> None:
        patient = await new_patient(mis)
        old_slot, new_slot = await two_slots(mis)
        old = await mis.book(patient.id, old_slot.id)
        new = await mis.reschedule(patient.id, old.id, new_slot.id)
        assert (new.start, new.doctor_id, new.patient_id) == (new_slot.start, new_slot.doctor_id, patient.id)
        assert new.is_active
        free_now = await free_ids(mis)
        assert old_slot.id in free_now and new_slot.id not in free_now
        upcoming = (await mis.visits(patient.id)).upcoming
        assert [a.start for a in upcoming] == [new_slot.start]

    run(body())


def test_reschedule_onto_a_taken_slot_keeps_the_old_visit(mis: MisPort) -> None:
    async def body() -> None:
        alice, bob = await new_patient(mis), await new_patient(mis)
        alice_slot, bob_slot = await two_slots(mis)
        alices = await mis.book(alice.id, alice_slot.id)
        await mis.book(bob.id, bob_slot.id)
        with pytest.raises(SlotTaken):
            await mis.reschedule(alice.id, alices.id, bob_slot.id)
        upcoming = (await mis.visits(alice.id)).upcoming
        assert [(a.id, a.start, a.is_active) for a in upcoming] == [(alices.id, alice_slot.start, True)]
        assert alice_slot.id not in await free_ids(mis)

    run(body())


def test_someone_elses_appointment_is_refused(mis: MisPort) -> None:
    async def body() -> None:
        alice, mallory = await new_patient(mis), await new_patient(mis)
        slot, other = await two_slots(mis)
        appointment = await mis.book(alice.id, slot.id)
        refused = (NotAllowed, NotFound)
        with pytest.raises(refused):
            await mis.appointment(mallory.id, appointment.id)
        with pytest.raises(refused):
            await mis.cancel(mallory.id, appointment.id)
        with pytest.raises(refused):
            await mis.confirm(mallory.id, appointment.id)
        with pytest.raises(refused):
            await mis.reschedule(mallory.id, appointment.id, other.id)
        still = await mis.appointment(alice.id, appointment.id)
        assert (still.status, still.start) == (appointment.status, slot.start)
        assert other.id in await free_ids(mis)
        assert (await mis.visits(mallory.id)).upcoming == ()

    run(body())


def test_unknown_ids_raise_not_found(mis: MisPort) -> None:
    async def body() -> None:
        patient = await new_patient(mis)
        with pytest.raises(NotFound):
            await mis.book(patient.id, "no-such-slot")
        with pytest.raises(NotFound):
            await mis.cancel(patient.id, "no-such-appointment")
        with pytest.raises(NotFound):
            await mis.visits("no-such-patient")
        with pytest.raises(NotFound):
            await mis.patient("no-such-patient")

    run(body())


def test_visits_split_into_upcoming_and_past(mis: MisPort) -> None:
    async def body() -> None:
        patient = await new_patient(mis)
        first, second = await two_slots(mis)
        later = await mis.book(patient.id, second.id)
        sooner = await mis.book(patient.id, first.id)
        cancelled_slot = next(s for s in await free(mis) if s.id not in {first.id, second.id})
        cancelled = await mis.book(patient.id, cancelled_slot.id)
        await mis.cancel(patient.id, cancelled.id)

        now = datetime.now(UTC)
        visits = await mis.visits(patient.id)
        assert [a.id for a in visits.upcoming] == [sooner.id, later.id]
        assert all(a.start >= now and a.is_active for a in visits.upcoming)
        assert all(a.start < now for a in visits.past)
        assert [a.start for a in visits.past] == sorted((a.start for a in visits.past), reverse=True)

    run(body())


# --- patients ---------------------------------------------------------------------------------------


def test_find_patient_by_phone_in_two_formats(mis: MisPort) -> None:
    async def body() -> None:
        digits = fresh_phone()
        spaced = f"+7 ({digits[1:4]}) {digits[4:7]}-{digits[7:9]}-{digits[9:]}"
        national = f"8 {digits[1:4]} {digits[4:7]} {digits[7:9]} {digits[9:]}"
        registered = await new_patient(mis, phone=spaced)
        assert registered.phone == digits
        for fmt in (national, digits, spaced):
            found = await mis.find_patient_by_phone(fmt)
            assert found is not None and found.id == registered.id and found.phone == digits
        assert await mis.find_patient_by_phone(fresh_phone()) is None
        assert await mis.find_patient_by_phone("not a phone") is None

    run(body())


def test_register_then_find(mis: MisPort) -> None:
    async def body() -> None:
        phone = fresh_phone()
        registration = PatientRegistration(first_name="Ольга", last_name="Тестова", phone=phone)
        patient = await mis.register_patient(registration)
        assert (patient.first_name, patient.last_name, patient.phone) == ("Ольга", "Тестова", phone)
        assert await mis.find_patient_by_phone(phone) == patient
        assert await mis.patient(patient.id) == patient
        with pytest.raises(PatientExists):
            await mis.register_patient(registration)
        assert (await mis.visits(patient.id)).upcoming == ()

    run(body())


# --- concurrency ------------------------------------------------------------------------------------


def test_concurrent_bookings_of_one_slot_exactly_one_wins(mis: MisPort) -> None:
    async def body() -> None:
        patients = [await new_patient(mis) for _ in range(20)]
        slot = (await free(mis))[0]
        results = await asyncio.gather(*(mis.book(p.id, slot.id) for p in patients), return_exceptions=True)
        won = [r for r in results if isinstance(r, Appointment)]
        lost = [r for r in results if isinstance(r, SlotTaken)]
        assert len(won) == 1 and len(lost) == 19, results
        assert slot.id not in await free_ids(mis)

    run(body())


# --- optional capabilities --------------------------------------------------------------------------


def test_capabilities_are_known_names(mis: MisPort) -> None:
    assert isinstance(mis.capabilities, frozenset)
    assert mis.capabilities <= {c.value for c in Capability}


def test_hold(mis: MisPort) -> None:
    if Capability.HOLD not in mis.capabilities:
        pytest.skip("no hold capability")

    async def body() -> None:
        holder, other = await new_patient(mis), await new_patient(mis)
        slot, spare = await two_slots(mis)
        hold = await mis.hold(holder.id, slot.id)
        assert hold.slot_id == slot.id and hold.expires_at > datetime.now(UTC)
        assert slot.id not in await free_ids(mis)
        with pytest.raises(SlotTaken):
            await mis.book(other.id, slot.id)
        with pytest.raises(SlotTaken):
            await mis.hold(other.id, slot.id)
        appointment = await mis.book(holder.id, slot.id, hold_id=hold.id)
        assert appointment.start == slot.start

        second = await mis.hold(holder.id, spare.id)
        await mis.release_hold(holder.id, second.id)
        assert spare.id in await free_ids(mis)

    run(body())


def test_balance(mis: MisPort) -> None:
    if Capability.BALANCE not in mis.capabilities:
        pytest.skip("no balance capability")

    async def body() -> None:
        balance = await mis.balance((await new_patient(mis)).id)
        assert balance.currency == "RUB"

    run(body())


def test_prescriptions(mis: MisPort) -> None:
    if Capability.PRESCRIPTIONS not in mis.capabilities:
        pytest.skip("no prescriptions capability")

    async def body() -> None:
        assert await mis.prescriptions((await new_patient(mis)).id) == []

    run(body())


def test_verification_rejects_a_wrong_code(mis: MisPort) -> None:
    if Capability.VERIFICATION not in mis.capabilities:
        pytest.skip("no verification capability")

    async def body() -> None:
        patient = await new_patient(mis)
        assert await mis.check_verification(patient.id, "1234") is False  # nothing requested yet
        await mis.request_verification(patient.id)
        assert await mis.check_verification(patient.id, "not-a-code") is False

    run(body())


def test_missing_capabilities_raise_unsupported(mis: MisPort) -> None:
    async def body() -> None:
        patient = await new_patient(mis)
        slot = (await free(mis))[0]
        calls = {
            Capability.HOLD: lambda: mis.hold(patient.id, slot.id),
            Capability.BALANCE: lambda: mis.balance(patient.id),
            Capability.PRESCRIPTIONS: lambda: mis.prescriptions(patient.id),
            Capability.VERIFICATION: lambda: mis.request_verification(patient.id),
        }
        for capability, call in calls.items():
            if capability not in mis.capabilities:
                with pytest.raises(Unsupported):
                    await call()

    run(body())
