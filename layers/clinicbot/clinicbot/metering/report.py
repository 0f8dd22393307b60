"""``clinicbot usage --month YYYY-MM``: a month's usage per clinic from the rollup items, and its estimated
AWS cost line by line.

What the rollup holds is used as measured: invocations, their wall time (≈ Lambda's billed duration), cold
starts and INIT CPU, messages, hand-offs, MIS/CRM calls, and the rollup's own flushes (one write unit each).
What it does not hold comes from the cost model ``bench/cost_month.py`` measured
(``clinicbot/data/cost_model.json``): DynamoDB units per invocation of each function, SQS requests per
hand-off, log bytes per invocation, the KMS requests of a month, storage. The result is an estimate; the
AWS bill (Cost Explorer, by the stack's tags) is the truth.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any, TextIO

from clinicbot.metering.cost import HOURS_PER_MONTH, Bill, FunctionMonth, LambdaModel, MonthProfile, price
from clinicbot.metering.emf import MESSAGES_METRIC, METRIC_NAMES
from clinicbot.metering.prices import PriceBook
from clinicbot.metering.rollup import RollupItem, RollupStore
from clinicbot.metering.usage import FUNCTIONS, MessageKind, Name, Usage

__all__ = ["MONTH_RE", "CostModel", "estimate", "print_report"]

MONTH_RE = re.compile(r"^\d{4}-(0[1-9]|1[0-2])$")


@dataclass(frozen=True)
class CostModel:
    data: Mapping[str, Any]

    @classmethod
    def load(cls, path: str | Path | None = None) -> CostModel:
        if path is None:
            text = resources.files("clinicbot.data").joinpath("cost_model.json").read_text(encoding="utf-8")
        else:
            text = Path(path).read_text(encoding="utf-8")
        return cls(json.loads(text))

    def fn(self, name: str, key: str) -> float:
        return float(((self.data.get("functions") or {}).get(name) or {}).get(key) or 0.0)

    def get(self, key: str, default: float = 0.0) -> float:
        value = self.data.get(key)
        return float(default if value is None else value)  # a 0 in the model is a 0, not "absent"


def estimate(
    usage: Usage,
    book: PriceBook,
    model: CostModel,
    *,
    memory_mb: int = 512,
    flushes: int = 0,
    usage_metrics: bool = False,
) -> Bill:
    lam = LambdaModel(memory_mb=memory_mb)
    profile = MonthProfile(alarms=int(model.get("alarms", 0)))
    platform_logs = bool(model.get("platform_logs", 0.0))  # Lambda's START/REPORT lines: LogLevel INFO/DEBUG
    http_api = bool(model.get("http_api", 1.0))
    invocations = usage.per_function("inv")
    wall = usage.per_function("ms")
    cold = usage.per_function("cold")
    init = usage.per_function("initms")
    log_bytes = 0.0
    for fn in FUNCTIONS:
        n = invocations.get(fn, 0)
        if not n:
            continue
        billed = float(wall.get(fn) or n * model.fn(fn, "billed_ms_per_invocation"))
        colds = cold.get(fn, 0)
        init_ms = lam.init_ms(init.get(fn, 0) / colds) * colds if colds else 0.0
        mb = int((model.data.get("memory_mb_by_function") or {}).get(fn) or memory_mb)
        profile.functions[fn] = FunctionMonth(fn, n, billed, colds, init_ms, mb)
        profile.ddb_read_units += n * model.fn(fn, "rru_per_invocation")
        profile.ddb_write_units += n * model.fn(fn, "wru_per_invocation")
        log_bytes += n * model.fn(fn, "log_bytes_per_invocation") + (450 * colds if platform_logs else 0)
    profile.ddb_write_units += flushes
    profile.rollup_write_units = float(flushes)
    profile.http_api_requests = invocations.get("webhook", 0) if http_api else 0
    profile.sqs_requests = usage[Name.HANDOFFS] * model.get("sqs_requests_per_handoff", 3.0)
    profile.sqs_idle_receives = model.get("sqs_idle_receives_per_month", 0.0)
    if model.get("scheduler", 0.0):  # EventBridge Scheduler; the rules of the template are free
        profile.scheduler_invocations = invocations.get("reminders", 0) + invocations.get("mis_sync", 0)
    access_log = 300 * invocations.get("webhook", 0) if http_api else 0
    profile.log_ingest_gb = (log_bytes + access_log) / 1e9
    profile.log_storage_gb = profile.log_ingest_gb
    profile.ddb_storage_gb = model.get("storage_gb")
    profile.kms_requests = model.get("kms_requests_per_month")
    if model.get("xray_tracing", 0.0):
        profile.xray_traces = float(sum(invocations.values()))
    own = model.get("functions_metric_months")
    if own:
        profile.metric_hours["functions' own (bench model)"] = own * HOURS_PER_MONTH
    if usage_metrics:  # at most one hour with data per event: an upper bound
        names = {name: usage[c] for c, name in METRIC_NAMES.items() if usage[c]}
        names.update({f"{MESSAGES_METRIC}[{k.value}]": v for k, v in usage.messages().items()})
        profile.metric_hours.update({f"usage:{n}": min(HOURS_PER_MONTH, float(v)) for n, v in names.items()})
        profile.usage_metric_names = frozenset(f"usage:{n}" for n in names)
    return price(profile, book)


def _usage_rows(usage: Usage) -> list[tuple[str, str]]:
    rows = [
        ("updates handled", f"{usage[Name.UPDATES]:,}"),
        ("  retries (duplicates)", f"{usage[Name.DUPLICATES]:,}"),
        ("  refused (secret, malformed)", f"{usage[Name.REJECTED]:,}"),
    ]
    messages = usage.messages()
    rows.append(("messages sent", f"{sum(messages.values()):,}"))
    rows.extend((f"  {kind.value}", f"{messages.get(kind, 0):,}") for kind in MessageKind)
    rows += [
        ("hand-offs", f"{usage[Name.HANDOFFS]:,}"),
        ("MIS calls", f"{usage[Name.MIS_CALLS]:,}"),
        ("CRM calls", f"{usage[Name.CRM_CALLS]:,}"),
    ]
    inv, wall, cold = usage.per_function("inv"), usage.per_function("ms"), usage.per_function("cold")
    for fn in FUNCTIONS:
        if inv.get(fn):
            rows.append(
                (
                    f"{fn} invocations",
                    f"{inv[fn]:,} ({wall.get(fn, 0) / 1000:,.1f} s, {cold.get(fn, 0):,} cold starts)",
                )
            )
    return rows


def print_report(
    items: list[RollupItem],
    month: str,
    book: PriceBook,
    model: CostModel,
    out: TextIO,
    *,
    memory_mb: int = 512,
    usage_metrics: bool = False,
    as_json: bool = False,
) -> list[Bill]:
    bills: list[Bill] = []
    if not items:
        out.write(f"No usage recorded for {month}.\n")
        return bills
    payload = []
    for item in items:
        bill = estimate(
            item.usage, book, model, memory_mb=memory_mb, flushes=item.flushes, usage_metrics=usage_metrics
        )
        bills.append(bill)
        if as_json:
            payload.append(
                {
                    "month": month,
                    "clinic": item.clinic,
                    "usage": item.usage.as_dict(),
                    "flushes": item.flushes,
                    "region": book.region,
                    "total_usd": round(bill.total, 6),
                    "lines": [
                        {"service": ln.service, "item": ln.item, "quantity": ln.quantity, "unit": ln.unit,
                         "usd": round(ln.usd, 6), "fixed": ln.fixed}
                        for ln in bill.lines
                    ],
                }
            )  # fmt: skip
            continue
        out.write(f"Clinic {item.clinic}, {month} ({item.flushes} rollup flushes)\n")
        for label, value in _usage_rows(item.usage):
            out.write(f"  {label:<32}{value}\n")
        out.write(
            f"\nEstimated AWS cost, {book.region_name} ({book.region}), list prices of {book.taken_on}, "
            "no free tier (* = paid whatever the traffic):\n"
        )
        out.write(bill.text() + "\n")
        top = bill.dominant()
        out.write(f"Largest line: {top.service} / {top.item} (${top.usd:.4f}).\n\n")
    if as_json:
        out.write(json.dumps(payload, ensure_ascii=False, indent=2) + "\n")
    return bills


def read_items(store: RollupStore, month: str, clinic: str | None = None) -> list[RollupItem]:
    if not MONTH_RE.match(month):
        raise ValueError("--month must be YYYY-MM")
    return store.month(month, clinic)
