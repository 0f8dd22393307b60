"""Slot claims in the StateTable under moto, and the booking service racing for one slot.

The concurrency tests use the ``mis`` fixture (the demo clinic today; any adapter that implements the
port can stand in) and only the port: patients are registered, a free slot is found, then 20 patients
try to book it at once."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Coroutine
from datetime import UTC, datetime, timedelta
from typing import Any, TypeVar

import pytest

from clinicbot.booking import BookingService, MisScheduleReader, Outcome, SlotFilter
from clinicbot.booking.claims_dynamo import CLAIM_SK, DynamoSlotClaims, slot_pk
from clinicbot.booking.schedule import HORIZON
from clinicbot.handoff.outbox import InMemoryOutbox
from clinicbot.mis import MisPort, PatientRegistration, Slot
from tests.harness import mis_clock

T = TypeVar("T")
TTL = timedelta(minutes=2)


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


def claim_items(aws: Any) -> list[dict[str, Any]]:
    return [i for i in aws.scan(TableName="clinicbot-state")["Items"] if i["pk"]["S"].startswith("SLOT#")]


# --------------------------------------------------------------------------- the adapter
def test_a_claim_is_one_conditional_write_and_holds_ids_only(aws: Any, ddb: Any) -> None:
    claims = DynamoSlotClaims()
    assert run(claims.claim("d-01@20261124T0600Z", patient_id="p-1", request_id="10001", ttl=TTL))
    assert dict(ddb.calls) == {"PutItem": 1}
    [item] = claim_items(aws)
    assert item["pk"]["S"] == slot_pk("d-01@20261124T0600Z") and item["sk"]["S"] == CLAIM_SK
    assert item["claimed_by"]["S"] == "p-1" and item["request_id"]["S"] == "10001"
    assert int(item["expires_at"]["N"]) > datetime.now(UTC).timestamp()
    assert set(item) == {
        "pk",
        "sk",
        "kind",
        "claimed_by",
        "request_id",
        "expires_at",
    }  # not in the patient GSI


def test_a_live_claim_refuses_others_and_is_idempotent_for_its_holder(aws: Any) -> None:
    claims = DynamoSlotClaims()
    slot = "s-1"
    assert run(claims.claim(slot, patient_id="p-1", request_id="1", ttl=TTL))
    assert not run(claims.claim(slot, patient_id="p-2", request_id="2", ttl=TTL))
    assert run(claims.claim(slot, patient_id="p-1", request_id="3", ttl=TTL))  # a retry, a second press
    run(claims.release(slot, patient_id="p-2"))  # not theirs: no-op
    assert len(claim_items(aws)) == 1
    run(claims.release(slot, patient_id="p-1"))
    assert claim_items(aws) == []
    run(claims.release(slot, patient_id="p-1"))  # releasing nothing is fine
    assert run(claims.claim(slot, patient_id="p-2", request_id="4", ttl=TTL))


def test_an_expired_claim_is_taken_over_even_before_ttl_deletes_it(aws: Any) -> None:
    now = datetime.now(UTC)
    past = DynamoSlotClaims(clock=lambda: now - timedelta(minutes=10))
    assert run(past.claim("s-2", patient_id="p-1", request_id="1", ttl=TTL))  # expired 8 minutes ago
    assert run(DynamoSlotClaims().claim("s-2", patient_id="p-2", request_id="2", ttl=TTL))
    [item] = claim_items(aws)
    assert item["claimed_by"]["S"] == "p-2"


# --------------------------------------------------------------------------- racing for one slot
async def register(mis: MisPort, n: int) -> list[str]:
    ids = []
    for _ in range(n):
        phone = f"7999{uuid.uuid4().int % 10**7:07d}"
        ids.append((await mis.register_patient(PatientRegistration(first_name="Тест", phone=phone))).id)
    return ids


async def a_free_slot(mis: MisPort) -> Slot:
    now = mis_clock(mis)()
    slots = await MisScheduleReader(mis).free_slots(SlotFilter(), start=now, end=now + HORIZON)
    return slots[len(slots) // 2]


class Jittery:
    """The MIS with network-like delays, so concurrent bookings really interleave."""

    def __init__(self, mis: MisPort, seed: int) -> None:
        self._mis = mis
        self._random = random.Random(seed)
        self.book_calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._mis, name)

    async def book(self, *args: Any, **kwargs: Any) -> Any:
        self.book_calls += 1
        await asyncio.sleep(self._random.uniform(0, 0.01))
        return await self._mis.book(*args, **kwargs)

    async def visits(self, patient_id: str) -> Any:
        await asyncio.sleep(self._random.uniform(0, 0.01))
        return await self._mis.visits(patient_id)


class ThreadedClaims(DynamoSlotClaims):
    """Claims written from worker threads: 20 conditional PutItems genuinely in flight together."""

    async def claim(self, slot_id: str, *, patient_id: str, request_id: str, ttl: timedelta) -> bool:
        parent = super().claim
        return await asyncio.to_thread(
            lambda: asyncio.run(parent(slot_id, patient_id=patient_id, request_id=request_id, ttl=ttl))
        )


async def race(
    mis: MisPort, claims_factory: Any, outbox: InMemoryOutbox, n: int = 20
) -> tuple[Slot, list[Any], list[str]]:
    patients = await register(mis, n)
    slot = await a_free_slot(mis)
    jittery = Jittery(mis, seed=7)
    schedule = MisScheduleReader(mis)

    async def attempt(index: int, patient: str) -> Any:
        # each attempt is its own "update": its own service and claims adapter, as in separate Lambdas
        service = BookingService(jittery, claims_factory(), outbox, schedule, clock=mis_clock(mis))  # type: ignore[arg-type]
        await asyncio.sleep(random.Random(index).uniform(0, 0.005))
        return await service.book(patient, slot.id, request_id=str(50_000 + index))

    results = await asyncio.gather(*(attempt(i, p) for i, p in enumerate(patients)))
    return slot, list(results), patients


async def holders_of(mis: MisPort, slot: Slot, patients: list[str]) -> list[str]:
    found = []
    for patient in patients:
        visits = await mis.visits(patient)
        if any(a.doctor_id == slot.doctor_id and a.start == slot.start for a in visits.upcoming):
            found.append(patient)
    return found


@pytest.mark.parametrize("claims_factory", [DynamoSlotClaims, ThreadedClaims], ids=["in-loop", "threads"])
def test_twenty_concurrent_attempts_at_one_slot_book_it_exactly_once(
    aws: Any, mis: MisPort, claims_factory: Any
) -> None:
    outbox = InMemoryOutbox()

    async def body() -> tuple[Slot, str]:
        slot, results, patients = await race(mis, claims_factory, outbox)
        outcomes = [r.outcome for r in results]
        assert outcomes.count(Outcome.DONE) == 1, outcomes
        assert outcomes.count(Outcome.TAKEN) == 19
        winner = patients[outcomes.index(Outcome.DONE)]
        assert await holders_of(mis, slot, patients) == [winner]  # the MIS agrees
        free = {s.id for s in await mis.free_slots(start=slot.start, end=slot.end + timedelta(seconds=1))}
        assert slot.id not in free
        assert all(r.alternatives for r in results if r.outcome is Outcome.TAKEN)  # losers get offers
        assert [m.payload["patient_id"] for m in outbox.of_kind("booking")] == [winner]
        return slot, winner

    slot, winner = run(body())
    [item] = claim_items(aws)  # the winner's claim, left to expire by itself
    assert item["pk"]["S"] == slot_pk(slot.id) and item["claimed_by"]["S"] == winner


def test_without_claims_the_mis_still_judges_and_refused_claims_are_released(aws: Any, mis: MisPort) -> None:
    """Claims that expired at once (every attempt reaches the MIS): still one booking, no claims left over
    except the winner's."""
    outbox = InMemoryOutbox()

    class Expiring(DynamoSlotClaims):
        async def claim(self, slot_id: str, *, patient_id: str, request_id: str, ttl: timedelta) -> bool:
            return await super().claim(slot_id, patient_id=patient_id, request_id=request_id, ttl=-TTL)

    async def body() -> None:
        slot, results, patients = await race(mis, Expiring, outbox)
        outcomes = [r.outcome for r in results]
        assert outcomes.count(Outcome.DONE) == 1 and outcomes.count(Outcome.TAKEN) == 19
        assert len(await holders_of(mis, slot, patients)) == 1

    run(body())
    assert len(claim_items(aws)) <= 1
