"""The Dispatcher and its routers. Routers are built by factories: a Router can have one parent only,
and tests build several dispatchers."""

from __future__ import annotations

from typing import Any

from aiogram import Dispatcher
from aiogram.fsm.strategy import FSMStrategy

from clinicbot.config import Settings
from clinicbot.telegram.context import ContextMiddleware
from clinicbot.telegram.fsm import DynamoStorage
from clinicbot.telegram.routers import onboarding


def build_dispatcher(settings: Settings, *, mis: Any) -> Dispatcher:
    dispatcher = Dispatcher(
        storage=DynamoStorage(dialogue_ttl_seconds=settings.dialogue_ttl_seconds),
        fsm_strategy=FSMStrategy.USER_IN_CHAT,
        settings=settings,
        mis=mis,
    )
    dispatcher.update.outer_middleware(
        ContextMiddleware(
            dialogue_ttl_seconds=settings.dialogue_ttl_seconds, default_language=settings.default_language
        )
    )
    dispatcher.include_router(onboarding.build_router())
    dispatcher.include_router(onboarding.build_fallback_router())
    return dispatcher
