"""Per-update context for handlers: the state unit, the patient card, the translator."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any, cast

from aiogram import BaseMiddleware
from aiogram.fsm.state import State, StatesGroup
from aiogram.types import TelegramObject, User

from clinicbot.i18n import Language, Translator, pick_language
from clinicbot.storage.unit import StateUnit
from clinicbot.telegram.fsm import current_unit


class Onboarding(StatesGroup):
    contact = State()


class ContextMiddleware(BaseMiddleware):
    """Puts ``unit``, ``card`` and ``t`` into handler data. Runs as an outer update middleware."""

    def __init__(self, *, dialogue_ttl_seconds: int, default_language: str) -> None:
        self._ttl = dialogue_ttl_seconds
        self._default = default_language

    async def __call__(
        self,
        handler: Callable[[TelegramObject, dict[str, Any]], Awaitable[Any]],
        event: TelegramObject,
        data: dict[str, Any],
    ) -> Any:
        unit = current_unit.get()
        own = unit is None
        if unit is None:  # dispatched outside the webhook (tests, scripts): a unit of our own
            unit = StateUnit(dialogue_ttl_seconds=self._ttl)
            token = current_unit.set(unit)
        user: User | None = data.get("event_from_user")
        card = unit.card(user.id) if user else None
        data["unit"] = unit
        data["card"] = card
        language = pick_language(
            card.language if card else None,
            user.language_code if user else None,
            cast(Language, self._default),
        )
        data["t"] = Translator(language)
        try:
            return await handler(event, data)
        finally:
            if own:
                unit.flush()
                current_unit.reset(token)
