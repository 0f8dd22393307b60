"""One Telegram update per invocation: authenticate, parse, de-duplicate, dispatch, write once, reply.

Built once per cold start (:func:`build_webhook`): Bot, Dispatcher and ONE event loop that lives across
warm invocations, so the Bot's aiohttp session and its keep-alive connection survive (``asyncio.run`` per
invocation would close the loop the session is bound to: "Event loop is closed").
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from aiogram import Bot, Dispatcher
from aiogram.client.default import DefaultBotProperties
from aiogram.dispatcher.middlewares.user_context import UserContextMiddleware
from aiogram.methods import TelegramMethod
from aiogram.types import Update
from aiogram.types.update import UpdateTypeLookupError
from pydantic import ValidationError

from clinicbot.config import Settings
from clinicbot.storage.unit import ConcurrentUpdateError, DialogueKey, StateUnit
from clinicbot.telegram.fsm import current_unit
from clinicbot.telegram.session import ResilientSession, direct_calls

log = logging.getLogger(__name__)

SECRET_HEADER = "x-telegram-bot-api-secret-token"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    body: dict[str, Any] | None = None

    def to_api_gateway(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            "headers": {"Content-Type": "application/json"},
            "body": json.dumps(self.body if self.body is not None else {}, ensure_ascii=False),
        }


@dataclass
class UpdateOutcome:
    """What happened to one update, for logs, metrics and tests (no personal data)."""

    status: int
    outcome: str
    update_id: int | None = None
    update_type: str | None = None
    reads: int = 0
    writes: int = 0
    direct_calls: int = 0
    replied_in_response: str | None = None
    duration_ms: float = 0.0


class WebhookProcessor:
    def __init__(self, *, bot: Bot, dispatcher: Dispatcher, secret: str, settings: Settings) -> None:
        self.bot = bot
        self.dispatcher = dispatcher
        self._secret = secret.encode()
        self._settings = settings
        self.last_outcome: UpdateOutcome | None = None

    # ------------------------------------------------------------------ HTTP edge
    async def handle_http(
        self, headers: Mapping[str, str], body: str | None, *, is_base64: bool = False
    ) -> HttpResponse:
        started = time.perf_counter()
        outcome = await self._handle(headers, body, is_base64)
        outcome.duration_ms = round((time.perf_counter() - started) * 1000, 2)
        self.last_outcome = outcome
        log.info(
            "update handled",
            extra={k: v for k, v in outcome.__dict__.items() if v is not None and k != "replied_in_response"},
        )
        return self._response

    async def _handle(self, headers: Mapping[str, str], body: str | None, is_base64: bool) -> UpdateOutcome:
        self._response = HttpResponse(200)
        lowered = {k.lower(): v for k, v in headers.items()}
        given = lowered.get(SECRET_HEADER)
        if given is None:
            self._response = HttpResponse(401, {"error": "missing secret token"})
            return UpdateOutcome(401, "unauthenticated")
        if not secrets.compare_digest(given.encode(), self._secret):
            self._response = HttpResponse(403, {"error": "wrong secret token"})
            return UpdateOutcome(403, "forbidden")

        try:
            raw = base64.b64decode(body or "").decode() if is_base64 else (body or "")
            payload = json.loads(raw)
            if not isinstance(payload, dict):
                raise ValueError("not an object")
            update = Update.model_validate(payload, context={"bot": self.bot})
        except (ValueError, TypeError, ValidationError, UnicodeDecodeError):
            self._response = HttpResponse(400, {"error": "body is not a Telegram update"})
            return UpdateOutcome(400, "malformed")

        outcome = UpdateOutcome(200, "handled", update_id=update.update_id)
        try:
            outcome.update_type = update.event_type
        except UpdateTypeLookupError:
            outcome.outcome = "unknown-kind"
            return outcome

        context = UserContextMiddleware.resolve_event_context(update)
        if context.user is None:
            outcome.outcome = "no-user"
            return outcome

        key = DialogueKey(
            bot_id=self.bot.id,
            chat_id=context.chat.id if context.chat else context.user.id,
            user_id=context.user.id,
            thread_id=context.thread_id,
            business_connection_id=context.business_connection_id,
        )
        unit = StateUnit(dialogue_ttl_seconds=self._settings.dialogue_ttl_seconds)
        unit_token = current_unit.set(unit)
        calls: list[str] = []
        calls_token = direct_calls.set(calls)
        try:
            if unit.seen_update(key, update.update_id):
                outcome.outcome = "duplicate"
                return outcome
            unit.mark_handled(key, update.update_id)
            try:
                result = await self.dispatcher.feed_update(self.bot, update)
            except Exception:
                # Nothing of this update is written: a retry starts from a clean slate.
                log.exception("handler failed", extra={"update_id": update.update_id})
                outcome.outcome = "handler-error"
                self._response = HttpResponse(200, self._error_reply(update, context.user.language_code))
                return outcome
            reply = self._reply_body(result)
            if reply is None and isinstance(result, TelegramMethod):
                await self.bot(result)  # it carries files: it cannot travel in the response body
            try:
                unit.flush()
            except ConcurrentUpdateError:
                outcome.status, outcome.outcome = 500, "conflict"
                self._response = HttpResponse(500, {"error": "retry"})
                return outcome
            if reply is not None:
                self._response = HttpResponse(200, reply)
                outcome.replied_in_response = reply["method"]
            return outcome
        finally:
            outcome.reads, outcome.writes, outcome.direct_calls = unit.reads, unit.writes, len(calls)
            direct_calls.reset(calls_token)
            current_unit.reset(unit_token)

    def _reply_body(self, result: Any) -> dict[str, Any] | None:
        """A handler's returned Bot API method as a webhook response body, or None if it cannot be."""
        if not isinstance(result, TelegramMethod):
            return None
        files: dict[str, Any] = {}
        body: dict[str, Any] = {"method": result.__api_method__}
        for name, value in result.model_dump(warnings=False).items():
            prepared = self.bot.session.prepare_value(value, bot=self.bot, files=files, _dumps_json=False)
            if prepared is not None:
                body[name] = prepared
        return None if files else body

    def _error_reply(self, update: Update, language_code: str | None) -> dict[str, Any] | None:
        from clinicbot.i18n import Translator, pick_language

        context = UserContextMiddleware.resolve_event_context(update)
        if context.chat is None or context.chat.type != "private":
            return None
        t = Translator(pick_language(None, language_code, self._settings.default_language))
        return {"method": "sendMessage", "chat_id": context.chat.id, "text": t("error.generic")}


