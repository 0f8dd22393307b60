"""The booking wizard: by specialty (specialty -> a doctor or any doctor -> day -> time) or by doctor
(doctor -> day -> time), then a confirmation screen, the booking in the MIS and a summary with
"add to calendar" details. Rescheduling a visit ("My visits") runs the same calendar in mode ``rs``.

One message evolves through the steps (each step edits it, returned in the webhook response). Every
button carries the wizard run id ``f``; the FSM data holds ids only::

    f   run id            m  "sp" | "dr" | "rs"     s  specialty id     d  doctor id or "*"
    y   chosen day        cm month shown            sl chosen slot id   a  visit being moved (rs)
    alt alternatives offered after losing a slot    pg page of a list

Only a consented and linked patient gets here (``PatientGate``); the MIS being down gives a polite
"try later" instead of an error.
"""

from __future__ import annotations

import contextlib
import html
import logging
import secrets
from collections.abc import Awaitable, Callable
from datetime import date, datetime, timedelta
from typing import Any

from aiogram import BaseMiddleware, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import SendMessage
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message, TelegramObject, Update

from clinicbot.booking.claims import Clock, SlotClaims, utc_now
from clinicbot.booking.refs import ref_of, resolve
from clinicbot.booking.schedule import (
    HORIZON,
    MisScheduleReader,
    ScheduleReader,
    SlotFilter,
    day_bounds,
    local_day,
    reference_tz,
    slots_on_day,
)
from clinicbot.booking.service import BookingService, Outcome, Result
from clinicbot.booking.texts import (
    branch_line,
    doctor_name,
    fmt_day,
    fmt_price,
    fmt_time,
    google_calendar_url,
    short_name,
    specialty_names,
)
from clinicbot.config import Settings
from clinicbot.domain.patient import PatientCard
from clinicbot.handoff.outbox import InMemoryOutbox, Outbox
from clinicbot.i18n import Translator
from clinicbot.mis.errors import MisUnavailable, NotAllowed, NotFound
from clinicbot.mis.models import Appointment, Branch, Slot
from clinicbot.mis.port import MisPort
from clinicbot.telegram.booking_callbacks import (
    ANY_DOCTOR,
    BookAlt,
    BookBy,
    BookDay,
    BookDoc,
    BookMonth,
    BookNav,
    BookOk,
    BookPage,
    BookSpec,
    BookTime,
)
from clinicbot.telegram.booking_keyboards import (
    alternatives_keyboard,
    back_to_menu_keyboard,
    calendar_keyboard,
    confirm_keyboard,
    list_keyboard,
    mode_keyboard,
    summary_keyboard,
    times_keyboard,
)
from clinicbot.telegram.callbacks import MenuCb
from clinicbot.telegram.context import Onboarding
from clinicbot.telegram.keyboards import contact_keyboard, main_menu
from clinicbot.telegram.replies import is_benign_edit_error

log = logging.getLogger(__name__)

Reply = Any  # a Bot API method returned to the webhook, or None


class BookingSG(StatesGroup):
    mode = State()
    specialty = State()
    doctor = State()
    day = State()
    time = State()
    confirm = State()
    lost = State()


# =========================================================================== dependencies and the gate
async def refuse_unless_linked(event: TelegramObject, data: dict[str, Any]) -> Reply:
    """The answer to someone who is not a consented, linked patient (the gates of the patient's routers):
    consent first; then the contact, with the dialogue moved to the onboarding's contact step."""
    card: PatientCard | None = data.get("card")
    t: Translator = data["t"]
    if card is None or not card.has_consent:
        if isinstance(event, CallbackQuery):
            return event.answer(t("consent.required"), show_alert=True)
        if isinstance(event, Message):
            return event.answer(t("consent.required"))
        return None
    state: FSMContext = data["state"]
    await state.set_state(Onboarding.contact)
    if isinstance(event, CallbackQuery):
        await event.answer()
        return SendMessage(
            chat_id=event.from_user.id, text=t("contact.request"), reply_markup=contact_keyboard(t)
        )
    if isinstance(event, Message):
        return event.answer(t("contact.request"), reply_markup=contact_keyboard(t))
    return None


