"""Reminders: throughput within Telegram's limit, DynamoDB read units per due item, cold start.

    .venv/bin/python -m bench.reminders                      # 10,000 due items (~6 min of sending)
    .venv/bin/python -m bench.reminders --count 600 --table-sizes 10000,100000 --due 500

1. Throughput: ``--count`` due visit reminders (one per patient, each with a patient card) go through the
   real reminders run -- the due query, the card reads, claims, the MIS check, BulkSender -- against the
   fake Bot API on loopback enforcing 30 msg/s (+ ``--latency`` per request). The store here is the
   in-memory ReminderStore with ``--ddb-latency`` per request (in threads, as DynamoDB calls run):
   moto spends ~80 ms of CPU on each conditional UpdateItem, which would measure moto, not the run.
   Printed: the rate at the server (first to last message) as a share of the limit (goal >= 95 %), the
   end-to-end rate (the whole run), the peak one-second window, 429s, and that every reminder arrived
   exactly once.
2. Read units per due item with ``--table-sizes`` items in the ReminderTable, ``--due`` of them due now
   (the rest spread over the next 30 days, or already sent), the full run under moto. moto answers ConsumedCapacity with a
   constant, so read units are computed from the items actually read, as DynamoDB bills them:
   Query = ceil(bytes of the page / 4 KB) x 0.5 (eventually consistent, the GSI), BatchGetItem =
   ceil(item / 4 KB) x 0.5 per item, GetItem / consistent Query = 1 per 4 KB. Writes (WCU) are shown too:
   ceil(item / 1 KB) per write, + the same again when the GSI changes (an estimate).
3. Cold start: CPU seconds of a fresh interpreter importing functions/reminders/app.py next to
   functions/webhook/app.py (best / median of ``--runs``), in the venv (``--layer``: also the Lambda-shaped
   layer with hash-based .pyc, built by bench/cold_start.py).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import math
import os
import statistics
import sys
import textwrap
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
REGION = "eu-central-1"
BENCH_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "CLINICBOT_BOT_TOKEN": "123456:BENCH-dummy",
    "CLINICBOT_WEBHOOK_SECRET": "bench-secret",
    "CLINICBOT_STATE_TABLE": "clinicbot-state",
    "CLINICBOT_REMINDER_TABLE": "clinicbot-reminder",
    "POWERTOOLS_SERVICE_NAME": "clinicbot",
    "POWERTOOLS_METRICS_NAMESPACE": "ClinicBot",
    "POWERTOOLS_TRACE_DISABLED": "true",
}
USER0 = 10_000_000


# ----------------------------------------------------------------------------- capacity accounting


def _size(value: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names + values (numbers ~ digits/2 + 1)."""
    total = 0
    for name, typed in value.items():
        total += len(name.encode())
        ((kind, inner),) = typed.items()
        if kind == "S":
            total += len(inner.encode())
        elif kind == "N":
            total += len(inner.strip("-").replace(".", "")) // 2 + 1
        elif kind in ("BOOL", "NULL"):
            total += 1
        elif kind == "M":
            total += 3 + _size(inner)
        elif kind == "L":
            total += 3 + sum(_size({"": v}) for v in inner)
        else:
            total += len(json.dumps(inner))
    return total


@dataclass
class Meter:
    rcu: float = 0.0
    wcu: float = 0.0
    calls: Counter[str] = field(default_factory=Counter)
    items_read: int = 0

    def reset(self) -> None:
        self.rcu = self.wcu = 0.0
        self.items_read = 0
        self.calls.clear()


@contextlib.contextmanager
def metered() -> Iterator[Meter]:
    from pynamodb.connection.base import Connection

    meter = Meter()
    original = Connection._make_api_call

    def counting(self: Connection, operation: str, kwargs: dict[str, Any]) -> Any:
        answer = original(self, operation, kwargs)
        meter.calls[operation] += 1
        strong = bool(kwargs.get("ConsistentRead"))
        if operation == "Query":
            items = answer.get("Items", [])
            meter.items_read += len(items)
            size = sum(_size(i) for i in items)
            meter.rcu += max(1, math.ceil(size / 4096)) * (1.0 if strong else 0.5)
        elif operation == "GetItem":
            meter.rcu += max(1, math.ceil(_size(answer.get("Item") or {}) / 4096)) * (1.0 if strong else 0.5)
        elif operation == "BatchGetItem":
            for items in (answer.get("Responses") or {}).values():
                meter.items_read += len(items)
                meter.rcu += sum(max(1, math.ceil(_size(i) / 4096)) * 0.5 for i in items)
        elif operation in ("PutItem", "UpdateItem", "DeleteItem"):
            item = answer.get("Attributes") or kwargs.get("Item") or {}
            units = max(1, math.ceil(_size(item) / 1024))
            on_index = "due_bucket" in json.dumps(kwargs)
            meter.wcu += units * (2 if on_index else 1)
        return answer

    Connection._make_api_call = counting  # type: ignore[method-assign]
    try:
        yield meter
    finally:
        Connection._make_api_call = original  # type: ignore[method-assign]