class WebhookApp:
    """What ``functions/webhook/app.py`` holds between invocations."""

    def __init__(self, processor: WebhookProcessor, loop: asyncio.AbstractEventLoop) -> None:
        self.processor = processor
        self.loop = loop

    def handle_event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """API Gateway HTTP API (payload 2.0) event in, HTTP response out."""
        session = self.processor.bot.session
        if isinstance(session, ResilientSession):
            session.new_invocation()
        response = self.loop.run_until_complete(
            self.processor.handle_http(
                event.get("headers") or {},
                event.get("body"),
                is_base64=bool(event.get("isBase64Encoded")),
            )
        )
        return response.to_api_gateway()

    def close(self) -> None:
        self.loop.run_until_complete(self.processor.bot.session.close())


def build_bot(settings: Settings) -> Bot:
    from aiogram.enums import ParseMode

    session = ResilientSession(api_base=settings.telegram_api_base, timeout=settings.telegram_timeout_seconds)
    return Bot(
        settings.resolved_bot_token(),
        session=session,
        default=DefaultBotProperties(parse_mode=ParseMode.HTML, link_preview_is_disabled=True),
    )


def build_webhook(settings: Settings, *, mis: Any | None = None) -> WebhookApp:
    from clinicbot import bootstrap
    from clinicbot.storage import models
    from clinicbot.telegram.dispatcher import build_dispatcher

    models.configure(
        table_name=settings.state_table,
        connect_timeout=settings.ddb_connect_timeout_seconds,
        read_timeout=settings.ddb_read_timeout_seconds,
        max_retries=settings.ddb_max_retries,
    )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    bot = build_bot(settings)
    dispatcher = build_dispatcher(settings, mis=mis if mis is not None else bootstrap.build_mis(settings))
    processor = WebhookProcessor(
        bot=bot, dispatcher=dispatcher, secret=settings.resolved_webhook_secret(), settings=settings
    )
    return WebhookApp(processor, loop)
