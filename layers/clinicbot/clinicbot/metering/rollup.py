"""The monthly usage rollup: one item per clinic and month that billing reads, updated in batches.

Where it lives: the UsageTable of the stack (``CLINICBOT_USAGE_TABLE``), partition ``USAGE#<yyyy-mm>``, sort
key ``CLINIC#<clinic>``: one Query per month whatever the number of clinics sharing a stack; the write rate
into it is at most one flush per container per N invocations or T seconds. A table of its own rather than a
``USAGE#`` partition of the StateTable: the functions that only read patient data (the MIS sync, the
hand-off) keep read-only access to the StateTable, billing can be given read access to this table and to
nothing personal, and the erasure and export of a patient never need to know about it. A table costs
nothing while idle (on demand). The items hold counters only and have no TTL (billing records); their
attribute names are the counter names of ``clinicbot.metering.usage``, and an item stays well under 1 KB,
so a flush costs one write unit.

How it is written: each Lambda container sums its invocations in a :class:`RollupBuffer` and flushes them
with ONE atomic ``UpdateItem ... ADD`` when N invocations (default 50) or T seconds (default 300) have
accumulated -- checked at the end of an invocation -- and at the end of every scheduled-function run.
For the webhook that is 1/N of a write unit per update on top of its budget of 1 read + 1 write.

What can be lost: a container that dies (Lambda reclaims idle containers without notice; a function with
no extension gets no SIGTERM) takes its unflushed counts with it: at most N-1 invocations, and no more than
T seconds' worth while traffic continues. A flush that fails is kept and retried at the next flush; a flush
whose answer is lost after DynamoDB applied it (a timeout) may count that batch twice. The per-invocation
record (EMF metrics, or the ``usage`` log line when metrics are off) is the exact source.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any, Protocol

from clinicbot.metering.usage import Usage

__all__ = [
    "CLINIC_PREFIX",
    "DEFAULT_TABLE",
    "PK_PREFIX",
    "DynamoRollupStore",
    "InMemoryRollupStore",
    "RollupBuffer",
    "RollupItem",
    "RollupStore",
    "month_of",
    "rollup_key",
]

log = logging.getLogger(__name__)

DEFAULT_TABLE = "clinicbot-usage"
PK_PREFIX = "USAGE#"
CLINIC_PREFIX = "CLINIC#"
_META = frozenset({"pk", "sk", "updated_at", "flushes"})


def month_of(instant: float | datetime) -> str:
    """``yyyy-mm`` (UTC) of an epoch time or an aware datetime."""
    when = instant if isinstance(instant, datetime) else datetime.fromtimestamp(instant, UTC)
    return when.astimezone(UTC).strftime("%Y-%m")


def rollup_key(month: str, clinic: str) -> dict[str, dict[str, str]]:
    return {"pk": {"S": f"{PK_PREFIX}{month}"}, "sk": {"S": f"{CLINIC_PREFIX}{clinic}"}}


@dataclass(frozen=True)
class RollupItem:
    month: str
    clinic: str
    usage: Usage
    flushes: int = 0
    updated_at: int | None = None


class RollupStore(Protocol):
    def add(self, month: str, clinic: str, counts: Mapping[str, int], *, now: float) -> None:
        """Add the counts to the month's item atomically (create it if absent)."""
        ...

    def month(self, month: str, clinic: str | None = None) -> list[RollupItem]: ...


@dataclass
class InMemoryRollupStore:
    """For tests and scripts: the same semantics in a dict."""

    items: dict[tuple[str, str], RollupItem] = field(default_factory=dict)
    writes: int = 0

    def add(self, month: str, clinic: str, counts: Mapping[str, int], *, now: float) -> None:
        self.writes += 1
        old = self.items.get((month, clinic))
        usage = old.usage.copy() if old else Usage()
        usage.merge(counts)
        self.items[(month, clinic)] = RollupItem(
            month, clinic, usage, (old.flushes if old else 0) + 1, int(now)
        )

    def month(self, month: str, clinic: str | None = None) -> list[RollupItem]:
        return [i for (m, c), i in sorted(self.items.items()) if m == month and clinic in (None, c)]


