"""The cost model: a month of usage (:class:`MonthProfile`) priced line by line (:class:`Bill`).

Lambda's billed duration is modelled, not guessed:

* CPU: below 1,769 MB a function gets memory/1,769 of a vCPU, so CPU-bound work measured as ``cpu_ms`` on
  one full core takes ``cpu_ms x 1769 / memory`` of wall time (x 3.455 at 512 MB);
* waiting: each request to another service adds its latency (DynamoDB, SQS, the Bot API, the MIS, the CRM),
  divided by how many the function keeps in flight;
* INIT (billed since 2025-08-01): the cold start's CPU, run at a full core -- Lambda is widely observed to
  give the INIT phase full CPU whatever the memory size; without that boost it is x 1769/memory too
  (:attr:`LambdaModel.init_boost`) -- plus the secrets read from SSM.

Everything else is a count times a price from :class:`~clinicbot.metering.prices.PriceBook`.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from clinicbot.metering.prices import PriceBook

__all__ = [
    "FULL_CPU_MB",
    "HOURS_PER_MONTH",
    "Bill",
    "EnvironmentPool",
    "FunctionMonth",
    "LambdaModel",
    "Line",
    "MonthProfile",
    "Requests",
    "decrypts",
    "price",
]

FULL_CPU_MB = 1769
HOURS_PER_MONTH = 730.0
MONTH_SECONDS = 30 * 24 * 3600


@dataclass(frozen=True)
class Requests:
    """Requests one invocation made to other services (counts)."""

    ddb: float = 0
    sqs: float = 0
    botapi: float = 0
    mis: float = 0
    crm: float = 0


@dataclass(frozen=True)
class LambdaModel:
    memory_mb: int = 512
    latency_ms: Mapping[str, float] = field(
        default_factory=lambda: {"ddb": 6.0, "sqs": 10.0, "botapi": 40.0, "mis": 60.0, "crm": 120.0}
    )
    parallel: Mapping[str, Mapping[str, float]] = field(
        default_factory=lambda: {"mis_sync": {"mis": 4.0}, "reminders": {"botapi": 4.0}}
    )
    init_boost: bool = True
    init_io_ms: float = 40.0  # two SecureString parameters from SSM (bot token, webhook secret)

    @property
    def cpu_factor(self) -> float:
        return max(1.0, FULL_CPU_MB / self.memory_mb)

    def io_ms(self, function: str, requests: Requests) -> float:
        total = 0.0
        for kind in ("ddb", "sqs", "botapi", "mis", "crm"):
            count = float(getattr(requests, kind))
            if count:
                par = float((self.parallel.get(function) or {}).get(kind, 1.0))
                total += count * self.latency_ms.get(kind, 0.0) / max(1.0, min(par, count))
        return total

    def billed_ms(self, function: str, cpu_ms: float, requests: Requests) -> float:
        """One invocation's billed duration (rounded up to the millisecond)."""
        return float(math.ceil(cpu_ms * self.cpu_factor + self.io_ms(function, requests)))

    def init_ms(self, init_cpu_ms: float) -> float:
        factor = 1.0 if self.init_boost else self.cpu_factor
        return float(math.ceil(init_cpu_ms * factor + self.init_io_ms))


@dataclass
class FunctionMonth:
    name: str
    invocations: float = 0.0
    billed_ms: float = 0.0
    cold_starts: float = 0.0
    init_ms: float = 0.0
    memory_mb: int = 512

    @property
    def gb_seconds(self) -> float:
        return self.memory_mb / 1024 * self.billed_ms / 1000

    @property
    def init_gb_seconds(self) -> float:
        return self.memory_mb / 1024 * self.init_ms / 1000


