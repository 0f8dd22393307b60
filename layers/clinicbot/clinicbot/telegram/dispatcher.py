"""The Dispatcher and its routers. Routers are built by factories: a Router can have one parent only,
and tests build several dispatchers."""

from __future__ import annotations

from typing import Any

from aiogram import Dispatcher
from aiogram.fsm.strategy import FSMStrategy

from clinicbot.config import Settings
from clinicbot.telegram.context import ContextMiddleware
from clinicbot.telegram.fsm import DynamoStorage
from clinicbot.telegram.routers import (
    account,
    booking,
    feedback,
    handoff,
    info,
    onboarding,
    privacy,
    reminders,
    staff,
    visits,
)


def build_dispatcher(settings: Settings, *, mis: Any, outbox: Any | None = None) -> Dispatcher:
    if outbox is None:  # the hand-off function (CLINICBOT_HANDOFF_FUNCTION), else an in-memory outbox
        from clinicbot.handoff.outbox import outbox_from_env

        outbox = outbox_from_env()
    dispatcher = Dispatcher(
        storage=DynamoStorage(dialogue_ttl_seconds=settings.dialogue_ttl_seconds),
        fsm_strategy=FSMStrategy.USER_IN_CHAT,
        settings=settings,
        mis=mis,
        outbox=outbox,
    )
    dispatcher.update.outer_middleware(
        ContextMiddleware(
            dialogue_ttl_seconds=settings.dialogue_ttl_seconds, default_language=settings.default_language
        )
    )
    dispatcher.update.outer_middleware(account.EngagementMiddleware())  # referral links around consent
    dispatcher.include_router(privacy.build_router())  # /mydata, /forget, /withdraw: from any state
    dispatcher.include_router(account.build_unsubscribe_router())  # /stop, "unsubscribe": from any state
    dispatcher.include_router(staff.build_router())  # the staff group only: replies, request cards
    dispatcher.include_router(handoff.build_state_router())  # typed input inside hand-off dialogues
    dispatcher.include_router(onboarding.build_router())
    dispatcher.include_router(booking.build_router())
    dispatcher.include_router(visits.build_router())
    # reminder buttons and settings; a free-text reply to a reminder goes to the operators (before the FAQ)
    dispatcher.include_router(reminders.build_router())
    dispatcher.include_router(account.build_router())
    dispatcher.include_router(feedback.build_router())
    dispatcher.include_router(handoff.build_router())  # call me back, tax certificate, write to the clinic
    dispatcher.include_router(info.build_router())
    dispatcher.include_router(info.build_faq_router())  # free text: the FAQ, just before the fallback
    dispatcher.include_router(onboarding.build_fallback_router())
    return dispatcher
