"""CRM adapter: a staff Telegram supergroup with forum topics, one topic per patient.

Runs in the hand-off function on ``clinicbot.telegram_api`` (no aiogram). The webhook side -- staff
replies in a topic and the card buttons -- is ``clinicbot.telegram.routers.staff``.

* a topic per patient, created on first contact (``createForumTopic``, named after the MIS record) and
  reused after: the link lives in the HandoffTable (both ways); two consumers racing to create one keep
  the first link and delete the other topic;
* call-backs and certificate requests are posted as cards with buttons (take / done), booking copies and
  notices as plain lines; a patient's messages are *copied* into the topic (``copyMessage``: photos and
  documents included, and nothing is retyped or stored);
* a topic the staff deleted is re-created once; a closed one is reopened.

Telegram errors: 429 waits ``retry_after`` (up to 10 s here, else the queue retries later); 5xx and
timeouts back off; both then raise :class:`CrmUnavailable`. 403 (the bot was removed from the group) and
other 400s raise :class:`CrmRejected`.
"""

from __future__ import annotations

import contextlib
import html
import logging
from typing import Any

from clinicbot.handoff.bot_api import HandoffBotApi, telegram_retry_on
from clinicbot.handoff.port import CrmRejected, CrmUnavailable, Delivery, DeliveryContext
from clinicbot.handoff.requests import (
    BookingCopy,
    CallbackRequest,
    CertificateRequest,
    Notice,
    PatientInfo,
    PatientMessage,
)
from clinicbot.handoff.retry import RetryPolicy, retrying
from clinicbot.handoff.store import HandoffStore
from clinicbot.handoff.texts import (
    booking_text,
    callback_text,
    card_callback,
    certificate_text,
    chat_header_text,
    generic_text,
    notice_text,
)
from clinicbot.i18n import Translator
from clinicbot.telegram_api.client import BadRequest, BotApiError, Forbidden, RetryAfter, ServerError

__all__ = ["TelegramGroupCrm", "channel_of", "take_buttons"]

log = logging.getLogger(__name__)

GROUP_RETRY = RetryPolicy(attempts=3, base=0.3, cap=2.0, max_wait=10.0)

_TOPIC_GONE = ("message thread not found", "topic_deleted", "topic_id_invalid", "thread not found")
_TOPIC_CLOSED = ("topic_closed", "topic closed")
_SOURCE_GONE = ("message to copy not found", "message_id_invalid", "message not found")


def channel_of(group_id: int) -> str:
    return f"tg:{group_id}"


def take_buttons(t: Translator, number: str) -> dict[str, Any]:
    return {
        "inline_keyboard": [
            [
                {"text": t("handoff.card.take"), "callback_data": card_callback("take", number)},
                {"text": t("handoff.card.done"), "callback_data": card_callback("done", number)},
            ]
        ]
    }