class PatientGate(BaseMiddleware):
    """Inner middleware of the booking and visits routers.

    Lets only a consented, linked patient through (otherwise answers with onboarding's texts), puts
    ``patient_id``, ``schedule``, ``booking`` and ``now`` into handler data, and turns an MIS outage into
    a polite "try later". Optional workflow data: ``schedule`` (a ``ScheduleReader``; default: the MIS
    directly, e.g. ``clinicbot.schedule.reader.cached_schedule(mis)`` for the schedule cache), ``clock``
    (the schedule's "now"; the demo clinic runs on a clock of its own), ``slot_claims`` (default: the
    DynamoDB adapter), ``outbox``.
    """

    def __init__(self) -> None:
        self._mis: MisPort | None = None
        self._reader: ScheduleReader | None = None

    def reader(self, mis: MisPort) -> ScheduleReader:
        if self._reader is None or self._mis is not mis:
            self._mis, self._reader = mis, MisScheduleReader(mis)
        return self._reader

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        card: PatientCard | None = data.get("card")
        t: Translator = data["t"]
        if card is None or card.patient_id is None or not card.has_consent:
            return await refuse_unless_linked(event, data)

        mis: MisPort = data["mis"]
        clock: Clock = data.get("clock") or utc_now
        schedule: ScheduleReader = data.get("schedule") or self.reader(mis)
        claims: SlotClaims | None = data.get("slot_claims")
        if claims is None:
            from clinicbot.booking.claims_dynamo import DynamoSlotClaims

            claims = DynamoSlotClaims()
        outbox: Outbox = data.get("outbox") or InMemoryOutbox()
        data["patient_id"] = card.patient_id
        data["schedule"] = schedule
        data["booking"] = BookingService(mis, claims, outbox, schedule, clock=clock)
        data["now"] = clock()
        try:
            return await handler(event, data)
        except MisUnavailable:
            log.warning("MIS unavailable during booking")
            if isinstance(event, CallbackQuery):
                with contextlib.suppress(TelegramBadRequest):  # already answered before the MIS call
                    await event.answer(t("mis.unavailable"), show_alert=True)
                return SendMessage(chat_id=event.from_user.id, text=t("mis.unavailable"))
            if isinstance(event, Message):
                return event.answer(t("mis.unavailable"))
            return None


# =========================================================================== small helpers
def new_flow() -> str:
    return secrets.token_hex(2)


