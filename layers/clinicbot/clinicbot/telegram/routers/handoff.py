"""Hand-off dialogues: "Call me back", "Tax deduction certificate", "Write to the clinic".

* Call me back: the number on the patient's MIS record (shown masked) or a newly shared contact (own
  contacts only) -> a time window -> an optional topic from a fixed, non-medical list -> confirm.
* Tax deduction certificate: year(s) -> who the taxpayer is to the patient -> the taxpayer's full name ->
  INN (12 digits, checksum) -> date of birth -> confirm.
* Write to the clinic: until the patient leaves the mode, their texts, photos and documents go to the
  staff, with a note of the working hours and when to expect an answer.

Each request gets a number (``HandoffDesk``) and goes on the hand-off queue; the personal fields are
sealed in the HandoffTable, not on the queue. Every step has Back and Cancel; typed input is validated
with messages in the patient's language. Only a consented, linked patient gets here, and only when the
clinic has a CRM (``CLINICBOT_CRM_PROVIDER`` other than ``none``).

Two routers: :func:`build_state_router` (before onboarding: it must see a contact, a command or a message
typed *inside* these dialogues before onboarding's generic handlers do) and :func:`build_router` (the
buttons; before the fallback).
"""

from __future__ import annotations

import html
import logging
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

from aiogram import BaseMiddleware, F, Router
from aiogram.filters import Command, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.fsm.state import State, StatesGroup
from aiogram.methods import SendMessage
from aiogram.types import (
    CallbackQuery,
    InlineKeyboardMarkup,
    Message,
    ReactionTypeEmoji,
    ReplyKeyboardRemove,
    TelegramObject,
    Update,
)

from clinicbot.config import Settings
from clinicbot.domain.patient import PatientCard
from clinicbot.domain.phones import format_phone, mask_phone, normalize_phone
from clinicbot.handoff.desk import HandoffDesk
from clinicbot.handoff.hours import WorkingHours
from clinicbot.handoff.inn import InnError, validate_personal_inn
from clinicbot.handoff.outbox import InMemoryOutbox
from clinicbot.handoff.requests import (
    CALLBACK_KIND,
    CERTIFICATE_KIND,
    CHAT_KIND,
    BirthDateError,
    CallbackTopic,
    CallbackWindow,
    NameError_,
    Relation,
    certificate_years,
    parse_birth_date,
    validate_full_name,
)
from clinicbot.handoff.store import DynamoHandoffStore, HandoffStore
from clinicbot.i18n import Translator
from clinicbot.mis.errors import MisUnavailable, NotFound
from clinicbot.mis.models import Appointment
from clinicbot.mis.port import MisPort
from clinicbot.telegram.callbacks import MenuCb
from clinicbot.telegram.context import Onboarding
from clinicbot.telegram.handoff_callbacks import HandoffCb
from clinicbot.telegram.handoff_keyboards import (
    chat_keyboard,
    confirm_keyboard,
    nav_keyboard,
    phone_keyboard,
    relation_keyboard,
    share_phone_keyboard,
    topic_keyboard,
    window_keyboard,
    years_keyboard,
)
from clinicbot.telegram.keyboards import contact_keyboard, main_menu

__all__ = ["CallbackSG", "CertificateSG", "ChatSG", "build_router", "build_state_router", "start_callback"]

log = logging.getLogger(__name__)

Reply = Any

MAX_CHAT_TEXT = 4000


class CallbackSG(StatesGroup):
    phone = State()
    window = State()
    topic = State()
    confirm = State()


class CertificateSG(StatesGroup):
    years = State()
    relation = State()
    name = State()
    inn = State()
    birth = State()
    confirm = State()


class ChatSG(StatesGroup):
    active = State()


ALL_STATES = (CallbackSG, CertificateSG, ChatSG)


