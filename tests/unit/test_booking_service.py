"""The booking service against the demo clinic with in-memory claims and outbox (no AWS, no Telegram)."""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Coroutine
from datetime import timedelta
from typing import Any, TypeVar

import pytest

from clinicbot.booking import (
    BookingService,
    InMemorySlotClaims,
    MisScheduleReader,
    Outcome,
    SlotFilter,
    request_number,
)
from clinicbot.booking.schedule import HORIZON
from clinicbot.handoff.outbox import FORBIDDEN_PAYLOAD_KEYS, InMemoryOutbox
from clinicbot.mis import MisPort, PatientRegistration, Slot
from tests.harness import demo_mis, mis_clock

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


class Env:
    def __init__(self, mis: MisPort) -> None:
        self.mis = mis
        self.clock = mis_clock(mis)
        self.claims = InMemorySlotClaims()
        self.outbox = InMemoryOutbox()
        self.schedule = MisScheduleReader(mis)
        self.service = BookingService(mis, self.claims, self.outbox, self.schedule, clock=self.clock)

    async def patient(self) -> str:
        phone = f"7999{uuid.uuid4().int % 10**7:07d}"
        return (await self.mis.register_patient(PatientRegistration(first_name="Тест", phone=phone))).id

    async def free(self, **flt: str) -> list[Slot]:
        now = self.clock()
        return await self.schedule.free_slots(SlotFilter(**flt), start=now, end=now + HORIZON)


@pytest.fixture
def env() -> Env:
    return Env(demo_mis())


def test_a_booking_is_made_in_the_mis_and_copied_to_the_crm(env: Env) -> None:
    async def body() -> None:
        patient = await env.patient()
        slot = (await env.free())[0]
        result = await env.service.book(patient, slot.id, request_id="1")
        assert result.outcome is Outcome.DONE and result.appointment is not None
        assert [a.id for a in (await env.mis.visits(patient)).upcoming] == [result.appointment.id]
        [message] = env.outbox.messages
        assert message.kind == "booking"
        assert message.idempotency_key == f"booking:{result.appointment.id}:booked"
        assert message.payload["patient_id"] == patient and message.payload["doctor_id"] == slot.doctor_id
        assert not FORBIDDEN_PAYLOAD_KEYS & set(message.payload)
        assert "Тест" not in json.dumps(message.payload, ensure_ascii=False)

    run(body())


def test_the_same_patient_booking_again_books_once(env: Env) -> None:
    async def body() -> None:
        patient = await env.patient()
        slot = (await env.free())[0]
        first = await env.service.book(patient, slot.id, request_id="1")
        again = await env.service.book(patient, slot.id, request_id="2")  # another press, another update
        assert first.outcome is Outcome.DONE and again.outcome is Outcome.ALREADY
        assert again.appointment == first.appointment
        assert len((await env.mis.visits(patient)).upcoming) == 1
        assert len(env.outbox.messages) == 1  # the same idempotency key

    run(body())


def test_a_live_claim_of_another_patient_is_refused_without_asking_the_mis(env: Env) -> None:
    async def body() -> None:
        a, b = await env.patient(), await env.patient()
        slot = (await env.free(doctor_id="d-01"))[0]
        assert await env.claims.claim(slot.id, patient_id=a, request_id="9", ttl=timedelta(minutes=2))
        books: list[str] = []
        real = env.mis.book

        async def counting(*args: Any, **kwargs: Any) -> Any:
            books.append(args[1])
            return await real(*args, **kwargs)

        env.mis.book = counting  # type: ignore[method-assign]
        result = await env.service.book(b, slot.id, request_id="10")
        assert result.outcome is Outcome.TAKEN and books == []
        assert result.alternatives and slot.id not in {s.id for s in result.alternatives}
        assert {s.doctor_id for s in result.alternatives} >= {"d-01"}  # the same doctor first
        assert all(s.start > env.clock() for s in result.alternatives)
        assert env.outbox.messages == []

    run(body())


def test_the_mis_is_the_final_judge_and_a_refused_claim_is_released(env: Env) -> None:
    async def body() -> None:
        a, b = await env.patient(), await env.patient()
        slot = (await env.free())[0]
        await env.mis.book(a, slot.id)  # booked at the front desk: no claim in our store
        result = await env.service.book(b, slot.id, request_id="1")
        assert result.outcome is Outcome.TAKEN
        assert slot.id not in env.claims.claims  # released after the MIS said no
        assert (await env.mis.visits(b)).upcoming == ()

    run(body())


def test_an_expired_claim_does_not_lock_the_slot(env: Env) -> None:
    async def body() -> None:
        a, b = await env.patient(), await env.patient()
        slot = (await env.free())[0]
        await env.claims.claim(slot.id, patient_id=a, request_id="1", ttl=timedelta(seconds=-1))
        result = await env.service.book(b, slot.id, request_id="2")
        assert result.outcome is Outcome.DONE

    run(body())


def test_unknown_and_past_slots_are_gone(env: Env) -> None:
    async def body() -> None:
        patient = await env.patient()
        assert (await env.service.book(patient, "no-such-slot", request_id="1")).outcome is Outcome.GONE
        past = [s for s in env.mis.all_slots("d-01") if s.start < env.clock()]  # type: ignore[attr-defined]
        if past:
            assert (await env.service.book(patient, past[-1].id, request_id="2")).outcome is Outcome.GONE
        assert env.claims.claims == {}

    run(body())


