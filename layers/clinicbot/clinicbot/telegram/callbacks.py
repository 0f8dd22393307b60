"""Callback-data factories. aiogram validates and parses them; anything that does not parse falls through
to the stale-button fallback. Telegram limits callback data to 64 bytes."""

from __future__ import annotations

from aiogram.filters.callback_data import CallbackData


class ConsentCb(CallbackData, prefix="consent"):
    accept: bool
    version: str


class LanguageCb(CallbackData, prefix="lang"):
    code: str


class MenuCb(CallbackData, prefix="menu"):
    action: str