# ============================================================================ the gate
class HandoffGate(BaseMiddleware):
    """Only a consented, linked patient, and only when the clinic has a CRM. Puts ``desk`` (numbering and
    queueing) and ``patient_id`` into handler data. The HandoffTable adapter is built on first use (most
    updates never touch it); tests inject ``handoff_store`` as workflow data."""

    def __init__(self) -> None:
        self._store: HandoffStore | None = None

    def store(self, data: dict[str, Any], settings: Settings) -> HandoffStore:
        injected: HandoffStore | None = data.get("handoff_store")
        if injected is not None:
            return injected
        if self._store is None:
            self._store = DynamoHandoffStore(settings.handoff_table)
        return self._store

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        card: PatientCard | None = data.get("card")
        t: Translator = data["t"]
        settings: Settings = data["settings"]

        def say(text: str, markup: Any = None) -> Reply:
            if isinstance(event, CallbackQuery):
                return SendMessage(chat_id=event.from_user.id, text=text, reply_markup=markup)
            if isinstance(event, Message):
                return event.answer(text, reply_markup=markup)
            return None

        if card is None or not card.has_consent:
            if isinstance(event, CallbackQuery):
                return event.answer(t("consent.required"), show_alert=True)
            return say(t("consent.required"))
        if not card.is_linked or card.patient_id is None:
            state: FSMContext = data["state"]
            await state.set_state(Onboarding.contact)
            if isinstance(event, CallbackQuery):
                await event.answer()
            return say(t("contact.request"), contact_keyboard(t))
        if settings.crm_provider == "none":
            if isinstance(event, CallbackQuery):
                return event.answer(t("handoff.unavailable"), show_alert=True)
            await data["state"].clear()
            return say(t("handoff.unavailable"))
        data["patient_id"] = card.patient_id
        data["desk"] = HandoffDesk(self.store(data, settings), data.get("outbox") or InMemoryOutbox())
        return await handler(event, data)


# ============================================================================ helpers
def _show(query: CallbackQuery, text: str, markup: InlineKeyboardMarkup | None) -> Reply:
    if isinstance(query.message, Message):
        return query.message.edit_text(text, reply_markup=markup)
    return SendMessage(chat_id=query.from_user.id, text=text, reply_markup=markup)


def _key(kind: str, user_id: int, update: Update | None, fallback: int) -> str:
    """The idempotency key: a Telegram retry of the same update gives the same key."""
    return f"{kind}:{user_id}:{update.update_id if update is not None else fallback}"


def _hours(settings: Settings) -> WorkingHours:
    return WorkingHours.parse(settings.staff_hours, settings.clinic_timezone)


def answer_note(t: Translator, settings: Settings, now: datetime | None = None) -> str:
    """Working hours and when to expect an answer, for a patient writing to the clinic."""
    hours = _hours(settings)
    now = now or datetime.now(UTC)
    described = hours.describe(t.language)
    if hours.is_open(now):
        return t("chat.note_open", hours=described, minutes=settings.staff_answer_minutes)
    opening = hours.next_opening(now)
    when = opening.strftime("%d.%m %H:%M") if opening else "—"
    return t("chat.note_closed", hours=described, when=when)


def _callback_summary(t: Translator, data: dict[str, Any]) -> str:
    phone = data.get("ho_phone")
    lines = [t("callback.confirm.title")]
    lines.append(
        t(
            "callback.confirm.phone",
            phone=mask_phone(phone) if data.get("ho_phone_src") == "card" else format_phone(phone),
        )
        if phone
        else t("callback.confirm.phone_card")
    )
    lines.append(t("callback.confirm.window", window=t(f"callback.window.{data['ho_window']}")))
    topic = data.get("ho_topic")
    lines.append(
        t("callback.confirm.topic", topic=t(f"callback.topic.{topic}") if topic else t("callback.topic.none"))
    )
    return "\n".join(lines)


def _certificate_summary(t: Translator, data: dict[str, Any]) -> str:
    return "\n".join(
        [
            t("certificate.confirm.title"),
            t("certificate.confirm.years", years=", ".join(str(y) for y in sorted(data["ho_years"]))),
            t("certificate.confirm.relation", relation=t(f"certificate.relation.{data['ho_relation']}")),
            t("certificate.confirm.name", name=html.escape(data["ho_name"])),
            t("certificate.confirm.inn", inn=data["ho_inn"]),
            t(
                "certificate.confirm.birth",
                date=datetime.fromisoformat(data["ho_birth"]).strftime("%d.%m.%Y"),
            ),
        ]
    )


async def _card_phone(mis: MisPort, patient_id: str) -> str | None:
    try:
        return (await mis.patient(patient_id)).phone
    except (MisUnavailable, NotFound):
        return None


# ---- the screens, each a (text, keyboard) pair
def phone_screen(t: Translator, phone: str | None) -> tuple[str, InlineKeyboardMarkup]:
    if phone:
        return t("callback.phone.ask", phone=mask_phone(phone)), phone_keyboard(t, has_card_phone=True)
    return t("callback.phone.ask_new"), phone_keyboard(t, has_card_phone=False)


