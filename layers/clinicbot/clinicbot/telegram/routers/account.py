"""My account: balance, visit history, my referral link, news and offers (marketing consent), and the way to
my data / erasure (``privacy`` router). Also the referral plumbing around onboarding
(:class:`EngagementMiddleware`).

DynamoDB per update: the usual 1 read + 1 write, except "My link" (+1 GetItem of the link's counter; the
first time +1 PutItem that creates the link), the consent of a referred newcomer (+1 UpdateItem of the
referrer's counter) and a referred patient's first booking (+1 GetItem of the referrer).
"""

from __future__ import annotations

import contextlib
import html
import logging
from collections.abc import Awaitable, Callable, Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode

from aiogram import BaseMiddleware, Bot, F, Router
from aiogram.exceptions import TelegramBadRequest
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.fsm.context import FSMContext
from aiogram.methods import SendMessage
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
    TelegramObject,
    Update,
)

from clinicbot.booking.schedule import MisScheduleReader
from clinicbot.booking.texts import doctor_name, fmt_day, fmt_time, specialty_names
from clinicbot.config import Settings
from clinicbot.domain.patient import PatientCard
from clinicbot.engagement.referrals import REFERRAL_KIND, ReferralStore, deep_link, new_code
from clinicbot.handoff.outbox import Outbox
from clinicbot.i18n import Translator
from clinicbot.mis.errors import MisUnavailable, Unsupported
from clinicbot.mis.models import AppointmentStatus
from clinicbot.mis.port import Capability, MisPort
from clinicbot.storage.unit import StateUnit
from clinicbot.telegram.callbacks import ConsentCb, MenuCb
from clinicbot.telegram.replies import drop_buttons
from clinicbot.telegram.routers.booking import refuse_unless_linked

__all__ = [
    "AccountCb",
    "EngagementMiddleware",
    "LinkedPatientGate",
    "MarketingCb",
    "build_router",
    "fmt_money",
]

log = logging.getLogger(__name__)

Reply = Any
HISTORY_SHOWN = 10
BOOKING_KIND = "booking"  # clinicbot.booking.service.BOOKING_KIND (its payload: event, patient_id, ...)


class AccountCb(CallbackData, prefix="acc"):
    a: str  # home | bal | hist | ref | mkt


class MarketingCb(CallbackData, prefix="mkt"):
    a: str  # yes (consent given) | off (unsubscribe; under every broadcast: "mkt:off")


# =========================================================================== the gate
class LinkedPatientGate(BaseMiddleware):
    """Inner middleware: only a consented, linked patient passes (``patient_id`` goes into handler data);
    an MIS outage becomes a polite "try later"."""

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
        data["patient_id"] = card.patient_id
        try:
            return await handler(event, data)
        except MisUnavailable:
            log.warning("MIS unavailable in the patient's account")
            if isinstance(event, CallbackQuery):
                with contextlib.suppress(TelegramBadRequest):
                    await event.answer(t("mis.unavailable"), show_alert=True)
                return None
            if isinstance(event, Message):
                return event.answer(t("mis.unavailable"))
            return None


# =========================================================================== screens
def show(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> Reply:
    """Edit the message the button is under (or send a new one if it cannot be edited any more)."""
    if isinstance(query.message, Message):
        return query.message.edit_text(text, reply_markup=markup, disable_web_page_preview=True)
    return SendMessage(
        chat_id=query.from_user.id, text=text, reply_markup=markup, disable_web_page_preview=True
    )


def fmt_money(amount: Decimal) -> str:
    value = abs(amount)
    rounded = int(value) if value == value.to_integral_value() else value.quantize(Decimal("0.01"))
    return f"{rounded:,}".replace(",", " ")


def _button(text: str, data: CallbackData) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=text, callback_data=data.pack())


def back_row(t: Translator) -> list[InlineKeyboardButton]:
    return [
        _button(t("account.back"), AccountCb(a="home")),
        _button(t("booking.to_menu"), MenuCb(action="main")),
    ]


def account_screen(t: Translator, card: PatientCard, mis: MisPort) -> tuple[str, InlineKeyboardMarkup]:
    from clinicbot.telegram.routers.privacy import PrivacyCb

    news = t("account.news_on") if card.wants_marketing else t("account.news_off")
    rows: list[list[InlineKeyboardButton]] = []
    first = [_button(t("account.history"), AccountCb(a="hist"))]
    if Capability.BALANCE in mis.capabilities:  # no balance in the MIS: no button
        first.insert(0, _button(t("account.balance"), AccountCb(a="bal")))
    rows.append(first)
    rows.append([_button(t("account.links"), AccountCb(a="ref")), _button(news, AccountCb(a="mkt"))])
    rows.append(
        [_button(t("privacy.mydata"), PrivacyCb(a="data")), _button(t("privacy.forget"), PrivacyCb(a="ask"))]
    )
    rows.append([_button(t("privacy.withdraw"), PrivacyCb(a="wask"))])
    rows.append([_button(t("booking.to_menu"), MenuCb(action="main"))])
    return t("account.title"), InlineKeyboardMarkup(inline_keyboard=rows)


