"""Keyboards of the hand-off dialogues. Every label goes through i18n."""

from __future__ import annotations

from aiogram.types import InlineKeyboardMarkup, KeyboardButton, ReplyKeyboardMarkup
from aiogram.utils.keyboard import InlineKeyboardBuilder, ReplyKeyboardBuilder

from clinicbot.handoff.requests import CallbackTopic, CallbackWindow, Relation
from clinicbot.i18n import Translator
from clinicbot.telegram.handoff_callbacks import HandoffCb

__all__ = [
    "chat_keyboard",
    "confirm_keyboard",
    "nav_keyboard",
    "phone_keyboard",
    "relation_keyboard",
    "share_phone_keyboard",
    "topic_keyboard",
    "window_keyboard",
    "years_keyboard",
]


def _nav(builder: InlineKeyboardBuilder, t: Translator, *, back: bool = True) -> None:
    if back:
        builder.button(text=t("handoff.back"), callback_data=HandoffCb(a="back"))
    builder.button(text=t("handoff.cancel"), callback_data=HandoffCb(a="cancel"))


def nav_keyboard(t: Translator, *, back: bool = True) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    _nav(builder, t, back=back)
    builder.adjust(2)
    return builder.as_markup()


def phone_keyboard(t: Translator, *, has_card_phone: bool) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    if has_card_phone:
        builder.button(text=t("callback.phone.this"), callback_data=HandoffCb(a="ph", v="card"))
    builder.button(text=t("callback.phone.other"), callback_data=HandoffCb(a="ph", v="new"))
    _nav(builder, t, back=False)
    builder.adjust(1)
    return builder.as_markup()


def share_phone_keyboard(t: Translator) -> ReplyKeyboardMarkup:
    builder = ReplyKeyboardBuilder()
    builder.add(KeyboardButton(text=t("callback.phone.share"), request_contact=True))
    builder.add(KeyboardButton(text=t("handoff.cancel")))
    builder.adjust(1)
    return builder.as_markup(resize_keyboard=True, one_time_keyboard=True)


def window_keyboard(t: Translator) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for window in CallbackWindow:
        builder.button(
            text=t(f"callback.window.{window.value}"), callback_data=HandoffCb(a="win", v=window.value)
        )
    _nav(builder, t)
    builder.adjust(1, 2, 2, 2)
    return builder.as_markup()


def topic_keyboard(t: Translator) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for topic in CallbackTopic:
        builder.button(
            text=t(f"callback.topic.{topic.value}"), callback_data=HandoffCb(a="top", v=topic.value)
        )
    builder.button(text=t("callback.topic.skip"), callback_data=HandoffCb(a="top", v="skip"))
    _nav(builder, t)
    builder.adjust(2, 2, 1, 2)
    return builder.as_markup()


def confirm_keyboard(t: Translator) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=t("handoff.send"), callback_data=HandoffCb(a="send"))
    _nav(builder, t)
    builder.adjust(1, 2)
    return builder.as_markup()


def years_keyboard(t: Translator, years: list[int], chosen: list[int]) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for year in years:
        mark = "✅ " if year in chosen else ""
        builder.button(text=f"{mark}{year}", callback_data=HandoffCb(a="yr", v=str(year)))
    builder.button(text=t("certificate.years.next"), callback_data=HandoffCb(a="yrok"))
    _nav(builder, t, back=False)
    builder.adjust(len(years), 1, 1)
    return builder.as_markup()


def relation_keyboard(t: Translator) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    for relation in Relation:
        builder.button(
            text=t(f"certificate.relation_button.{relation.value}"),
            callback_data=HandoffCb(a="rel", v=relation.value),
        )
    _nav(builder, t)
    builder.adjust(1, 1, 1, 1, 2)
    return builder.as_markup()


def chat_keyboard(t: Translator) -> InlineKeyboardMarkup:
    builder = InlineKeyboardBuilder()
    builder.button(text=t("chat.end"), callback_data=HandoffCb(a="end"))
    return builder.as_markup()
