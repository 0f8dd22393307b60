"""CRM adapter: a generic webhook signed per Standard Webhooks, POSTing JSON to the clinic's URL.

Every event is ``{"type", "timestamp", "data"}``; ``webhook-id`` is derived from the message's
idempotency key, so a retried or redelivered event carries the same id and the receiver can drop the
duplicate. Event types and their ``data`` (only what each needs):

* ``callback.requested`` -- request_number, conversation_id, patient {id, first_name, last_name}, phone,
  window, topic, appointment {id, start, branch_id} (a call-back about a visit)
* ``certificate.requested`` -- request_number, conversation_id, patient {...}, years,
  taxpayer {full_name, inn, birth_date, relation}
* ``message.received`` -- request_number, conversation_id, patient {id}, message {id, type, text,
  attachment {file_name, content_base64}}
* ``booking.<event>`` -- the booking copy as published (ids and times)
* ``patient.unreachable`` / ``message.undeliverable`` -- conversation_id, about

``conversation_id`` is an opaque token per patient (kept in the HandoffTable); the CRM answers a
patient by POSTing it (or a request number) to the bot's ``/crm/inbound`` route.

2xx: done. 408, 425, 429 and 5xx, timeouts and connection errors: retried here (Retry-After honoured up
to 10 s), then :class:`CrmUnavailable` (the queue redelivers). Other 4xx: :class:`CrmRejected`.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
from datetime import UTC, datetime
from typing import Any

import aiohttp

from clinicbot.handoff.port import (
    CrmRejected,
    CrmUnavailable,
    Delivery,
    DeliveryContext,
)
from clinicbot.handoff.requests import (
    BookingCopy,
    CallbackRequest,
    CertificateRequest,
    Notice,
    NoticeReason,
    PatientInfo,
    PatientMessage,
)
from clinicbot.handoff.retry import RetryPolicy, retrying
from clinicbot.handoff.signing import signed_headers, webhook_id_for
from clinicbot.handoff.store import HandoffStore

__all__ = ["CHANNEL", "WebhookCrm"]

log = logging.getLogger(__name__)

WEBHOOK_RETRY = RetryPolicy(attempts=3, base=0.3, cap=2.0, max_wait=10.0)

CHANNEL = "webhook"
_RETRY_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})


def _patient(info: PatientInfo | None, patient_id: str | None, *, names: bool) -> dict[str, Any] | None:
    if info is None and patient_id is None:
        return None
    data: dict[str, Any] = {"id": info.patient_id if info else patient_id}
    if names and info is not None:
        data["first_name"] = info.first_name
        data["last_name"] = info.last_name
    return data


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None


class WebhookCrm:
    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: str,
        store: HandoffStore,
        *,
        timeout: float = 5.0,
        policy: RetryPolicy = WEBHOOK_RETRY,
    ) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("the CRM webhook URL must be http(s)")
        self._url = url
        self._secret = secret
        self._store = store
        self._timeout = timeout
        self._policy = policy
        self._session: aiohttp.ClientSession | None = None
        self.requests = 0

    def __repr__(self) -> str:  # the URL may carry a secret
        return "WebhookCrm(url=<secret>)"

    async def close(self) -> None:
        if self._session is not None and not self._session.closed:
            await self._session.close()
        self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(raise_for_status=False)
        return self._session

    def conversation(self, user_id: int | None) -> str | None:
        if user_id is None:
            return None
        known = self._store.thread_of(CHANNEL, user_id)
        if known is not None:
            return known
        return self._store.bind_thread(CHANNEL, user_id, "c_" + secrets.token_urlsafe(12))

    async def _post(self, event_type: str, data: dict[str, Any], ctx: DeliveryContext) -> Delivery:
        body = json.dumps(
            {
                "type": event_type,
                "timestamp": datetime.now(UTC).isoformat(),
                "data": {k: v for k, v in data.items() if v is not None},
            },
            ensure_ascii=False,
            separators=(",", ":"),
            default=str,
        )
        msg_id = webhook_id_for(ctx.idempotency_key)

        async def once() -> Delivery:
            self.requests += 1
            headers = {"content-type": "application/json", **signed_headers(self._secret, msg_id, body)}
            timeout = aiohttp.ClientTimeout(total=ctx.deadline.timeout(self._timeout))
            try:
                async with self._http().post(
                    self._url, data=body.encode(), headers=headers, timeout=timeout
                ) as resp:
                    status = resp.status
                    raw = await resp.read()
                    retry_after = _retry_after(resp.headers.get("Retry-After"))
            except TimeoutError as exc:
                raise CrmUnavailable(f"{event_type}: the CRM did not answer in time") from exc
            except aiohttp.ClientError as exc:
                raise CrmUnavailable(f"{event_type}: {type(exc).__name__}") from exc
            if 200 <= status < 300:
                crm_id = None
                try:
                    answer = json.loads(raw) if raw else None
                    if isinstance(answer, dict) and answer.get("id") is not None:
                        crm_id = str(answer["id"])
                except ValueError:
                    pass
                return Delivery(crm_id=crm_id, thread=data.get("conversation_id"))
            if status in _RETRY_STATUSES:
                raise CrmUnavailable(f"{event_type}: HTTP {status}", retry_after=retry_after)
            raise CrmRejected(f"{event_type}: HTTP {status}")

        def retry_on(exc: Exception) -> bool | float:
            if isinstance(exc, CrmUnavailable):
                return exc.retry_after if exc.retry_after is not None else True
            return False

        delivery = await retrying(once, retry_on=retry_on, policy=self._policy, deadline=ctx.deadline)
        log.info("CRM webhook delivered", extra={"type": event_type, "webhook_id": msg_id})
        return delivery

    async def submit_callback(self, request: CallbackRequest, ctx: DeliveryContext) -> Delivery:
        phone = request.phone or (ctx.patient.phone if ctx.patient else None)
        appointment = (
            {"id": request.appointment_id, "start": request.start, "branch_id": request.branch_id}
            if request.reason == "visit"
            else None
        )
        return await self._post(
            "callback.requested",
            {
                "request_number": request.number,
                "conversation_id": self.conversation(request.user_id),
                "patient": _patient(ctx.patient, request.patient_id, names=True),
                "phone": phone,
                "window": request.window,
                "topic": request.topic,
                "appointment": appointment,
            },
            ctx,
        )

    async def submit_certificate(self, request: CertificateRequest, ctx: DeliveryContext) -> Delivery:
        return await self._post(
            "certificate.requested",
            {
                "request_number": request.number,
                "conversation_id": self.conversation(request.user_id),
                "patient": _patient(ctx.patient, request.patient_id, names=True),
                "years": list(request.years),
                "taxpayer": {
                    "full_name": request.taxpayer_full_name,
                    "inn": request.inn,
                    "birth_date": request.birth_date.isoformat(),
                    "relation": request.relation.value,
                },
            },
            ctx,
        )

    async def relay_message(self, message: PatientMessage, ctx: DeliveryContext) -> Delivery:
        body: dict[str, Any] = {
            "id": message.message_id,
            "type": message.content_type.value,
            "text": message.text,
        }
        if message.file_id and ctx.fetch_file is not None:
            attachment = await ctx.fetch_file(message.file_id)
            if attachment is not None:
                body["attachment"] = {
                    "file_name": message.file_name or attachment.file_name,
                    "mime_type": message.mime_type or attachment.mime_type,
                    "content_base64": base64.b64encode(attachment.content).decode(),
                }
            else:
                body["attachment"] = {"file_name": message.file_name, "unavailable": True}
        return await self._post(
            "message.received",
            {
                "request_number": message.number,
                "conversation_id": self.conversation(message.user_id),
                "patient": _patient(ctx.patient, message.patient_id, names=message.first),
                "message": body,
            },
            ctx,
        )

    async def mirror_booking(self, booking: BookingCopy, ctx: DeliveryContext) -> Delivery:
        data = booking.model_dump(mode="json", exclude_none=True, exclude={"user_id"})
        data["conversation_id"] = self.conversation(booking.user_id)
        return await self._post(f"booking.{booking.event}", data, ctx)

    async def notify(self, notice: Notice, ctx: DeliveryContext) -> Delivery:
        kind = (
            "patient.unreachable"
            if notice.reason is NoticeReason.PATIENT_BLOCKED
            else "message.undeliverable"
        )
        return await self._post(
            kind,
            {
                "conversation_id": self.conversation(notice.user_id),
                "about": notice.about,
                "reason": notice.reason,
            },
            ctx,
        )

    async def forward(self, kind: str, payload: dict[str, Any], ctx: DeliveryContext) -> Delivery:
        data = {k: v for k, v in payload.items() if k != "user_id"}
        user = payload.get("user_id")
        data["conversation_id"] = self.conversation(int(user)) if user is not None else None
        return await self._post(kind, data, ctx)
