"""Telegram calls the hand-off function makes, on ``clinicbot.telegram_api`` (no aiogram here).

:class:`HandoffBotApi` adds what the scheduled functions' client lacks: ``copyMessage``, forum topics,
uploading a document from memory (a CRM's certificate: it passes through, the bot keeps no copy) and
fetching a patient's file for CRMs that cannot copy Telegram messages. :func:`deliver_to_patient` is the
one way a staff reply or a CRM message reaches a patient: bounded retries on 429/5xx/timeouts, and a
defined outcome for everything else.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import aiohttp

from clinicbot.handoff.port import Attachment
from clinicbot.handoff.retry import Deadline, RetryPolicy, retrying
from clinicbot.telegram_api.client import (
    BadRequest,
    BotApiClient,
    BotApiError,
    Forbidden,
    NetworkError,
    RetryAfter,
    ServerError,
)

__all__ = [
    "MAX_FILE_BYTES",
    "DeliveryOutcome",
    "HandoffBotApi",
    "PatientDelivery",
    "deliver_to_patient",
    "telegram_retry_on",
]

log = logging.getLogger(__name__)

PATIENT_RETRY = RetryPolicy(attempts=3, max_wait=5.0)

MAX_FILE_BYTES = 20 * 1024 * 1024  # getFile serves files up to 20 MB


def telegram_retry_on(exc: Exception) -> bool | float:
    """429: wait what Telegram asks; 5xx and network errors: back off; anything else is final."""
    if isinstance(exc, RetryAfter):
        return exc.retry_after
    return isinstance(exc, ServerError | NetworkError)


class HandoffBotApi(BotApiClient):
    async def copy_message(
        self,
        chat_id: int,
        from_chat_id: int,
        message_id: int,
        *,
        message_thread_id: int | None = None,
        protect_content: bool = False,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        result = await self.call(
            "copyMessage",
            request_timeout=request_timeout,
            chat_id=chat_id,
            from_chat_id=from_chat_id,
            message_id=message_id,
            message_thread_id=message_thread_id,
            protect_content=protect_content or None,
        )
        return dict(result)

    async def create_forum_topic(
        self, chat_id: int, name: str, *, request_timeout: float | None = None
    ) -> int:
        result = await self.call(
            "createForumTopic", request_timeout=request_timeout, chat_id=chat_id, name=name[:128]
        )
        return int(result["message_thread_id"])

    async def send_document_upload(
        self,
        chat_id: int,
        content: bytes,
        file_name: str,
        *,
        caption: str | None = None,
        protect_content: bool = False,
        message_thread_id: int | None = None,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        """sendDocument with the file in the request body (multipart): nothing is stored anywhere."""
        form = aiohttp.FormData()
        form.add_field("chat_id", str(chat_id))
        if caption:
            form.add_field("caption", caption)
        if protect_content:
            form.add_field("protect_content", "true")
        if message_thread_id is not None:
            form.add_field("message_thread_id", str(message_thread_id))
        form.add_field("document", content, filename=file_name, content_type="application/octet-stream")
        url = f"{self.base_url}/bot{self._token}/sendDocument"
        timeout = aiohttp.ClientTimeout(total=request_timeout or max(self.timeout, 30.0))
        try:
            async with self._session().post(url, data=form, timeout=timeout) as resp:
                status, raw = resp.status, await resp.read()
        except aiohttp.ClientConnectorError as exc:
            raise NetworkError("sendDocument", "cannot connect", maybe_delivered=False) from exc
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise NetworkError("sendDocument", type(exc).__name__, maybe_delivered=True) from exc
        return dict(self._result("sendDocument", status, raw))

    async def fetch_file(self, file_id: str, *, max_bytes: int = MAX_FILE_BYTES) -> Attachment | None:
        """Download a file a patient sent (None if Telegram no longer has it or it is too large)."""
        try:
            info = await self.call("getFile", file_id=file_id)
        except BadRequest:
            return None
        path = info.get("file_path")
        if not path or int(info.get("file_size") or 0) > max_bytes:
            return None
        url = f"{self.base_url}/file/bot{self._token}/{path}"
        timeout = aiohttp.ClientTimeout(total=max(self.timeout, 30.0))
        try:
            async with self._session().get(url, timeout=timeout) as resp:
                if resp.status == 404:
                    return None
                if resp.status != 200:
                    raise ServerError("getFile", f"download answered HTTP {resp.status}", resp.status)
                content = await resp.content.read(max_bytes + 1)
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise NetworkError("getFile", type(exc).__name__, maybe_delivered=True) from exc
        if len(content) > max_bytes:
            return None
        return Attachment(file_name=path.rsplit("/", 1)[-1], mime_type=None, content=content)


class DeliveryOutcome(StrEnum):
    DELIVERED = "delivered"
    BLOCKED = "blocked"  # 403: the patient blocked the bot (or deleted the account)
    REFUSED = "refused"  # 400: Telegram will never take it (the source message is gone, ...)


@dataclass(frozen=True)
class PatientDelivery:
    outcome: DeliveryOutcome
    message_id: int | None = None
    error: str | None = None


async def deliver_to_patient(
    api: HandoffBotApi,
    user_id: int,
    *,
    text: str | None = None,
    copy_from: tuple[int, int] | None = None,
    document_url: str | None = None,
    document: Attachment | None = None,
    caption: str | None = None,
    protect_content: bool = False,
    deadline: Deadline | None = None,
    policy: RetryPolicy = PATIENT_RETRY,
) -> PatientDelivery:
    """Send one thing to a patient. 429/5xx/timeouts are retried here; when they persist the error is
    raised (the caller's queue or HTTP client retries later). 403 and 400 are outcomes, not errors."""

    async def once() -> dict[str, Any]:
        timeout = deadline.timeout(10.0) if deadline else None
        if copy_from is not None:
            return await api.copy_message(
                user_id, copy_from[0], copy_from[1], protect_content=protect_content, request_timeout=timeout
            )
        if document is not None:
            return await api.send_document_upload(
                user_id, document.content, document.file_name, caption=caption,
                protect_content=protect_content, request_timeout=timeout,
            )  # fmt: skip
        if document_url is not None:
            return await api.send_document(
                user_id,
                document_url,
                caption=caption,
                protect_content=protect_content,
                request_timeout=timeout,
            )
        assert text is not None
        return await api.send_message(user_id, text, protect_content=protect_content, request_timeout=timeout)

    try:
        result = await retrying(once, retry_on=telegram_retry_on, policy=policy, deadline=deadline)
    except Forbidden as exc:
        return PatientDelivery(DeliveryOutcome.BLOCKED, error=exc.description)
    except BadRequest as exc:
        return PatientDelivery(DeliveryOutcome.REFUSED, error=exc.description)
    except BotApiError as exc:
        if isinstance(exc, ServerError | RetryAfter):
            raise
        return PatientDelivery(DeliveryOutcome.REFUSED, error=exc.description)
    return PatientDelivery(DeliveryOutcome.DELIVERED, message_id=result.get("message_id"))


def json_markup(rows: list[list[dict[str, Any]]]) -> dict[str, Any]:
    return json.loads(json.dumps({"inline_keyboard": rows}))
