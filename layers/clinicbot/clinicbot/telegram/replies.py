"""Small helpers for replies that may legitimately fail on Telegram's side."""

from __future__ import annotations

import logging
from typing import Any

from aiogram.exceptions import TelegramBadRequest
from aiogram.types import CallbackQuery, InlineKeyboardMarkup, Message

log = logging.getLogger(__name__)

_BENIGN_EDIT_ERRORS = (
    "message is not modified",
    "message to edit not found",
    "message can't be edited",
    "message can't be deleted",
)


async def drop_buttons(query: CallbackQuery, markup: InlineKeyboardMarkup | None = None) -> None:
    """Remove (or replace) the inline keyboard under the message a button was pressed on.

    An old or already-edited message is not an error worth failing the update for."""
    if not isinstance(query.message, Message):
        return
    try:
        await query.message.edit_reply_markup(reply_markup=markup)
    except TelegramBadRequest as exc:
        if not any(marker in exc.message for marker in _BENIGN_EDIT_ERRORS):
            raise
        log.debug("edit skipped: %s", exc.message)


def is_benign_edit_error(exc: Any) -> bool:
    return isinstance(exc, TelegramBadRequest) and any(m in exc.message for m in _BENIGN_EDIT_ERRORS)
