"""About the clinic: branches (address, opening hours, a venue pin), doctors by specialty with a short
profile, services with prices, the FAQ; and free text answered from the FAQ.

Reference information is public: anyone may read it, consented or not (nothing is stored for it). The FAQ
router is the last before the fallback: free text that no other router took is searched in the FAQ; with
no answer, a linked patient is offered to write to the clinic, anyone else gets the fallback's answer.
"""

from __future__ import annotations

import html
import logging
from typing import Any

from aiogram import Bot, F, Router
from aiogram.dispatcher.event.bases import SkipHandler
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import SendMessage
from aiogram.types import CallbackQuery, InlineKeyboardButton, InlineKeyboardMarkup, Message

from clinicbot.booking.refs import ref_of, resolve
from clinicbot.booking.schedule import MisScheduleReader
from clinicbot.domain.patient import PatientCard
from clinicbot.engagement.faq import Faq, load_faq
from clinicbot.i18n import Translator
from clinicbot.mis.errors import MisUnavailable
from clinicbot.mis.models import Branch, OpeningHours
from clinicbot.mis.port import MisPort
from clinicbot.telegram.callbacks import MenuCb
from clinicbot.telegram.routers.account import fmt_money

__all__ = ["CONTACT_CLINIC_ACTION", "InfoCb", "build_faq_router", "build_router"]

log = logging.getLogger(__name__)

Reply = Any
CONTACT_CLINIC_ACTION = "chat"
"""``MenuCb(action="chat")``: "write to the clinic" (the hand-off router opens a chat with the staff)."""


class InfoCb(CallbackData, prefix="inf"):
    a: str  # home | br | sp | dr | pr | pl | faq | q
    v: str = "-"