# ----------------------------------------------------------------------------- the world


class BenchMis:
    """The demo clinic's reference data, and each patient's one visit (what the run checks)."""

    def __init__(self, visits: dict[str, Any]) -> None:
        from clinicbot.adapters.mis_demo import DemoClinic

        self.demo = DemoClinic()
        self.by_patient = visits

    async def branches(self) -> Any:
        return await self.demo.branches()

    async def doctors(self, **kw: Any) -> Any:
        return await self.demo.doctors(**kw)

    async def services(self, **kw: Any) -> Any:
        return await self.demo.services(**kw)

    async def specialties(self) -> Any:
        return await self.demo.specialties()

    async def visits(self, patient_id: str) -> Any:
        from clinicbot.mis.models import PatientVisits

        visit = self.by_patient.get(patient_id)
        return PatientVisits(upcoming=(visit,) if visit else ())


def start_moto() -> Any:
    import boto3
    from moto import mock_aws

    from clinicbot.infra.template import create_tables, default_table_names
    from clinicbot.reminders import models as reminder_models
    from clinicbot.storage import models as state_models

    mock = mock_aws()
    mock.start()
    client = boto3.client("dynamodb", region_name=REGION)
    names = default_table_names()
    create_tables(client, names)
    state_models.configure(table_name=names["StateTable"], region=REGION)
    reminder_models.configure(table_name=names["ReminderTable"], region=REGION)
    return mock


def items_and_cards(
    total: int, due: int, now: datetime, *, sent_share: float = 0.0
) -> tuple[list[Any], list[Any], dict[str, Any]]:
    """``total`` visit reminders, ``due`` of them due now; the rest in the next 30 days (or sent); the
    cards of the due ones; their visits as the MIS has them."""
    from clinicbot.domain.patient import PatientCard
    from clinicbot.mis.models import Appointment, AppointmentStatus
    from clinicbot.reminders.items import DueItem, Kind, Status, default_expiry, item_id_for_appointment

    visits: dict[str, Any] = {}
    items: list[Any] = []
    cards: list[Any] = []
    for n in range(total):
        user = USER0 + n
        patient_id = f"bp-{n}"
        if n < due:
            planned = now - timedelta(seconds=30)
            status = Status.PENDING
        else:
            planned = now + timedelta(minutes=10 + (n * 7919) % (30 * 24 * 60))
            status = Status.SENT if (n % 100) < sent_share * 100 else Status.PENDING
        start = planned + timedelta(hours=24)
        appointment_id = f"ba-{n}"
        item = DueItem(
            user_id=user,
            item_id=item_id_for_appointment(appointment_id, start, "r24"),
            kind=Kind.VISIT,
            planned_at=planned,
            due_at=planned,
            status=status,
            patient_id=patient_id,
            tz="Europe/Moscow",
            appointment_id=appointment_id,
            start=start,
            end=start + timedelta(minutes=30),
            doctor_id="d-01",
            branch_id="b-tverskaya",
            service_id="sv-ther-1",
            lead_hours=24,
        )
        item.expires_at = default_expiry(item)
        items.append(item)
        if n < due:
            cards.append(
                PatientCard(
                    user_id=user,
                    created_at=now,
                    language="ru",
                    consent_at=now,
                    consent_version="1",
                    patient_id=patient_id,
                )
            )
            visits[patient_id] = Appointment(
                id=appointment_id,
                patient_id=patient_id,
                doctor_id="d-01",
                branch_id="b-tverskaya",
                start=start,
                end=start + timedelta(minutes=30),
                status=AppointmentStatus.BOOKED,
                service_id="sv-ther-1",
            )
    return items, cards, visits


