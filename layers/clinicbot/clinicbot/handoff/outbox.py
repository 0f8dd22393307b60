"""The hand-off outbox: messages for the ``handoff`` function (CRM copies of bookings, call-back requests).

``publish(kind, payload, idempotency_key)`` returns a message id. The same idempotency key may be
published more than once (a retried update, a warm container that published before a crash); the
consumer de-duplicates on it, and both adapters here also skip keys they have already sent.

Payloads carry ids and times only (the MIS patient id, appointment id, doctor id, branch id, ISO
instants): no names, phones or message texts -- the CRM adapter looks those up where it is allowed to.

* :class:`InMemoryOutbox` -- the default when no hand-off function is configured (local run, tests).
* :class:`LambdaOutbox` -- an asynchronous invocation (``InvocationType="Event"``) of the hand-off
  function per message, through boto3's ``lambda`` client, imported lazily; the function's name comes from
  ``CLINICBOT_HANDOFF_FUNCTION``. No queue is polled, so nothing is billed while no one writes. Lambda
  keeps the event in its own queue, retries a failed invocation (``HandoffRetryAttempts``, after about 1
  and 2 more minutes) and then sends it to the on-failure destination, the ``HandoffDLQ`` queue
  (``python -m clinicbot handoff-redrive`` brings it back). Delivery is at least once and unordered: the
  consumer de-duplicates on the idempotency key (see ``clinicbot.handoff.consumer``).

The event is :meth:`OutboxMessage.event`: the message body (``kind``, ``idempotency_key``, ``created_at``,
``payload``) plus its ``message_id``.
"""

from __future__ import annotations

import json
import logging
import os
import uuid
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "FORBIDDEN_PAYLOAD_KEYS",
    "FUNCTION_ENV",
    "MAX_EVENT_BYTES",
    "InMemoryOutbox",
    "LambdaOutbox",
    "Outbox",
    "OutboxError",
    "OutboxMessage",
    "PayloadTooLarge",
    "encode_event",
    "is_outbox_message",
    "outbox_from_env",
]

log = logging.getLogger(__name__)

FUNCTION_ENV = "CLINICBOT_HANDOFF_FUNCTION"
FORBIDDEN_PAYLOAD_KEYS = frozenset(
    {"name", "first_name", "last_name", "full_name", "phone", "phone_number", "text", "email", "address"}
)
"""Personal data never goes into a hand-off event; a payload with one of these keys is a bug."""
MAX_EVENT_BYTES = 240 * 1024
"""Lambda accepts up to 256 KB for an asynchronous invocation; the on-failure record (this event plus
Lambda's request and response context) must still fit an SQS message of 256 KB. Messages carry ids only
(a few hundred bytes): anything near this is a bug, refused before the call."""


class OutboxError(RuntimeError):
    """The hand-off message was not accepted (the caller decides what that means)."""


class PayloadTooLarge(OutboxError, ValueError):
    """The event is larger than an asynchronous invocation may carry."""


@runtime_checkable
class Outbox(Protocol):
    def publish(self, kind: str, payload: Mapping[str, Any], idempotency_key: str) -> str:
        """Queue a message; returns its id. Raises on failure (the caller decides what that means)."""
        ...


@dataclass(frozen=True)
class OutboxMessage:
    id: str
    kind: str
    payload: dict[str, Any]
    idempotency_key: str
    created_at: datetime

    def body(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "idempotency_key": self.idempotency_key,
            "created_at": self.created_at.isoformat(),
            "payload": self.payload,
        }

    def event(self) -> dict[str, Any]:
        """What the hand-off function is invoked with: the body and the message id."""
        return {**self.body(), "message_id": self.id}


def is_outbox_message(event: Mapping[str, Any]) -> bool:
    """An event the outbox published (or one that means to be: an invalid one is poison, not unknown)."""
    return "idempotency_key" in event or ("kind" in event and "payload" in event)


def _message(kind: str, payload: Mapping[str, Any], idempotency_key: str) -> OutboxMessage:
    if not kind or not idempotency_key:
        raise ValueError("an outbox message needs a kind and an idempotency key")
    leaked = FORBIDDEN_PAYLOAD_KEYS & set(payload)
    if leaked:
        raise ValueError(f"personal data in an outbox payload: {sorted(leaked)}")
    data = json.loads(json.dumps(dict(payload), default=str))  # plain JSON, as the consumer will see it
    return OutboxMessage(str(uuid.uuid4()), kind, data, idempotency_key, datetime.now(UTC))


