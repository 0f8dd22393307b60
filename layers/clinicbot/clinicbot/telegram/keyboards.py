"""Keyboards, built with aiogram's builders. Every label goes through i18n."""

from __future__ import annotations

from aiogram.types import InlineKeyboardMarkup, KeyboardButton, ReplyKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder, ReplyKeyboardBuilder

from clinicbot.i18n import LANGUAGES, Translator
from clinicbot.telegram.callbacks import ConsentCb, LanguageCb, MenuCb

# (action, label key) in display order; feature routers handle MenuCb(action=...).
MAIN_MENU: list[tuple[str, str]] = [
    ("book", "booking.menu"),
    ("visits", "visits.menu"),
    ("account", "account.menu"),
    ("info", "info.menu"),
    ("callback", "callback.menu"),
    ("certificate", "certificate.menu"),
    ("chat", "chat.menu"),
    ("reminders", "reminders.menu"),
    ("language", "menu.language"),
    ("help", "menu.help"),
]


def consent_keyboard(t: Translator, policy_version: str) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=t("consent.accept"), callback_data=ConsentCb(accept=True, version=policy_version))
    builder.button(text=t("consent.decline"), callback_data=ConsentCb(accept=False, version=policy_version))
    builder.adjust(1)
    return builder.as_markup()


def contact_keyboard(t: Translator) -> ReplyKeyboardMarkup:
    builder = ReplyKeyboardBuilder()
    builder.add(KeyboardButton(text=t("contact.share"), request_contact=True))
    return builder.as_markup(resize_keyboard=True, one_time_keyboard=True, is_persistent=True)


def main_menu(t: Translator) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for action, label in MAIN_MENU:
        builder.button(text=t(label), callback_data=MenuCb(action=action))
    builder.adjust(2)
    return builder.as_markup()


def language_keyboard() -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for code in LANGUAGES:
        builder.button(text=Translator(code)("lang.name"), callback_data=LanguageCb(code=code))
    return builder.as_markup()
