"""The HandoffTable: request numbers, sealed request content, patient <-> thread links, idempotency
records of the consumer and replay protection of inbound CRM calls.

Keys (``pk`` / ``sk``; every item that belongs to a patient carries ``owner = USER#<telegram id>``, the
key of the sparse GSI ``owner``, so the patient's erasure finds all of them with one Query, no Scan)::

    COUNTER              / REQUEST           value: the clinic's request counter (atomic ADD)
    USER#<id>            / REQ#<ref>         a request: number, kind, sealed personal fields; TTL
    NUM#<number>         / NUM               request number -> Telegram user (for CRM replies); TTL
    USER#<id>            / THREAD#<channel>  the patient's thread in a channel (forum topic, CRM lead, ...)
    THREAD#<channel>#<t> / THREAD            thread -> patient
    DONE#<ref>           / DONE              consumer idempotency record (no personal data); TTL
    HOOK#<webhook-id>    / HOOK              inbound replay protection; TTL

``<ref>`` is a SHA-256 prefix of the idempotency key. :class:`InMemoryHandoffStore` has the same
behaviour for unit tests; :class:`DynamoHandoffStore` speaks the DynamoDB API through boto3's low-level
client (short timeouts, a few retries), imported lazily.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Protocol

__all__ = [
    "DEFAULT_TABLE",
    "DONE_TTL_SECONDS",
    "NUMBER_TTL_SECONDS",
    "OWNER_INDEX",
    "REQUEST_TTL_SECONDS",
    "Claim",
    "DynamoHandoffStore",
    "HandoffStore",
    "InMemoryHandoffStore",
    "ref_of",
]

log = logging.getLogger(__name__)

DEFAULT_TABLE = "clinicbot-handoff"
OWNER_INDEX = "owner"
NUMBER_BASE = 1000  # the first request of a clinic is no. 1001
DAY = 86_400
REQUEST_TTL_SECONDS = 21 * DAY
"""Sealed content outlives any redelivery: 4 days on the queue + 14 in the dead-letter queue + slack."""
DONE_TTL_SECONDS = 21 * DAY
NUMBER_TTL_SECONDS = 180 * DAY
"""A certificate may take weeks; the CRM may answer by request number that long."""


class Claim(StrEnum):
    NEW = "new"  # yours: do the work, then complete() or release()
    DONE = "done"  # done before: skip it
    BUSY = "busy"  # someone is doing it right now (lease not expired): try later


def ref_of(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()[:32]


def _owner(user_id: int) -> str:
    return f"USER#{user_id}"


class HandoffStore(Protocol):
    def open_request(self, user_id: int, key: str, kind: str, sealed: Mapping[str, Any] | None) -> str:
        """Allocate the request's number and keep its sealed fields; idempotent per ``key``."""
        ...

    def seal(self, user_id: int, key: str, kind: str, sealed: Mapping[str, Any]) -> None: ...

    def sealed(self, user_id: int, key: str) -> dict[str, Any] | None:
        """The sealed fields of a request, or None (never sealed, delivered, expired or erased)."""
        ...

    def unseal(self, user_id: int, key: str) -> None:
        """Forget the sealed fields (the CRM has them now)."""
        ...

    def user_for_number(self, number: str) -> int | None: ...

    def thread_of(self, channel: str, user_id: int) -> str | None: ...

    def bind_thread(self, channel: str, user_id: int, thread: str) -> str:
        """Link the patient to a thread unless linked already; returns the thread that won."""
        ...

    def unbind_thread(self, channel: str, user_id: int) -> None: ...

    def user_of_thread(self, channel: str, thread: str) -> int | None: ...

    def claim(self, key: str, lease_seconds: float, *, scope: str = "DONE") -> Claim: ...

    def complete(self, key: str, *, scope: str = "DONE", ttl_seconds: int = DONE_TTL_SECONDS) -> None: ...

    def release(self, key: str, *, scope: str = "DONE") -> None: ...

    def erase_user(self, user_id: int) -> int:
        """Delete every item of the patient; returns how many."""
        ...