@dataclass
class MonthProfile:
    functions: dict[str, FunctionMonth] = field(default_factory=dict)
    ddb_read_units: float = 0.0
    ddb_write_units: float = 0.0
    rollup_write_units: float = 0.0
    """Of ``ddb_write_units``: the usage rollup's own flushes (shown as their own line)."""
    ddb_storage_gb: float = 0.0
    pitr: bool = True
    http_api_requests: float = 0.0
    sqs_requests: float = 0.0
    sqs_idle_receives: float = 0.0
    scheduler_invocations: float = 0.0
    metric_hours: dict[str, float] = field(default_factory=dict)
    """Custom metric -> hours of the month in which it received data."""
    usage_metric_names: frozenset[str] = frozenset()
    """Those of ``metric_hours`` that the usage metering (``CLINICBOT_USAGE_METRICS=on``) creates."""
    alarms: int = 0
    log_ingest_gb: float = 0.0
    log_storage_gb: float = 0.0
    kms_requests: float = 0.0
    data_out_gb: float = 0.0
    xray_traces: float = 0.0
    """Tracing: Active records a trace per sampled invocation (1 a second + 5 %: all of them at this traffic)."""
    architecture: str = "arm64"


ALWAYS_FREE: dict[str, float] = {
    "lambda_requests": 1_000_000,
    "lambda_arm64_gb_second": 400_000,
    "lambda_x86_gb_second": 400_000,
    "sqs_requests": 1_000_000,
    "scheduler_invocations": 14_000_000,
    "cloudwatch_custom_metric_month": 10,
    "cloudwatch_alarm_month": 10,
    "cloudwatch_logs_ingest_gb": 5,
    "kms_requests": 20_000,
    "ddb_storage_gb_month": 25,
    "xray_traces_recorded": 100_000,
    "data_transfer_out_gb": 100,
}
"""AWS's always-free offers, per account and month (not the 12-month ones): see ``free_tier_per_account_month``
in prices.json. DynamoDB on demand has none for requests."""


@dataclass(frozen=True)
class Line:
    service: str
    item: str
    quantity: float
    unit: str
    usd: float
    fixed: bool = False
    """Paid whatever the traffic (a quiet month pays it too)."""
    note: str = ""
    key: str = ""
    """The price it was priced at (``clinicbot/data/prices.json``)."""


