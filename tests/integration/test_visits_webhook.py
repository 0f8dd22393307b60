"""My visits end to end through the webhook: the list, cancel (with a confirmation), reschedule, call me
back; buttons naming someone else's visit or an old one change nothing. Visits are made through the MIS
port (as the front desk would), so the tests hold for any adapter standing in for the ``mis`` fixture."""

from __future__ import annotations

from typing import Any

import pytest

from clinicbot.booking.refs import ref_of
from clinicbot.mis import Appointment, MisPort, PatientRegistration, Slot
from tests.harness import TgUser, WebhookHarness, callback_update
from tests.integration.test_booking_webhook import (
    alert,
    data_buttons,
    free,
    fresh_phone,
    linked,
    local,
    mine,
    press,
    press_data,
    run,
    upcoming_at,
)


@pytest.fixture(name="bot")
def bot_on_the_mis_clock(webhook: WebhookHarness) -> WebhookHarness:
    webhook.use_mis_clock()
    return webhook


def book(mis: MisPort, patient_id: str, slot: Slot) -> Appointment:
    return run(mis.book(patient_id, slot.id))


def two_slots_of_one_doctor(mis: MisPort) -> tuple[Slot, Slot]:
    slots = free(mis)
    first = slots[0]
    second = next(s for s in slots[1:] if s.doctor_id == first.doctor_id)
    return first, second


def doctor_name(mis: MisPort, doctor_id: str) -> str:
    return next(d for d in run(mis.doctors()) if d.id == doctor_id).full_name.ru


def open_visit(bot: WebhookHarness, user: TgUser, appointment: Appointment) -> None:
    bot.send(callback_update(user, "menu:visits"))
    press_data(bot, user, f"vi:show:{ref_of(appointment.id)}")


def test_my_visits_lists_upcoming_visits_soonest_first(bot: WebhookHarness) -> None:
    user, patient_id = linked(bot, 7101)
    first, second = free(bot.mis)[0], free(bot.mis)[5]
    book(bot.mis, patient_id, second)
    book(bot.mis, patient_id, first)
    press(bot, user, "Мои визиты")
    listing = mine(bot, user)
    assert listing.text.startswith("Ваши предстоящие визиты:")
    for slot in (first, second):
        assert f"{local(bot.mis, slot):%H:%M}" in listing.text
        assert doctor_name(bot.mis, slot.doctor_id) in listing.text
    assert listing.text.index("1. ") < listing.text.index("2. ")
    assert len(data_buttons(listing, "vi:show:")) == 2
    press_data(bot, user, "vi:show:")
    card = mine(bot, user)
    assert (
        f"{local(bot.mis, first):%H:%M}" in card.text and "📍" in card.text and "Статус: записан" in card.text
    )
    assert [b["text"] for b in card.buttons()] == [
        "🔁 Перенести",
        "✖ Отменить визит",
        "📞 Перезвоните мне",
        "‹ К списку визитов",
    ]


def test_no_visits_offers_to_book(bot: WebhookHarness) -> None:
    user, _ = linked(bot, 7102)
    press(bot, user, "Мои визиты")
    assert "Предстоящих визитов нет" in mine(bot, user).text
    press(bot, user, "Записаться")
    assert mine(bot, user).text == "Как вы хотите записаться?"


def test_cancel_asks_first_and_copies_to_the_crm_once(bot: WebhookHarness) -> None:
    user, patient_id = linked(bot, 7103)
    appointment = book(bot.mis, patient_id, free(bot.mis)[0])
    open_visit(bot, user, appointment)
    press(bot, user, "Отменить визит")
    assert "Отменить визит" in mine(bot, user).text and "?" in mine(bot, user).text
    press(bot, user, "Нет, оставить")
    assert "Статус" in mine(bot, user).text  # back at the card, nothing changed
    assert len(upcoming_at(bot.mis, patient_id)) == 1
    press(bot, user, "Отменить визит")
    confirm = mine(bot, user)
    press(bot, user, "Да, отменить")
    assert "отменён" in mine(bot, user).text
    assert upcoming_at(bot.mis, patient_id) == []
    [message] = bot.outbox.of_kind("booking")
    assert message.idempotency_key == f"booking:{appointment.id}:cancelled"
    assert message.payload["status"] == "cancelled"

    press(bot, user, "Да, отменить", said=confirm)  # the old confirmation pressed again
    assert "уже отменён" in mine(bot, user).text
    assert len(bot.outbox.of_kind("booking")) == 1  # no second copy
    bot.send(callback_update(user, f"vi:rs:{ref_of(appointment.id)}"))  # an old card's "reschedule"
    assert "не найден" in alert(bot)