class DynamoRollupStore:
    """The rollup items in the UsageTable, through pynamodb's low-level connection (botocore, which every
    function has loaded already: no boto3 import, no client built at cold start -- only at the first flush).
    The table defaults to ``CLINICBOT_USAGE_TABLE`` (``clinicbot-usage``); region, endpoint and timeouts to
    the StateTable model's configuration (the standard ``AWS_*`` variables)."""

    def __init__(
        self,
        table_name: str | None = None,
        *,
        region: str | None = None,
        host: str | None = None,
        connect_timeout: float | None = None,
        read_timeout: float | None = None,
        max_retries: int | None = None,
    ) -> None:
        self._table = table_name
        self._region = region
        self._host = host
        self._timeouts = (connect_timeout, read_timeout, max_retries)
        self._connection: Any = None

    def _conn(self) -> tuple[Any, str]:
        from clinicbot.storage.models import StateItem

        meta: Any = StateItem.Meta
        table = self._table or os.environ.get("CLINICBOT_USAGE_TABLE") or DEFAULT_TABLE
        if self._connection is None:
            from pynamodb.connection import Connection

            connect, read, retries = self._timeouts
            self._connection = Connection(
                region=self._region or getattr(meta, "region", None) or os.environ.get("AWS_REGION"),
                host=self._host
                or getattr(meta, "host", None)
                or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
                or os.environ.get("AWS_ENDPOINT_URL"),
                connect_timeout_seconds=connect or getattr(meta, "connect_timeout_seconds", 1.0),
                read_timeout_seconds=read or getattr(meta, "read_timeout_seconds", 2.0),
                max_retry_attempts=retries if retries is not None else getattr(meta, "max_retry_attempts", 2),
            )
        return self._connection, table

    def add(self, month: str, clinic: str, counts: Mapping[str, int], *, now: float) -> None:
        connection, table = self._conn()
        names: dict[str, str] = {"#u": "updated_at", "#f": "flushes"}
        values: dict[str, dict[str, str]] = {":now": {"N": str(int(now))}, ":one": {"N": "1"}}
        adds = ["#f :one"]
        for index, (name, value) in enumerate(sorted(counts.items())):
            if not value or name in _META:
                continue
            names[f"#c{index}"] = name
            values[f":c{index}"] = {"N": str(int(value))}
            adds.append(f"#c{index} :c{index}")
        connection.dispatch(
            "UpdateItem",
            {
                "TableName": table,
                "Key": rollup_key(month, clinic),
                "UpdateExpression": f"SET #u = :now ADD {', '.join(adds)}",
                "ExpressionAttributeNames": names,
                "ExpressionAttributeValues": values,
            },
        )

    def month(self, month: str, clinic: str | None = None) -> list[RollupItem]:
        connection, table = self._conn()
        request: dict[str, Any] = {
            "TableName": table,
            "KeyConditionExpression": "pk = :pk",
            "ExpressionAttributeValues": {":pk": {"S": f"{PK_PREFIX}{month}"}},
        }
        if clinic is not None:
            request["KeyConditionExpression"] += " AND sk = :sk"
            request["ExpressionAttributeValues"][":sk"] = {"S": f"{CLINIC_PREFIX}{clinic}"}
        items: list[RollupItem] = []
        while True:
            answer = connection.dispatch("Query", request)
            items.extend(_item(raw) for raw in answer.get("Items") or [])
            if not answer.get("LastEvaluatedKey"):
                return items
            request["ExclusiveStartKey"] = answer["LastEvaluatedKey"]


def _number(value: Mapping[str, Any]) -> int:
    return int(Decimal(str(value.get("N", "0"))))


def _item(raw: Mapping[str, Any]) -> RollupItem:
    usage = Usage()
    for name, value in raw.items():
        if name not in _META and "N" in value:
            usage.add(name, _number(value))
    return RollupItem(
        month=str(raw["pk"]["S"])[len(PK_PREFIX) :],
        clinic=str(raw["sk"]["S"])[len(CLINIC_PREFIX) :],
        usage=usage,
        flushes=_number(raw.get("flushes") or {}),
        updated_at=_number(raw["updated_at"]) if "updated_at" in raw else None,
    )


@dataclass
class RollupBuffer:
    """A container's unflushed counts, by month. Never raises: metering must not fail an update."""

    store: RollupStore
    clinic: str
    max_invocations: int = 50
    max_seconds: float = 300.0
    clock: Callable[[], float] = time.time
    pending: dict[str, Usage] = field(default_factory=dict)
    invocations: int = 0
    first_at: float | None = None
    flushes: int = 0
    failures: int = 0

    def add(self, usage: Usage, *, invocations: int = 1) -> None:
        if not usage:
            return
        now = self.clock()
        self.pending.setdefault(month_of(now), Usage()).merge(usage)
        self.invocations += invocations
        if self.first_at is None:
            self.first_at = now

    def due(self) -> bool:
        if not self.pending:
            return False
        if self.invocations >= self.max_invocations:
            return True
        return self.first_at is not None and self.clock() - self.first_at >= self.max_seconds

    def flush(self) -> int:
        """Write what is pending (one UpdateItem per month, i.e. one); returns the number of writes made."""
        writes = 0
        now = self.clock()
        for month in sorted(self.pending):
            counts = self.pending[month].as_dict()
            try:
                self.store.add(month, self.clinic, counts, now=now)
            except Exception:
                self.failures += 1
                log.warning("usage rollup flush failed; kept for the next flush", exc_info=True)
                return writes
            del self.pending[month]
            writes += 1
        self.flushes += writes
        self.invocations = 0
        self.first_at = None
        return writes

    def maybe_flush(self) -> int:
        return self.flush() if self.due() else 0