def window_screen(t: Translator) -> tuple[str, InlineKeyboardMarkup]:
    return t("callback.window.ask"), window_keyboard(t)


def topic_screen(t: Translator) -> tuple[str, InlineKeyboardMarkup]:
    return t("callback.topic.ask"), topic_keyboard(t)


def years_screen(t: Translator, chosen: list[int]) -> tuple[str, InlineKeyboardMarkup]:
    years = certificate_years(datetime.now(UTC).date())
    return t("certificate.years.ask"), years_keyboard(t, years, chosen)


def relation_screen(t: Translator) -> tuple[str, InlineKeyboardMarkup]:
    return t("certificate.relation.ask"), relation_keyboard(t)


def name_screen(t: Translator) -> tuple[str, InlineKeyboardMarkup]:
    return t("certificate.name.ask"), nav_keyboard(t)


def inn_screen(t: Translator) -> tuple[str, InlineKeyboardMarkup]:
    return t("certificate.inn.ask"), nav_keyboard(t)


def birth_screen(t: Translator) -> tuple[str, InlineKeyboardMarkup]:
    return t("certificate.birth.ask"), nav_keyboard(t)


async def start_callback(
    query: CallbackQuery,
    state: FSMContext,
    t: Translator,
    mis: MisPort,
    patient_id: str,
    *,
    visit: Appointment | None = None,
) -> Reply:
    """The first screen of "call me back"; with ``visit`` the request is about that visit (for the visits
    router: its "call me back" button can hand over here to get the number, window and topic too)."""
    await state.set_state(CallbackSG.phone)
    phone = await _card_phone(mis, patient_id)
    data: dict[str, Any] = {"ho_card_phone": phone}
    if visit is not None:
        data["ho_visit"] = {
            "appointment_id": visit.id,
            "start": visit.start.isoformat(),
            "branch_id": visit.branch_id,
        }
    await state.set_data(data)
    await query.answer()
    text, markup = phone_screen(t, phone)
    return SendMessage(chat_id=query.from_user.id, text=text, reply_markup=markup)


