"""My visits: the patient's upcoming visits; on one of them: reschedule, cancel (with a confirmation),
"call me back".

A visit button carries a reference to the appointment id; it is resolved against the patient's own
upcoming visits fetched from the MIS, so a button naming someone else's visit, a cancelled or a past
one, changes nothing and gets a polite answer.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from aiogram import BaseMiddleware, F, Router
from aiogram.dispatcher.flags import get_flag
from aiogram.fsm.context import FSMContext
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, TelegramObject

from clinicbot.booking.refs import ref_of, resolve
from clinicbot.booking.schedule import ScheduleReader
from clinicbot.booking.service import BookingService, Outcome
from clinicbot.booking.texts import branch_line, doctor_name, fmt_day, fmt_time, short_name, specialty_names
from clinicbot.i18n import Translator
from clinicbot.mis.models import Appointment, AppointmentStatus
from clinicbot.mis.port import MisPort
from clinicbot.telegram.booking_callbacks import VisitCb
from clinicbot.telegram.booking_keyboards import (
    after_visit_keyboard,
    cancel_confirm_keyboard,
    visit_keyboard,
    visits_keyboard,
)
from clinicbot.telegram.callbacks import MenuCb
from clinicbot.telegram.routers.booking import PatientGate, Reply, refresh, show, slot_when, start_reschedule

log = logging.getLogger(__name__)

SHOWN = 10


async def find_visit(mis: MisPort, patient_id: str, ref: str) -> Appointment | None:
    """One of the patient's upcoming visits by reference, or None."""
    visits = await mis.visits(patient_id)
    return resolve(ref, visits.upcoming, key=lambda a: a.id)


class VisitLookup(BaseMiddleware):
    """Inner middleware (after :class:`PatientGate`) for callback handlers flagged ``visit=<text key>``: the
    patient's own upcoming visit that the button's ``v`` names goes into handler data as ``visit``; a button
    naming none (someone else's, cancelled, past) is answered with the flag's text in an alert and the
    handler does not run."""

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        gone = get_flag(data, "visit")
        if gone is None or not isinstance(event, CallbackQuery):
            return await handler(event, data)
        visit = await find_visit(data["mis"], data["patient_id"], data["callback_data"].v)
        if visit is None:
            return event.answer(data["t"](gone), show_alert=True)
        data["visit"] = visit
        return await handler(event, data)


async def screen_visits(
    t: Translator, mis: MisPort, schedule: ScheduleReader, patient_id: str
) -> tuple[str, InlineKeyboardMarkup]:
    visits = (await mis.visits(patient_id)).upcoming[:SHOWN]
    if not visits:
        return t("visits.none"), visits_keyboard(t, [])
    branches = await schedule.branches()
    specialties = await schedule.specialties()
    lines = [t("visits.title"), ""]
    buttons = []
    for number, visit in enumerate(visits, start=1):
        doctor = await schedule.doctor(visit.doctor_id)
        branch_name, _ = branch_line(branches.get(visit.branch_id), t)
        lines.append(
            t(
                "visits.item",
                n=number,
                when=slot_when(t, visit, branches),
                doctor=html.escape(doctor_name(doctor, t)),
                specialty=html.escape(specialty_names(doctor, specialties, t)),
                branch=branch_name,
            )
        )
        buttons.append((ref_of(visit.id), f"{slot_when(t, visit, branches)} · {short_name(doctor, t)}"))
    return "\n".join(lines), visits_keyboard(t, buttons)


async def screen_visit(
    t: Translator, mis: MisPort, schedule: ScheduleReader, patient_id: str, appointment_id: str
) -> tuple[str, InlineKeyboardMarkup]:
    visit = await find_visit(mis, patient_id, ref_of(appointment_id)) if appointment_id else None
    if visit is None:
        return t("visits.gone"), after_visit_keyboard(t)
    return await _card(t, schedule, visit), visit_keyboard(t, ref_of(visit.id))


async def _card(t: Translator, schedule: ScheduleReader, visit: Appointment) -> str:
    branches = await schedule.branches()
    branch = branches.get(visit.branch_id)
    doctor = await schedule.doctor(visit.doctor_id)
    specialties = await schedule.specialties()
    start = branch.local(visit.start) if branch else visit.start
    end = branch.local(visit.end) if branch else visit.end
    name, address = branch_line(branch, t)
    status = (
        "visits.status.confirmed" if visit.status is AppointmentStatus.CONFIRMED else "visits.status.booked"
    )
    return t(
        "visits.card",
        date=fmt_day(t, start.date(), year=True),
        time=fmt_time(start),
        end=fmt_time(end),
        doctor=html.escape(doctor_name(doctor, t)),
        specialty=html.escape(specialty_names(doctor, specialties, t)),
        branch=name,
        address=address,
        status=t(status),
        number=html.escape(visit.id),
    )


