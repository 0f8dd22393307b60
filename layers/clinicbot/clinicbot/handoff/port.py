"""The CRM port: where patients' requests, messages and booking copies go, and the fake tests use.

Three adapters implement :class:`CrmPort` (chosen by ``CLINICBOT_CRM_PROVIDER``, see
``clinicbot.handoff.runtime``): a generic signed webhook (``crm_webhook``), a Bitrix24 incoming webhook
(``crm_bitrix``) and a staff Telegram supergroup with one forum topic per patient
(``crm_telegram_group``). :class:`NoCrm` stands in when none is configured.

Errors have two kinds with one outcome each: :class:`CrmUnavailable` (5xx, timeouts, rate limits: the
consumer lets the queue redeliver, then the dead-letter queue takes it) and :class:`CrmRejected` (the CRM
refused the call for good: wrong URL or credentials, an invalid field; retried the same way, since a
fixed configuration makes a redrive from the dead-letter queue succeed, but logged as an error).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from clinicbot.handoff.requests import (
    BookingCopy,
    CallbackRequest,
    CertificateRequest,
    Notice,
    PatientInfo,
    PatientMessage,
)
from clinicbot.handoff.retry import Deadline

__all__ = [
    "Attachment",
    "CrmError",
    "CrmPort",
    "CrmRejected",
    "CrmUnavailable",
    "Delivery",
    "DeliveryContext",
    "InMemoryCrm",
    "NoCrm",
]

log = logging.getLogger(__name__)


class CrmError(Exception):
    """A CRM call failed. Messages name the operation and the status, never personal data."""


class CrmUnavailable(CrmError):
    """Worth retrying later: the CRM is down, slow or rate-limiting us."""

    def __init__(self, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class CrmRejected(CrmError):
    """The CRM refused the call; the same call will fail again until someone fixes something."""


@dataclass(frozen=True)
class Attachment:
    """A file the patient sent, fetched from Telegram for CRMs that cannot copy Telegram messages."""

    file_name: str
    mime_type: str | None
    content: bytes


@dataclass(frozen=True)
class Delivery:
    crm_id: str | None = None
    """The CRM's id of what it created (a lead, a comment, a message), if it says."""
    thread: str | None = None


@dataclass
class DeliveryContext:
    idempotency_key: str
    redelivery: bool = False
    """This message may have reached the CRM before (the queue delivered it more than once): adapters
    whose calls are not idempotent check before creating anything."""
    patient: PatientInfo | None = None
    deadline: Deadline = field(default_factory=lambda: Deadline.after(20))
    fetch_file: Callable[[str], Awaitable[Attachment | None]] | None = None


@runtime_checkable
class CrmPort(Protocol):
    name: str

    async def submit_callback(self, request: CallbackRequest, ctx: DeliveryContext) -> Delivery: ...

    async def submit_certificate(self, request: CertificateRequest, ctx: DeliveryContext) -> Delivery: ...

    async def relay_message(self, message: PatientMessage, ctx: DeliveryContext) -> Delivery: ...

    async def mirror_booking(self, booking: BookingCopy, ctx: DeliveryContext) -> Delivery: ...

    async def notify(self, notice: Notice, ctx: DeliveryContext) -> Delivery: ...

    async def forward(self, kind: str, payload: dict[str, Any], ctx: DeliveryContext) -> Delivery:
        """Any other kind a feature queues (``low_rating``, ``referral``, …): passed on as it is -- the
        outbox guarantees ids, codes and times only."""
        ...

    async def close(self) -> None: ...


@dataclass
class InMemoryCrm:
    """Records what it receives; ``fail_next`` makes the next calls raise. The consumer's tests use it."""

    name: str = "memory"
    received: list[tuple[str, Any, DeliveryContext]] = field(default_factory=list)
    _failures: list[tuple[str | None, Exception]] = field(default_factory=list)
    closed: bool = False

    def fail_next(self, error: Exception, *, times: int = 1, operation: str | None = None) -> None:
        self._failures.extend([(operation, error)] * times)

    def of(self, operation: str) -> list[Any]:
        return [item for op, item, _ in self.received if op == operation]

    async def _take(self, operation: str, item: Any, ctx: DeliveryContext) -> Delivery:
        for index, (op, error) in enumerate(self._failures):
            if op in (None, operation):
                del self._failures[index]
                raise error
        self.received.append((operation, item, ctx))
        return Delivery(crm_id=f"{operation}-{len(self.received)}")

    async def submit_callback(self, request: CallbackRequest, ctx: DeliveryContext) -> Delivery:
        return await self._take("callback", request, ctx)

    async def submit_certificate(self, request: CertificateRequest, ctx: DeliveryContext) -> Delivery:
        return await self._take("certificate", request, ctx)

    async def relay_message(self, message: PatientMessage, ctx: DeliveryContext) -> Delivery:
        return await self._take("message", message, ctx)

    async def mirror_booking(self, booking: BookingCopy, ctx: DeliveryContext) -> Delivery:
        return await self._take("booking", booking, ctx)

    async def notify(self, notice: Notice, ctx: DeliveryContext) -> Delivery:
        return await self._take("notice", notice, ctx)

    async def forward(self, kind: str, payload: dict[str, Any], ctx: DeliveryContext) -> Delivery:
        return await self._take(kind, payload, ctx)

    async def close(self) -> None:
        self.closed = True


class NoCrm:
    """No CRM configured: booking copies are acknowledged (the MIS holds the booking); the bot does not
    offer patients' requests in this case (see the hand-off router), so anything else is refused."""

    name = "none"

    async def mirror_booking(self, booking: BookingCopy, ctx: DeliveryContext) -> Delivery:
        log.info("no CRM configured: booking copy not mirrored", extra={"event": booking.event})
        return Delivery()

    async def forward(self, kind: str, payload: dict[str, Any], ctx: DeliveryContext) -> Delivery:
        log.info("no CRM configured: hand-off message not forwarded", extra={"kind": kind})
        return Delivery()

    async def _refuse(self, *_: Any) -> Delivery:
        raise CrmRejected("no CRM is configured (CLINICBOT_CRM_PROVIDER=none)")

    submit_callback = submit_certificate = relay_message = notify = _refuse

    async def close(self) -> None:
        return None
