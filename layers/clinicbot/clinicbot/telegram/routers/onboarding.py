"""First dialogue: greeting, consent, phone, main menu, language and help.

Replies that are a single Bot API call are *returned* (not awaited): the webhook then sends them in its
HTTP response instead of calling Telegram.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command, CommandObject, CommandStart, StateFilter
from aiogram.fsm.context import FSMContext
from aiogram.methods import SendMessage
from aiogram.types import CallbackQuery, Message, ReplyKeyboardRemove

from clinicbot.config import Settings
from clinicbot.domain.patient import PatientCard
from clinicbot.domain.phones import normalize_phone
from clinicbot.engagement.referrals import parse_code as parse_referral_code
from clinicbot.i18n import LANGUAGES, Translator
from clinicbot.mis.errors import MisUnavailable
from clinicbot.mis.models import PatientRegistration
from clinicbot.mis.port import MisPort
from clinicbot.storage.unit import StateUnit
from clinicbot.telegram.callbacks import ConsentCb, LanguageCb, MenuCb
from clinicbot.telegram.context import Onboarding
from clinicbot.telegram.keyboards import consent_keyboard, contact_keyboard, language_keyboard, main_menu
from clinicbot.telegram.replies import drop_buttons

log = logging.getLogger(__name__)


def build_router() -> Router:
    router = Router(name="onboarding")
    router.message.filter(F.chat.type == "private")

    @router.message(CommandStart())
    async def start(
        message: Message,
        state: FSMContext,
        card: PatientCard | None,
        t: Translator,
        settings: Settings,
        command: CommandObject | None = None,
    ) -> Any:
        await state.clear()
        referral = parse_referral_code(command.args if command else None)
        if referral and (card is None or not card.has_consent):
            # A referral link (t.me/<bot>?start=<code>): kept until consent; see clinicbot.engagement.referrals
            await state.update_data(ref=referral)
        if card is not None and card.has_consent:
            if card.is_linked:
                return message.answer(t("menu.title"), reply_markup=main_menu(t))
            await state.set_state(Onboarding.contact)
            return message.answer(t("contact.request"), reply_markup=contact_keyboard(t))
        text = (
            t("start.greeting", clinic=settings.clinic_name)
            + "\n\n"
            + t("consent.request", policy_url=settings.policy_url, policy_version=settings.policy_version)
        )
        return message.answer(
            text, reply_markup=consent_keyboard(t, settings.policy_version), disable_web_page_preview=True
        )

    @router.callback_query(ConsentCb.filter(F.accept))
    async def consent_given(
        query: CallbackQuery,
        callback_data: ConsentCb,
        state: FSMContext,
        card: PatientCard | None,
        unit: StateUnit,
        t: Translator,
        settings: Settings,
    ) -> Any:
        if callback_data.version != settings.policy_version:
            # The policy changed since this message was sent: show the current one.
            return query.answer(t("fallback.button"), show_alert=True)
        if card is None or not card.has_consent:
            unit.save_card(
                query.from_user.id, consent_at=datetime.now(UTC), consent_version=settings.policy_version
            )
        await query.answer(t("consent.accepted"))
        await drop_buttons(query)
        if card is not None and card.is_linked:
            return SendMessage(chat_id=query.from_user.id, text=t("menu.title"), reply_markup=main_menu(t))
        await state.set_state(Onboarding.contact)
        return SendMessage(
            chat_id=query.from_user.id, text=t("contact.request"), reply_markup=contact_keyboard(t)
        )

    @router.callback_query(ConsentCb.filter(~F.accept))
    async def consent_declined(query: CallbackQuery, card: PatientCard | None, t: Translator) -> Any:
        # Nothing is stored for someone who declines: no card, no dialogue item.
        if card is not None and card.has_consent:
            return query.answer()
        await query.answer()
        if isinstance(query.message, Message):
            return query.message.edit_text(t("consent.declined"), reply_markup=None)
        return None

    @router.message(F.contact)
    async def contact(
        message: Message,
        state: FSMContext,
        card: PatientCard | None,
        unit: StateUnit,
        t: Translator,
        mis: MisPort,
    ) -> Any:
        user = message.from_user
        assert user is not None and message.contact is not None
        if card is None or not card.has_consent:
            return message.answer(t("consent.required"), reply_markup=ReplyKeyboardRemove())
        if message.contact.user_id != user.id:
            return message.answer(t("contact.not_own"), reply_markup=contact_keyboard(t))
        try:
            phone = normalize_phone(message.contact.phone_number)
        except ValueError:
            return message.answer(t("contact.invalid"), reply_markup=contact_keyboard(t))
        try:
            patient = await mis.find_patient_by_phone(phone)
            registered = patient is None
            if patient is None:
                patient = await mis.register_patient(
                    PatientRegistration(
                        first_name=message.contact.first_name,
                        last_name=message.contact.last_name,
                        phone=phone,
                    )
                )
        except MisUnavailable:
            log.warning("MIS unavailable while linking a patient")
            return message.answer(t("mis.unavailable"), reply_markup=contact_keyboard(t))
        unit.save_card(user.id, patient_id=patient.id)
        await state.clear()
        await message.answer(
            t("contact.registered" if registered else "contact.linked"), reply_markup=ReplyKeyboardRemove()
        )
        return message.answer(t("menu.title"), reply_markup=main_menu(t))

    @router.message(StateFilter(Onboarding.contact))
    async def contact_expected(message: Message, t: Translator) -> Any:
        return message.answer(t("contact.expected"), reply_markup=contact_keyboard(t))

    @router.message(Command("help"))
    async def help_command(message: Message, t: Translator, settings: Settings) -> Any:
        return message.answer(t("help.text", clinic=settings.clinic_name))

    @router.callback_query(MenuCb.filter(F.action == "help"))
    async def help_button(query: CallbackQuery, t: Translator, settings: Settings) -> Any:
        await query.answer()
        return SendMessage(chat_id=query.from_user.id, text=t("help.text", clinic=settings.clinic_name))

    @router.message(Command("language"))
    async def language_command(message: Message, t: Translator) -> Any:
        return message.answer(t("language.choose"), reply_markup=language_keyboard())

    @router.callback_query(MenuCb.filter(F.action == "language"))
    async def language_button(query: CallbackQuery, t: Translator) -> Any:
        await query.answer()
        return SendMessage(
            chat_id=query.from_user.id, text=t("language.choose"), reply_markup=language_keyboard()
        )

    @router.callback_query(LanguageCb.filter(F.code.in_(LANGUAGES)))
    async def language_chosen(
        query: CallbackQuery, callback_data: LanguageCb, card: PatientCard | None, unit: StateUnit
    ) -> Any:
        chosen = Translator(callback_data.code)
        if card is not None and card.has_consent:  # strangers' choices are not stored
            unit.save_card(query.from_user.id, language=callback_data.code)
        await query.answer()
        if isinstance(query.message, Message):
            markup = main_menu(chosen) if card is not None and card.is_linked else None
            return query.message.edit_text(chosen("language.set"), reply_markup=markup)
        return None

    @router.message(Command("menu"))
    async def menu_command(
        message: Message, card: PatientCard | None, t: Translator, state: FSMContext
    ) -> Any:
        if card is None or not card.has_consent:
            return message.answer(t("consent.required"))
        if not card.is_linked:
            await state.set_state(Onboarding.contact)
            return message.answer(t("contact.request"), reply_markup=contact_keyboard(t))
        return message.answer(t("menu.title"), reply_markup=main_menu(t))

    return router


def build_fallback_router() -> Router:
    """Last in line: any input gets a helpful answer, never silence."""
    router = Router(name="fallback")

    @router.message(F.chat.type == "private")
    async def any_message(message: Message, card: PatientCard | None, t: Translator) -> Any:
        if card is None or not card.has_consent:
            return message.answer(t("consent.required"))
        if not card.is_linked:
            return message.answer(t("contact.expected"), reply_markup=contact_keyboard(t))
        return message.answer(t("fallback.text"), reply_markup=main_menu(t))

    @router.callback_query()
    async def any_button(query: CallbackQuery, t: Translator) -> Any:
        return query.answer(t("fallback.button"), show_alert=True)

    return router
