"""The booking wizard end to end: API Gateway event in, real aiogram dispatch, DynamoDB under moto, the MIS
(the ``mis`` fixture: the demo clinic today), a fake Bot API on loopback.

The tests pick specialties, doctors and slots through the MIS port, not from the demo data file, so
they can run against any adapter that stands in for the ``mis`` fixture (FHIR, later)."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from collections.abc import Coroutine
from datetime import date, datetime
from typing import Any, TypeVar
from zoneinfo import ZoneInfo

import pytest

from clinicbot.booking.refs import ref_of
from clinicbot.booking.schedule import HORIZON
from clinicbot.handoff.outbox import FORBIDDEN_PAYLOAD_KEYS
from clinicbot.mis import Doctor, MisPort, PatientRegistration, Slot, Specialty
from tests.harness import Said, TgUser, WebhookHarness, callback_update, mis_clock

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(coro)


# --------------------------------------------------------------------------- helpers
@pytest.fixture
def bot(webhook: WebhookHarness) -> WebhookHarness:
    webhook.use_mis_clock()
    return webhook


def fresh_phone() -> str:
    return f"+7 999 {uuid.uuid4().int % 10**7:07d}"


def linked(bot: WebhookHarness, user_id: int, language: str = "ru") -> tuple[TgUser, str]:
    """A consented patient linked to a new MIS patient, at the main menu."""
    user = TgUser(id=user_id, language_code=language, first_name="Тест", last_name=None)
    phone = fresh_phone()
    bot.onboard(user, phone)
    patient = run(bot.mis.find_patient_by_phone(phone))
    assert patient is not None
    return user, patient.id


def now_of(mis: MisPort) -> datetime:
    return mis_clock(mis)()  # type: ignore[no-any-return]


def free(mis: MisPort, **flt: str) -> list[Slot]:
    now = now_of(mis)
    return run(mis.free_slots(start=now, end=now + HORIZON, **flt))


def tz_of(mis: MisPort, slot: Slot) -> ZoneInfo:
    return next(b for b in run(mis.branches()) if b.id == slot.branch_id).tz


def local(mis: MisPort, slot: Slot) -> datetime:
    return slot.start.astimezone(tz_of(mis, slot))


def bookable(mis: MisPort) -> tuple[Specialty, Doctor]:
    """A specialty and one of its doctors with free time (the doctor of the soonest free slot)."""
    slot = free(mis)[0]
    doctor = next(d for d in run(mis.doctors()) if d.id == slot.doctor_id)
    specialty = next(s for s in run(mis.specialties()) if s.id == doctor.specialty_ids[0])
    return specialty, doctor


def mine(bot: WebhookHarness, user: TgUser) -> Said:
    """The last message this user saw (several patients share one harness in some tests)."""
    said = [m for m in bot.messages() if str(m.params.get("chat_id")) == str(user.id)]
    assert said, "the bot said nothing to this user"
    return said[-1]


def press(bot: WebhookHarness, user: TgUser, label: str, said: Said | None = None) -> None:
    bot.press(user, label, said=said or mine(bot, user))


def data_buttons(said: Said, prefix: str) -> list[dict[str, Any]]:
    return [b for b in said.buttons() if str(b.get("callback_data", "")).startswith(prefix)]


def press_data(
    bot: WebhookHarness, user: TgUser, prefix: str, said: Said | None = None, index: int = 0
) -> Said:
    """Press the ``index``-th button whose callback data starts with ``prefix``; returns the message pressed on."""
    said = said or mine(bot, user)
    button = data_buttons(said, prefix)[index]
    bot.send(callback_update(user, button["callback_data"], message_id=said.message_id or 1))
    return said


def press_paged(bot: WebhookHarness, user: TgUser, label: str) -> Said:
    """Press the button with ``label``, turning the pages of a long list (›) until it shows up."""
    for _ in range(10):
        said = mine(bot, user)
        if any(label.lower() in b["text"].lower() for b in said.buttons()):
            press(bot, user, label)
            return said
        press(bot, user, "›")
    raise AssertionError(f"{label!r} is on no page")


def flow_of(said: Said) -> str:
    return str(data_buttons(said, "bn:")[0]["callback_data"]).split(":")[1]


def alert(bot: WebhookHarness) -> str:
    answer = bot.said[-1]
    assert answer.method == "answerCallbackQuery", answer
    assert answer.params.get("show_alert") in (True, "true")
    return str(answer.params.get("text"))


def upcoming_at(mis: MisPort, patient_id: str) -> list[tuple[str, datetime]]:
    return [(a.doctor_id, a.start) for a in run(mis.visits(patient_id)).upcoming]


def to_calendar(bot: WebhookHarness, user: TgUser, specialty: Specialty, doctor: Doctor) -> Said:
    press(bot, user, "Записаться")
    press(bot, user, "По специальности")
    press_paged(bot, user, specialty.name.ru)
    press_paged(bot, user, doctor.full_name.ru)
    return mine(bot, user)


def to_confirm(bot: WebhookHarness, user: TgUser) -> tuple[Specialty, Doctor, Slot]:
    """Specialty -> doctor -> first free day -> first free time; returns what is on the confirm screen."""
    specialty, doctor = bookable(bot.mis)
    to_calendar(bot, user, specialty, doctor)
    press_data(bot, user, "by:")
    times = mine(bot, user)
    slot_ref = str(data_buttons(times, "bt:")[0]["callback_data"]).split(":", 2)[2]
    slot = next(s for s in free(bot.mis, doctor_id=doctor.id) if ref_of(s.id) == slot_ref)
    press_data(bot, user, "bt:")
    assert "Проверьте" in mine(bot, user).text
    return specialty, doctor, slot


# --------------------------------------------------------------------------- the two booking paths
def test_book_by_specialty_with_a_chosen_doctor(bot: WebhookHarness) -> None:
    user, patient_id = linked(bot, 7001)
    specialty, doctor = bookable(bot.mis)
    menu = mine(bot, user)
    assert [b["text"] for b in menu.buttons()][:2] == ["📅 Записаться на приём", "🗂 Мои визиты"]

    press(bot, user, "Записаться")
    assert mine(bot, user).text == "Как вы хотите записаться?"
    press(bot, user, "По специальности")
    press_paged(bot, user, specialty.name.ru)
    doctors = mine(bot, user)
    assert "Любой врач" in doctors.buttons()[0]["text"]
    assert doctor.full_name.ru in [b["text"] for b in doctors.buttons()]
    press(bot, user, doctor.full_name.ru)

    calendar = mine(bot, user)
    slots = free(bot.mis, doctor_id=doctor.id)
    first_day = local(bot.mis, slots[0]).date()
    shown_month = [d for d in {local(bot.mis, s).date() for s in slots} if d.month == first_day.month]
    active = {
        date(int(y[:4]), int(y[4:6]), int(y[6:]))
        for y in (b["callback_data"][-8:] for b in data_buttons(calendar, "by:"))
    }
    assert active == set(shown_month)  # only days with free time are buttons
    assert (
        doctor.full_name.ru in calendar.text and "Стоимость приёма" in calendar.text and "📍" in calendar.text
    )
    assert all(len(b["callback_data"].encode()) <= 64 for b in calendar.buttons())

    press_data(bot, user, "by:")  # the first day with free time
    times = mine(bot, user)
    day_slots = [s for s in slots if local(bot.mis, s).date() == first_day]
    assert [b["text"] for b in data_buttons(times, "bt:")] == [
        f"{local(bot.mis, s):%H:%M}" for s in day_slots
    ]
    assert "местное время" in times.text

    press_data(bot, user, "bt:", index=len(day_slots) - 1)  # the last time of that day
    chosen = day_slots[-1]
    confirm = mine(bot, user)
    assert f"{local(bot.mis, chosen):%H:%M}" in confirm.text and doctor.full_name.ru in confirm.text
    assert "Стоимость приёма: от" in confirm.text

    press(bot, user, "✅")
    summary = mine(bot, user)
    assert summary.text.startswith("✅ Вы записаны!")
    assert "<pre>" in summary.text and f"Время: {local(bot.mis, chosen):%H:%M}" in summary.text
    assert summary.button("Google")["url"].startswith(
        "https://calendar.google.com/calendar/render?action=TEMPLATE"
    )
    assert upcoming_at(bot.mis, patient_id) == [(doctor.id, chosen.start)]

    [message] = bot.outbox.of_kind("booking")
    appointment = run(bot.mis.visits(patient_id)).upcoming[0]
    assert message.idempotency_key == f"booking:{appointment.id}:booked"
    assert message.payload["patient_id"] == patient_id and message.payload["event"] == "booked"
    assert not FORBIDDEN_PAYLOAD_KEYS & set(message.payload)
    assert "Тест" not in json.dumps(message.payload, ensure_ascii=False)


def test_book_by_specialty_any_doctor_at_the_earliest_time(bot: WebhookHarness) -> None:
    user, patient_id = linked(bot, 7002)
    specialty, _ = bookable(bot.mis)
    press(bot, user, "Записаться")
    press(bot, user, "По специальности")
    press_paged(bot, user, specialty.name.ru)
    press(bot, user, "Любой врач")
    calendar = mine(bot, user)
    assert "любой врач" in calendar.text
    earliest = free(bot.mis, specialty_id=specialty.id)[0]
    assert f"{local(bot.mis, earliest):%H:%M}" in calendar.button("⚡")["text"]
    press(bot, user, "⚡")
    assert "Проверьте" in mine(bot, user).text
    press(bot, user, "✅")
    assert "Вы записаны" in mine(bot, user).text
    assert upcoming_at(bot.mis, patient_id) == [(earliest.doctor_id, earliest.start)]


def test_book_by_doctor(bot: WebhookHarness) -> None:
    user, patient_id = linked(bot, 7003)
    specialty, doctor = bookable(bot.mis)
    press(bot, user, "Записаться")
    press(bot, user, "врачу")
    doctors = press_paged(bot, user, doctor.full_name.ru)
    label = doctors.button(doctor.full_name.ru)["text"]
    assert specialty.name.ru in label  # doctors are listed with their specialties
    press_data(bot, user, "by:")
    press_data(bot, user, "bt:")
    press(bot, user, "✅")
    assert "Вы записаны" in mine(bot, user).text
    [(doctor_id, _)] = upcoming_at(bot.mis, patient_id)
    assert doctor_id == doctor.id


def test_english_patients_book_in_english(bot: WebhookHarness) -> None:
    user, _ = linked(bot, 7004, language="en")
    specialty, doctor = bookable(bot.mis)
    press(bot, user, "Book a visit")
    press(bot, user, "By specialty")
    press_paged(bot, user, specialty.name.en or specialty.name.ru)
    press_paged(bot, user, doctor.full_name.en or doctor.full_name.ru)
    assert "Choose a day" in mine(bot, user).text and "Visit price" in mine(bot, user).text
    press_data(bot, user, "by:")
    press_data(bot, user, "bt:")
    press(bot, user, "✅")
    summary = mine(bot, user)
    assert summary.text.startswith("✅ You are booked!") and "Doctor:" in summary.text


# --------------------------------------------------------------------------- back and cancel
def test_back_walks_the_steps_in_reverse_and_cancel_leaves_nothing(bot: WebhookHarness) -> None:
    user, patient_id = linked(bot, 7010)
    to_confirm(bot, user)
    press(bot, user, "Назад")
    assert "Выберите время" in mine(bot, user).text
    press(bot, user, "Назад")
    assert "Выберите день" in mine(bot, user).text
    press(bot, user, "Назад")
    assert "выберите врача" in mine(bot, user).text
    press(bot, user, "Назад")
    assert mine(bot, user).text == "Выберите специальность:"
    press(bot, user, "Назад")
    assert mine(bot, user).text == "Как вы хотите записаться?"
    press(bot, user, "врачу")
    press(bot, user, "Назад")
    assert mine(bot, user).text == "Как вы хотите записаться?"
    old = mine(bot, user)
    press(bot, user, "Отмена")
    assert "Запись отменена" in mine(bot, user).text
    assert "Записаться" in mine(bot, user).buttons()[0]["text"]  # back at the main menu
    assert upcoming_at(bot.mis, patient_id) == [] and bot.outbox.messages == []
    press(bot, user, "специальности", said=old)  # a button of the cancelled run
    assert "устарела" in alert(bot)


def test_cancel_on_the_confirmation_screen_books_nothing(bot: WebhookHarness) -> None:
    user, patient_id = linked(bot, 7011)
    to_confirm(bot, user)
    confirm = mine(bot, user)
    press(bot, user, "Отмена")
    press(bot, user, "✅", said=confirm)  # confirm pressed after cancelling
    assert "устарела" in alert(bot)
    assert upcoming_at(bot.mis, patient_id) == []


def test_typing_during_the_wizard_gets_a_hint(bot: WebhookHarness) -> None:
    from tests.harness import message_update

    user, _ = linked(bot, 7012)
    press(bot, user, "Записаться")
    bot.send(message_update(user, "завтра утром"))
    assert "кнопками" in mine(bot, user).text


# --------------------------------------------------------------------------- stale and forged buttons
def test_buttons_of_a_finished_booking_are_stale_and_change_nothing(bot: WebhookHarness) -> None:
    user, patient_id = linked(bot, 7020)
    to_confirm(bot, user)
    confirm = mine(bot, user)
    press(bot, user, "✅")
    booked = upcoming_at(bot.mis, patient_id)
    messages = len(bot.outbox.messages)
    for prefix in ("bo:", "bn:"):
        press_data(bot, user, prefix, said=confirm)
        assert "устарела" in alert(bot)
    assert upcoming_at(bot.mis, patient_id) == booked and len(bot.outbox.messages) == messages


def test_a_button_from_an_older_run_is_stale(bot: WebhookHarness) -> None:
    user, patient_id = linked(bot, 7021)
    to_confirm(bot, user)
    old_confirm = mine(bot, user)
    bot.send(callback_update(user, "menu:book"))  # a new run starts (from another menu message)
    press_data(bot, user, "bo:", said=old_confirm)
    assert "устарела" in alert(bot)
    assert upcoming_at(bot.mis, patient_id) == []


def test_forged_callback_data_gets_a_polite_answer_and_changes_nothing(bot: WebhookHarness, aws: Any) -> None:
    user, patient_id = linked(bot, 7022)
    specialty, doctor = bookable(bot.mis)
    to_calendar(bot, user, specialty, doctor)
    calendar = mine(bot, user)
    f = flow_of(calendar)
    press_data(bot, user, "by:")
    times = mine(bot, user)
    state_before = [
        i for i in aws.scan(TableName="clinicbot-state")["Items"] if i["sk"]["S"].startswith("DIALOG#")
    ]

    other_doctor_slot = next(s for s in free(bot.mis) if s.doctor_id != doctor.id)
    forged = [
        f"bt:{f}:no-such-slot",  # a slot that does not exist
        f"bt:{f}:{ref_of(other_doctor_slot.id)}",  # a real slot, not among this choice
        f"bo:{f}:{ref_of(other_doctor_slot.id)}",  # confirm something never shown
        f"ba:{f}:{ref_of(other_doctor_slot.id)}",  # an alternative never offered
        f"bd:{f}:no-such-doctor",
        f"bs:{f}:no-such-specialty",
        f"bm:{f}:209901",  # a month far outside the window
        f"by:{f}:20990101",  # a day outside the window
        "bo:0000:" + ref_of(other_doctor_slot.id),  # another run
    ]
    for data in forged:
        bot.send(callback_update(user, data, message_id=times.message_id or 1))
        assert bot.outcome.outcome == "handled", data
        answers = [s for s in bot.said if s.method == "answerCallbackQuery"]
        assert answers[-1].params.get("text"), data  # a polite text, not silence
    for data in ("bt:zz:x", "bo:" + "a" * 70, "vi:rm:a-1", "bt:" + f + ":" + "x" * 40):
        bot.send(callback_update(user, data))
        assert "устарела" in alert(bot)  # does not even parse: the fallback answers
    assert upcoming_at(bot.mis, patient_id) == [] and bot.outbox.messages == []
    state_after = [
        i for i in aws.scan(TableName="clinicbot-state")["Items"] if i["sk"]["S"].startswith("DIALOG#")
    ]
    strip = [
        {k: v for k, v in i.items() if k not in ("recent_updates", "version", "expires_at")}
        for i in state_before
    ]
    assert strip == [
        {k: v for k, v in i.items() if k not in ("recent_updates", "version", "expires_at")}
        for i in state_after
    ]
    # the real buttons still work after all that
    press_data(bot, user, "bt:", said=times)
    press(bot, user, "✅")
    assert "Вы записаны" in mine(bot, user).text


def test_a_strangers_and_an_unlinked_users_presses_are_refused(bot: WebhookHarness) -> None:
    from tests.harness import message_update

    stranger = TgUser(id=7023)
    bot.send(callback_update(stranger, "menu:book"))
    assert "согласие" in alert(bot)
    unlinked = TgUser(id=7024)
    bot.send(message_update(unlinked, "/start"))
    press(bot, unlinked, "✅")
    bot.send(callback_update(unlinked, "menu:visits"))
    assert "номером телефона" in mine(bot, unlinked).text
    assert mine(bot, unlinked).button("Поделиться")["request_contact"] is True


# --------------------------------------------------------------------------- no double booking
def test_a_slot_taken_meanwhile_offers_the_nearest_alternatives(
    bot: WebhookHarness, aws: Any, ddb: Any
) -> None:
    user, patient_id = linked(bot, 7030)
    _, doctor, slot = to_confirm(bot, user)
    other = run(bot.mis.register_patient(PatientRegistration(first_name="Другой", phone=fresh_phone())))
    run(bot.mis.book(other.id, slot.id))  # booked at the front desk a moment ago
    ddb.reset()
    press(bot, user, "✅")
    assert dict(ddb.calls) == {"Query": 1, "PutItem": 2, "DeleteItem": 1}  # claim, refused, released
    lost = mine(bot, user)
    assert "только что заняли" in lost.text
    options = data_buttons(lost, "ba:")
    assert 1 <= len(options) <= 6
    assert any(doctor.full_name.ru.split()[0] in b["text"] for b in options)  # the same doctor among them
    assert [
        i for i in aws.scan(TableName="clinicbot-state")["Items"] if i["pk"]["S"].startswith("SLOT#")
    ] == []
    press_data(bot, user, "ba:")
    assert "Проверьте" in mine(bot, user).text
    press(bot, user, "✅")
    assert "Вы записаны" in mine(bot, user).text
    assert len(upcoming_at(bot.mis, patient_id)) == 1


def test_the_loser_of_a_claim_is_told_at_once_without_asking_the_mis(bot: WebhookHarness, ddb: Any) -> None:
    anna, anna_id = linked(bot, 7031)
    boris, boris_id = linked(bot, 7032)
    _, _, slot = to_confirm(bot, anna)
    anna_confirm = mine(bot, anna)
    _, _, slot_b = to_confirm(bot, boris)
    assert slot_b == slot  # both look at the same free time
    books: list[str] = []
    real_book = bot.mis.book

    async def counting(patient_id: str, slot_id: str, **kwargs: Any) -> Any:
        books.append(patient_id)
        return await real_book(patient_id, slot_id, **kwargs)

    bot.mis.book = counting
    press(bot, anna, "✅", said=anna_confirm)
    assert "Вы записаны" in mine(bot, anna).text
    ddb.reset()
    press(bot, boris, "✅")
    assert dict(ddb.calls) == {"Query": 1, "PutItem": 2}  # the refused conditional claim + the dialogue
    assert "только что заняли" in mine(bot, boris).text and data_buttons(mine(bot, boris), "ba:")
    assert books == [anna_id]  # Boris never reached the MIS: the claim stopped him
    assert upcoming_at(bot.mis, anna_id) == [(slot.doctor_id, slot.start)]
    assert upcoming_at(bot.mis, boris_id) == []


def test_two_webhook_instances_race_for_one_slot(bot: WebhookHarness, botapi: Any) -> None:
    """Two Lambda instances (two harnesses, own event loops) share DynamoDB and the MIS. Anna's booking is
    in flight in the MIS when Boris confirms the same slot on the other instance."""
    other = WebhookHarness.create(botapi=botapi, mis=bot.mis)
    other.use_mis_clock()
    try:
        anna, anna_id = linked(bot, 7033)
        boris, boris_id = linked(other, 7034)
        _, _, slot = to_confirm(bot, anna)
        anna_confirm = mine(bot, anna)
        _, _, slot_b = to_confirm(other, boris)
        assert slot_b == slot

        entered, release = threading.Event(), threading.Event()
        real_book = bot.mis.book

        async def slow_book(patient_id: str, slot_id: str, **kwargs: Any) -> Any:
            entered.set()
            await asyncio.to_thread(release.wait, 10)
            return await real_book(patient_id, slot_id, **kwargs)

        bot.mis.book = slow_book
        data = anna_confirm.button("✅")["callback_data"]
        anna_thread = threading.Thread(
            target=bot.send, args=(callback_update(anna, data, message_id=anna_confirm.message_id or 1),)
        )
        anna_thread.start()
        assert entered.wait(10)  # Anna holds the claim and is inside the MIS call
        press(other, boris, "✅")
        body = json.loads(other.last_response["body"])  # type: ignore[index]
        assert body["method"] == "editMessageText" and "только что заняли" in body["text"]
        release.set()
        anna_thread.join(20)
        body = json.loads(bot.last_response["body"])  # type: ignore[index]
        assert "Вы записаны" in body["text"]
        assert upcoming_at(bot.mis, anna_id) == [(slot.doctor_id, slot.start)]
        assert upcoming_at(bot.mis, boris_id) == []
    finally:
        other.close()


@pytest.mark.parametrize("mis_booked_before_the_crash", [True, False])
def test_a_retry_after_a_crash_books_once(bot: WebhookHarness, mis_booked_before_the_crash: bool) -> None:
    """The same update arrives again after the claim was written but before the MIS answer was handled."""
    user, patient_id = linked(bot, 7040 + int(mis_booked_before_the_crash))
    _, _, slot = to_confirm(bot, user)
    confirm = mine(bot, user)
    real_book = bot.mis.book
    calls: list[str] = []

    async def crashing(patient: str, slot_id: str, **kwargs: Any) -> Any:
        calls.append(slot_id)
        if mis_booked_before_the_crash:
            await real_book(patient, slot_id, **kwargs)
        raise RuntimeError("Lambda died while waiting for the MIS")

    bot.mis.book = crashing
    update = callback_update(user, confirm.button("✅")["callback_data"], message_id=confirm.message_id or 1)
    bot.send(update)
    assert bot.outcome.outcome == "handler-error"
    bot.mis.book = real_book
    bot.send(update)  # Telegram (or the patient) tries again: the same update id
    assert bot.outcome.outcome == "handled"
    assert "Вы записаны" in mine(bot, user).text
    assert upcoming_at(bot.mis, patient_id) == [(slot.doctor_id, slot.start)]
    assert len(bot.outbox.of_kind("booking")) == 1
    bot.send(update)  # and once more after success: a duplicate, ignored
    assert bot.outcome.outcome == "duplicate"
    assert len(upcoming_at(bot.mis, patient_id)) == 1


# --------------------------------------------------------------------------- DynamoDB budget
def test_each_wizard_step_costs_one_read_and_one_write(bot: WebhookHarness, ddb: Any) -> None:
    user, _ = linked(bot, 7050)
    specialty, doctor = bookable(bot.mis)
    steps: list[tuple[str, Any]] = [
        ("menu", lambda: press(bot, user, "Записаться")),
        ("mode", lambda: press(bot, user, "По специальности")),
        ("specialty", lambda: press_paged(bot, user, specialty.name.ru)),
        ("doctor", lambda: press_paged(bot, user, doctor.full_name.ru)),
        ("day", lambda: press_data(bot, user, "by:")),
        ("time", lambda: press_data(bot, user, "bt:")),
        ("back", lambda: press(bot, user, "Назад")),
        ("time again", lambda: press_data(bot, user, "bt:")),
    ]
    figures = {}
    for name, step in steps:
        ddb.reset()
        step()
        figures[name] = dict(ddb.calls)
        assert (ddb.reads, ddb.writes) == (1, 1), (name, dict(ddb.calls))
        assert bot.outcome.direct_calls <= 1  # answerCallbackQuery; the edit travels in the response
        assert bot.outcome.replied_in_response == "editMessageText"
    ddb.reset()
    press(bot, user, "✅")
    assert "Вы записаны" in mine(bot, user).text
    figures["confirm"] = dict(ddb.calls)
    assert dict(ddb.calls) == {"Query": 1, "PutItem": 2}  # the dialogue write + the slot claim
    print(figures)


# --------------------------------------------------------------------------- calendar, outages
def test_the_calendar_moves_between_the_months_of_the_next_30_days(bot: WebhookHarness) -> None:
    user, _ = linked(bot, 7060)
    specialty, doctor = bookable(bot.mis)
    calendar = to_calendar(bot, user, specialty, doctor)
    now = now_of(bot.mis)
    last = (now + HORIZON).astimezone(tz_of(bot.mis, free(bot.mis)[0])).date()
    months = []
    for _ in range(3):
        months.append(calendar.text)
        forward = [b for b in calendar.buttons() if b["text"] == "›"]
        if not forward:
            break
        press(bot, user, "›")
        calendar = mine(bot, user)
        days = [b["callback_data"][-8:] for b in data_buttons(calendar, "by:")]
        assert all(d <= f"{last:%Y%m%d}" for d in days)  # nothing beyond the window is active
    assert 1 <= len(months) <= 2  # 30 days span two calendar months at most
    press(bot, user, "‹")
    assert data_buttons(mine(bot, user), "by:") or "нет" in mine(bot, user).text
    bot.send(callback_update(user, data_buttons(mine(bot, user), "bn:")[0]["callback_data"]))  # a label
    assert bot.said[-1].method == "answerCallbackQuery"


def test_back_from_the_alternatives_returns_to_the_calendar(bot: WebhookHarness) -> None:
    user, _ = linked(bot, 7061)
    _, _, slot = to_confirm(bot, user)
    other = run(bot.mis.register_patient(PatientRegistration(first_name="Другой", phone=fresh_phone())))
    run(bot.mis.book(other.id, slot.id))
    press(bot, user, "✅")
    assert "только что заняли" in mine(bot, user).text
    press(bot, user, "Назад")
    assert "Выберите день" in mine(bot, user).text


def test_an_mis_outage_gets_a_polite_answer_and_the_wizard_goes_on_later(
    bot: WebhookHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    from clinicbot.mis import MisUnavailable

    user, patient_id = linked(bot, 7062)
    specialty, doctor = bookable(bot.mis)
    to_calendar(bot, user, specialty, doctor)
    calendar = mine(bot, user)

    async def down(**_: Any) -> Any:
        raise MisUnavailable("timeout")

    monkeypatch.setattr(bot.mis, "free_slots", down)
    press_data(bot, user, "by:")
    assert bot.outcome.outcome == "handled"
    assert "не отвечает" in mine(bot, user).text
    monkeypatch.undo()
    press_data(bot, user, "by:", said=calendar)
    press_data(bot, user, "bt:")

    async def down_book(*_: Any, **__: Any) -> Any:
        raise MisUnavailable("timeout")

    monkeypatch.setattr(bot.mis, "book", down_book)
    confirm = mine(bot, user)
    press(bot, user, "✅")
    assert "не отвечает" in mine(bot, user).text  # a new message: the confirmation stays usable
    monkeypatch.undo()
    assert upcoming_at(bot.mis, patient_id) == []
    press(bot, user, "✅", said=confirm)  # later, the same button: the claim is still the patient's own
    assert "Вы записаны" in mine(bot, user).text
    assert len(upcoming_at(bot.mis, patient_id)) == 1