# ============================================================================ the buttons
def build_router() -> Router:
    router = Router(name="handoff")
    gate = HandoffGate()
    router.callback_query.middleware(gate)

    # ------------------------------------------------------------------ call me back
    @router.callback_query(MenuCb.filter(F.action == "callback"))
    async def callback_start(
        query: CallbackQuery, state: FSMContext, t: Translator, mis: MisPort, patient_id: str
    ) -> Reply:
        return await start_callback(query, state, t, mis, patient_id)

    @router.callback_query(StateFilter(CallbackSG.phone), HandoffCb.filter(F.a == "ph"))
    async def callback_phone(
        query: CallbackQuery, callback_data: HandoffCb, state: FSMContext, t: Translator
    ) -> Reply:
        data = await state.get_data()
        if callback_data.v == "card" and data.get("ho_card_phone"):
            await state.update_data(ho_phone=None, ho_phone_src="card")
            await state.set_state(CallbackSG.window)
            await query.answer()
            return _show(query, *window_screen(t))
        await query.answer()
        return SendMessage(
            chat_id=query.from_user.id,
            text=t("callback.phone.share_hint"),
            reply_markup=share_phone_keyboard(t),
        )

    @router.callback_query(StateFilter(CallbackSG.window), HandoffCb.filter(F.a == "win"))
    async def callback_window(
        query: CallbackQuery, callback_data: HandoffCb, state: FSMContext, t: Translator
    ) -> Reply:
        if callback_data.v not in {w.value for w in CallbackWindow}:
            return query.answer(t("fallback.button"), show_alert=True)
        await state.update_data(ho_window=callback_data.v)
        await state.set_state(CallbackSG.topic)
        await query.answer()
        return _show(query, *topic_screen(t))

    @router.callback_query(StateFilter(CallbackSG.topic), HandoffCb.filter(F.a == "top"))
    async def callback_topic(
        query: CallbackQuery, callback_data: HandoffCb, state: FSMContext, t: Translator
    ) -> Reply:
        if callback_data.v != "skip" and callback_data.v not in {c.value for c in CallbackTopic}:
            return query.answer(t("fallback.button"), show_alert=True)
        data = await state.update_data(ho_topic=None if callback_data.v == "skip" else callback_data.v)
        await state.set_state(CallbackSG.confirm)
        await query.answer()
        if data.get("ho_phone_src") == "card":
            data = {**data, "ho_phone": data.get("ho_card_phone")}
        return _show(query, _callback_summary(t, data), confirm_keyboard(t))

    @router.callback_query(StateFilter(CallbackSG.confirm), HandoffCb.filter(F.a == "send"))
    async def callback_send(
        query: CallbackQuery,
        state: FSMContext,
        t: Translator,
        settings: Settings,
        desk: HandoffDesk,
        patient_id: str,
        event_update: Update | None = None,
    ) -> Reply:
        data = await state.get_data()
        visit = data.get("ho_visit") or {}
        fields = {
            "patient_id": patient_id,
            "reason": "visit" if visit else "menu",
            "phone": data.get("ho_phone") if data.get("ho_phone_src") == "new" else None,
            "window": data.get("ho_window"),
            "topic": data.get("ho_topic"),
            **visit,
        }
        user_id = query.from_user.id
        try:
            number = desk.submit(
                CALLBACK_KIND,
                fields,
                user_id=user_id,
                key=_key("callback", user_id, event_update, query.message.message_id if query.message else 0),
            )
        except Exception:
            log.exception("could not queue a call-back request")
            return query.answer(t("handoff.failed"), show_alert=True)
        await state.clear()
        await query.answer()
        phone = data.get("ho_phone") or data.get("ho_card_phone")
        text = t(
            "callback.done",
            number=number,
            phone=mask_phone(phone) if phone else "—",
            window=t(f"callback.window.{data.get('ho_window')}"),
            hours=_hours(settings).describe(t.language),
        )
        return _show(query, text, main_menu(t))

    # ------------------------------------------------------------------ tax certificate
    @router.callback_query(MenuCb.filter(F.action == "certificate"))
    async def certificate_start(query: CallbackQuery, state: FSMContext, t: Translator) -> Reply:
        await state.set_state(CertificateSG.years)
        await state.set_data({"ho_years": []})
        await query.answer()
        text, markup = years_screen(t, [])
        return SendMessage(chat_id=query.from_user.id, text=text, reply_markup=markup)

    @router.callback_query(StateFilter(CertificateSG.years), HandoffCb.filter(F.a == "yr"))
    async def certificate_year(
        query: CallbackQuery, callback_data: HandoffCb, state: FSMContext, t: Translator
    ) -> Reply:
        allowed = certificate_years(datetime.now(UTC).date())
        if not callback_data.v.isdigit() or int(callback_data.v) not in allowed:
            return query.answer(t("fallback.button"), show_alert=True)
        year = int(callback_data.v)
        chosen = [int(y) for y in (await state.get_data()).get("ho_years", [])]
        chosen = sorted(set(chosen) ^ {year})
        await state.update_data(ho_years=chosen)
        await query.answer()
        return _show(query, *years_screen(t, chosen))

    @router.callback_query(StateFilter(CertificateSG.years), HandoffCb.filter(F.a == "yrok"))
    async def certificate_years_done(query: CallbackQuery, state: FSMContext, t: Translator) -> Reply:
        if not (await state.get_data()).get("ho_years"):
            return query.answer(t("certificate.years.none"), show_alert=True)
        await state.set_state(CertificateSG.relation)
        await query.answer()
        return _show(query, *relation_screen(t))

    @router.callback_query(StateFilter(CertificateSG.relation), HandoffCb.filter(F.a == "rel"))
    async def certificate_relation(
        query: CallbackQuery, callback_data: HandoffCb, state: FSMContext, t: Translator
    ) -> Reply:
        if callback_data.v not in {r.value for r in Relation}:
            return query.answer(t("fallback.button"), show_alert=True)
        await state.update_data(ho_relation=callback_data.v)
        await state.set_state(CertificateSG.name)
        await query.answer()
        return _show(query, *name_screen(t))

    @router.callback_query(StateFilter(CertificateSG.confirm), HandoffCb.filter(F.a == "send"))
    async def certificate_send(
        query: CallbackQuery,
        state: FSMContext,
        t: Translator,
        desk: HandoffDesk,
        patient_id: str,
        event_update: Update | None = None,
    ) -> Reply:
        data = await state.get_data()
        fields = {
            "patient_id": patient_id,
            "years": data.get("ho_years"),
            "relation": data.get("ho_relation"),
            "taxpayer_full_name": data.get("ho_name"),
            "inn": data.get("ho_inn"),
            "birth_date": data.get("ho_birth"),
        }
        user_id = query.from_user.id
        try:
            number = desk.submit(
                CERTIFICATE_KIND, fields, user_id=user_id, key=_key("certificate", user_id, event_update, 0)
            )
        except Exception:
            log.exception("could not queue a certificate request")
            return query.answer(t("handoff.failed"), show_alert=True)
        await state.clear()
        await query.answer()
        return _show(query, t("certificate.done", number=number), main_menu(t))

    # ------------------------------------------------------------------ back / cancel
    @router.callback_query(StateFilter(*ALL_STATES), HandoffCb.filter(F.a == "back"))
    async def back(query: CallbackQuery, state: FSMContext, t: Translator) -> Reply:
        current = await state.get_state()
        data = await state.get_data()
        previous: dict[str | None, tuple[State, tuple[str, InlineKeyboardMarkup]]] = {
            CallbackSG.window.state: (CallbackSG.phone, phone_screen(t, data.get("ho_card_phone"))),
            CallbackSG.topic.state: (CallbackSG.window, window_screen(t)),
            CallbackSG.confirm.state: (CallbackSG.topic, topic_screen(t)),
            CertificateSG.relation.state: (CertificateSG.years, years_screen(t, data.get("ho_years", []))),
            CertificateSG.name.state: (CertificateSG.relation, relation_screen(t)),
            CertificateSG.inn.state: (CertificateSG.name, name_screen(t)),
            CertificateSG.birth.state: (CertificateSG.inn, inn_screen(t)),
            CertificateSG.confirm.state: (CertificateSG.birth, birth_screen(t)),
        }
        step = previous.get(current)
        await query.answer()
        if step is None:
            return None
        await state.set_state(step[0])
        return _show(query, *step[1])

    @router.callback_query(StateFilter(*ALL_STATES), HandoffCb.filter(F.a.in_({"cancel", "end"})))
    async def cancel(
        query: CallbackQuery, callback_data: HandoffCb, state: FSMContext, t: Translator
    ) -> Reply:
        chatting = await state.get_state() == ChatSG.active.state
        await state.clear()
        await query.answer()
        return _show(query, t("chat.closed" if chatting else "handoff.cancelled"), main_menu(t))

    # ------------------------------------------------------------------ write to the clinic
    @router.callback_query(MenuCb.filter(F.action == "chat"))
    async def chat_start(query: CallbackQuery, state: FSMContext, t: Translator, settings: Settings) -> Reply:
        await state.set_state(ChatSG.active)
        await state.set_data({})
        await query.answer()
        text = t("chat.intro", clinic=html.escape(settings.clinic_name)) + "\n\n" + answer_note(t, settings)
        return SendMessage(chat_id=query.from_user.id, text=text, reply_markup=chat_keyboard(t))

    return router