def build_router() -> Router:
    router = Router(name="visits")
    router.callback_query.middleware(PatientGate())
    router.callback_query.middleware(VisitLookup())

    @router.callback_query(MenuCb.filter(F.action == "visits"))
    @router.callback_query(VisitCb.filter(F.a == "list"))
    async def visits(
        query: CallbackQuery, t: Translator, mis: MisPort, schedule: ScheduleReader, patient_id: str
    ) -> Reply:
        text, markup = await screen_visits(t, mis, schedule, patient_id)
        await query.answer()
        return show(query, text, markup)

    @router.callback_query(VisitCb.filter(F.a == "show"), flags={"visit": "visits.gone"})
    async def show_visit(
        query: CallbackQuery,
        callback_data: VisitCb,
        t: Translator,
        schedule: ScheduleReader,
        visit: Appointment,
    ) -> Reply:
        await query.answer()
        return show(query, await _card(t, schedule, visit), visit_keyboard(t, callback_data.v))

    @router.callback_query(VisitCb.filter(F.a == "cx"), flags={"visit": "visits.gone"})
    async def ask_cancel(
        query: CallbackQuery,
        callback_data: VisitCb,
        t: Translator,
        schedule: ScheduleReader,
        visit: Appointment,
    ) -> Reply:
        branches = await schedule.branches()
        doctor = await schedule.doctor(visit.doctor_id)
        text = t(
            "visits.cancel_confirm",
            when=slot_when(t, visit, branches, year=True),
            doctor=html.escape(doctor_name(doctor, t)),
        )
        await query.answer()
        return show(query, text, cancel_confirm_keyboard(t, callback_data.v))

    @router.callback_query(VisitCb.filter(F.a == "cxok"))
    async def do_cancel(
        query: CallbackQuery,
        callback_data: VisitCb,
        t: Translator,
        mis: MisPort,
        schedule: ScheduleReader,
        booking: BookingService,
        patient_id: str,
    ) -> Reply:
        found = await find_visit(mis, patient_id, callback_data.v)
        if found is not None:
            appointment_id = found.id
        elif not callback_data.v.startswith("~") and callback_data.v != "-":
            # Not upcoming any more: perhaps cancelled by this very request before a crash. The MIS
            # checks the visit is this patient's; the service re-sends the CRM copy idempotently.
            appointment_id = callback_data.v
        else:
            return query.answer(t("visits.gone"), show_alert=True)
        result = await booking.cancel(patient_id, appointment_id)
        if result.outcome is Outcome.NOT_ALLOWED or result.appointment is None:
            return query.answer(t("visits.gone"), show_alert=True)
        branches = await schedule.branches()
        when = slot_when(t, result.appointment, branches, year=True)
        await query.answer()
        if result.outcome is Outcome.ALREADY:  # a second press, a retried update: truthful, changes nothing
            await refresh(
                query, t("visits.already_cancelled"), after_visit_keyboard(t)
            )  # may be shown already
            return None
        return show(query, t("visits.cancelled", when=when), after_visit_keyboard(t))

    @router.callback_query(VisitCb.filter(F.a == "rs"), flags={"visit": "visits.gone"})
    async def reschedule(
        query: CallbackQuery,
        state: FSMContext,
        t: Translator,
        schedule: ScheduleReader,
        now: datetime,
        visit: Appointment,
    ) -> Reply:
        return await start_reschedule(query, state, t, visit, schedule, now)

    @router.callback_query(VisitCb.filter(F.a == "cb"), flags={"visit": "visits.gone"})
    async def call_me_back(
        query: CallbackQuery,
        t: Translator,
        schedule: ScheduleReader,
        booking: BookingService,
        patient_id: str,
        visit: Appointment,
    ) -> Reply:
        try:
            number = await booking.request_callback(patient_id, visit)
        except Exception:
            log.exception("could not queue a call-back request", extra={"appointment_id": visit.id})
            return query.answer(t("visits.callback_failed"), show_alert=True)
        await query.answer()
        # Pressed twice, the same request shows the same number: the edit may change nothing, which
        # Telegram refuses; so it goes directly, that refusal ignored.
        await refresh(query, t("visits.callback_done", number=number), after_visit_keyboard(t))
        return None

    return router


__all__ = ["VisitLookup", "build_router", "find_visit", "screen_visit", "screen_visits"]
