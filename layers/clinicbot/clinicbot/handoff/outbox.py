"""The hand-off outbox: messages for the ``handoff`` function (CRM copies of bookings, call-back requests).

``publish(kind, payload, idempotency_key)`` returns a message id. The same idempotency key may be
published more than once (a retried update, a warm container that published before a crash); the
consumer de-duplicates on it, and both adapters here also skip keys they have already sent.

Payloads carry ids and times only (the MIS patient id, appointment id, doctor id, branch id, ISO
instants): no names, phones or message texts -- the CRM adapter looks those up where it is allowed to.

* :class:`InMemoryOutbox` -- the default when no queue is configured (local run, tests).
* :class:`SqsOutbox` -- boto3 SQS, imported lazily; the queue URL comes from
  ``CLINICBOT_HANDOFF_QUEUE_URL``. A standard queue has no ``MessageDeduplicationId``: the key travels as
  the ``idempotency_key`` message attribute (and in the body). A FIFO queue (URL ending in ``.fifo``)
  also gets a deduplication id derived from the key.
"""

from __future__ import annotations

import hashlib
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
    "QUEUE_URL_ENV",
    "InMemoryOutbox",
    "Outbox",
    "OutboxMessage",
    "SqsOutbox",
    "outbox_from_env",
]

log = logging.getLogger(__name__)

QUEUE_URL_ENV = "CLINICBOT_HANDOFF_QUEUE_URL"
FORBIDDEN_PAYLOAD_KEYS = frozenset(
    {"name", "first_name", "last_name", "full_name", "phone", "phone_number", "text", "email", "address"}
)
"""Personal data never goes on the queue; a payload with one of these keys is a bug."""


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


def _message(kind: str, payload: Mapping[str, Any], idempotency_key: str) -> OutboxMessage:
    if not kind or not idempotency_key:
        raise ValueError("an outbox message needs a kind and an idempotency key")
    leaked = FORBIDDEN_PAYLOAD_KEYS & set(payload)
    if leaked:
        raise ValueError(f"personal data in an outbox payload: {sorted(leaked)}")
    data = json.loads(json.dumps(dict(payload), default=str))  # plain JSON, as the consumer will see it
    return OutboxMessage(str(uuid.uuid4()), kind, data, idempotency_key, datetime.now(UTC))


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


class SqsOutbox:
    """The hand-off queue on SQS. Short timeouts and bounded retries: the webhook must answer fast."""

    def __init__(
        self,
        queue_url: str,
        *,
        client: Any | None = None,
        connect_timeout: float = 1.0,
        read_timeout: float = 2.0,
        max_attempts: int = 3,  # in all, the first try included
        remembered_keys: int = 256,
    ) -> None:
        if not queue_url:
            raise ValueError("SqsOutbox needs a queue URL")
        self.queue_url = queue_url
        self._client = client
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._max_attempts = max_attempts
        self._fifo = queue_url.endswith(".fifo")
        self._sent: OrderedDict[str, str] = OrderedDict()
        self._remember = remembered_keys

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # lazy: only functions that publish pay for the import
            from botocore.config import Config

            self._client = boto3.client(
                "sqs",
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
        request: dict[str, Any] = {
            "QueueUrl": self.queue_url,
            "MessageBody": json.dumps(message.body(), ensure_ascii=False, separators=(",", ":")),
            "MessageAttributes": {
                "kind": {"DataType": "String", "StringValue": kind},
                "idempotency_key": {"DataType": "String", "StringValue": idempotency_key},
            },
        }
        if self._fifo:
            request["MessageDeduplicationId"] = hashlib.sha256(idempotency_key.encode()).hexdigest()
            request["MessageGroupId"] = str(message.payload.get("patient_id") or kind)
        response = self.client.send_message(**request)
        message_id = str(response["MessageId"])
        self._sent[idempotency_key] = message_id
        while len(self._sent) > self._remember:
            self._sent.popitem(last=False)
        log.info("hand-off message queued", extra={"kind": kind, "message_id": message_id})
        return message_id


def outbox_from_env(env: Mapping[str, str] | None = None) -> Outbox:
    """``SqsOutbox`` when ``CLINICBOT_HANDOFF_QUEUE_URL`` is set, else an ``InMemoryOutbox``."""
    url = (env if env is not None else os.environ).get(QUEUE_URL_ENV, "").strip()
    return SqsOutbox(url) if url else InMemoryOutbox()
