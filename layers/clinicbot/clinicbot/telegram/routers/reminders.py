"""The bot's side of reminders: the buttons under a reminder, the reminder settings, patients' own
medication schedules, free-text replies to a reminder, and Telegram's "blocked / unblocked" notices.

Buttons (callback data shared with the aiogram-free reminders function, ``clinicbot.reminders.callbacks``):

* Confirm (``rem:c:<visit>``) -> MIS confirm; the Confirm button disappears.
* Cancel (``rem:x``) -> "Cancel your visit on ...?" -> yes (``rem:xy``): cancelled in the MIS (with the
  CRM copy, through the booking service), the visit's pending reminders cancelled. Nothing else changes:
  cancelling a visit never unsubscribes the patient from anything.
* Reschedule (``rem:r``) -> the booking wizard's calendar for this visit (``start_reschedule``).
* Taken (``rem:t:<item>``) -> recorded on the reminder (``taken_at``), once.
* Settings (``rset:...``, also "🔔 Reminders" in the main menu): each kind on/off, visit lead times,
  own medication schedules (label - may stay generic -, times, days, how many days).

A free-text message that replies to a reminder (Telegram's "reply"), or comes within
``REPLY_WINDOW`` of the last reminder, goes to the clinic's operators: ``reminder_reply`` on the hand-off
outbox, ids only (the hand-off copies the message from the chat by its id) -- never an error.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Sequence
from datetime import UTC, date, datetime, timedelta
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

from aiogram import F, Router
from aiogram.filters import StateFilter
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import SendMessage
from aiogram.types import (
    CallbackQuery,
    ChatMemberUpdated,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)
from pydantic import Field

from clinicbot.booking.refs import ref_of
from clinicbot.booking.schedule import ScheduleReader
from clinicbot.booking.service import BookingService
from clinicbot.booking.service import Outcome as BookingOutcome
from clinicbot.booking.texts import fmt_day, fmt_time
from clinicbot.config import Settings
from clinicbot.domain.patient import PatientCard
from clinicbot.handoff.outbox import Outbox
from clinicbot.i18n import Translator
from clinicbot.mis.errors import NotAllowed, NotFound
from clinicbot.mis.models import Appointment
from clinicbot.mis.port import MisPort
from clinicbot.reminders.callbacks import PREFIX, SETTINGS_PREFIX, VALUE_PATTERN
from clinicbot.reminders.config import LEAD_CHOICES, ReminderConfig
from clinicbot.reminders.items import SettingKind
from clinicbot.reminders.medication import ALL_DAYS, MAX_COURSE_DAYS, new_user_series, parse_times
from clinicbot.reminders.planner import ReminderPlanner
from clinicbot.reminders.store import ReminderStore
from clinicbot.reminders.texts import visit_keyboard
from clinicbot.storage.unit import StateUnit
from clinicbot.telegram.callbacks import MenuCb
from clinicbot.telegram.routers.booking import PatientGate, Reply, show, slot_when, start_reschedule
from clinicbot.telegram.routers.visits import VisitLookup, find_visit

__all__ = ["REPLY_KIND", "REPLY_WINDOW", "MedSG", "RemCb", "RemSetCb", "build_router"]

log = logging.getLogger(__name__)

REPLY_KIND = "reminder_reply"
REPLY_WINDOW = timedelta(hours=3)
"""Free text this soon after a reminder is taken as a reply to it."""
DURATIONS = (7, 14, 30, 90)

Value = Annotated[str, Field(pattern=VALUE_PATTERN)]


class RemCb(CallbackData, prefix=PREFIX):
    """``rem:<a>:<v>`` -- the same strings ``clinicbot.reminders.callbacks.pack`` makes."""

    a: Literal["c", "x", "xy", "xn", "r", "t"]
    v: Value


class RemSetCb(CallbackData, prefix=SETTINGS_PREFIX):
    a: Literal[
        "open", "k", "leads", "lead", "ldef", "meds", "add", "del", "nolabel", "day", "days", "dur", "stop"
    ]
    v: Value = "-"


class MedSG(StatesGroup):
    label = State()
    times = State()
    days = State()
    duration = State()


# =========================================================================== dependencies
_stores: dict[str, ReminderStore] = {}


def reminder_store(settings: Settings, data: dict[str, Any]) -> ReminderStore:
    """The ReminderTable store (configured once per process), or the one tests put into the workflow data."""
    given: ReminderStore | None = data.get("reminder_store")
    if given is not None:
        return given
    store = _stores.get(settings.reminder_table)
    if store is None:
        from clinicbot.reminders.dynamo import DynamoReminderStore

        store = _stores[settings.reminder_table] = DynamoReminderStore.configured(settings)
    return store


async def planner_for(settings: Settings, schedule: ScheduleReader, data: dict[str, Any]) -> ReminderPlanner:
    branches = list((await schedule.branches()).values())
    return ReminderPlanner.for_settings(
        settings,
        branches=branches,
        store=reminder_store(settings, data),
        directory=data.get("reminder_directory"),
    )


def _kb(rows: Sequence[Sequence[tuple[str, CallbackData]]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=text, callback_data=cb.pack()) for text, cb in row] for row in rows
        ]
    )


def _markup(raw: dict[str, Any]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup.model_validate(raw)


def _leads_text(t: Translator, leads: tuple[int, ...]) -> str:
    return ", ".join(t("settings.leads.hours", n=h) for h in sorted(leads, reverse=True))


def _days_text(t: Translator, days: list[int]) -> str:
    if sorted(days) == list(ALL_DAYS):
        return t("settings.days.all")
    names = t("settings.days.names").split()
    return " ".join(names[d] for d in sorted(days))


# =========================================================================== screens
def screen_settings(
    t: Translator, card: PatientCard, config: ReminderConfig
) -> tuple[str, InlineKeyboardMarkup]:
    off = set(card.reminders_off)
    rows: list[list[tuple[str, CallbackData]]] = []
    for kind in SettingKind:
        name = t(f"settings.kind.{kind.value}")
        label = t("settings.off" if kind.value in off else "settings.on", name=name)
        rows.append([(label, RemSetCb(a="k", v=kind.value))])
    leads = card.reminder_leads or config.lead_hours
    rows.append([(t("settings.leads.button", leads=_leads_text(t, leads)), RemSetCb(a="leads"))])
    rows.append([(t("settings.meds.button"), RemSetCb(a="meds"))])
    rows.append([(t("settings.to_menu"), MenuCb(action="main"))])
    return t("settings.title"), _kb(rows)


def screen_leads(
    t: Translator, leads: tuple[int, ...], config: ReminderConfig
) -> tuple[str, InlineKeyboardMarkup]:
    chosen = set(leads)
    buttons = [
        (("✅ " if h in chosen else "▫️ ") + t("settings.leads.hours", n=h), RemSetCb(a="lead", v=str(h)))
        for h in LEAD_CHOICES
    ]
    rows = [buttons[i : i + 4] for i in range(0, len(buttons), 4)]
    rows.append([(t("settings.leads.default", leads=_leads_text(t, config.lead_hours)), RemSetCb(a="ldef"))])
    rows.append([(t("settings.back"), RemSetCb(a="open"))])
    return t("settings.leads.title"), _kb(rows)


def screen_meds(t: Translator, series: list[dict[str, Any]]) -> tuple[str, InlineKeyboardMarkup]:
    if not series:
        text = t("settings.meds.none")
    else:
        lines = [t("settings.meds.title"), ""]
        for n, s in enumerate(series, start=1):
            lines.append(
                t(
                    "settings.meds.item",
                    n=n,
                    label=html.escape(s.get("label") or t("settings.meds.generic_label")),
                    times=", ".join(s["times"]),
                    days=_days_text(t, list(s.get("days") or ALL_DAYS)),
                    end=fmt_day(t, date.fromisoformat(s["end"])),
                )
            )
        text = "\n".join(lines)
    rows: list[list[tuple[str, CallbackData]]] = [[(t("settings.meds.add"), RemSetCb(a="add"))]]
    deletes: list[tuple[str, CallbackData]] = [
        (t("settings.meds.delete", n=n), RemSetCb(a="del", v=s["id"])) for n, s in enumerate(series, 1)
    ]
    rows += [deletes[i : i + 3] for i in range(0, len(deletes), 3)]
    rows.append([(t("settings.back"), RemSetCb(a="open"))])
    return text, _kb(rows)


def days_keyboard(t: Translator, days: list[int]) -> InlineKeyboardMarkup:
    names = t("settings.days.names").split()
    row = [(("✅" if d in days else "▫️") + names[d], RemSetCb(a="day", v=str(d))) for d in ALL_DAYS]
    return _kb(
        [
            row[:4],
            row[4:],
            [(t("settings.days.done"), RemSetCb(a="days")), (t("settings.cancel"), RemSetCb(a="stop"))],
        ]
    )


def cancel_keyboard(t: Translator, *extra: tuple[str, CallbackData]) -> InlineKeyboardMarkup:
    rows = [[item] for item in extra]
    rows.append([(t("settings.cancel"), RemSetCb(a="stop"))])
    return _kb(rows)


def durations_keyboard(t: Translator) -> InlineKeyboardMarkup:
    row = [(t("settings.meds.days_n", n=n), RemSetCb(a="dur", v=str(n))) for n in DURATIONS]
    return _kb([row, [(t("settings.cancel"), RemSetCb(a="stop"))]])


# =========================================================================== filters
def replies_to_a_reminder(message: Message, card: PatientCard | None) -> bool:
    """Free text from a linked patient that answers a reminder (a reply, or soon after one)."""
    if card is None or not card.has_consent or not card.is_linked:
        return False
    replied = message.reply_to_message
    if replied is not None and replied.reply_markup is not None:
        markup = replied.reply_markup
        if isinstance(markup, InlineKeyboardMarkup):
            data = [b.callback_data or "" for row in markup.inline_keyboard for b in row]
            if any(d.startswith((f"{PREFIX}:", f"{SETTINGS_PREFIX}:")) for d in data):
                return True
    last = card.last_reminder_at
    return last is not None and datetime.now(UTC) - last <= REPLY_WINDOW


# =========================================================================== the router
def build_router() -> Router:
    router = Router(name="reminders")
    gate = PatientGate()
    router.callback_query.middleware(gate)
    router.message.middleware(gate)
    router.callback_query.middleware(VisitLookup())  # after the gate: the patient's visit for flagged buttons

    # ------------------------------------------------------------------ the buttons under a reminder
    @router.callback_query(RemCb.filter(F.a == "c"), flags={"visit": "reminders.gone"})
    async def confirm(
        query: CallbackQuery,
        t: Translator,
        mis: MisPort,
        schedule: ScheduleReader,
        patient_id: str,
        visit: Appointment,
    ) -> Reply:
        try:
            confirmed = await mis.confirm(patient_id, visit.id)
        except (NotAllowed, NotFound):
            return query.answer(t("reminders.not_possible"), show_alert=True)
        when = slot_when(t, confirmed, await schedule.branches())
        await query.answer(t("reminders.confirmed", when=when))
        if isinstance(query.message, Message):
            return query.message.edit_reply_markup(
                reply_markup=_markup(visit_keyboard(t, confirmed.id, confirmed=True))
            )
        return None

    @router.callback_query(RemCb.filter(F.a == "x"), flags={"visit": "reminders.gone"})
    async def ask_cancel(
        query: CallbackQuery,
        callback_data: RemCb,
        t: Translator,
        schedule: ScheduleReader,
        visit: Appointment,
    ) -> Reply:
        when = slot_when(t, visit, await schedule.branches(), year=True)
        await query.answer()
        markup = _kb(
            [
                [
                    (t("reminders.cancel_yes"), RemCb(a="xy", v=callback_data.v)),
                    (t("reminders.cancel_no"), RemCb(a="xn", v=callback_data.v)),
                ]
            ]
        )
        return SendMessage(
            chat_id=query.from_user.id, text=t("reminders.cancel_ask", when=when), reply_markup=markup
        )

    @router.callback_query(RemCb.filter(F.a == "xy"), flags={"visit": "reminders.gone"})
    async def do_cancel(
        query: CallbackQuery,
        t: Translator,
        schedule: ScheduleReader,
        booking: BookingService,
        settings: Settings,
        patient_id: str,
        visit: Appointment,
        **data: Any,
    ) -> Reply:
        result = await booking.cancel(patient_id, visit.id)
        if result.outcome is BookingOutcome.NOT_ALLOWED or result.appointment is None:
            return query.answer(t("reminders.not_possible"), show_alert=True)
        planner = await planner_for(settings, schedule, data)
        planner.cancel_appointment(
            telegram_user_id=query.from_user.id, appointment_id=visit.id, reason="cancelled"
        )
        await query.answer()
        when = slot_when(t, result.appointment, await schedule.branches(), year=True)
        return show(query, t("reminders.cancelled", when=when), None)

    @router.callback_query(RemCb.filter(F.a == "xn"))
    async def keep(
        query: CallbackQuery,
        callback_data: RemCb,
        t: Translator,
        mis: MisPort,
        schedule: ScheduleReader,
        patient_id: str,
    ) -> Reply:
        found = await find_visit(mis, patient_id, callback_data.v)
        await query.answer()
        if found is None:
            return show(query, t("reminders.gone"), None)
        return show(query, t("reminders.kept", when=slot_when(t, found, await schedule.branches())), None)

    @router.callback_query(RemCb.filter(F.a == "r"), flags={"visit": "reminders.gone"})
    async def reschedule(
        query: CallbackQuery,
        state: FSMContext,
        t: Translator,
        schedule: ScheduleReader,
        now: datetime,
        visit: Appointment,
    ) -> Reply:
        # The booking wizard moves the visit; the booking flow (and the MIS sync) re-plan its reminders.
        return await start_reschedule(query, state, t, visit, schedule, now)

    @router.callback_query(RemCb.filter(F.a == "t"))
    async def taken(
        query: CallbackQuery,
        callback_data: RemCb,
        t: Translator,
        settings: Settings,
        now: datetime,
        **data: Any,
    ) -> Reply:
        store = reminder_store(settings, data)
        # the item is looked up in the presser's own partition: someone else's id matches nothing
        item = store.mark_taken(query.from_user.id, callback_data.v, now)
        if item is None:
            return query.answer(t("reminders.taken_gone"), show_alert=True)
        if item.taken_at != now:  # pressed before: the button is already gone from that message
            return query.answer(t("reminders.taken"))
        await query.answer(t("reminders.taken"))
        if isinstance(query.message, Message):
            rows = [[(t("reminders.btn.settings"), RemSetCb(a="open"))]]
            return query.message.edit_reply_markup(reply_markup=_kb(rows))
        return None

    # ------------------------------------------------------------------ settings
    @router.callback_query(MenuCb.filter(F.action == "reminders"))
    @router.callback_query(RemSetCb.filter(F.a == "open"))
    async def open_settings(
        query: CallbackQuery, state: FSMContext, card: PatientCard, t: Translator, settings: Settings
    ) -> Reply:
        if (await state.get_state() or "").startswith(f"{MedSG.__name__}:"):
            await state.clear()
        await query.answer()
        return show(query, *screen_settings(t, card, ReminderConfig.from_settings(settings)))

    @router.callback_query(RemSetCb.filter(F.a == "k"))
    async def toggle_kind(
        query: CallbackQuery,
        callback_data: RemSetCb,
        card: PatientCard,
        unit: StateUnit,
        t: Translator,
        settings: Settings,
    ) -> Reply:
        kinds = {k.value for k in SettingKind}
        if callback_data.v not in kinds:
            return query.answer()
        off = set(card.reminders_off) ^ {callback_data.v}
        card = unit.save_card(query.from_user.id, reminders_off=tuple(sorted(off)))
        await query.answer()
        return show(query, *screen_settings(t, card, ReminderConfig.from_settings(settings)))

    @router.callback_query(RemSetCb.filter(F.a == "leads"))
    async def leads(query: CallbackQuery, card: PatientCard, t: Translator, settings: Settings) -> Reply:
        config = ReminderConfig.from_settings(settings)
        await query.answer()
        return show(query, *screen_leads(t, card.reminder_leads or config.lead_hours, config))

    async def _replan(
        query: CallbackQuery,
        leads: tuple[int, ...],
        mis: MisPort,
        schedule: ScheduleReader,
        settings: Settings,
        patient_id: str,
        now: datetime,
        data: dict[str, Any],
    ) -> None:
        visits = await mis.visits(patient_id)
        planner = await planner_for(settings, schedule, data)
        planner.sync_patient_appointments(
            telegram_user_id=query.from_user.id,
            patient_id=patient_id,
            appointments=list(visits.upcoming),
            now=now,
            leads=leads,
        )

    @router.callback_query(RemSetCb.filter(F.a.in_({"lead", "ldef"})))
    async def choose_lead(
        query: CallbackQuery,
        callback_data: RemSetCb,
        card: PatientCard,
        unit: StateUnit,
        t: Translator,
        settings: Settings,
        mis: MisPort,
        schedule: ScheduleReader,
        patient_id: str,
        now: datetime,
        **data: Any,
    ) -> Reply:
        config = ReminderConfig.from_settings(settings)
        if callback_data.a == "ldef":
            chosen: tuple[int, ...] | None = None
        else:
            if not callback_data.v.isdigit() or int(callback_data.v) not in LEAD_CHOICES:
                return query.answer()
            current = set(card.reminder_leads or config.lead_hours)
            new = current ^ {int(callback_data.v)}
            if not new:
                return query.answer(t("settings.leads.need_one"), show_alert=True)
            chosen = tuple(sorted(new, reverse=True))
            if chosen == config.lead_hours:
                chosen = None
        card = unit.save_card(query.from_user.id, reminder_leads=chosen)
        effective = chosen or config.lead_hours
        await _replan(query, effective, mis, schedule, settings, patient_id, now, data)
        await query.answer(t("settings.leads.saved", leads=_leads_text(t, effective)))
        return show(query, *screen_leads(t, effective, config))

    # ------------------------------------------------------------------ own medication schedules
    @router.callback_query(RemSetCb.filter(F.a == "meds"))
    async def meds(query: CallbackQuery, t: Translator, settings: Settings, **data: Any) -> Reply:
        await query.answer()
        return show(query, *screen_meds(t, reminder_store(settings, data).list_series(query.from_user.id)))

    @router.callback_query(RemSetCb.filter(F.a == "del"))
    async def delete_med(
        query: CallbackQuery,
        callback_data: RemSetCb,
        t: Translator,
        settings: Settings,
        schedule: ScheduleReader,
        **data: Any,
    ) -> Reply:
        planner = await planner_for(settings, schedule, data)
        planner.remove_medication(telegram_user_id=query.from_user.id, series_id=callback_data.v)
        await query.answer(t("settings.meds.deleted"))
        return show(query, *screen_meds(t, planner.store.list_series(query.from_user.id)))

    @router.callback_query(RemSetCb.filter(F.a == "add"))
    async def add_med(query: CallbackQuery, state: FSMContext, t: Translator) -> Reply:
        await state.set_state(MedSG.label)
        await state.set_data({})
        await query.answer()
        markup = cancel_keyboard(t, (t("settings.meds.no_label"), RemSetCb(a="nolabel")))
        return show(query, t("settings.meds.ask_label"), markup)

    async def ask_times(
        state: FSMContext, t: Translator, label: str | None
    ) -> tuple[str, InlineKeyboardMarkup]:
        await state.update_data(label=label)
        await state.set_state(MedSG.times)
        return t("settings.meds.ask_times"), cancel_keyboard(t)

    @router.callback_query(StateFilter(MedSG.label), RemSetCb.filter(F.a == "nolabel"))
    async def no_label(query: CallbackQuery, state: FSMContext, t: Translator) -> Reply:
        await query.answer()
        return show(query, *await ask_times(state, t, None))

    @router.message(StateFilter(MedSG.label), F.text)
    async def label_typed(message: Message, state: FSMContext, t: Translator) -> Reply:
        text, markup = await ask_times(state, t, (message.text or "").strip()[:64] or None)
        return message.answer(text, reply_markup=markup)

    @router.message(StateFilter(MedSG.times), F.text)
    async def times_typed(message: Message, state: FSMContext, t: Translator) -> Reply:
        try:
            times = parse_times(message.text or "")
        except ValueError:
            return message.answer(t("settings.meds.bad_times"), reply_markup=cancel_keyboard(t))
        await state.update_data(times=times, days=list(ALL_DAYS))
        await state.set_state(MedSG.days)
        return message.answer(t("settings.meds.ask_days"), reply_markup=days_keyboard(t, list(ALL_DAYS)))

    @router.callback_query(StateFilter(MedSG.days), RemSetCb.filter(F.a == "day"))
    async def toggle_day(
        query: CallbackQuery, callback_data: RemSetCb, state: FSMContext, t: Translator
    ) -> Reply:
        if not callback_data.v.isdigit() or int(callback_data.v) not in ALL_DAYS:
            return query.answer()
        days = set((await state.get_data()).get("days") or []) ^ {int(callback_data.v)}
        await state.update_data(days=sorted(days))
        await query.answer()
        if isinstance(query.message, Message):
            return query.message.edit_reply_markup(reply_markup=days_keyboard(t, sorted(days)))
        return None

    @router.callback_query(StateFilter(MedSG.days), RemSetCb.filter(F.a == "days"))
    async def days_done(query: CallbackQuery, state: FSMContext, t: Translator) -> Reply:
        if not (await state.get_data()).get("days"):
            return query.answer(t("settings.meds.ask_days"), show_alert=True)
        await state.set_state(MedSG.duration)
        await query.answer()
        return show(query, t("settings.meds.ask_duration"), durations_keyboard(t))

    async def save_med(
        user_id: int,
        days_count: int,
        state: FSMContext,
        t: Translator,
        settings: Settings,
        schedule: ScheduleReader,
        patient_id: str,
        now: datetime,
        data: dict[str, Any],
    ) -> str:
        fsm = await state.get_data()
        planner = await planner_for(settings, schedule, data)
        tz = planner.config.default_tz
        today = now.astimezone(ZoneInfo(tz)).date()
        series = new_user_series(
            label=fsm.get("label"),
            times=fsm.get("times") or [],
            days=fsm.get("days") or ALL_DAYS,
            start=today,
            end=today + timedelta(days=days_count - 1),
            tz=tz,
        )
        result = planner.add_medication(
            telegram_user_id=user_id, patient_id=patient_id, series=series, now=now
        )
        await state.clear()
        items = [i for i in planner.store.user_items(user_id, f"m#{series['id']}#")]
        if not (result.created or result.revived) or not items:
            return t("settings.meds.saved_none")
        first = min(i.planned_at for i in items).astimezone(ZoneInfo(tz))
        return t("settings.meds.saved", when=f"{fmt_day(t, first.date())}, {fmt_time(first)}")

    @router.callback_query(StateFilter(MedSG.duration), RemSetCb.filter(F.a == "dur"))
    async def duration_chosen(
        query: CallbackQuery,
        callback_data: RemSetCb,
        state: FSMContext,
        t: Translator,
        settings: Settings,
        schedule: ScheduleReader,
        patient_id: str,
        now: datetime,
        **data: Any,
    ) -> Reply:
        if not callback_data.v.isdigit() or not 1 <= int(callback_data.v) <= MAX_COURSE_DAYS:
            return query.answer()
        text = await save_med(
            query.from_user.id, int(callback_data.v), state, t, settings, schedule, patient_id, now, data
        )
        await query.answer()
        series = reminder_store(settings, data).list_series(query.from_user.id)
        _, markup = screen_meds(t, series)
        return show(query, text, markup)

    @router.message(StateFilter(MedSG.duration), F.text)
    async def duration_typed(
        message: Message,
        state: FSMContext,
        t: Translator,
        settings: Settings,
        schedule: ScheduleReader,
        patient_id: str,
        now: datetime,
        **data: Any,
    ) -> Reply:
        text = (message.text or "").strip()
        if not text.isdigit() or not 1 <= int(text) <= MAX_COURSE_DAYS:
            return message.answer(t("settings.meds.bad_duration"), reply_markup=durations_keyboard(t))
        assert message.from_user is not None
        answer = await save_med(
            message.from_user.id, int(text), state, t, settings, schedule, patient_id, now, data
        )
        _, markup = screen_meds(t, reminder_store(settings, data).list_series(message.from_user.id))
        return message.answer(answer, reply_markup=markup)

    @router.callback_query(StateFilter(MedSG), RemSetCb.filter(F.a == "stop"))
    async def stop(
        query: CallbackQuery, state: FSMContext, t: Translator, settings: Settings, **data: Any
    ) -> Reply:
        await state.clear()
        await query.answer()
        return show(query, *screen_meds(t, reminder_store(settings, data).list_series(query.from_user.id)))

    @router.callback_query(RemSetCb.filter(F.a.in_({"nolabel", "day", "days", "dur", "stop"})))
    async def stale_step(query: CallbackQuery, t: Translator) -> Reply:
        return query.answer(t("fallback.button"), show_alert=True)

    @router.message(StateFilter(MedSG))
    async def use_text(message: Message, t: Translator, state: FSMContext) -> Reply:
        current = await state.get_state()
        if current == MedSG.days.state:
            return message.answer(t("settings.meds.ask_days"))
        return message.answer(
            t("settings.meds.bad_times" if current == MedSG.times.state else "settings.meds.ask_label")
        )

    # ------------------------------------------------------------------ a reply to a reminder
    @router.message(
        F.chat.type == "private", F.text, ~F.text.startswith("/"), StateFilter(None), replies_to_a_reminder
    )
    async def reply_to_reminder(message: Message, t: Translator, outbox: Outbox, patient_id: str) -> Reply:
        user = message.from_user
        assert user is not None
        replied = message.reply_to_message
        payload = {
            "user_id": user.id,
            "chat_id": message.chat.id,
            "message_id": message.message_id,
            "patient_id": patient_id,
            "reply_to_message_id": replied.message_id if replied is not None else None,
            "content_type": "text",
        }
        try:
            outbox.publish(REPLY_KIND, payload, f"{REPLY_KIND}:{message.chat.id}:{message.message_id}")
        except Exception:
            log.exception("could not queue a reply to a reminder")
            return message.answer(t("reminders.reply_failed"))
        return message.answer(t("reminders.reply_forwarded"))

    # ------------------------------------------------------------------ blocked / unblocked
    @router.my_chat_member(F.chat.type == "private")
    async def membership(event: ChatMemberUpdated, card: PatientCard | None, unit: StateUnit) -> None:
        if card is None or not card.has_consent:
            return
        status = event.new_chat_member.status
        if status == "kicked" and card.unreachable_at is None:
            unit.save_card(event.from_user.id, unreachable_at=datetime.now(UTC))
        elif status == "member" and card.unreachable_at is not None:
            unit.save_card(event.from_user.id, unreachable_at=None)

    return router


def reminder_ref(appointment_id: str) -> str:
    return ref_of(appointment_id)