STATUS_KEYS = {
    AppointmentStatus.FULFILLED: "account.status.fulfilled",
    AppointmentStatus.NOSHOW: "account.status.noshow",
    AppointmentStatus.CANCELLED: "account.status.cancelled",
    AppointmentStatus.BOOKED: "account.status.booked",
    AppointmentStatus.CONFIRMED: "account.status.booked",
}


async def history_text(t: Translator, mis: MisPort, reader: MisScheduleReader, patient_id: str) -> str:
    past = (await mis.visits(patient_id)).past[:HISTORY_SHOWN]
    if not past:
        return t("account.history_none")
    branches = await reader.branches()
    specialties = await reader.specialties()
    lines = [t("account.history_title"), ""]
    for visit in past:
        branch = branches.get(visit.branch_id)
        start = branch.local(visit.start) if branch else visit.start
        doctor = await reader.doctor(visit.doctor_id)
        line = t(
            "account.history_item",
            date=fmt_day(t, start.date(), year=True),
            time=fmt_time(start),
            doctor=html.escape(doctor_name(doctor, t)),
            specialty=html.escape(specialty_names(doctor, specialties, t)),
            status=t(STATUS_KEYS.get(visit.status, "account.status.booked")),
        )
        if visit.price is not None and visit.status is AppointmentStatus.FULFILLED:
            line += t("account.history_price", price=fmt_money(visit.price))
        lines.append(line)
    return "\n".join(lines)


def balance_text(t: Translator, amount: Decimal) -> str:
    if amount > 0:
        return t("account.balance_credit", amount=fmt_money(amount))
    if amount < 0:
        return t("account.balance_debt", amount=fmt_money(amount))
    return t("account.balance_zero")


def share_url(link: str, text: str) -> str:
    return "https://t.me/share/url?" + urlencode({"url": link, "text": text})


# =========================================================================== the router
def build_router() -> Router:
    router = Router(name="account")
    gate = LinkedPatientGate()
    router.callback_query.middleware(gate)
    router.message.filter(F.chat.type == "private")
    readers: dict[int, MisScheduleReader] = {}

    def reader(mis: MisPort) -> MisScheduleReader:
        found = readers.get(id(mis))
        if found is None:
            readers.clear()
            found = readers[id(mis)] = MisScheduleReader(mis)
        return found

    @router.callback_query(MenuCb.filter(F.action == "account"))
    @router.callback_query(AccountCb.filter(F.a == "home"))
    async def home(query: CallbackQuery, card: PatientCard, t: Translator, mis: MisPort) -> Reply:
        text, markup = account_screen(t, card, mis)
        await query.answer()
        return show(query, text, markup)

    @router.callback_query(AccountCb.filter(F.a == "bal"))
    async def balance(query: CallbackQuery, t: Translator, mis: MisPort, patient_id: str) -> Reply:
        if Capability.BALANCE not in mis.capabilities:
            return query.answer(t("account.balance_unavailable"), show_alert=True)
        try:
            account = await mis.balance(patient_id)
        except Unsupported:
            return query.answer(t("account.balance_unavailable"), show_alert=True)
        await query.answer()
        markup = InlineKeyboardMarkup(inline_keyboard=[back_row(t)])
        return show(query, balance_text(t, account.amount), markup)

    @router.callback_query(AccountCb.filter(F.a == "hist"))
    async def history(query: CallbackQuery, t: Translator, mis: MisPort, patient_id: str) -> Reply:
        text = await history_text(t, mis, reader(mis), patient_id)
        await query.answer()
        rows = [[_button(t("booking.menu"), MenuCb(action="book"))], back_row(t)]
        return show(query, text, InlineKeyboardMarkup(inline_keyboard=rows))

    @router.callback_query(AccountCb.filter(F.a == "ref"))
    async def links(
        query: CallbackQuery, card: PatientCard, unit: StateUnit, t: Translator, bot: Bot, patient_id: str
    ) -> Reply:
        store = ReferralStore()
        code = card.referral_code
        joined = 0
        referrer = store.referrer(code) if code else None
        if referrer is None or referrer.telegram_user_id != query.from_user.id:
            code = new_code()  # first time (or the link's item was lost): a fresh random code
            store.create(code, owner_id=query.from_user.id, owner_patient_id=patient_id)
            unit.save_card(query.from_user.id, referral_code=code)
        else:
            joined = referrer.joined
        assert code is not None
        me = await bot.me()
        link = deep_link(me.username or "", code)
        text = t("account.links_text", link=html.escape(link), joined=joined)
        rows = [
            [
                InlineKeyboardButton(
                    text=t("account.links_share"), url=share_url(link, t("account.links_invite"))
                )
            ],
            back_row(t),
        ]
        await query.answer()
        return show(query, text, InlineKeyboardMarkup(inline_keyboard=rows))

    @router.callback_query(AccountCb.filter(F.a == "mkt"))
    async def news_toggle(
        query: CallbackQuery,
        card: PatientCard,
        unit: StateUnit,
        t: Translator,
        mis: MisPort,
        settings: Settings,
    ) -> Reply:
        if card.wants_marketing:
            card = unit.save_card(query.from_user.id, marketing_at=None)
            await query.answer(t("marketing.off"))
            text, markup = account_screen(t, card, mis)
            return show(query, text, markup)
        await query.answer()
        rows = [[_button(t("marketing.agree"), MarketingCb(a="yes"))], back_row(t)]
        return show(
            query,
            t("marketing.consent", clinic=html.escape(settings.clinic_name)),
            InlineKeyboardMarkup(inline_keyboard=rows),
        )

    @router.callback_query(MarketingCb.filter(F.a == "yes"))
    async def news_on(
        query: CallbackQuery, card: PatientCard, unit: StateUnit, t: Translator, mis: MisPort
    ) -> Reply:
        if not card.wants_marketing:
            card = unit.save_card(query.from_user.id, marketing_at=datetime.now(UTC))
        await query.answer(t("marketing.on"))
        text, markup = account_screen(t, card, mis)
        return show(query, text, markup)

    return router