def show(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> Reply:
    """Edit the message the button is under (or send a new one if it cannot be edited any more)."""
    if isinstance(query.message, Message):
        return query.message.edit_text(text, reply_markup=markup)
    return SendMessage(chat_id=query.from_user.id, text=text, reply_markup=markup)


async def refresh(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> None:
    """Re-draw a screen after a refusal (a slot just taken, a forged choice). The content is often the same
    as what the patient already sees, and Telegram refuses such an edit ("message is not modified"): so it
    is sent directly, not in the webhook response, and that refusal is ignored."""
    if not isinstance(query.message, Message):
        return
    try:
        await query.message.edit_text(text, reply_markup=markup)
    except TelegramBadRequest as exc:
        if not is_benign_edit_error(exc):
            raise


def stale(query: CallbackQuery, t: Translator) -> Reply:
    return query.answer(t("booking.stale"), show_alert=True)


async def current_flow(state: FSMContext, f: str, *steps: State) -> dict[str, Any] | None:
    """The wizard's data if the button belongs to the run in progress (and, if ``steps`` are given, to the
    screen the run is at), else None: a stale or forged button, which must change nothing."""
    current = await state.get_state()
    if current is None or not current.startswith(f"{BookingSG.__name__}:"):
        return None
    if steps and current not in {step.state for step in steps}:
        return None
    data = await state.get_data()
    return data if data.get("f") == f else None


def parse_day(text: str) -> date | None:
    try:
        return datetime.strptime(text, "%Y%m%d").date()
    except ValueError:
        return None


def slot_filter(data: dict[str, Any]) -> SlotFilter:
    doctor = data.get("d")
    if doctor and doctor != ANY_DOCTOR:
        return SlotFilter(doctor_id=doctor)
    return SlotFilter(specialty_id=data.get("s"))


def slot_when(
    t: Translator, slot: Slot | Appointment, branches: dict[str, Branch], *, year: bool = False
) -> str:
    branch = branches.get(slot.branch_id)
    start = branch.local(slot.start) if branch else slot.start
    return f"{fmt_day(t, start.date(), year=year)}, {fmt_time(start)}"


async def who_line(t: Translator, data: dict[str, Any], schedule: ScheduleReader) -> str:
    doctor_id = data.get("d")
    if doctor_id and doctor_id != ANY_DOCTOR:
        doctor = await schedule.doctor(doctor_id)
        specialties = await schedule.specialties()
        return t(
            "booking.who_doctor",
            doctor=html.escape(doctor_name(doctor, t)),
            specialty=html.escape(specialty_names(doctor, specialties, t, only=data.get("s"))),
        )
    specialty = await schedule.specialty(data.get("s") or "")
    name = specialty.name.get(t.language) if specialty else ""
    return t("booking.who_any", specialty=html.escape(name))


async def price_line(
    t: Translator, data: dict[str, Any], schedule: ScheduleReader, doctor_id: str | None
) -> str:
    if data.get("s"):
        ids: list[str] = [data["s"]]
    else:
        doctor = await schedule.doctor(doctor_id) if doctor_id else None
        ids = list(doctor.specialty_ids) if doctor else []
    return t("booking.price", price=fmt_price(t, await schedule.price_from(ids)))


# =========================================================================== screens
def screen_mode(t: Translator, f: str) -> tuple[str, InlineKeyboardMarkup]:
    return t("booking.mode.title"), mode_keyboard(t, f)


async def screen_specialties(
    t: Translator, f: str, schedule: ScheduleReader, page: int = 0
) -> tuple[str, InlineKeyboardMarkup]:
    specialties = await schedule.specialties()
    items = [(ref_of(s.id), s.name.get(t.language)) for s in specialties]
    return t("booking.specialty.title"), list_keyboard(t, f, items, kind="spec", page=page, columns=2)


async def screen_doctors(
    t: Translator, f: str, schedule: ScheduleReader, specialty_id: str | None, page: int = 0
) -> tuple[str, InlineKeyboardMarkup]:
    doctors = await schedule.doctors(specialty_id=specialty_id)
    specialties = await schedule.specialties()
    if specialty_id:
        items = [(ref_of(d.id), doctor_name(d, t)) for d in doctors]
        specialty = await schedule.specialty(specialty_id)
        title = t(
            "booking.doctor.title_specialty",
            specialty=html.escape(specialty.name.get(t.language) if specialty else ""),
        )
        first = (ANY_DOCTOR, t("booking.doctor.any"))
        return title, list_keyboard(t, f, items, kind="doc", page=page, first=first)
    items = [
        (
            ref_of(d.id),
            t("booking.doctor.label", doctor=doctor_name(d, t), specialty=specialty_names(d, specialties, t)),
        )
        for d in doctors
    ]
    return t("booking.doctor.title"), list_keyboard(t, f, items, kind="doc", page=page)


async def screen_calendar(
    t: Translator,
    f: str,
    data: dict[str, Any],
    schedule: ScheduleReader,
    now: datetime,
    *,
    month: date | None = None,
    notice: str | None = None,
) -> tuple[str, InlineKeyboardMarkup, str | None]:
    """The month grid; returns (text, keyboard, the month shown as YYYYMM)."""
    flt = slot_filter(data)
    slots = await schedule.free_slots(flt, start=now, end=now + HORIZON)
    branches = await schedule.branches()
    doctors = [d for d in [await schedule.doctor(flt.doctor_id)] if d] if flt.doctor_id else []
    tz = reference_tz(slots, doctors, branches)
    first_day = now.astimezone(tz).date()
    last_day = (now + HORIZON).astimezone(tz).date()
    active = {local_day(s, branches) for s in slots}
    if month is None:
        month = min(active) if active else first_day
    month = month.replace(day=1)
    lines = [notice] if notice else []
    lines.append(await who_line(t, data, schedule))
    if flt.doctor_id and doctors:
        name, address = branch_line(branches.get(doctors[0].branch_id), t)
        lines.append(t("booking.where", branch=name, address=address))
    lines.append(await price_line(t, data, schedule, flt.doctor_id))
    lines.append("")
    lines.append(t("booking.day.title") if slots else t("booking.day.none"))
    earliest = None
    if slots:
        earliest = t("booking.day.earliest", when=slot_when(t, slots[0], branches))
    markup = calendar_keyboard(
        t, f, month, active=active, first_day=first_day, last_day=last_day, earliest=earliest
    )
    return "\n".join(lines), markup, f"{month:%Y%m}"


async def day_slots(data: dict[str, Any], schedule: ScheduleReader, day: date, now: datetime) -> list[Slot]:
    start, end = day_bounds(day)
    start, end = max(start, now), min(end, now + HORIZON)
    if end <= start:
        return []
    slots = await schedule.free_slots(slot_filter(data), start=start, end=end)
    return slots_on_day(slots, day, await schedule.branches())


def time_buttons(t: Translator, slots: list[Slot], branches: dict[str, Branch]) -> list[tuple[str, str]]:
    """One button per (branch, local time): with any doctor, several doctors free at once are one choice."""
    several = len({s.branch_id for s in slots}) > 1
    seen: set[tuple[str, str]] = set()
    buttons = []
    for slot in slots:
        branch = branches.get(slot.branch_id)
        label = fmt_time(branch.local(slot.start) if branch else slot.start)
        key = (slot.branch_id, label)
        if key in seen:
            continue
        seen.add(key)
        if several and branch is not None:
            label = f"{label} · {branch.name.get(t.language)}"
        buttons.append((ref_of(slot.id), label))
    return buttons


async def screen_times(
    t: Translator,
    f: str,
    data: dict[str, Any],
    schedule: ScheduleReader,
    day: date,
    slots: list[Slot],
    *,
    notice: str | None = None,
) -> tuple[str, InlineKeyboardMarkup]:
    branches = await schedule.branches()
    lines = [notice] if notice else []
    lines.append(await who_line(t, data, schedule))
    branch_ids = {s.branch_id for s in slots}
    if len(branch_ids) == 1:
        name, address = branch_line(branches.get(next(iter(branch_ids))), t)
        lines.append(t("booking.where", branch=name, address=address))
    doctor_id = data.get("d") if data.get("d") != ANY_DOCTOR else None
    lines.append(await price_line(t, data, schedule, doctor_id))
    lines.append("")
    lines.append(t("booking.time.title", date=fmt_day(t, day)))
    buttons = time_buttons(t, slots, branches)
    return "\n".join(lines), times_keyboard(t, f, buttons, columns=2 if len(branch_ids) > 1 else 4)


async def screen_confirm(
    t: Translator,
    f: str,
    data: dict[str, Any],
    schedule: ScheduleReader,
    slot: Slot,
    *,
    old: Appointment | None = None,
) -> tuple[str, InlineKeyboardMarkup]:
    branches = await schedule.branches()
    doctor = await schedule.doctor(slot.doctor_id)
    specialties = await schedule.specialties()
    branch = branches.get(slot.branch_id)
    start = branch.local(slot.start) if branch else slot.start
    end = branch.local(slot.end) if branch else slot.end
    name, address = branch_line(branch, t)
    details = t(
        "booking.confirm.details",
        date=fmt_day(t, start.date(), year=True),
        time=fmt_time(start),
        end=fmt_time(end),
        doctor=html.escape(doctor_name(doctor, t)),
        specialty=html.escape(specialty_names(doctor, specialties, t, only=data.get("s"))),
        branch=name,
        address=address,
        price=await price_line(t, data, schedule, slot.doctor_id),
    )
    if old is not None:
        text = t("booking.confirm.reschedule_title", old=slot_when(t, old, branches)) + "\n\n" + details
    else:
        text = t("booking.confirm.title") + "\n\n" + details
    return text, confirm_keyboard(t, f, ref_of(slot.id), reschedule=old is not None)


async def screen_summary(
    t: Translator, result: Result, schedule: ScheduleReader, settings: Settings, *, rescheduled: bool
) -> tuple[str, InlineKeyboardMarkup]:
    appointment = result.appointment
    assert appointment is not None
    branches = await schedule.branches()
    doctor = await schedule.doctor(appointment.doctor_id)
    branch = branches.get(appointment.branch_id)
    start = branch.local(appointment.start) if branch else appointment.start
    end = branch.local(appointment.end) if branch else appointment.end
    branch_name = branch.name.get(t.language) if branch else ""
    address = branch.address.get(t.language) if branch else ""
    block = t(
        "booking.block",
        date=fmt_day(t, start.date(), year=True),
        time=fmt_time(start),
        end=fmt_time(end),
        doctor=doctor_name(doctor, t),
        branch=branch_name,
        address=address,
    )
    head = t("booking.rescheduled" if rescheduled else "booking.done")
    text = f"{head}\n\n<pre>{html.escape(block)}</pre>\n" + t(
        "booking.done_hint", number=html.escape(appointment.id)
    )
    url = google_calendar_url(
        title=t("booking.event_title", clinic=settings.clinic_name),
        start=appointment.start,
        end=appointment.end,
        details=t("booking.event_details", doctor=doctor_name(doctor, t), number=appointment.id),
        location=f"{branch_name}, {address}" if branch else "",
    )
    return text, summary_keyboard(t, url)


async def screen_taken(
    t: Translator, f: str, result: Result, schedule: ScheduleReader
) -> tuple[str, InlineKeyboardMarkup]:
    branches = await schedule.branches()
    options = []
    for slot in result.alternatives:
        doctor = await schedule.doctor(slot.doctor_id)
        options.append((ref_of(slot.id), f"{slot_when(t, slot, branches)} · {short_name(doctor, t)}"))
    text = t("booking.taken") if options else t("booking.taken_none")
    return text, alternatives_keyboard(t, f, options)


# =========================================================================== flow entry points
async def start_booking(query: CallbackQuery, state: FSMContext, t: Translator) -> Reply:
    f = new_flow()
    await state.set_state(BookingSG.mode)
    await state.set_data({"f": f, "m": "sp"})
    await query.answer()
    return show(query, *screen_mode(t, f))


async def start_reschedule(
    query: CallbackQuery,
    state: FSMContext,
    t: Translator,
    appointment: Appointment,
    schedule: ScheduleReader,
    now: datetime,
) -> Reply:
    """From a visit's card: pick a new time with the same doctor on the same calendar."""
    f = new_flow()
    data: dict[str, Any] = {"f": f, "m": "rs", "a": appointment.id, "d": appointment.doctor_id}
    notice = t("booking.reschedule.notice", when=slot_when(t, appointment, await schedule.branches()))
    text, markup, month = await screen_calendar(t, f, data, schedule, now, notice=notice)
    data["cm"] = month
    await state.set_state(BookingSG.day)
    await state.set_data(data)
    await query.answer()
    return show(query, text, markup)


async def back_to_calendar(
    query: CallbackQuery,
    state: FSMContext,
    t: Translator,
    data: dict[str, Any],
    schedule: ScheduleReader,
    now: datetime,
    *,
    notice: str | None = None,
    month: date | None = None,
    redraw: bool = False,
) -> Reply:
    """Show the calendar (again). ``redraw``: after a refusal, when it may be what is shown already."""
    if month is None and data.get("cm"):
        month = parse_day(f"{data['cm']}01")
    text, markup, shown = await screen_calendar(t, data["f"], data, schedule, now, month=month, notice=notice)
    await state.set_state(BookingSG.day)
    await state.update_data(cm=shown, y=None, sl=None, alt=None)
    if redraw:
        await refresh(query, text, markup)
        return None
    return show(query, text, markup)


# =========================================================================== the router
async def to_confirmation(
    query: CallbackQuery,
    state: FSMContext,
    t: Translator,
    schedule: ScheduleReader,
    mis: MisPort,
    patient_id: str,
    flow: str,
    data: dict[str, Any],
    slot: Slot,
    **updates: Any,
) -> Reply:
    """The confirmation screen for ``slot`` (booking or moving a visit), from any step that chose one."""
    old = await moving(mis, patient_id, data)
    text, markup = await screen_confirm(t, flow, data, schedule, slot, old=old)
    await state.set_state(BookingSG.confirm)
    await state.update_data(sl=slot.id, **updates)
    await query.answer()
    return show(query, text, markup)


def build_router() -> Router:
    router = Router(name="booking")
    gate = PatientGate()
    router.callback_query.middleware(gate)
    router.message.middleware(gate)

    @router.callback_query(MenuCb.filter(F.action == "book"))
    async def book(query: CallbackQuery, state: FSMContext, t: Translator) -> Reply:
        return await start_booking(query, state, t)

    @router.callback_query(MenuCb.filter(F.action == "main"))
    async def to_menu(query: CallbackQuery, state: FSMContext, t: Translator) -> Reply:
        current = await state.get_state()
        if current is not None and current.startswith(f"{BookingSG.__name__}:"):
            await state.clear()
        await query.answer()
        return show(query, t("menu.title"), main_menu(t))

    @router.callback_query(BookBy.filter())
    async def by(
        query: CallbackQuery,
        callback_data: BookBy,
        state: FSMContext,
        t: Translator,
        schedule: ScheduleReader,
    ) -> Reply:
        data = await current_flow(state, callback_data.f, BookingSG.mode)
        if data is None:
            return stale(query, t)
        if callback_data.by == "sp":
            text, markup = await screen_specialties(t, callback_data.f, schedule)
            await state.set_state(BookingSG.specialty)
        else:
            text, markup = await screen_doctors(t, callback_data.f, schedule, None)
            await state.set_state(BookingSG.doctor)
        await state.update_data(m=callback_data.by, s=None, d=None, pg=0)
        await query.answer()
        return show(query, text, markup)

    @router.callback_query(BookPage.filter())
    async def page(
        query: CallbackQuery,
        callback_data: BookPage,
        state: FSMContext,
        t: Translator,
        schedule: ScheduleReader,
    ) -> Reply:
        data = await current_flow(state, callback_data.f, BookingSG.specialty, BookingSG.doctor)
        current = await state.get_state()
        if data is None:
            return stale(query, t)
        if current == BookingSG.specialty.state:
            text, markup = await screen_specialties(t, callback_data.f, schedule, callback_data.p)
        else:
            text, markup = await screen_doctors(t, callback_data.f, schedule, data.get("s"), callback_data.p)
        await state.update_data(pg=callback_data.p)
        await query.answer()
        return show(query, text, markup)

    @router.callback_query(BookSpec.filter())
    async def specialty(
        query: CallbackQuery,
        callback_data: BookSpec,
        state: FSMContext,
        t: Translator,
        schedule: ScheduleReader,
    ) -> Reply:
        data = await current_flow(state, callback_data.f, BookingSG.specialty)
        if data is None or data.get("m") != "sp":
            return stale(query, t)
        chosen = resolve(callback_data.s, await schedule.specialties(), key=lambda s: s.id)
        if chosen is None:
            return query.answer(t("booking.unknown_choice"), show_alert=True)
        text, markup = await screen_doctors(t, callback_data.f, schedule, chosen.id)
        await state.set_state(BookingSG.doctor)
        await state.update_data(s=chosen.id, d=None, pg=0)
        await query.answer()
        return show(query, text, markup)

    @router.callback_query(BookDoc.filter())
    async def doctor(
        query: CallbackQuery,
        callback_data: BookDoc,
        state: FSMContext,
        t: Translator,
        schedule: ScheduleReader,
        now: datetime,
    ) -> Reply:
        data = await current_flow(state, callback_data.f, BookingSG.doctor)
        if data is None or data.get("m") not in ("sp", "dr"):
            return stale(query, t)
        specialty_id = data.get("s") if data.get("m") == "sp" else None
        if callback_data.d == ANY_DOCTOR:
            if not specialty_id:
                return query.answer(t("booking.unknown_choice"), show_alert=True)
            doctor_id = ANY_DOCTOR
        else:
            chosen = resolve(
                callback_data.d, await schedule.doctors(specialty_id=specialty_id), key=lambda d: d.id
            )
            if chosen is None:
                return query.answer(t("booking.unknown_choice"), show_alert=True)
            doctor_id = chosen.id
        data.update(d=doctor_id)
        text, markup, month = await screen_calendar(t, callback_data.f, data, schedule, now)
        await state.set_state(BookingSG.day)
        await state.update_data(d=doctor_id, cm=month, y=None, sl=None)
        await query.answer()
        return show(query, text, markup)

    @router.callback_query(BookMonth.filter())
    async def month(
        query: CallbackQuery,
        callback_data: BookMonth,
        state: FSMContext,
        t: Translator,
        schedule: ScheduleReader,
        now: datetime,
    ) -> Reply:
        data = await current_flow(state, callback_data.f, BookingSG.day)
        if data is None or not data.get("d"):
            return stale(query, t)
        first = parse_day(f"{callback_data.m}01")
        window_first = now.date().replace(day=1)
        if first is None or not (window_first <= first <= (now + HORIZON).date()):
            return query.answer(t("calendar.out_of_range"), show_alert=True)
        await query.answer()
        same = data.get("cm") == callback_data.m
        return await back_to_calendar(query, state, t, data, schedule, now, month=first, redraw=same)

    @router.callback_query(BookDay.filter())
    async def day(
        query: CallbackQuery,
        callback_data: BookDay,
        state: FSMContext,
        t: Translator,
        schedule: ScheduleReader,
        now: datetime,
    ) -> Reply:
        data = await current_flow(state, callback_data.f, BookingSG.day)
        if data is None or not data.get("d"):
            return stale(query, t)
        chosen = parse_day(callback_data.y)
        if chosen is None or not (now.date() - timedelta(days=1) <= chosen <= (now + HORIZON).date()):
            return query.answer(t("calendar.out_of_range"), show_alert=True)
        slots = await day_slots(data, schedule, chosen, now)
        if not slots:  # taken since the calendar was drawn: show it as it is now
            await query.answer(t("calendar.no_day"), show_alert=True)
            return await back_to_calendar(query, state, t, data, schedule, now, redraw=True)
        text, markup = await screen_times(t, callback_data.f, data, schedule, chosen, slots)
        await state.set_state(BookingSG.time)
        await state.update_data(y=callback_data.y, sl=None)
        await query.answer()
        return show(query, text, markup)

    @router.callback_query(BookTime.filter())
    async def time_chosen(
        query: CallbackQuery,
        callback_data: BookTime,
        state: FSMContext,
        t: Translator,
        schedule: ScheduleReader,
        now: datetime,
        mis: MisPort,
        patient_id: str,
    ) -> Reply:
        data = await current_flow(state, callback_data.f, BookingSG.time)
        chosen_day = parse_day(data.get("y") or "") if data else None
        if data is None or chosen_day is None:
            return stale(query, t)
        slots = await day_slots(data, schedule, chosen_day, now)
        slot = resolve(callback_data.s, slots, key=lambda s: s.id)
        if slot is None:
            await query.answer(t("booking.gone"), show_alert=True)
            if not slots:
                return await back_to_calendar(query, state, t, data, schedule, now, redraw=True)
            text, markup = await screen_times(t, callback_data.f, data, schedule, chosen_day, slots)
            await refresh(query, text, markup)
            return None
        return await to_confirmation(query, state, t, schedule, mis, patient_id, callback_data.f, data, slot)

    @router.callback_query(BookNav.filter(F.a == "earliest"))
    async def earliest(
        query: CallbackQuery,
        callback_data: BookNav,
        state: FSMContext,
        t: Translator,
        schedule: ScheduleReader,
        now: datetime,
        mis: MisPort,
        patient_id: str,
    ) -> Reply:
        data = await current_flow(state, callback_data.f, BookingSG.day)
        if data is None or not data.get("d"):
            return stale(query, t)
        slots = await schedule.free_slots(slot_filter(data), start=now, end=now + HORIZON)
        if not slots:
            await query.answer(t("booking.gone"), show_alert=True)
            return await back_to_calendar(query, state, t, data, schedule, now, redraw=True)
        slot = slots[0]
        day = f"{local_day(slot, await schedule.branches()):%Y%m%d}"
        return await to_confirmation(
            query, state, t, schedule, mis, patient_id, callback_data.f, data, slot, y=day
        )

    @router.callback_query(BookAlt.filter())
    async def alternative(
        query: CallbackQuery,
        callback_data: BookAlt,
        state: FSMContext,
        t: Translator,
        schedule: ScheduleReader,
        now: datetime,
        mis: MisPort,
        patient_id: str,
    ) -> Reply:
        data = await current_flow(state, callback_data.f, BookingSG.lost)
        if data is None:
            return stale(query, t)
        slot_id = resolve(callback_data.s, data.get("alt") or [], key=lambda s: s)
        slot = await schedule.slot(slot_id) if slot_id else None
        if slot is None or slot.start <= now:
            return query.answer(t("booking.unknown_choice"), show_alert=True)
        day = f"{local_day(slot, await schedule.branches()):%Y%m%d}"
        return await to_confirmation(
            query, state, t, schedule, mis, patient_id, callback_data.f, data, slot, y=day, alt=None
        )

    @router.callback_query(BookOk.filter())
    async def confirm(
        query: CallbackQuery,
        callback_data: BookOk,
        state: FSMContext,
        t: Translator,
        schedule: ScheduleReader,
        booking: BookingService,
        now: datetime,
        patient_id: str,
        settings: Settings,
        event_update: Update,
    ) -> Reply:
        data = await current_flow(state, callback_data.f, BookingSG.confirm)
        slot_id = data.get("sl") if data else None
        if data is None or not slot_id or ref_of(slot_id) != callback_data.s:
            return stale(query, t)
        await query.answer()
        request_id = str(event_update.update_id)
        specialty_id = data.get("s")
        rescheduling = data.get("m") == "rs"
        if rescheduling:
            result = await booking.reschedule(
                patient_id, data["a"], slot_id, request_id=request_id, specialty_id=specialty_id
            )
        else:
            result = await booking.book(patient_id, slot_id, request_id=request_id, specialty_id=specialty_id)

        if result.ok:
            await state.clear()
            text, markup = await screen_summary(t, result, schedule, settings, rescheduled=rescheduling)
            return show(query, text, markup)
        if result.outcome is Outcome.TAKEN:
            text, markup = await screen_taken(t, callback_data.f, result, schedule)
            await state.set_state(BookingSG.lost)
            await state.update_data(alt=[s.id for s in result.alternatives], sl=None)
            return show(query, text, markup)
        if result.outcome is Outcome.NOT_ALLOWED:
            await state.clear()
            return show(query, t("booking.reschedule.not_allowed"), back_to_menu_keyboard(t))
        return await back_to_calendar(query, state, t, data, schedule, now, notice=t("booking.gone"))

    @router.callback_query(BookNav.filter(F.a == "back"))
    async def back(
        query: CallbackQuery,
        callback_data: BookNav,
        state: FSMContext,
        t: Translator,
        schedule: ScheduleReader,
        now: datetime,
        mis: MisPort,
        patient_id: str,
    ) -> Reply:
        data = await current_flow(state, callback_data.f)
        if data is None:
            return stale(query, t)
        f = callback_data.f
        current = await state.get_state()
        mode = data.get("m")
        await query.answer()
        if current == BookingSG.specialty.state or (current == BookingSG.doctor.state and mode == "dr"):
            await state.set_state(BookingSG.mode)
            return show(query, *screen_mode(t, f))
        if current == BookingSG.doctor.state:
            await state.set_state(BookingSG.specialty)
            return show(query, *await screen_specialties(t, f, schedule))
        if current == BookingSG.day.state:
            if mode == "rs":
                await state.clear()
                from clinicbot.telegram.routers.visits import screen_visit

                return show(query, *await screen_visit(t, mis, schedule, patient_id, data.get("a") or ""))
            await state.set_state(BookingSG.doctor)
            return show(query, *await screen_doctors(t, f, schedule, data.get("s") if mode == "sp" else None))
        if current == BookingSG.confirm.state and data.get("y"):
            chosen_day = parse_day(data["y"])
            slots = await day_slots(data, schedule, chosen_day, now) if chosen_day else []
            if chosen_day and slots:
                await state.set_state(BookingSG.time)
                await state.update_data(sl=None)
                return show(query, *await screen_times(t, f, data, schedule, chosen_day, slots))
        return await back_to_calendar(query, state, t, data, schedule, now)

    @router.callback_query(BookNav.filter(F.a == "cancel"))
    async def cancel(query: CallbackQuery, callback_data: BookNav, state: FSMContext, t: Translator) -> Reply:
        data = await current_flow(state, callback_data.f)
        if data is None:
            return stale(query, t)
        await state.clear()
        await query.answer()
        key = "booking.reschedule.cancelled" if data.get("m") == "rs" else "booking.cancelled"
        return show(query, t(key), main_menu(t))

    @router.callback_query(BookNav.filter(F.a == "noop"))
    async def noop(query: CallbackQuery, t: Translator) -> Reply:
        return query.answer(t("calendar.no_day"))

    @router.callback_query(BookNav.filter(F.a == "idle"))
    async def idle(query: CallbackQuery) -> Reply:
        return query.answer()

    @router.message(StateFilter(BookingSG), F.chat.type == "private")
    async def typed(message: Message, t: Translator) -> Reply:
        return message.answer(t("booking.use_buttons"))

    return router


async def moving(mis: MisPort, patient_id: str, data: dict[str, Any]) -> Appointment | None:
    """The visit being rescheduled (mode ``rs``), as the MIS has it now."""
    if data.get("m") != "rs" or not data.get("a"):
        return None
    try:
        return await mis.appointment(patient_id, data["a"])
    except (NotFound, NotAllowed):
        return None