def _button(text: str, data: CallbackData) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def _keyboard(rows: list[list[InlineKeyboardButton]]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _back(t: Translator, to: InfoCb | None = None) -> list[InlineKeyboardButton]:
    return [
        _button(t("info.back"), to or InfoCb(a="home")),
        _button(t("booking.to_menu"), MenuCb(action="main")),
    ]


def show(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> Reply:
    if isinstance(query.message, Message):
        return query.message.edit_text(text, reply_markup=markup, disable_web_page_preview=True)
    return SendMessage(
        chat_id=query.from_user.id, text=text, reply_markup=markup, disable_web_page_preview=True
    )


def home_screen(t: Translator) -> tuple[str, InlineKeyboardMarkup]:
    rows = [
        [_button(t("info.branches"), InfoCb(a="br")), _button(t("info.doctors"), InfoCb(a="sp"))],
        [_button(t("info.prices"), InfoCb(a="pl")), _button(t("info.faq"), InfoCb(a="faq"))],
        [_button(t("booking.to_menu"), MenuCb(action="main"))],
    ]
    return t("info.title"), _keyboard(rows)


def hours_lines(t: Translator, branch: Branch) -> list[str]:
    """Opening hours, consecutive days with the same hours grouped: ``Пн–Пт 08:00–21:00``."""
    days = t("calendar.weekdays_short").split()

    def span(hours: tuple[OpeningHours, ...]) -> str:
        return ", ".join(f"{h.opens:%H:%M}–{h.closes:%H:%M}" for h in hours) or t("info.closed")

    lines: list[str] = []
    weekday = 0
    while weekday < 7:
        hours = span(branch.hours_on(weekday))
        end = weekday
        while end + 1 < 7 and span(branch.hours_on(end + 1)) == hours:
            end += 1
        label = days[weekday] if end == weekday else f"{days[weekday]}–{days[end]}"
        lines.append(f"{label}: {hours}")
        weekday = end + 1
    return lines


def branch_text(t: Translator, branch: Branch) -> str:
    lang = t.language
    lines = [
        f"🏥 <b>{html.escape(branch.name.get(lang))}</b>",
        f"📍 {html.escape(branch.address.get(lang))}",
    ]
    if branch.phone:
        lines.append(f"📞 {html.escape(branch.phone)}")
    lines += ["", t("info.hours"), *hours_lines(t, branch)]
    return "\n".join(lines)


def build_router() -> Router:
    router = Router(name="info")
    router.message.filter(F.chat.type == "private")
    readers: dict[int, MisScheduleReader] = {}

    def reader(mis: MisPort) -> MisScheduleReader:
        found = readers.get(id(mis))
        if found is None:
            readers.clear()
            found = readers[id(mis)] = MisScheduleReader(mis)
        return found

    @router.message(Command("info"))
    async def info_command(message: Message, t: Translator) -> Reply:
        text, markup = home_screen(t)
        return message.answer(text, reply_markup=markup)

    @router.callback_query(MenuCb.filter(F.action == "info"))
    @router.callback_query(InfoCb.filter(F.a == "home"))
    async def home(query: CallbackQuery, t: Translator) -> Reply:
        await query.answer()
        text, markup = home_screen(t)
        return show(query, text, markup)

    @router.callback_query(InfoCb.filter(F.a == "br"))
    async def branches(
        query: CallbackQuery, callback_data: InfoCb, t: Translator, mis: MisPort, bot: Bot
    ) -> Reply:
        found = await _safe(query, t, reader(mis).branches())
        if found is None:
            return None
        branch_list = list(found.values())
        if callback_data.v == "-":
            await query.answer()
            rows = [[_button(b.name.get(t.language), InfoCb(a="br", v=ref_of(b.id)))] for b in branch_list]
            rows.append(_back(t))
            return show(query, t("info.branches_title"), _keyboard(rows))
        branch = resolve(callback_data.v, branch_list, key=lambda b: b.id)
        if branch is None:
            return query.answer(t("info.gone"), show_alert=True)
        await query.answer()
        if branch.lat is not None and branch.lon is not None:
            # The pin first (a message of its own), then the card replaces the list.
            await bot.send_venue(
                chat_id=query.from_user.id,
                latitude=branch.lat,
                longitude=branch.lon,
                title=branch.name.get(t.language),
                address=branch.address.get(t.language),
            )
        return show(query, branch_text(t, branch), _keyboard([_back(t, InfoCb(a="br"))]))

    @router.callback_query(InfoCb.filter(F.a.in_({"sp", "pl"})))
    async def specialties(query: CallbackQuery, callback_data: InfoCb, t: Translator, mis: MisPort) -> Reply:
        found = await _safe(query, t, reader(mis).specialties())
        if found is None:
            return None
        target = "dr" if callback_data.a == "sp" else "pr"
        await query.answer()
        rows = [[_button(s.name.get(t.language), InfoCb(a=target, v=ref_of(s.id)))] for s in found]
        rows.append(_back(t))
        title = t("info.doctors_title") if target == "dr" else t("info.prices_title")
        return show(query, title, _keyboard(rows))

    @router.callback_query(InfoCb.filter(F.a == "dr"))
    async def doctors(query: CallbackQuery, callback_data: InfoCb, t: Translator, mis: MisPort) -> Reply:
        schedule = reader(mis)
        found = await _safe(query, t, schedule.specialties())
        if found is None:
            return None
        specialty = resolve(callback_data.v, found, key=lambda s: s.id)
        if specialty is None:
            return query.answer(t("info.gone"), show_alert=True)
        branches = await schedule.branches()
        lang = t.language
        lines = [f"<b>{html.escape(specialty.name.get(lang))}</b>", ""]
        for doctor in await schedule.doctors(specialty_id=specialty.id):
            branch = branches.get(doctor.branch_id)
            lines.append(f"👩‍⚕️ <b>{html.escape(doctor.full_name.get(lang))}</b>")
            if doctor.profile:
                lines.append(html.escape(doctor.profile.get(lang)))
            if branch:
                lines.append(f"🏥 {html.escape(branch.name.get(lang))}")
            lines.append("")
        await query.answer()
        rows = [[_button(t("booking.menu"), MenuCb(action="book"))], _back(t, InfoCb(a="sp"))]
        return show(query, "\n".join(lines).strip(), _keyboard(rows))

    @router.callback_query(InfoCb.filter(F.a == "pr"))
    async def prices(query: CallbackQuery, callback_data: InfoCb, t: Translator, mis: MisPort) -> Reply:
        found = await _safe(query, t, reader(mis).specialties())
        if found is None:
            return None
        specialty = resolve(callback_data.v, found, key=lambda s: s.id)
        if specialty is None:
            return query.answer(t("info.gone"), show_alert=True)
        services = await _safe(query, t, mis.services(specialty_id=specialty.id))
        if services is None:
            return None
        lang = t.language
        lines = [f"<b>{html.escape(specialty.name.get(lang))}</b>", ""]
        for service in services:
            lines.append(
                t(
                    "info.price_item",
                    service=html.escape(service.name.get(lang)),
                    price=fmt_money(service.price),
                    minutes=service.duration_minutes,
                )
            )
        if not services:
            lines.append(t("info.prices_none"))
        await query.answer()
        return show(query, "\n".join(lines), _keyboard([_back(t, InfoCb(a="pl"))]))

    @router.callback_query(InfoCb.filter(F.a == "faq"))
    async def faq_list(query: CallbackQuery, t: Translator) -> Reply:
        await query.answer()
        faq = load_faq()
        rows = [[_button(e.text(e.question, t.language), InfoCb(a="q", v=e.id))] for e in faq.entries]
        rows.append(_back(t))
        return show(query, t("info.faq_title"), _keyboard(rows))

    @router.callback_query(InfoCb.filter(F.a == "q"))
    async def faq_answer(query: CallbackQuery, callback_data: InfoCb, t: Translator) -> Reply:
        entry = load_faq().get(callback_data.v)
        if entry is None:
            return query.answer(t("info.gone"), show_alert=True)
        await query.answer()
        text = f"<b>{html.escape(entry.text(entry.question, t.language))}</b>\n\n{html.escape(entry.text(entry.answer, t.language))}"
        return show(query, text, _keyboard([_back(t, InfoCb(a="faq"))]))

    return router


async def _safe(query: CallbackQuery, t: Translator, awaitable: Any) -> Any:
    try:
        return await awaitable
    except MisUnavailable:
        log.warning("MIS unavailable for reference information")
        await query.answer(t("mis.unavailable"), show_alert=True)
        return None


def build_faq_router(faq: Faq | None = None) -> Router:
    """Free text no other router took: an answer from the FAQ; else "write to the clinic" for a linked
    patient, and the fallback router's answer for anyone else. Include it just before the fallback."""
    router = Router(name="faq")

    @router.message(F.chat.type == "private", F.text, ~F.text.startswith("/"))
    async def free_text(message: Message, card: PatientCard | None, t: Translator) -> Reply:
        assert message.text is not None
        entry = (faq or load_faq()).search(message.text, t.language)
        if entry is not None:
            text = f"<b>{html.escape(entry.text(entry.question, t.language))}</b>\n\n{html.escape(entry.text(entry.answer, t.language))}"
            rows = [[_button(t("info.faq_more"), InfoCb(a="faq"))]]
            return message.answer(text, reply_markup=_keyboard(rows))
        if card is None or not card.has_consent or not card.is_linked:
            raise SkipHandler  # onboarding's fallback knows what such a user needs next
        rows = [
            [_button(t("faq.contact_clinic"), MenuCb(action=CONTACT_CLINIC_ACTION))],
            [_button(t("info.faq"), InfoCb(a="faq")), _button(t("booking.to_menu"), MenuCb(action="main"))],
        ]
        return message.answer(t("faq.not_found"), reply_markup=_keyboard(rows))

    return router