class TelegramGroupCrm:
    name = "telegram_group"

    def __init__(
        self,
        api: HandoffBotApi,
        group_id: int,
        store: HandoffStore,
        *,
        language: str = "ru",
        timezone: str = "Europe/Moscow",
        policy: RetryPolicy = GROUP_RETRY,
    ) -> None:
        self._api = api
        self.group_id = group_id
        self._store = store
        self._t = Translator(language)
        self._tz = timezone
        self._policy = policy
        self.channel = channel_of(group_id)

    async def close(self) -> None:
        await self._api.close()

    # ------------------------------------------------------------------ calls
    async def _call(self, method: str, ctx: DeliveryContext, **params: Any) -> Any:
        async def once() -> Any:
            return await self._api.call(method, request_timeout=ctx.deadline.timeout(10.0), **params)

        try:
            return await retrying(
                once, retry_on=telegram_retry_on, policy=self._policy, deadline=ctx.deadline
            )
        except RetryAfter as exc:
            raise CrmUnavailable(f"{method}: flood control", retry_after=exc.retry_after) from exc
        except ServerError as exc:
            raise CrmUnavailable(f"{method}: {exc.description}") from exc
        except Forbidden as exc:
            raise CrmRejected(
                f"{method}: the bot cannot post in the staff group ({exc.description})"
            ) from exc

    async def _topic(
        self, user_id: int, patient: PatientInfo | None, patient_id: str | None, ctx: DeliveryContext
    ) -> int:
        known = self._store.thread_of(self.channel, user_id)
        if known is not None:
            return int(known)
        if patient is not None:
            name = f"{patient.display_name} · {patient.patient_id}"
        else:
            name = self._t("handoff.topic.fallback", id=patient_id or user_id)
        created = await self._call("createForumTopic", ctx, chat_id=self.group_id, name=name[:128])
        topic = int(created["message_thread_id"])
        winner = int(self._store.bind_thread(self.channel, user_id, str(topic)))
        if winner != topic:  # another consumer created one first: keep theirs
            with contextlib.suppress(BotApiError, CrmUnavailable, CrmRejected):
                await self._call("deleteForumTopic", ctx, chat_id=self.group_id, message_thread_id=topic)
        else:
            log.info("forum topic created for a patient", extra={"topic": topic})
        return winner

    async def _in_topic(
        self,
        user_id: int | None,
        patient_id: str | None,
        ctx: DeliveryContext,
        method: str,
        *,
        create: bool = True,
        **params: Any,
    ) -> dict[str, Any]:
        """Post into the patient's topic (re-created once if the staff deleted it, reopened if closed)."""
        for attempt in range(2):
            topic: int | None = None
            if user_id is not None:
                if create:
                    topic = await self._topic(user_id, ctx.patient, patient_id, ctx)
                else:
                    known = self._store.thread_of(self.channel, user_id)
                    topic = int(known) if known is not None else None
            try:
                result: dict[str, Any] = await self._call(
                    method, ctx, chat_id=self.group_id, message_thread_id=topic, **params
                )
                return result
            except BadRequest as exc:
                text = exc.description.lower()
                if (
                    attempt == 0
                    and user_id is not None
                    and topic is not None
                    and any(m in text for m in _TOPIC_GONE)
                ):
                    log.info("the patient's topic is gone: creating a new one")
                    self._store.unbind_thread(self.channel, user_id)
                    continue
                if attempt == 0 and topic is not None and any(m in text for m in _TOPIC_CLOSED):
                    await self._call("reopenForumTopic", ctx, chat_id=self.group_id, message_thread_id=topic)
                    continue
                raise
        raise CrmRejected(f"{method}: the staff group refused the topic")

    async def _post(
        self,
        user_id: int | None,
        patient_id: str | None,
        text: str,
        ctx: DeliveryContext,
        *,
        markup: dict[str, Any] | None = None,
        create: bool = True,
    ) -> Delivery:
        try:
            sent = await self._in_topic(
                user_id,
                patient_id,
                ctx,
                "sendMessage",
                create=create,
                text=text,
                parse_mode="HTML",
                reply_markup=markup,
            )
        except BadRequest as exc:
            raise CrmRejected(f"sendMessage: {exc.description}") from exc
        return Delivery(crm_id=str(sent.get("message_id")), thread=str(sent.get("message_thread_id") or ""))

    # ------------------------------------------------------------------ the port
    async def submit_callback(self, request: CallbackRequest, ctx: DeliveryContext) -> Delivery:
        phone = request.phone or (ctx.patient.phone if ctx.patient else None)
        text = callback_text(self._t, request, ctx.patient, phone, self._tz)
        markup = take_buttons(self._t, request.number)
        return await self._post(request.user_id, request.patient_id, text, ctx, markup=markup)

    async def submit_certificate(self, request: CertificateRequest, ctx: DeliveryContext) -> Delivery:
        text = certificate_text(self._t, request, ctx.patient)
        return await self._post(
            request.user_id, request.patient_id, text, ctx, markup=take_buttons(self._t, request.number)
        )

    async def relay_message(self, message: PatientMessage, ctx: DeliveryContext) -> Delivery:
        if message.first:
            header = chat_header_text(self._t, message.number, ctx.patient, message.patient_id)
            await self._post(
                message.user_id, message.patient_id, header, ctx, markup=take_buttons(self._t, message.number)
            )
        try:
            copied = await self._in_topic(
                message.user_id, message.patient_id, ctx, "copyMessage",
                from_chat_id=message.user_id, message_id=message.message_id,
            )  # fmt: skip
        except BadRequest as exc:
            if any(m in exc.description.lower() for m in _SOURCE_GONE):
                return await self._post(
                    message.user_id, message.patient_id, self._t("handoff.card.message_gone"), ctx
                )
            raise CrmRejected(f"copyMessage: {exc.description}") from exc
        return Delivery(crm_id=str(copied.get("message_id")))

    async def mirror_booking(self, booking: BookingCopy, ctx: DeliveryContext) -> Delivery:
        # Into the patient's topic if there is one; the General topic otherwise (no topic per booking).
        return await self._post(
            booking.user_id, booking.patient_id, booking_text(self._t, booking, self._tz), ctx, create=False
        )

    async def notify(self, notice: Notice, ctx: DeliveryContext) -> Delivery:
        return await self._post(notice.user_id, notice.patient_id, notice_text(self._t, notice), ctx)

    async def forward(self, kind: str, payload: dict[str, Any], ctx: DeliveryContext) -> Delivery:
        user = payload.get("user_id")
        text = html.escape(generic_text(kind, payload))
        return await self._post(int(user) if user is not None else None, None, text, ctx, create=False)
