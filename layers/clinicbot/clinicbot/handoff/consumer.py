"""The hand-off consumer: one outbox message in, its effect done once, or an error for Lambda to retry.

Each message arrives as its own asynchronous invocation of the hand-off function (``LambdaOutbox``).
Per message (``HandoffConsumer.process``)::

    parse the envelope                      -> malformed: PoisonMessage (dropped: it can never succeed)
    claim the idempotency key (HandoffTable) -> done before: "duplicate", nothing happens
                                             -> another consumer holds it: Busy (retried later)
    join the sealed fields, validate         -> sealed part gone (erased/expired): "dropped"
    look up the patient in the MIS (name, phone) for the CRM
    do it: CRM port call, or a staff reply copied to the patient
    complete the key, delete the sealed fields
    any error: release the key and re-raise (the invocation fails: Lambda retries it, then dead-letters it)

A claim is a lease as long as the invocation may still run (plus a margin, shorter than Lambda's first
retry delay of a minute), so a consumer that dies mid-way does not block its message for ever; the window
between "done" and "completed" is where a message could take effect twice (the webhook's ``webhook-id``
and Bitrix's ``ORIGIN_ID`` check cover that window too).

Ordering: none is guaranteed any more. Asynchronous invocations of different messages may run at the same
time in different environments, and a failed message is retried about 1 and 3 minutes later (or redriven
from the dead-letter queue much later), so a patient's later chat messages and staff replies can reach the
CRM or the patient before an earlier one that failed. (With the SQS queue, a patient's later messages in
the same batch were held back behind a failed one; there are no batches now.) What still holds per
patient: each message takes effect once (the claim), a patient's CRM thread / forum topic / lead is bound
once in the HandoffTable even when two messages race to create it, and the sealed personal fields of a
message are deleted only once that message reached the CRM. Chat messages carry their Telegram message id
and time, so the staff can see the order the patient wrote in.

``redelivery`` (``DeliveryContext.redelivery``: "the CRM may have this already, look before creating")
is not told by Lambda; unless the caller knows, a message older than :data:`REDELIVERY_AFTER_SECONDS` is
taken for one (Lambda's first retry comes a minute after the first attempt; a fresh event is invoked
within seconds).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

from pydantic import ValidationError

from clinicbot.handoff.bot_api import DeliveryOutcome, HandoffBotApi, deliver_to_patient
from clinicbot.handoff.port import Attachment, CrmPort, CrmUnavailable, DeliveryContext
from clinicbot.handoff.requests import (
    BOOKING_KIND,
    CALLBACK_KIND,
    CERTIFICATE_KIND,
    CHAT_KIND,
    NOTICE_KIND,
    STAFF_REPLY_KIND,
    BookingCopy,
    CallbackRequest,
    CertificateRequest,
    Envelope,
    Notice,
    NoticeReason,
    PatientInfo,
    PatientMessage,
    StaffReply,
)
from clinicbot.handoff.retry import Deadline
from clinicbot.handoff.store import Claim, HandoffStore
from clinicbot.telegram_api.client import BotApiError

__all__ = [
    "REDELIVERY_AFTER_SECONDS",
    "Busy",
    "HandoffConsumer",
    "PatientSource",
    "PoisonMessage",
    "Processed",
    "Result",
]

log = logging.getLogger(__name__)

REDELIVERY_AFTER_SECONDS = 30.0
"""A message older than this is treated as possibly seen by the CRM before (a retry or a redrive)."""


class PoisonMessage(Exception):
    """The message can never be processed as it is (not JSON, unknown kind, invalid fields)."""


class Busy(Exception):
    """Another consumer is processing the same idempotency key right now."""


class Result(StrEnum):
    PROCESSED = "processed"
    DUPLICATE = "duplicate"
    DROPPED = "dropped"


@dataclass(frozen=True)
class Processed:
    result: Result
    kind: str
    detail: str | None = None


class PatientSource(Protocol):
    """Who a patient is (MIS) and which Telegram user an MIS patient is (StateTable), for the CRM."""

    async def patient(self, patient_id: str) -> PatientInfo | None: ...

    def telegram_user_of(self, patient_id: str) -> int | None: ...


class MisPatients:
    """:class:`PatientSource` over the MIS port and (optionally) the StateTable's patient index."""

    def __init__(self, mis: Any, directory: Callable[[str], int | None] | None = None) -> None:
        self._mis = mis
        self._directory = directory

    async def patient(self, patient_id: str) -> PatientInfo | None:
        from clinicbot.mis.errors import MisUnavailable, NotFound

        try:
            found = await self._mis.patient(patient_id)
        except NotFound:
            return None
        except MisUnavailable as exc:
            raise CrmUnavailable("the MIS is unavailable: cannot look the patient up") from exc
        return PatientInfo(
            patient_id=found.id, first_name=found.first_name, last_name=found.last_name, phone=found.phone
        )

    def telegram_user_of(self, patient_id: str) -> int | None:
        if self._directory is None:
            return None
        try:
            return self._directory(patient_id)
        except Exception:
            log.warning("could not look up the Telegram user of an MIS patient", exc_info=True)
            return None