def encode_event(message: OutboxMessage) -> bytes:
    """The invocation payload (compact UTF-8 JSON); :class:`PayloadTooLarge` beyond :data:`MAX_EVENT_BYTES`."""
    data = json.dumps(message.event(), ensure_ascii=False, separators=(",", ":")).encode()
    if len(data) > MAX_EVENT_BYTES:
        raise PayloadTooLarge(
            f"hand-off event of kind {message.kind!r} is {len(data)} bytes, over {MAX_EVENT_BYTES}: "
            "messages carry ids only (personal fields are sealed in the HandoffTable)"
        )
    return data


@dataclass
class InMemoryOutbox:
    """Messages in a list; a key already published returns the first message's id."""

    messages: list[OutboxMessage] = field(default_factory=list)
    _by_key: dict[str, OutboxMessage] = field(default_factory=dict)

    def publish(self, kind: str, payload: Mapping[str, Any], idempotency_key: str) -> str:
        known = self._by_key.get(idempotency_key)
        if known is not None:
            return known.id
        message = _message(kind, payload, idempotency_key)
        encode_event(message)  # the same size check as on AWS
        self.messages.append(message)
        self._by_key[idempotency_key] = message
        return message.id

    def of_kind(self, kind: str) -> list[OutboxMessage]:
        return [m for m in self.messages if m.kind == kind]

    def get(self, idempotency_key: str) -> OutboxMessage | None:
        return self._by_key.get(idempotency_key)

    def clear(self) -> None:
        self.messages.clear()
        self._by_key.clear()


class LambdaOutbox:
    """Asynchronous invocations of the hand-off function. Short timeouts and bounded retries: the webhook
    must answer fast. ``Invoke`` with ``InvocationType="Event"`` returns 202 once Lambda has queued the
    event; a timed-out call that was in fact queued and then retried yields a second invocation, which
    the consumer's idempotency claim turns into a no-op."""

    def __init__(
        self,
        function_name: str,
        *,
        client: Any | None = None,
        connect_timeout: float = 1.0,
        read_timeout: float = 2.0,
        max_attempts: int = 3,  # in all, the first try included
        remembered_keys: int = 256,
    ) -> None:
        if not function_name:
            raise ValueError("LambdaOutbox needs the hand-off function's name or ARN")
        self.function_name = function_name
        self._client = client
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_attempts = max_attempts
        self._sent: OrderedDict[str, str] = OrderedDict()
        self._remember = remembered_keys

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # lazy: only functions that publish pay for the import
            from botocore.config import Config

            self._client = boto3.client(
                "lambda",
                config=Config(
                    connect_timeout=self._connect_timeout,
                    read_timeout=self._read_timeout,
                    retries={"total_max_attempts": self._max_attempts, "mode": "standard"},
                ),
            )
        return self._client

    def publish(self, kind: str, payload: Mapping[str, Any], idempotency_key: str) -> str:
        sent = self._sent.get(idempotency_key)
        if sent is not None:
            return sent
        message = _message(kind, payload, idempotency_key)
        response = self.client.invoke(
            FunctionName=self.function_name, InvocationType="Event", Payload=encode_event(message)
        )
        status = int(response.get("StatusCode") or 0)
        if status != 202:
            raise OutboxError(f"the hand-off function did not accept the event (HTTP {status})")
        self._sent[idempotency_key] = message.id
        while len(self._sent) > self._remember:
            self._sent.popitem(last=False)
        log.info("hand-off message queued", extra={"kind": kind, "message_id": message.id})
        return message.id


def outbox_from_env(env: Mapping[str, str] | None = None) -> Outbox:
    """``LambdaOutbox`` when ``CLINICBOT_HANDOFF_FUNCTION`` is set, else an ``InMemoryOutbox``."""
    name = (env if env is not None else os.environ).get(FUNCTION_ENV, "").strip()
    return LambdaOutbox(name) if name else InMemoryOutbox()