# ============================================================================ typed input
def _not_a_foreign_command(message: Message) -> bool:
    """/start, /help, /language… pass through to onboarding (never relayed); /menu and /cancel are ours."""
    text = message.text or ""
    return not text.startswith("/") or text.split()[0].split("@")[0] in ("/menu", "/cancel")


def build_state_router() -> Router:
    """Messages inside the hand-off dialogues; included *before* onboarding (see the module doc)."""
    router = Router(name="handoff-input")
    router.message.filter(F.chat.type == "private", StateFilter(*ALL_STATES), _not_a_foreign_command)
    router.message.middleware(HandoffGate())

    @router.message(Command("menu", "cancel"))
    async def leave(message: Message, state: FSMContext, t: Translator) -> Reply:
        chatting = await state.get_state() == ChatSG.active.state
        await state.clear()
        return message.answer(
            t("chat.closed" if chatting else "handoff.cancelled"), reply_markup=main_menu(t)
        )

    # ------------------------------------------------------------------ call me back: the number
    @router.message(StateFilter(CallbackSG.phone), F.contact)
    async def callback_contact(message: Message, state: FSMContext, t: Translator) -> Reply:
        user = message.from_user
        assert user is not None and message.contact is not None
        if message.contact.user_id != user.id:
            return message.answer(t("contact.not_own"), reply_markup=share_phone_keyboard(t))
        try:
            phone = normalize_phone(message.contact.phone_number)
        except ValueError:
            return message.answer(t("contact.invalid"), reply_markup=share_phone_keyboard(t))
        await state.update_data(ho_phone=phone, ho_phone_src="new")
        await state.set_state(CallbackSG.window)
        await message.answer(
            t("callback.phone.received", phone=format_phone(phone)), reply_markup=ReplyKeyboardRemove()
        )
        text, markup = window_screen(t)
        return message.answer(text, reply_markup=markup)

    @router.message(StateFilter(CallbackSG.phone))
    async def callback_phone_text(message: Message, state: FSMContext, t: Translator) -> Reply:
        if message.text and message.text.strip() == t("handoff.cancel"):
            await state.clear()
            await message.answer(t("handoff.cancelled"), reply_markup=ReplyKeyboardRemove())
            return message.answer(t("menu.title"), reply_markup=main_menu(t))
        return message.answer(t("callback.phone.use_button"), reply_markup=share_phone_keyboard(t))

    # ------------------------------------------------------------------ certificate: typed fields
    @router.message(StateFilter(CertificateSG.name), F.text)
    async def certificate_name(message: Message, state: FSMContext, t: Translator) -> Reply:
        try:
            name = validate_full_name(message.text or "")
        except NameError_:
            return message.answer(t("certificate.name.invalid"), reply_markup=nav_keyboard(t))
        await state.update_data(ho_name=name)
        await state.set_state(CertificateSG.inn)
        text, markup = inn_screen(t)
        return message.answer(text, reply_markup=markup)

    @router.message(StateFilter(CertificateSG.inn), F.text)
    async def certificate_inn(message: Message, state: FSMContext, t: Translator) -> Reply:
        try:
            inn = validate_personal_inn(message.text or "")
        except InnError as exc:
            return message.answer(t(f"certificate.inn.{exc.problem.value}"), reply_markup=nav_keyboard(t))
        await state.update_data(ho_inn=inn)
        await state.set_state(CertificateSG.birth)
        text, markup = birth_screen(t)
        return message.answer(text, reply_markup=markup)

    @router.message(StateFilter(CertificateSG.birth), F.text)
    async def certificate_birth(message: Message, state: FSMContext, t: Translator) -> Reply:
        try:
            born = parse_birth_date(message.text or "", datetime.now(UTC).date())
        except BirthDateError as exc:
            return message.answer(t(f"certificate.birth.{exc.problem}"), reply_markup=nav_keyboard(t))
        data = await state.update_data(ho_birth=born.isoformat())
        await state.set_state(CertificateSG.confirm)
        return message.answer(_certificate_summary(t, data), reply_markup=confirm_keyboard(t))

    @router.message(StateFilter(CallbackSG, CertificateSG))
    async def use_buttons(message: Message, t: Translator) -> Reply:
        return message.answer(t("handoff.use_buttons"))

    # ------------------------------------------------------------------ write to the clinic
    @router.message(StateFilter(ChatSG.active))
    async def chat_message(
        message: Message,
        state: FSMContext,
        t: Translator,
        settings: Settings,
        desk: HandoffDesk,
        patient_id: str,
    ) -> Reply:
        user = message.from_user
        assert user is not None
        fields: dict[str, Any] = {"patient_id": patient_id, "message_id": message.message_id}
        if message.text is not None:
            fields.update(content_type="text", text=message.text[:MAX_CHAT_TEXT])
        elif message.photo:
            fields.update(
                content_type="photo",
                text=message.caption,
                file_id=message.photo[-1].file_id,
                file_name="photo.jpg",
                mime_type="image/jpeg",
            )
        elif message.document is not None:
            document = message.document
            fields.update(
                content_type="document",
                text=message.caption,
                file_id=document.file_id,
                file_name=document.file_name,
                mime_type=document.mime_type,
            )
        else:
            return message.answer(t("chat.unsupported"), reply_markup=chat_keyboard(t))
        seal = settings.crm_provider != "telegram_group"  # the staff group copies the message itself
        key = f"chat:{user.id}:{message.message_id}"
        data = await state.get_data()
        try:
            number = data.get("ho_chat")
            if number is None:
                number = desk.submit(
                    CHAT_KIND, {**fields, "first": True}, user_id=user.id, key=key, seal=seal
                )
                await state.update_data(ho_chat=number)
                return message.answer(
                    t("chat.sent_first", number=number) + "\n" + answer_note(t, settings),
                    reply_markup=chat_keyboard(t),
                )
            desk.relay(fields, user_id=user.id, key=key, number=str(number), seal=seal)
        except Exception:
            log.exception("could not queue a patient's message")
            return message.answer(t("chat.failed"), reply_markup=chat_keyboard(t))
        return message.react([ReactionTypeEmoji(emoji="👌")])

    return router