def build_unsubscribe_router() -> Router:
    """``/stop`` and the "unsubscribe" button under every broadcast: no gate (it must always work)."""
    router = Router(name="unsubscribe")

    @router.message(Command("stop"), F.chat.type == "private")
    async def stop(message: Message, card: PatientCard | None, unit: StateUnit, t: Translator) -> Reply:
        if card is not None and card.marketing_at is not None:
            unit.save_card(card.user_id, marketing_at=None)
        return message.answer(t("marketing.stopped"))

    @router.callback_query(MarketingCb.filter(F.a == "off"))
    async def unsubscribe(
        query: CallbackQuery, card: PatientCard | None, unit: StateUnit, t: Translator
    ) -> Reply:
        if card is not None and card.marketing_at is not None:
            unit.save_card(card.user_id, marketing_at=None)
        await drop_buttons(query)
        return query.answer(t("marketing.stopped"), show_alert=True)

    return router


# =========================================================================== referral plumbing
class ReferralOutbox:
    """The hand-off outbox, for a patient who came through a referral link: their first booking also sends
    the attribution to the CRM (kind ``referral``), and the code leaves their card."""

    def __init__(self, inner: Outbox, *, user_id: int, code: str, unit: StateUnit) -> None:
        self._inner = inner
        self._user_id = user_id
        self._code = code
        self._unit = unit
        self._done = False

    def publish(self, kind: str, payload: Mapping[str, Any], idempotency_key: str) -> str:
        message_id = self._inner.publish(kind, payload, idempotency_key)
        if kind == BOOKING_KIND and payload.get("event") == "booked" and not self._done:
            self._attribute(payload)
        return message_id

    def _attribute(self, booking: Mapping[str, Any]) -> None:
        try:
            referrer = ReferralStore().referrer(self._code)
            if referrer is not None and referrer.patient_id and referrer.telegram_user_id != self._user_id:
                self._inner.publish(
                    REFERRAL_KIND,
                    {
                        "event": "first_booking",
                        "patient_id": booking.get("patient_id"),
                        "appointment_id": booking.get("appointment_id"),
                        "referrer_patient_id": referrer.patient_id,
                    },
                    f"referral:{self._user_id}",
                )
            else:
                log.info("referral dropped: the referrer is gone")
        except Exception:  # the booking stands; the attribution is tried again with the next booking
            log.exception("could not queue the referral attribution")
            return
        self._unit.save_card(self._user_id, referred_by=None)
        self._done = True


class EngagementMiddleware(BaseMiddleware):
    """Outer update middleware (after the context middleware), around onboarding's consent:

    * a newcomer who came through a referral link (``ref`` in the dialogue data, put there by ``/start``)
      and has just consented: the link's counter goes up and the code moves onto the card;
    * one who declined: the dialogue item that held the code is erased (declining stores nothing);
    * a patient with a pending attribution: the outbox is wrapped (:class:`ReferralOutbox`).
    """

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        before: PatientCard | None = data.get("card")
        unit: StateUnit | None = data.get("unit")
        if unit is None:
            return await handler(event, data)
        if before is not None and before.has_consent:
            if before.referred_by and data.get("outbox") is not None:
                data["outbox"] = ReferralOutbox(
                    data["outbox"], user_id=before.user_id, code=before.referred_by, unit=unit
                )
            return await handler(event, data)
        result = await handler(event, data)
        state: FSMContext | None = data.get("state")
        user = data.get("event_from_user")
        if state is None or user is None:
            return result
        code = (await state.get_data()).get("ref")
        if not code:
            return result
        after = unit.card(user.id)
        if after is not None and after.has_consent:
            rest = await state.get_data()
            rest.pop("ref", None)
            await state.set_data(rest)
            referrer = ReferralStore().count_join(str(code))
            if referrer is not None and referrer.telegram_user_id != user.id:
                unit.save_card(user.id, referred_by=str(code))
        elif _declined(event):
            unit.erase_user(user.id)
        return result


def _declined(event: TelegramObject) -> bool:
    query = event.callback_query if isinstance(event, Update) else None
    if query is None or not query.data:
        return False
    try:
        return not ConsentCb.unpack(query.data).accept
    except (TypeError, ValueError):
        return False