# ---------------------------------------------------------------------------------- in memory
@dataclass
class InMemoryHandoffStore:
    """Dict-backed, thread-safe, same semantics (TTL honoured on read). For unit tests and tools."""

    now: Callable[[], float] = time.time
    items: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    counter: int = 0
    _lock: threading.RLock = field(default_factory=threading.RLock)

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        item = self.items.get((pk, sk))
        if item is not None and item.get("expires_at") is not None and item["expires_at"] <= self.now():
            del self.items[(pk, sk)]
            return None
        return item

    def open_request(self, user_id: int, key: str, kind: str, sealed: Mapping[str, Any] | None) -> str:
        with self._lock:
            existing = self._get(f"USER#{user_id}", f"REQ#{ref_of(key)}")
            if existing is not None:
                return str(existing["number"])
            self.counter += 1
            number = str(NUMBER_BASE + self.counter)
            self._put_request(user_id, key, kind, sealed, number)
            self.items[(f"NUM#{number}", "NUM")] = {
                "user_id": user_id,
                "kind": kind,
                "owner": _owner(user_id),
                "expires_at": int(self.now()) + NUMBER_TTL_SECONDS,
            }
            return number

    def _put_request(
        self, user_id: int, key: str, kind: str, sealed: Mapping[str, Any] | None, number: str | None
    ) -> None:
        self.items[(f"USER#{user_id}", f"REQ#{ref_of(key)}")] = {
            "number": number,
            "kind": kind,
            "sealed": json.loads(json.dumps(dict(sealed), default=str)) if sealed else None,
            "owner": _owner(user_id),
            "expires_at": int(self.now()) + REQUEST_TTL_SECONDS,
        }

    def seal(self, user_id: int, key: str, kind: str, sealed: Mapping[str, Any]) -> None:
        with self._lock:
            self._put_request(user_id, key, kind, sealed, None)

    def sealed(self, user_id: int, key: str) -> dict[str, Any] | None:
        with self._lock:
            item = self._get(f"USER#{user_id}", f"REQ#{ref_of(key)}")
            return dict(item["sealed"]) if item and item.get("sealed") else None

    def unseal(self, user_id: int, key: str) -> None:
        with self._lock:
            item = self._get(f"USER#{user_id}", f"REQ#{ref_of(key)}")
            if item is not None:
                item["sealed"] = None

    def user_for_number(self, number: str) -> int | None:
        with self._lock:
            item = self._get(f"NUM#{number}", "NUM")
            return int(item["user_id"]) if item else None

    def thread_of(self, channel: str, user_id: int) -> str | None:
        with self._lock:
            item = self._get(f"USER#{user_id}", f"THREAD#{channel}")
            return str(item["thread"]) if item else None

    def bind_thread(self, channel: str, user_id: int, thread: str) -> str:
        with self._lock:
            existing = self.thread_of(channel, user_id)
            if existing is not None:
                return existing
            self.items[(f"USER#{user_id}", f"THREAD#{channel}")] = {
                "thread": thread,
                "owner": _owner(user_id),
            }
            self.items[(f"THREAD#{channel}#{thread}", "THREAD")] = {
                "user_id": user_id,
                "owner": _owner(user_id),
            }
            return thread

    def unbind_thread(self, channel: str, user_id: int) -> None:
        with self._lock:
            thread = self.thread_of(channel, user_id)
            self.items.pop((f"USER#{user_id}", f"THREAD#{channel}"), None)
            if thread is not None:
                self.items.pop((f"THREAD#{channel}#{thread}", "THREAD"), None)

    def user_of_thread(self, channel: str, thread: str) -> int | None:
        with self._lock:
            item = self._get(f"THREAD#{channel}#{thread}", "THREAD")
            return int(item["user_id"]) if item else None

    def claim(self, key: str, lease_seconds: float, *, scope: str = "DONE") -> Claim:
        with self._lock:
            pk = f"{scope}#{ref_of(key)}"
            item = self._get(pk, scope)
            now = self.now()
            if item is not None:
                if item["status"] == "done":
                    return Claim.DONE
                if item["lease_until"] > now:
                    return Claim.BUSY
            self.items[(pk, scope)] = {
                "status": "busy",
                "lease_until": now + lease_seconds,
                "expires_at": int(now) + DONE_TTL_SECONDS,
            }
            return Claim.NEW

    def complete(self, key: str, *, scope: str = "DONE", ttl_seconds: int = DONE_TTL_SECONDS) -> None:
        with self._lock:
            self.items[(f"{scope}#{ref_of(key)}", scope)] = {
                "status": "done",
                "lease_until": 0,
                "expires_at": int(self.now()) + ttl_seconds,
            }

    def release(self, key: str, *, scope: str = "DONE") -> None:
        with self._lock:
            item = self._get(f"{scope}#{ref_of(key)}", scope)
            if item is not None and item["status"] == "busy":
                del self.items[(f"{scope}#{ref_of(key)}", scope)]

    def erase_user(self, user_id: int) -> int:
        with self._lock:
            keys = [k for k, v in self.items.items() if v.get("owner") == _owner(user_id)]
            for k in keys:
                del self.items[k]
            return len(keys)