@dataclass
class HandoffConsumer:
    crm: CrmPort
    store: HandoffStore
    bot: HandoffBotApi | None = None
    patients: PatientSource | None = None
    lease_margin: float = 30.0
    """Added to the invocation's remaining time for the claim's lease; keep it under Lambda's first retry
    delay (60 s) minus the function's timeout, so that the retry of a crashed attempt finds it expired."""
    now: Callable[[], datetime] = lambda: datetime.now(UTC)

    async def process(
        self,
        body: str | Mapping[str, Any],
        *,
        redelivery: bool | None = None,
        deadline: Deadline | None = None,
    ) -> Processed:
        """``body``: the message as JSON text or as the decoded event; ``redelivery``: None infers it from
        the message's age."""
        deadline = deadline or Deadline.after(20)
        try:
            envelope = Envelope.model_validate(json.loads(body) if isinstance(body, str) else body)
        except (ValueError, ValidationError):
            raise PoisonMessage("the message is not a hand-off envelope") from None
        if redelivery is None:
            redelivery = self._looks_redelivered(envelope)
        user = _user_of(envelope)
        key = envelope.idempotency_key
        claim = self.store.claim(key, deadline.remaining + self.lease_margin)
        if claim is Claim.DONE:
            log.info("duplicate hand-off message skipped", extra={"kind": envelope.kind})
            return Processed(Result.DUPLICATE, envelope.kind)
        if claim is Claim.BUSY:
            raise Busy("the same message is being processed elsewhere")
        try:
            processed = await self._dispatch(envelope, redelivery, deadline)
        except BaseException:
            self.store.release(key)
            raise
        self.store.complete(key)
        if envelope.payload.get("sealed") and user is not None:
            self.store.unseal(user, key)  # the CRM has it now: the bot keeps no copy
        log.info(
            "hand-off message processed", extra={"kind": envelope.kind, "result": processed.result.value}
        )
        return processed

    def _looks_redelivered(self, envelope: Envelope) -> bool:
        created = envelope.created_at
        if created is None:
            return True  # unknown age: look before creating
        if created.tzinfo is None:
            created = created.replace(tzinfo=UTC)
        return (self.now() - created).total_seconds() > REDELIVERY_AFTER_SECONDS

    # ------------------------------------------------------------------ dispatch
    async def _dispatch(self, envelope: Envelope, redelivery: bool, deadline: Deadline) -> Processed:
        payload = dict(envelope.payload)
        kind = envelope.kind
        if payload.get("sealed"):
            user = _user_of(envelope)
            sealed = self.store.sealed(user, envelope.idempotency_key) if user is not None else None
            if sealed is None:
                log.warning(
                    "sealed part of a hand-off message is gone (erased or expired)", extra={"kind": kind}
                )
                return Processed(Result.DROPPED, kind, "sealed-part-gone")
            payload.update(sealed)
        ctx = DeliveryContext(
            idempotency_key=envelope.idempotency_key,
            redelivery=redelivery,
            deadline=deadline,
            fetch_file=self._fetch_file if self.bot is not None else None,
        )
        try:
            if kind == CALLBACK_KIND:
                callback = CallbackRequest.model_validate(payload)
                callback = await self._with_user(callback, callback.patient_id)
                ctx.patient = await self._patient(callback.patient_id)
                await self.crm.submit_callback(callback, ctx)
            elif kind == CERTIFICATE_KIND:
                certificate = CertificateRequest.model_validate(payload)
                ctx.patient = await self._patient(certificate.patient_id)
                await self.crm.submit_certificate(certificate, ctx)
            elif kind == CHAT_KIND:
                message = PatientMessage.model_validate(payload)
                if message.first and message.patient_id:
                    ctx.patient = await self._patient(message.patient_id)
                await self.crm.relay_message(message, ctx)
            elif kind == BOOKING_KIND:
                booking = BookingCopy.model_validate(payload)
                booking = await self._with_user(booking, booking.patient_id)
                ctx.patient = await self._patient(booking.patient_id)
                await self.crm.mirror_booking(booking, ctx)
            elif kind == NOTICE_KIND:
                await self.crm.notify(Notice.model_validate(payload), ctx)
            elif kind == STAFF_REPLY_KIND:
                return await self._staff_reply(StaffReply.model_validate(payload), ctx)
            else:
                payload.pop("sealed", None)
                patient_id = payload.get("patient_id")
                if (
                    payload.get("user_id") is None
                    and isinstance(patient_id, str)
                    and self.patients is not None
                ):
                    payload["user_id"] = self.patients.telegram_user_of(patient_id)
                await self.crm.forward(kind, payload, ctx)
        except ValidationError as exc:
            fields = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
            raise PoisonMessage(f"{kind}: invalid fields {fields}") from None
        return Processed(Result.PROCESSED, kind)

    async def _with_user(self, model: Any, patient_id: str) -> Any:
        if getattr(model, "user_id", None) is None and self.patients is not None:
            user = self.patients.telegram_user_of(patient_id)
            if user is not None:
                return model.model_copy(update={"user_id": user})
        return model

    async def _patient(self, patient_id: str | None) -> PatientInfo | None:
        if not patient_id or self.patients is None:
            return None
        return await self.patients.patient(patient_id)

    async def _fetch_file(self, file_id: str) -> Attachment | None:
        assert self.bot is not None
        return await self.bot.fetch_file(file_id)

    async def _staff_reply(self, reply: StaffReply, ctx: DeliveryContext) -> Processed:
        if self.bot is None:
            raise PoisonMessage("staff replies need the Bot API")
        delivery = await deliver_to_patient(
            self.bot,
            reply.user_id,
            copy_from=(reply.group_id, reply.message_id),
            protect_content=True,  # staff may send documents: the patient can read, not forward them
            deadline=ctx.deadline,
        )
        if delivery.outcome is DeliveryOutcome.DELIVERED:
            try:  # 👌 under the staff member's message: the patient has it (best effort)
                await self.bot.call(
                    "setMessageReaction",
                    request_timeout=ctx.deadline.timeout(5.0),
                    chat_id=reply.group_id,
                    message_id=reply.message_id,
                    reaction=[{"type": "emoji", "emoji": "👌"}],
                )
            except BotApiError:
                log.info("could not mark a delivered staff reply")
            return Processed(Result.PROCESSED, STAFF_REPLY_KIND)
        reason = (
            NoticeReason.PATIENT_BLOCKED
            if delivery.outcome is DeliveryOutcome.BLOCKED
            else NoticeReason.UNDELIVERABLE
        )
        log.info("staff reply not delivered", extra={"outcome": delivery.outcome.value})
        await self.crm.notify(Notice(user_id=reply.user_id, reason=reason, about=str(reply.message_id)), ctx)
        return Processed(Result.DROPPED, STAFF_REPLY_KIND, delivery.outcome.value)


def _user_of(envelope: Envelope) -> int | None:
    value = envelope.payload.get("user_id")
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None