def populate_moto(items: list[Any], cards: list[Any]) -> None:
    """Straight into moto's backend (its request parsing costs milliseconds per item; 100k items...)."""
    from moto.core import DEFAULT_ACCOUNT_ID
    from moto.dynamodb.models import dynamodb_backends

    from clinicbot.reminders.dynamo import to_record
    from clinicbot.reminders.models import DueRecord
    from clinicbot.storage.models import PROFILE_SK, ProfileItem, StateItem, user_pk

    backend = dynamodb_backends[DEFAULT_ACCOUNT_ID][REGION]
    for item in items:
        backend.put_item(DueRecord.Meta.table_name, to_record(item).serialize())
    for card in cards:
        profile = ProfileItem(
            pk=user_pk(card.user_id),
            sk=PROFILE_SK,
            created_at=card.created_at,
            language=card.language,
            consent_at=card.consent_at,
            consent_version=card.consent_version,
            patient_id=card.patient_id,
        )
        backend.put_item(StateItem.Meta.table_name, profile.serialize())


class Context:
    def __init__(self, seconds: float) -> None:
        self._end = time.monotonic() + seconds
        self.function_name = "clinicbot-reminders"

    def get_remaining_time_in_millis(self) -> int:
        return int((self._end - time.monotonic()) * 1000)


# ----------------------------------------------------------------------------- 1. throughput


class SlowStore:
    """The in-memory ReminderStore, each request taking ``latency`` seconds (like a DynamoDB round trip)."""

    def __init__(self, latency: float) -> None:
        from clinicbot.reminders.store import InMemoryReminderStore

        self.inner = InMemoryReminderStore()
        self.latency = latency
        self.requests = 0

    def __getattr__(self, name: str) -> Any:
        target = getattr(self.inner, name)
        if not callable(target):
            return target

        def call(*args: Any, **kwargs: Any) -> Any:
            self.requests += 1
            if self.latency:
                time.sleep(self.latency)
            result = target(*args, **kwargs)
            return list(result) if name == "due" else result

        return call


def bench_throughput(args: argparse.Namespace) -> None:
    from clinicbot.config import Settings
    from clinicbot.local.fake_botapi import FakeBotAPI
    from clinicbot.reminders.app import build_reminders
    from clinicbot.reminders.store import InMemoryDirectory

    now = datetime.now(UTC)
    items, cards, visits = items_and_cards(args.count, args.count, now)
    store = SlowStore(args.ddb_latency)
    for item in items:
        store.inner.create(item)
    directory = InMemoryDirectory(cards)
    with FakeBotAPI(token=BENCH_ENV["CLINICBOT_BOT_TOKEN"]) as api:
        api.enforce_rate_limits(global_per_second=args.rate, per_chat_per_second=1)
        if args.latency > 0:
            api.delay(args.latency)
        app = build_reminders(
            Settings(telegram_api_base=api.base_url, quiet_hours="00:00-00:00"),  # type: ignore[call-arg]
            mis=BenchMis(visits),
            store=store,  # type: ignore[arg-type]
            directory=directory,
            global_rate=args.rate,
        )
        t0 = time.monotonic()
        report = app.handle_event({"time": now.isoformat()}, Context(args.budget))
        elapsed = time.monotonic() - t0
        app.close()
        calls = api.calls_of("sendMessage", ok_only=True)
        chats = Counter(c.chat_id for c in calls)
        at_server = api.sent_per_second("sendMessage")
        sent = sum(report["sent"].values())
        once = len(chats) == sent == len(calls) == args.count and max(chats.values(), default=1) == 1
        print(
            f"  sent:            {sent} of {args.count}; left for the next run {report['left_for_next_run']}, "
            f"deferred {report['deferred']}, failed {report['failed']}"
        )
        print(f"  exactly once:    {once} ({len(calls)} messages to {len(chats)} chats)")
        print(
            f"  at the server:   {at_server:.2f} msg/s = {100 * at_server / args.rate:.1f} % of {args.rate:g} "
            "(goal >= 95 %)"
        )
        print(
            f"  end to end:      {sent / elapsed:.2f} msg/s = {100 * sent / elapsed / args.rate:.1f} % "
            f"(the whole run, {elapsed:.1f} s: query, cards, claims, MIS checks, sends, marks)"
        )
        print(
            f"  peak 1-s window: {api.peak_per_second('sendMessage')} (limit {int(args.rate)}); "
            f"429s: {api.stats().rate_limited}; store requests: {store.requests} "
            f"at {args.ddb_latency * 1000:.0f} ms each"
        )


# ----------------------------------------------------------------------------- 2. read units