# ---------------------------------------------------------------------------------- DynamoDB
def _s(value: str) -> dict[str, str]:
    return {"S": value}


def _n(value: float) -> dict[str, str]:
    return {"N": str(int(value)) if float(value).is_integer() else str(value)}


class DynamoHandoffStore:
    """The HandoffTable through boto3's low-level DynamoDB client (endpoint from the standard
    ``AWS_ENDPOINT_URL*`` variables; short timeouts: the webhook calls this while a patient waits)."""

    def __init__(
        self,
        table_name: str | None = None,
        *,
        client: Any | None = None,
        now: Callable[[], float] = time.time,
        connect_timeout: float = 1.0,
        read_timeout: float = 2.0,
        max_attempts: int = 3,
    ) -> None:
        self.table = table_name or os.environ.get("CLINICBOT_HANDOFF_TABLE") or DEFAULT_TABLE
        self._client = client
        self._now = now
        self._config = (connect_timeout, read_timeout, max_attempts)
        self.requests = 0

    @property
    def client(self) -> Any:
        if self._client is None:
            import boto3  # lazy: the webhook pays for it only when a hand-off happens
            from botocore.config import Config

            connect, read, attempts = self._config
            self._client = boto3.client(
                "dynamodb",
                config=Config(
                    connect_timeout=connect,
                    read_timeout=read,
                    retries={"total_max_attempts": attempts, "mode": "standard"},
                ),
            )
        return self._client

    def _call(self, operation: str, **kwargs: Any) -> Any:
        self.requests += 1
        if operation != "transact_write_items":
            kwargs["TableName"] = self.table
        return getattr(self.client, operation)(**kwargs)

    @staticmethod
    def _code(exc: Exception) -> str:
        return str(getattr(exc, "response", {}).get("Error", {}).get("Code", ""))

    def _get(self, pk: str, sk: str) -> dict[str, Any] | None:
        answer = self._call("get_item", Key={"pk": _s(pk), "sk": _s(sk)}, ConsistentRead=True)
        item = answer.get("Item")
        if item is None:
            return None
        expires = item.get("expires_at")
        if expires is not None and float(expires["N"]) <= self._now():  # TTL deletes lazily
            return None
        return dict(item)

    # ------------------------------------------------------------------ requests
    def open_request(self, user_id: int, key: str, kind: str, sealed: Mapping[str, Any] | None) -> str:
        answer = self._call(
            "update_item",
            Key={"pk": _s("COUNTER"), "sk": _s("REQUEST")},
            UpdateExpression="ADD #v :one",
            ExpressionAttributeNames={"#v": "value"},
            ExpressionAttributeValues={":one": {"N": "1"}},
            ReturnValues="UPDATED_NEW",
        )
        number = str(NUMBER_BASE + int(answer["Attributes"]["value"]["N"]))
        now = int(self._now())
        request = self._request_item(user_id, key, kind, sealed, number)
        pointer = {
            "pk": _s(f"NUM#{number}"),
            "sk": _s("NUM"),
            "user_id": _n(user_id),
            "kind": _s(kind),
            "owner": _s(_owner(user_id)),
            "expires_at": _n(now + NUMBER_TTL_SECONDS),
        }
        try:
            self._call(
                "transact_write_items",
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": request,
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {"Put": {"TableName": self.table, "Item": pointer}},
                ],
            )
        except Exception as exc:
            if self._code(exc) != "TransactionCanceledException":
                raise
            existing = self._get(f"USER#{user_id}", f"REQ#{ref_of(key)}")
            if existing is None or "number" not in existing:
                raise
            log.info("request opened before (a retried update): its number is kept")
            return str(existing["number"]["S"])
        return number

    def _request_item(
        self, user_id: int, key: str, kind: str, sealed: Mapping[str, Any] | None, number: str | None
    ) -> dict[str, Any]:
        item: dict[str, Any] = {
            "pk": _s(f"USER#{user_id}"),
            "sk": _s(f"REQ#{ref_of(key)}"),
            "kind": _s(kind),
            "owner": _s(_owner(user_id)),
            "expires_at": _n(int(self._now()) + REQUEST_TTL_SECONDS),
        }
        if number is not None:
            item["number"] = _s(number)
        if sealed:
            item["sealed"] = _s(json.dumps(dict(sealed), ensure_ascii=False, default=str))
        return item

    def seal(self, user_id: int, key: str, kind: str, sealed: Mapping[str, Any]) -> None:
        self._call("put_item", Item=self._request_item(user_id, key, kind, sealed, None))

    def sealed(self, user_id: int, key: str) -> dict[str, Any] | None:
        item = self._get(f"USER#{user_id}", f"REQ#{ref_of(key)}")
        if item is None or "sealed" not in item:
            return None
        data: dict[str, Any] = json.loads(item["sealed"]["S"])
        return data

    def unseal(self, user_id: int, key: str) -> None:
        try:
            self._call(
                "update_item",
                Key={"pk": _s(f"USER#{user_id}"), "sk": _s(f"REQ#{ref_of(key)}")},
                UpdateExpression="REMOVE sealed",
                ConditionExpression="attribute_exists(pk)",
            )
        except Exception as exc:
            if self._code(exc) != "ConditionalCheckFailedException":
                raise

    def user_for_number(self, number: str) -> int | None:
        item = self._get(f"NUM#{number}", "NUM")
        return int(item["user_id"]["N"]) if item else None

    # ------------------------------------------------------------------ threads
    def thread_of(self, channel: str, user_id: int) -> str | None:
        item = self._get(f"USER#{user_id}", f"THREAD#{channel}")
        return str(item["thread"]["S"]) if item else None

    def bind_thread(self, channel: str, user_id: int, thread: str) -> str:
        owner = _s(_owner(user_id))
        try:
            self._call(
                "transact_write_items",
                TransactItems=[
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {
                                "pk": _s(f"USER#{user_id}"),
                                "sk": _s(f"THREAD#{channel}"),
                                "thread": _s(thread),
                                "owner": owner,
                                "created_at": _n(int(self._now())),
                            },
                            "ConditionExpression": "attribute_not_exists(pk)",
                        }
                    },
                    {
                        "Put": {
                            "TableName": self.table,
                            "Item": {
                                "pk": _s(f"THREAD#{channel}#{thread}"),
                                "sk": _s("THREAD"),
                                "user_id": _n(user_id),
                                "owner": owner,
                            },
                        }
                    },
                ],
            )
        except Exception as exc:
            if self._code(exc) != "TransactionCanceledException":
                raise
            winner = self.thread_of(channel, user_id)
            if winner is None:
                raise
            return winner
        return thread

    def unbind_thread(self, channel: str, user_id: int) -> None:
        thread = self.thread_of(channel, user_id)
        self._call("delete_item", Key={"pk": _s(f"USER#{user_id}"), "sk": _s(f"THREAD#{channel}")})
        if thread is not None:
            self._call("delete_item", Key={"pk": _s(f"THREAD#{channel}#{thread}"), "sk": _s("THREAD")})

    def user_of_thread(self, channel: str, thread: str) -> int | None:
        item = self._get(f"THREAD#{channel}#{thread}", "THREAD")
        return int(item["user_id"]["N"]) if item else None

    # ------------------------------------------------------------------ idempotency
    def claim(self, key: str, lease_seconds: float, *, scope: str = "DONE") -> Claim:
        now = self._now()
        try:
            self._call(
                "put_item",
                Item={
                    "pk": _s(f"{scope}#{ref_of(key)}"),
                    "sk": _s(scope),
                    "status": _s("busy"),
                    "lease_until": _n(round(now + lease_seconds, 3)),
                    "expires_at": _n(int(now) + DONE_TTL_SECONDS),
                },
                ConditionExpression=(
                    "attribute_not_exists(pk) OR (#s = :busy AND lease_until < :now) OR expires_at < :now"
                ),
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":busy": _s("busy"), ":now": _n(round(now, 3))},
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
            )
        except Exception as exc:
            if self._code(exc) != "ConditionalCheckFailedException":
                raise
            old = getattr(exc, "response", {}).get("Item") or self._get(f"{scope}#{ref_of(key)}", scope) or {}
            return Claim.DONE if old.get("status", {}).get("S") == "done" else Claim.BUSY
        return Claim.NEW

    def complete(self, key: str, *, scope: str = "DONE", ttl_seconds: int = DONE_TTL_SECONDS) -> None:
        self._call(
            "put_item",
            Item={
                "pk": _s(f"{scope}#{ref_of(key)}"),
                "sk": _s(scope),
                "status": _s("done"),
                "expires_at": _n(int(self._now()) + ttl_seconds),
            },
        )

    def release(self, key: str, *, scope: str = "DONE") -> None:
        try:
            self._call(
                "delete_item",
                Key={"pk": _s(f"{scope}#{ref_of(key)}"), "sk": _s(scope)},
                ConditionExpression="#s = :busy",
                ExpressionAttributeNames={"#s": "status"},
                ExpressionAttributeValues={":busy": _s("busy")},
            )
        except Exception as exc:
            if self._code(exc) != "ConditionalCheckFailedException":
                raise

    # ------------------------------------------------------------------ erasure
    def erase_user(self, user_id: int) -> int:
        """Query the partition (consistent) and the ``owner`` GSI (items outside it), delete them all."""
        keys: set[tuple[str, str]] = set()
        queries = (
            {"KeyConditionExpression": "pk = :o", "ConsistentRead": True},
            {
                "IndexName": OWNER_INDEX,
                "KeyConditionExpression": "#o = :o",
                "ExpressionAttributeNames": {"#o": "owner"},
            },
        )
        for query in queries:
            start: dict[str, Any] | None = None
            while True:
                extra = {"ExclusiveStartKey": start} if start else {}
                answer = self._call(
                    "query", ExpressionAttributeValues={":o": _s(_owner(user_id))}, **query, **extra
                )
                keys.update((i["pk"]["S"], i["sk"]["S"]) for i in answer.get("Items", []))
                start = answer.get("LastEvaluatedKey")
                if not start:
                    break
        ordered = sorted(keys)
        for offset in range(0, len(ordered), 25):
            requests: dict[str, Any] = {
                self.table: [
                    {"DeleteRequest": {"Key": {"pk": _s(pk), "sk": _s(sk)}}}
                    for pk, sk in ordered[offset : offset + 25]
                ]
            }
            for _attempt in range(5):
                self.requests += 1
                answer = self.client.batch_write_item(RequestItems=requests)
                requests = answer.get("UnprocessedItems") or {}
                if not requests:
                    break
                time.sleep(0.05 * (2**_attempt))
            if requests:
                raise RuntimeError("could not erase every hand-off item; try again")
        return len(ordered)
