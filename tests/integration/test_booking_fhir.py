"""Both booking paths, cancel and reschedule, through the webhook handler against the FHIR server.

The same dialogue tests as for the demo clinic (imported below, so they are collected here too), with the
``mis`` fixture overridden: the FHIR adapter against @medplum/fhir-router on loopback, seeded with the demo
clinic for the current date (tests/fhir)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.integration.test_booking_webhook import (  # noqa: F401 - collected here against FHIR
    bot,
    test_book_by_doctor,
    test_book_by_specialty_any_doctor_at_the_earliest_time,
    test_book_by_specialty_with_a_chosen_doctor,
    test_forged_callback_data_gets_a_polite_answer_and_changes_nothing,
)
from tests.integration.test_visits_webhook import (  # noqa: F401
    test_reschedule_on_the_same_calendar,
    test_someone_elses_visit_cannot_be_seen_or_changed,
)

pytestmark = pytest.mark.slow


@pytest.fixture
def mis() -> Any:
    from tests.fhir.fixture import make_adapter, shared_server

    return make_adapter(shared_server())


def test_cancel_a_visit_booked_in_fhir(bot: Any) -> None:  # noqa: F811 - the imported fixture
    """Cancel through My visits; the FHIR Slot is free again and the CRM copy is queued once."""
    import asyncio

    from tests.integration.test_booking_webhook import linked, mine, press
    from tests.integration.test_visits_webhook import book, open_visit, two_slots_of_one_doctor

    user, patient_id = linked(bot, 7201)
    slot, _ = two_slots_of_one_doctor(bot.mis)
    appointment = book(bot.mis, patient_id, slot)
    open_visit(bot, user, appointment)
    press(bot, user, "Отменить")
    press(bot, user, "Да, отменить")
    assert "отменён" in mine(bot, user).text
    assert asyncio.run(bot.mis.visits(patient_id)).upcoming == ()
    [message] = bot.outbox.of_kind("booking")
    assert message.idempotency_key == f"booking:{appointment.id}:cancelled"