def test_reschedule_books_the_new_time_before_releasing_the_old(env: Env) -> None:
    async def body() -> None:
        patient = await env.patient()
        first, second = (await env.free(doctor_id="d-02"))[:2]
        booked = await env.service.book(patient, first.id, request_id="1")
        assert booked.appointment is not None
        moved = await env.service.reschedule(patient, booked.appointment.id, second.id, request_id="2")
        assert moved.outcome is Outcome.DONE and moved.appointment is not None
        assert moved.previous is not None and moved.previous.id == booked.appointment.id
        upcoming = (await env.mis.visits(patient)).upcoming
        assert [(a.doctor_id, a.start) for a in upcoming] == [(second.doctor_id, second.start)]
        assert first.id in {s.id for s in await env.free(doctor_id="d-02")}  # the old time is free again
        message = env.outbox.get(f"booking:{moved.appointment.id}:rescheduled")
        assert message is not None and message.payload["previous_appointment_id"] == booked.appointment.id
        # a retry of the same request (the MIS moved it, then we crashed): nothing moves twice
        again = await env.service.reschedule(patient, booked.appointment.id, second.id, request_id="2")
        assert again.outcome is Outcome.ALREADY
        assert len((await env.mis.visits(patient)).upcoming) == 1

    run(body())


def test_reschedule_onto_a_taken_slot_keeps_the_old_visit(env: Env) -> None:
    async def body() -> None:
        patient, other = await env.patient(), await env.patient()
        first, second = (await env.free(doctor_id="d-02"))[:2]
        booked = await env.service.book(patient, first.id, request_id="1")
        assert booked.appointment is not None
        await env.mis.book(other, second.id)
        result = await env.service.reschedule(patient, booked.appointment.id, second.id, request_id="2")
        assert result.outcome is Outcome.TAKEN and result.alternatives
        assert [a.id for a in (await env.mis.visits(patient)).upcoming] == [booked.appointment.id]

    run(body())


def test_cancel_is_idempotent_and_refuses_someone_elses_visit(env: Env) -> None:
    async def body() -> None:
        patient, other = await env.patient(), await env.patient()
        slot = (await env.free())[0]
        booked = await env.service.book(patient, slot.id, request_id="1")
        assert booked.appointment is not None
        assert (await env.service.cancel(other, booked.appointment.id)).outcome is Outcome.NOT_ALLOWED
        assert (await env.service.cancel(patient, booked.appointment.id)).outcome is Outcome.DONE
        assert (await env.service.cancel(patient, booked.appointment.id)).outcome is Outcome.ALREADY
        assert (await env.mis.visits(patient)).upcoming == ()
        assert len(env.outbox.of_kind("booking")) == 2  # booked + cancelled, each once
        assert (await env.service.cancel(patient, "no-such-visit")).outcome is Outcome.NOT_ALLOWED

    run(body())


def test_a_call_back_request_has_a_stable_number(env: Env) -> None:
    async def body() -> None:
        patient = await env.patient()
        slot = (await env.free())[0]
        booked = await env.service.book(patient, slot.id, request_id="1")
        assert booked.appointment is not None
        first = await env.service.request_callback(patient, booked.appointment)
        second = await env.service.request_callback(patient, booked.appointment)
        assert first == second and len(first) == 9 and first[4] == "-"
        [message] = env.outbox.of_kind("callback_request")
        assert message.payload["request_number"] == first
        assert message.payload["appointment_id"] == booked.appointment.id

    run(body())


def test_twenty_concurrent_patients_one_slot_one_booking(env: Env) -> None:
    async def body() -> None:
        patients = [await env.patient() for _ in range(20)]
        slot = (await env.free())[0]
        results = await asyncio.gather(
            *(env.service.book(p, slot.id, request_id=str(i)) for i, p in enumerate(patients))
        )
        outcomes = [r.outcome for r in results]
        assert outcomes.count(Outcome.DONE) == 1 and outcomes.count(Outcome.TAKEN) == 19
        winner = patients[outcomes.index(Outcome.DONE)]
        holders = [
            p for p in patients if any(a.start == slot.start for a in (await env.mis.visits(p)).upcoming)
        ]
        assert holders == [winner]

    run(body())


def test_a_double_tap_of_the_same_patient_is_one_booking_and_no_alarm(env: Env) -> None:
    async def body() -> None:
        patient = await env.patient()
        slot = (await env.free())[0]
        results = await asyncio.gather(
            env.service.book(patient, slot.id, request_id="1"),
            env.service.book(patient, slot.id, request_id="2"),
        )
        assert sorted(r.outcome for r in results) == [Outcome.ALREADY, Outcome.DONE]
        assert len((await env.mis.visits(patient)).upcoming) == 1
        assert slot.id in env.claims.claims  # the winner's claim stays until it expires

    run(body())


def test_request_numbers_differ_per_key() -> None:
    assert request_number("callback:a-1:2026-11-23") != request_number("callback:a-2:2026-11-23")
    assert request_number("x") == request_number("x")