@dataclass
class Bill:
    region: str
    lines: list[Line]

    @property
    def total(self) -> float:
        return sum(line.usd for line in self.lines)

    @property
    def fixed_total(self) -> float:
        return sum(line.usd for line in self.lines if line.fixed)

    def free_tier_usd(self, book: PriceBook) -> float:
        """What AWS's always-free offers (per account and month: :data:`ALWAYS_FREE`) take off this bill when
        the clinic's stack is alone in its account."""
        by_key: dict[str, float] = {}
        for line in self.lines:
            if line.key in ALWAYS_FREE:
                by_key[line.key] = by_key.get(line.key, 0.0) + line.usd
        return sum(min(usd, book.cost(key, ALWAYS_FREE[key])) for key, usd in by_key.items())

    def dominant(self) -> Line:
        return max(self.lines, key=lambda line: line.usd)

    def by_service(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in self.lines:
            out[line.service] = out.get(line.service, 0.0) + line.usd
        return dict(sorted(out.items(), key=lambda kv: -kv[1]))

    def share(self, line: Line) -> float:
        return line.usd / self.total if self.total else 0.0

    def text(self) -> str:
        rows = [f"{'service':<14}{'item':<44}{'quantity':>16}  {'unit':<16}{'USD':>10}  {'share':>6}"]
        for line in self.lines:
            mark = " *" if line.fixed else "  "
            rows.append(
                f"{line.service:<14}{line.item:<44}{_qty(line.quantity):>16}  {line.unit:<16}"
                f"{line.usd:>10.4f}  {self.share(line):>6.1%}{mark}"
            )
        rows.append(f"{'':<14}{'total':<44}{'':>16}  {'':<16}{self.total:>10.4f}")
        return "\n".join(rows)

    def markdown(self) -> str:
        rows = ["| service | item | quantity | unit | USD/month | share |", "|---|---|---:|---|---:|---:|"]
        for line in self.lines:
            item = f"{line.item} (fixed)" if line.fixed else line.item
            rows.append(
                f"| {line.service} | {item} | {_qty(line.quantity)} | {line.unit} | {line.usd:.4f} | "
                f"{self.share(line):.1%} |"
            )
        rows.append(f"| **total** | | | | **{self.total:.4f}** | |")
        return "\n".join(rows)


def _qty(value: float) -> str:
    if value == 0:
        return "0"
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 1:
        return f"{value:,.2f}"
    return f"{value:.4g}"


def price(profile: MonthProfile, book: PriceBook) -> Bill:
    """Every line of the month's bill, in the region of ``book`` (no free tiers)."""
    lines: list[Line] = []
    gbs_key = f"lambda_{profile.architecture}_gb_second"

    def line(service: str, item: str, quantity: float, unit: str, key: str, **extra: Any) -> Line:
        return Line(service, item, quantity, unit, book.cost(key, quantity), key=key, **extra)

    requests = sum(f.invocations for f in profile.functions.values())
    lines.append(
        line(
            "Lambda",
            "requests",
            requests,
            "requests",
            "lambda_requests",
        )
    )
    for fn in profile.functions.values():
        if fn.invocations:
            lines.append(
                line(
                    "Lambda",
                    f"{fn.name}: duration @ {fn.memory_mb} MB",
                    fn.gb_seconds,
                    "GB-s",
                    gbs_key,
                )
            )
    for fn in profile.functions.values():
        if fn.cold_starts:
            lines.append(
                line(
                    "Lambda",
                    f"{fn.name}: INIT x {fn.cold_starts:,.0f} cold starts",
                    fn.init_gb_seconds,
                    "GB-s",
                    gbs_key,
                )
            )
    app_writes = profile.ddb_write_units - profile.rollup_write_units
    lines.append(
        line(
            "DynamoDB",
            "write request units",
            app_writes,
            "WRU",
            "ddb_write_request_units",
        )
    )
    if profile.rollup_write_units:
        lines.append(
            line(
                "DynamoDB",
                "usage rollup flushes",
                profile.rollup_write_units,
                "WRU",
                "ddb_write_request_units",
            )
        )
    lines.append(
        line(
            "DynamoDB",
            "read request units",
            profile.ddb_read_units,
            "RRU",
            "ddb_read_request_units",
        )
    )
    lines.append(
        line(
            "DynamoDB",
            "storage",
            profile.ddb_storage_gb,
            "GB-month",
            "ddb_storage_gb_month",
        )
    )
    if profile.pitr:
        lines.append(
            line(
                "DynamoDB",
                "point-in-time recovery",
                profile.ddb_storage_gb,
                "GB-month",
                "ddb_pitr_gb_month",
            )
        )
    if profile.http_api_requests:
        lines.append(
            line(
                "API Gateway",
                "HTTP API requests",
                profile.http_api_requests,
                "requests",
                "http_api_requests",
            )
        )
    if profile.sqs_requests:
        lines.append(
            line(
                "SQS",
                "hand-off messages",
                profile.sqs_requests,
                "requests",
                "sqs_requests",
            )
        )
    if profile.sqs_idle_receives:
        lines.append(
            line(
                "SQS",
                "event source mapping's empty polls",
                profile.sqs_idle_receives,
                "requests",
                "sqs_requests",
                fixed=True,
                note="Lambda long-polls the queue even when it is empty",
            )
        )
    if profile.scheduler_invocations:
        lines.append(
            line(
                "Scheduler",
                "EventBridge Scheduler invocations",
                profile.scheduler_invocations,
                "invocations",
                "scheduler_invocations",
                fixed=True,
            )
        )
    usage_hours = sum(h for m, h in profile.metric_hours.items() if m in profile.usage_metric_names)
    other_hours = sum(h for m, h in profile.metric_hours.items() if m not in profile.usage_metric_names)
    for label, hours, count in (
        (
            "custom metrics: usage metering",
            usage_hours,
            len([m for m in profile.metric_hours if m in profile.usage_metric_names]),
        ),
        (
            "custom metrics: functions' own",
            other_hours,
            len([m for m in profile.metric_hours if m not in profile.usage_metric_names]),
        ),
    ):
        if hours:
            months = hours / HOURS_PER_MONTH
            lines.append(
                line(
                    "CloudWatch",
                    f"{label} ({count} metrics)",
                    months,
                    "metric-months",
                    "cloudwatch_custom_metric_month",
                )
            )
    if profile.alarms:
        lines.append(
            line(
                "CloudWatch",
                "alarms",
                profile.alarms,
                "alarms",
                "cloudwatch_alarm_month",
                fixed=True,
            )
        )
    lines.append(
        line(
            "CloudWatch",
            "logs ingested",
            profile.log_ingest_gb,
            "GB",
            "cloudwatch_logs_ingest_gb",
        )
    )
    lines.append(
        line(
            "CloudWatch",
            "logs stored",
            profile.log_storage_gb,
            "GB-month",
            "cloudwatch_logs_storage_gb_month",
        )
    )
    lines.append(
        line(
            "KMS",
            "aws/dynamodb key requests",
            profile.kms_requests,
            "requests",
            "kms_requests",
            note="DynamoDB re-decrypts a table key after 5 minutes (modelled)",
        )
    )
    if profile.xray_traces:
        lines.append(
            line(
                "X-Ray",
                "traces recorded (Tracing: Active)",
                profile.xray_traces,
                "traces",
                "xray_traces_recorded",
            )
        )
    lines.append(
        line(
            "Data transfer",
            "out to the internet",
            profile.data_out_gb,
            "GB",
            "data_transfer_out_gb",
        )
    )
    return Bill(region=book.region, lines=lines)


class EnvironmentPool:
    """Lambda execution environments of one function, for counting cold starts: an invocation takes an idle
    environment that was used less than ``idle_timeout`` seconds ago, else it starts a new one (a cold start)."""

    def __init__(self, idle_timeout: float) -> None:
        self.idle_timeout = idle_timeout
        self._busy_until: list[float] = []
        self._last_used: list[float] = []
        self.cold_starts = 0
        self.invocations = 0

    def invoke(self, at: float, duration: float, init: float = 0.0) -> bool:
        """An invocation arriving at ``at`` (seconds) taking ``duration``; returns True on a cold start."""
        self.invocations += 1
        best = -1
        for i, busy in enumerate(self._busy_until):
            if (
                busy <= at
                and at - self._last_used[i] <= self.idle_timeout
                and (best < 0 or self._last_used[i] > self._last_used[best])
            ):
                best = i
        if best >= 0:
            self._busy_until[best] = at + duration
            self._last_used[best] = at + duration
            return False
        self.cold_starts += 1
        # reuse a slot of an expired environment, or add one
        for i, last in enumerate(self._last_used):
            if self._busy_until[i] <= at and at - last > self.idle_timeout:
                self._busy_until[i] = self._last_used[i] = at + init + duration
                return True
        self._busy_until.append(at + init + duration)
        self._last_used.append(at + init + duration)
        return True


def decrypts(access_times: Iterable[float], cache_seconds: float = 300.0) -> int:
    """KMS Decrypt calls DynamoDB makes for one (caller, table): one whenever the cached table key is older
    than ``cache_seconds`` at an access. An assumption (the docs do not give the exact rule)."""
    count = 0
    last: float | None = None
    for at in sorted(access_times):
        if last is None or at - last >= cache_seconds:
            count += 1
            last = at
    return count


def hours_with_data(times: Sequence[float]) -> int:
    return len({int(t // 3600) for t in times})
