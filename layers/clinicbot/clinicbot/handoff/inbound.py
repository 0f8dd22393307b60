"""CRM -> patient: the ``POST /crm/inbound`` route of the hand-off function.

The CRM signs every call per Standard Webhooks with the shared CRM secret. The route refuses a missing
or wrong signature (401) and a timestamp more than 5 minutes off (401), and acts once per ``webhook-id``
(remembered in the HandoffTable for a day): a replayed id has no effect and is answered
``200 {"status": "duplicate"}`` -- a sender that lost our first answer stops retrying, an attacker who
replays a captured call achieves nothing. A call in flight under the same id gets 409.

Body (JSON)::

    {"type": "message", "conversation_id": "c_…" | "request_number": "1042", "text": "…",
     "document": {"url": "https://…"} | {"content_base64": "…", "file_name": "spravka.pdf"}}
    {"type": "status", "request_number": "1042", "status": "received|in_progress|ready|done|rejected",
     "text": "…" (optional), "document": … (optional)}

Documents reach the patient with ``protect_content`` (no forwarding, no saving); an uploaded one passes
through memory only -- the bot keeps no copy. Answers: 200 ``{"delivered": true}``;
200 ``{"delivered": false, "reason": "patient_blocked_bot"}`` (the CRM is told: the staff must reach the
patient another way); 404 unknown conversation; 422 invalid body; 503 with ``Retry-After`` when Telegram
is failing (nothing was delivered: the sender's retry, same ``webhook-id``, will be let through).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, HttpUrl, ValidationError, model_validator

from clinicbot.handoff.bot_api import DeliveryOutcome, HandoffBotApi, deliver_to_patient
from clinicbot.handoff.port import Attachment
from clinicbot.handoff.retry import Deadline
from clinicbot.handoff.signing import WebhookVerificationError, verify
from clinicbot.handoff.store import HandoffStore
from clinicbot.i18n import Translator
from clinicbot.telegram_api.client import BotApiError

__all__ = ["InboundCall", "InboundHandler", "InboundResponse"]

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 6 * 1024 * 1024  # what a synchronous Lambda invocation can carry
REPLAY_TTL_SECONDS = 86_400
CAPTION_LIMIT = 1024
STATUSES = ("received", "in_progress", "ready", "done", "rejected")


class InboundDocument(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    url: HttpUrl | None = None
    content_base64: str | None = None
    file_name: str = Field(default="document.pdf", min_length=1, max_length=128)

    @model_validator(mode="after")
    def _one_source(self) -> InboundDocument:
        if (self.url is None) == (self.content_base64 is None):
            raise ValueError("give either url or content_base64")
        if self.url is not None and self.url.scheme != "https":
            raise ValueError("document URLs must be https")
        return self


class InboundCall(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    type: Literal["message", "status"]
    conversation_id: str | None = Field(default=None, max_length=64)
    request_number: str | None = Field(default=None, max_length=16)
    text: str | None = Field(default=None, max_length=3500)
    status: Literal["received", "in_progress", "ready", "done", "rejected"] | None = None
    document: InboundDocument | None = None

    @model_validator(mode="after")
    def _check(self) -> InboundCall:
        if not (self.conversation_id or self.request_number):
            raise ValueError("conversation_id or request_number is required")
        if self.type == "status" and (self.status is None or not self.request_number):
            raise ValueError("a status needs request_number and status")
        if self.type == "message" and not (self.text or self.document):
            raise ValueError("a message needs text or a document")
        return self


@dataclass(frozen=True)
class InboundResponse:
    status: int
    body: dict[str, Any]
    headers: Mapping[str, str] | None = None

    def to_api_gateway(self) -> dict[str, Any]:
        return {
            "statusCode": self.status,
            "headers": {"Content-Type": "application/json", **(self.headers or {})},
            "body": json.dumps(self.body, ensure_ascii=False),
        }


class InboundHandler:
    def __init__(
        self,
        *,
        secret: Callable[[], str],
        store: HandoffStore,
        bot: HandoffBotApi,
        channel: str,
        clinic_name: str,
        language_of: Callable[[int], str | None] = lambda _user: None,
        default_language: str = "ru",
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._store = store
        self._bot = bot
        self._channel = channel
        self._clinic = clinic_name
        self._language_of = language_of
        self._default_language = default_language
        self._clock = clock

    async def handle(
        self, headers: Mapping[str, str], body: str | None, *, is_base64: bool = False
    ) -> InboundResponse:
        raw = (body or "").encode()
        if is_base64:
            try:
                raw = base64.b64decode(raw, validate=True)
            except binascii.Error:
                return InboundResponse(400, {"error": "body is not base64"})
        if len(raw) > MAX_BODY_BYTES:
            return InboundResponse(413, {"error": "body too large"})
        try:
            webhook_id, _ts = verify(self._secret(), headers, raw, now=self._clock())
        except WebhookVerificationError as exc:
            log.warning("inbound CRM call refused", extra={"problem": exc.problem.value})
            return InboundResponse(401, {"error": exc.problem.value})
        try:
            call = InboundCall.model_validate_json(raw)
        except ValidationError as exc:
            problems = sorted({".".join(str(p) for p in e["loc"]) or e["msg"] for e in exc.errors()})
            return InboundResponse(422, {"error": "invalid body", "fields": problems})
        user_id = self._resolve(call)
        if user_id is None:
            return InboundResponse(404, {"error": "unknown conversation or request number"})

        claim = self._store.claim(webhook_id, 60, scope="HOOK")
        if claim.value == "done":
            log.info("replayed webhook-id ignored")
            return InboundResponse(200, {"status": "duplicate"})
        if claim.value == "busy":
            return InboundResponse(409, {"error": "this webhook-id is being processed"}, {"Retry-After": "5"})
        try:
            response = await self._deliver(user_id, call)
        except BaseException:
            self._store.release(webhook_id, scope="HOOK")
            raise
        if response.status >= 500:
            self._store.release(webhook_id, scope="HOOK")
        else:
            self._store.complete(webhook_id, scope="HOOK", ttl_seconds=REPLAY_TTL_SECONDS)
        return response

    def _resolve(self, call: InboundCall) -> int | None:
        if call.conversation_id:
            user = self._store.user_of_thread(self._channel, call.conversation_id)
            if user is not None:
                return user
        if call.request_number:
            return self._store.user_for_number(call.request_number)
        return None

    async def _deliver(self, user_id: int, call: InboundCall) -> InboundResponse:
        t = Translator(self._language_of(user_id) or self._default_language)
        if call.type == "status":
            assert call.status is not None and call.request_number is not None
            text = t(f"handoff.status.{call.status}", number=call.request_number)
            if call.text:
                text += "\n\n" + call.text
        else:
            text = t("chat.from_clinic", clinic=self._clinic) + "\n\n" + (call.text or "")
        deadline = Deadline.after(20)
        attachment: Attachment | None = None
        url: str | None = None
        if call.document is not None:
            if call.document.content_base64 is not None:
                try:
                    content = base64.b64decode(call.document.content_base64, validate=True)
                except binascii.Error:
                    return InboundResponse(
                        422, {"error": "invalid body", "fields": ["document.content_base64"]}
                    )
                attachment = Attachment(call.document.file_name, None, content)
            else:
                url = str(call.document.url)
        try:
            if attachment is None and url is None:
                delivery = await deliver_to_patient(self._bot, user_id, text=text, deadline=deadline)
            else:
                caption = text
                if len(text) > CAPTION_LIMIT:  # too long for a caption: the text first, then the document
                    delivery = await deliver_to_patient(self._bot, user_id, text=text, deadline=deadline)
                    caption = text.split("\n", 1)[0][:CAPTION_LIMIT]
                if len(text) <= CAPTION_LIMIT or delivery.outcome is DeliveryOutcome.DELIVERED:
                    delivery = await deliver_to_patient(
                        self._bot, user_id, document=attachment, document_url=url,
                        caption=caption, protect_content=True, deadline=deadline,
                    )  # fmt: skip
        except BotApiError as exc:
            log.warning("Telegram failed while delivering a CRM message", extra={"error": exc.description})
            return InboundResponse(
                503, {"error": "Telegram is not answering; retry later"}, {"Retry-After": "30"}
            )
        if delivery.outcome is DeliveryOutcome.DELIVERED:
            return InboundResponse(200, {"delivered": True, "message_id": delivery.message_id})
        if delivery.outcome is DeliveryOutcome.BLOCKED:
            log.info("CRM message not delivered: the patient blocked the bot")
            return InboundResponse(200, {"delivered": False, "reason": "patient_blocked_bot"})
        return InboundResponse(200, {"delivered": False, "reason": "refused", "detail": delivery.error})