def bench_reads(args: argparse.Namespace) -> None:
    from clinicbot.config import Settings
    from clinicbot.local.fake_botapi import FakeBotAPI
    from clinicbot.reminders.app import build_reminders

    print(
        f"  {'items in table':>15}{'due now':>9}{'RCU':>9}{'RCU/due':>9}{'items read':>12}{'WCU/due':>9}  requests"
    )
    for size in args.table_sizes:
        mock = start_moto()
        try:
            now = datetime.now(UTC)
            with FakeBotAPI(token=BENCH_ENV["CLINICBOT_BOT_TOKEN"]) as api:
                settings = Settings(telegram_api_base=api.base_url, quiet_hours="00:00-00:00")  # type: ignore[call-arg]
                items, cards, visits = items_and_cards(size, args.due, now, sent_share=0.3)
                app = build_reminders(
                    settings, mis=BenchMis(visits), global_rate=1000.0, per_chat_interval=0.0
                )
                app.handle_event({}, Context(60))  # the run before: the cursor is at this hour
                populate_moto(items, cards)
                with metered() as meter:
                    report = app.handle_event({"time": now.isoformat()}, Context(1800))
                app.close()
            sent = sum(report["sent"].values())
            assert sent == args.due, report
            print(
                f"  {size:>15,}{args.due:>9}{meter.rcu:>9.1f}{meter.rcu / args.due:>9.3f}"
                f"{meter.items_read:>12}{meter.wcu / args.due:>9.2f}  {dict(meter.calls)}"
            )
        finally:
            mock.stop()


# ----------------------------------------------------------------------------- 3. cold start


def _init(function: str) -> str:
    return textwrap.dedent(
        f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("app", {str(ROOT / "functions" / function / "app.py")!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.APP is not None
        """
    )


def bench_cold_start(args: argparse.Namespace) -> None:
    from bench.cold_start import PY312, build_layer, cpu_seconds

    base = {k: v for k, v in os.environ.items() if not k.startswith(("CLINICBOT_", "AWS_", "PYTHON"))}
    settings: list[tuple[str, str, dict[str, str]]] = [("venv", sys.executable, {**base, **BENCH_ENV})]
    if args.layer:
        layer = build_layer("hash")
        settings.append(
            (
                "layer/hash",
                PY312,
                {**base, **BENCH_ENV, "PYTHONPATH": str(layer), "PYTHONDONTWRITEBYTECODE": "1"},
            )
        )
    print(f"  {'setting':<12}{'reminders init':>20}{'webhook init':>20}{'ratio':>8}")
    for name, python, env in settings:
        figures = []
        for function in ("reminders", "webhook"):
            samples = [cpu_seconds(python, _init(function), env) for _ in range(args.runs)]
            figures.append((min(samples), statistics.median(samples)))
        (r_best, r_med), (w_best, w_med) = figures
        print(
            f"  {name:<12}{r_best:>11.2f} /{r_med:>6.2f}{w_best:>13.2f} /{w_med:>6.2f}{r_best / w_best:>8.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000, help="due reminders for the throughput run")
    parser.add_argument("--rate", type=float, default=30.0, help="the limit the fake enforces (msg/s)")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added to every Bot API request")
    parser.add_argument("--budget", type=float, default=3600.0, help="the run's time budget (s)")
    parser.add_argument(
        "--table-sizes", type=lambda s: [int(x) for x in s.split(",")], default=[10_000, 100_000]
    )
    parser.add_argument("--due", type=int, default=200, help="due items in the read-unit runs")
    parser.add_argument(
        "--ddb-latency", type=float, default=0.008, help="simulated DynamoDB request time (s)"
    )
    parser.add_argument("--runs", type=int, default=3, help="cold-start samples")
    parser.add_argument(
        "--layer", action="store_true", help="also time the Lambda-shaped layer (slow first time)"
    )
    parser.add_argument("--only", choices=["throughput", "reads", "cold"], default=None)
    args = parser.parse_args()
    os.environ.update(BENCH_ENV)
    for name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        os.environ.pop(name, None)
    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("clinicbot").setLevel(logging.ERROR)
    if args.only in (None, "throughput"):
        print(
            f"Throughput: {args.count} due reminders, fake Bot API enforcing {args.rate:g} msg/s, "
            f"{args.latency * 1000:.0f} ms per request"
        )
        bench_throughput(args)
    if args.only in (None, "reads"):
        print(f"DynamoDB read units per due item ({args.due} due; 30 % of the rest already sent)")
        bench_reads(args)
    if args.only in (None, "cold"):
        print(f"Cold start, CPU seconds of a fresh interpreter (best / median of {args.runs})")
        bench_cold_start(args)


if __name__ == "__main__":
    asyncio.set_event_loop_policy(None)
    main()
