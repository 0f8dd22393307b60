"""Privacy: ``/mydata`` (everything the bot stores about the patient, as a JSON file), ``/forget`` and
``/withdraw`` (withdraw the consent to personal data processing): after a confirmation, the patient is erased
from every table and the CRM is told (``clinicbot.privacy.erasure``).

These work for anyone, consented or not, linked or not: a stranger is told that nothing is stored.

DynamoDB: ``/mydata`` reads every store (a Query per table, the FeedbackTable's by its ``owner`` GSI): a few
reads, only when asked. The erasure deletes by key in every table (a Query per table to find the keys).
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

from aiogram import F, Router
from aiogram.filters import Command
from aiogram.filters.callback_data import CallbackData
from aiogram.methods import SendDocument, SendMessage
from aiogram.types import (
    BufferedInputFile,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    Message,
)

from clinicbot.domain.patient import PatientCard
from clinicbot.handoff.outbox import InMemoryOutbox, Outbox
from clinicbot.i18n import Translator
from clinicbot.privacy.erasure import forget_patient
from clinicbot.privacy.registry import Registry
from clinicbot.storage.unit import StateUnit

__all__ = ["PrivacyCb", "build_router", "export_file"]

log = logging.getLogger(__name__)

Reply = Any


class PrivacyCb(CallbackData, prefix="prv"):
    a: str  # data | ask | wask | yes | wyes | no


def _registry(data_registry: Registry | None) -> Registry:
    if data_registry is not None:
        return data_registry
    from clinicbot.privacy.stores import default_registry

    registry: Registry = default_registry()
    return registry


def export_file(registry: Registry, user_id: int, patient_id: str | None) -> tuple[bytes, bool]:
    """The export as UTF-8 JSON, and whether anything at all is stored."""
    export = registry.export(user_id, patient_id)
    body = json.dumps(export, ensure_ascii=False, indent=2, default=str).encode()
    return body, bool(export["stores"])


def confirm_keyboard(t: Translator, yes: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=t("privacy.forget_yes"), callback_data=PrivacyCb(a=yes).pack())],
            [InlineKeyboardButton(text=t("privacy.forget_no"), callback_data=PrivacyCb(a="no").pack())],
        ]
    )


def build_router(registry: Registry | None = None) -> Router:
    """``registry``: the personal-data registry (default: every store of this build, built on first use)."""
    router = Router(name="privacy")
    router.message.filter(F.chat.type == "private")
    holder: dict[str, Registry] = {}

    def stores(data: dict[str, Any]) -> Registry:
        given = data.get("privacy_registry") or registry
        if given is not None:
            return given
        if "default" not in holder:
            holder["default"] = _registry(None)
        return holder["default"]

    async def send_export(
        chat_id: int, card: PatientCard | None, t: Translator, data: dict[str, Any]
    ) -> Reply:
        body, anything = export_file(stores(data), chat_id, card.patient_id if card else None)
        if not anything:
            return SendMessage(chat_id=chat_id, text=t("privacy.nothing_stored"))
        name = f"my-data-{datetime.now(UTC):%Y-%m-%d}.json"
        # A file cannot travel in the webhook response: the webhook sends this method itself.
        return SendDocument(
            chat_id=chat_id,
            document=BufferedInputFile(body, filename=name),
            caption=t("privacy.mydata_caption"),
        )

    @router.message(Command("mydata"))
    async def mydata_command(message: Message, card: PatientCard | None, t: Translator, **data: Any) -> Reply:
        assert message.from_user is not None
        return await send_export(message.from_user.id, card, t, data)

    @router.callback_query(PrivacyCb.filter(F.a == "data"))
    async def mydata_button(
        query: CallbackQuery, card: PatientCard | None, t: Translator, **data: Any
    ) -> Reply:
        await query.answer()
        return await send_export(query.from_user.id, card, t, data)

    @router.message(Command("forget"))
    async def forget_command(message: Message, t: Translator) -> Reply:
        return message.answer(t("privacy.forget_confirm"), reply_markup=confirm_keyboard(t, "yes"))

    @router.message(Command("withdraw"))
    async def withdraw_command(message: Message, t: Translator) -> Reply:
        return message.answer(t("privacy.withdraw_confirm"), reply_markup=confirm_keyboard(t, "wyes"))

    @router.callback_query(PrivacyCb.filter(F.a.in_({"ask", "wask"})))
    async def ask(query: CallbackQuery, callback_data: PrivacyCb, t: Translator) -> Reply:
        withdraw = callback_data.a == "wask"
        await query.answer()
        text = t("privacy.withdraw_confirm" if withdraw else "privacy.forget_confirm")
        markup = confirm_keyboard(t, "wyes" if withdraw else "yes")
        if isinstance(query.message, Message):
            return query.message.edit_text(text, reply_markup=markup)
        return SendMessage(chat_id=query.from_user.id, text=text, reply_markup=markup)

    @router.callback_query(PrivacyCb.filter(F.a == "no"))
    async def keep(query: CallbackQuery, t: Translator) -> Reply:
        await query.answer()
        if isinstance(query.message, Message):
            return query.message.edit_text(t("privacy.kept"), reply_markup=None)
        return None

    @router.callback_query(PrivacyCb.filter(F.a.in_({"yes", "wyes"})))
    async def erase(
        query: CallbackQuery,
        callback_data: PrivacyCb,
        card: PatientCard | None,
        unit: StateUnit,
        t: Translator,
        **data: Any,
    ) -> Reply:
        user_id = query.from_user.id
        outbox: Outbox = data.get("outbox") or InMemoryOutbox()
        reason = "consent_withdrawn" if callback_data.a == "wyes" else "forget"
        message_id = query.message.message_id if query.message else 0
        try:
            forget_patient(
                stores(data),
                outbox,
                user_id,
                card.patient_id if card else None,
                reason=reason,
                idempotency_key=f"erasure:{user_id}:{message_id}",
            )
        except Exception:
            log.exception("erasure failed", extra={"reason": reason})
            return query.answer(t("privacy.forget_failed"), show_alert=True)
        unit.erase_user(user_id)  # nothing of this update is written back
        await query.answer()
        text = t("privacy.withdrawn" if reason == "consent_withdrawn" else "privacy.forgotten")
        if isinstance(query.message, Message):
            return query.message.edit_text(text, reply_markup=None)
        return SendMessage(chat_id=user_id, text=text)

    return router