def test_reschedule_on_the_same_calendar(bot: WebhookHarness) -> None:
    user, patient_id = linked(bot, 7104)
    old_slot, _ = two_slots_of_one_doctor(bot.mis)
    appointment = book(bot.mis, patient_id, old_slot)
    open_visit(bot, user, appointment)
    card = mine(bot, user)
    press(bot, user, "Перенести")
    calendar = mine(bot, user)
    assert "Перенос визита" in calendar.text and doctor_name(bot.mis, old_slot.doctor_id) in calendar.text
    press_data(bot, user, "by:")
    times = mine(bot, user)
    taken_label = f"{local(bot.mis, old_slot):%H:%M}"
    assert taken_label not in [b["text"] for b in data_buttons(times, "bt:")]  # its own time is not free
    press_data(bot, user, "bt:")
    confirm = mine(bot, user)
    assert "Перенести визит?" in confirm.text and taken_label in confirm.text
    press(bot, user, "✅ Перенести")
    assert mine(bot, user).text.startswith("✅ Визит перенесён.")
    [(doctor_id, start)] = upcoming_at(bot.mis, patient_id)
    assert doctor_id == old_slot.doctor_id and start != old_slot.start
    assert old_slot.id in {s.id for s in free(bot.mis, doctor_id=old_slot.doctor_id)}  # released after
    [message] = bot.outbox.of_kind("booking")
    assert message.payload["event"] == "rescheduled"
    assert message.payload["previous_appointment_id"] == appointment.id
    press(bot, user, "Отменить визит", said=card)  # the card of the moved visit is out of date
    assert "не найден" in alert(bot)


def test_leaving_a_reschedule_keeps_the_visit(bot: WebhookHarness) -> None:
    user, patient_id = linked(bot, 7105)
    slot = free(bot.mis)[0]
    appointment = book(bot.mis, patient_id, slot)
    open_visit(bot, user, appointment)
    press(bot, user, "Перенести")
    press(bot, user, "Назад")
    assert "Статус" in mine(bot, user).text  # back at the visit's card
    press(bot, user, "Перенести")
    press(bot, user, "Отмена")
    assert "визит остался" in mine(bot, user).text
    assert upcoming_at(bot.mis, patient_id) == [(slot.doctor_id, slot.start)]
    assert bot.outbox.messages == []


def test_reschedule_onto_a_time_taken_meanwhile_keeps_the_old_visit(bot: WebhookHarness) -> None:
    user, patient_id = linked(bot, 7106)
    slot = free(bot.mis)[0]
    appointment = book(bot.mis, patient_id, slot)
    open_visit(bot, user, appointment)
    press(bot, user, "Перенести")
    press_data(bot, user, "by:")
    times = mine(bot, user)
    new_ref = str(data_buttons(times, "bt:")[0]["callback_data"]).split(":", 2)[2]
    new_slot = next(s for s in free(bot.mis, doctor_id=slot.doctor_id) if ref_of(s.id) == new_ref)
    press_data(bot, user, "bt:")
    other = run(bot.mis.register_patient(PatientRegistration(first_name="Другой", phone=fresh_phone())))
    run(bot.mis.book(other.id, new_slot.id))
    press(bot, user, "✅ Перенести")
    assert "только что заняли" in mine(bot, user).text
    assert upcoming_at(bot.mis, patient_id) == [(slot.doctor_id, slot.start)]  # the old visit stands
    press_data(bot, user, "ba:")  # take an alternative instead
    press(bot, user, "✅ Перенести")
    assert "Визит перенесён" in mine(bot, user).text
    assert len(upcoming_at(bot.mis, patient_id)) == 1


def test_call_me_back_queues_one_request_and_shows_its_number(bot: WebhookHarness) -> None:
    user, patient_id = linked(bot, 7107)
    appointment = book(bot.mis, patient_id, free(bot.mis)[0])
    open_visit(bot, user, appointment)
    card = mine(bot, user)
    press(bot, user, "Перезвоните")
    done = mine(bot, user).text
    [message] = bot.outbox.of_kind("callback_request")
    number = message.payload["request_number"]
    assert f"№ {number}" in done
    assert message.payload["appointment_id"] == appointment.id and message.payload["patient_id"] == patient_id
    assert set(message.payload) == {
        "request_number",
        "reason",
        "patient_id",
        "appointment_id",
        "doctor_id",
        "branch_id",
        "start",
    }
    press(bot, user, "Перезвоните", said=card)  # pressed again
    assert f"№ {number}" in mine(bot, user).text
    assert len(bot.outbox.of_kind("callback_request")) == 1


def test_someone_elses_visit_cannot_be_seen_or_changed(bot: WebhookHarness) -> None:
    mallory, _ = linked(bot, 7108)
    victim = run(bot.mis.register_patient(PatientRegistration(first_name="Жертва", phone=fresh_phone())))
    slot = free(bot.mis)[0]
    theirs = book(bot.mis, victim.id, slot)
    for action in ("show", "cx", "cxok", "rs", "cb"):
        bot.send(callback_update(mallory, f"vi:{action}:{ref_of(theirs.id)}"))
        assert bot.outcome.outcome == "handled"
        assert "не найден" in alert(bot), action
    assert upcoming_at(bot.mis, victim.id) == [(slot.doctor_id, slot.start)]
    assert bot.outbox.messages == []
    assert "Жертва" not in " ".join(s.text for s in bot.said)


def test_each_visits_step_costs_at_most_one_read_and_one_write(bot: WebhookHarness, ddb: Any) -> None:
    user, patient_id = linked(bot, 7109)
    appointment = book(bot.mis, patient_id, free(bot.mis)[0])
    steps = [
        lambda: bot.send(callback_update(user, "menu:visits")),
        lambda: press_data(bot, user, "vi:show:"),
        lambda: press(bot, user, "Отменить визит"),
        lambda: press(bot, user, "Да, отменить"),
    ]
    for step in steps:
        ddb.reset()
        step()
        assert ddb.reads <= 1 and ddb.writes <= 1, dict(ddb.calls)
    assert upcoming_at(bot.mis, patient_id) == []
    assert appointment.id in bot.outbox.messages[0].idempotency_key
