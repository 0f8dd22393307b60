"""What a month of one clinic costs on AWS, measured: 20,000 patient messages through the real functions.

    .venv/bin/python -m bench.cost_month                   # 1 simulated day at a month's intensity, scaled
    .venv/bin/python -m bench.cost_month --write-readme --write-model   # and rewrite README's table

How (everything the functions do is real; what AWS would add is modelled and printed):

1. The local stack: a moto server in its own thread (DynamoDB tables and SQS queues made from
   ``template.yaml``), the fake Bot API and a fake CRM on loopback, the four handlers of ``functions/``
   loaded by ``clinicbot.local.lambda_runner`` exactly as Lambda imports them, the embedded demo clinic as
   the MIS -- under a simulated clock (time-machine, frozen, moved event by event).
2. A sample of the month: ``--days`` days at the month's intensity, starting on a Monday. Patients arrive
   on a clinic's day curve (Moscow time) and talk in sessions: onboarding, booking through the booking
   wizard, looking at their visits, free text (the FAQ), call-back requests, writing to the clinic; they
   answer some reminders and surveys. Before the sample the clinic already has linked patients with visits
   around it (booked by phone), planned by a warm-up run of the MIS sync. The reminders function runs every
   5 minutes and the MIS sync every 15 (``rate()`` of the template); whatever the webhook queued goes
   through the hand-off function the way the SQS event source mapping delivers it.
3. Per invocation: CPU time of the handler's thread (moto, the fake Bot API and the CRM run in other
   threads), DynamoDB capacity units computed from the sizes of the items each request touched (moto
   answers ReturnConsumedCapacity with a constant: see ``clinicbot.metering.capacity``), SQS requests,
   Bot API calls, MIS and CRM calls (the metering's own counters), bytes logged, custom metrics emitted.
4. The month: webhook and hand-off quantities are scaled to ``--messages`` patient messages, scheduled
   runs to 30 days; cold starts come from a simulation of Lambda's execution environments over a whole
   month of arrivals (an environment idle for more than ``--idle-minutes`` is gone); the bill is priced
   with ``clinicbot/data/prices.json`` (``--region``), no free tiers.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import heapq
import io
import json
import logging
import math
import os
import random
import re
import resource
import statistics
import subprocess
import sys
import textwrap
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
MODEL_FILE = ROOT / "layers" / "clinicbot" / "clinicbot" / "data" / "cost_model.json"
MSK = ZoneInfo("Europe/Moscow")
REGION = "eu-central-1"
TOKEN = "123456789:BENCH-dummy-token"
SECRET = "bench-secret_0123456789"
BENCH_ENV = {
    "AWS_DEFAULT_REGION": REGION,
    "AWS_REGION": REGION,
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "CLINICBOT_BOT_TOKEN": TOKEN,
    "CLINICBOT_WEBHOOK_SECRET": SECRET,
    "CLINICBOT_CLINIC_NAME": "Клиника Демо",
    "CLINICBOT_CLINIC_ID": "bench",
    "CLINICBOT_STAGE": "bench",
    "CLINICBOT_STACK_NAME": "clinicbot-bench",
    "POWERTOOLS_SERVICE_NAME": "clinicbot",
    "POWERTOOLS_METRICS_NAMESPACE": "ClinicBot",
    "POWERTOOLS_TRACE_DISABLED": "true",
    "POWERTOOLS_LOG_LEVEL": "INFO",
}
FUNCTIONS = ("webhook", "reminders", "mis_sync", "handoff")
TIMEOUT_MS = {"webhook": 25_000, "handoff": 25_000, "reminders": 300_000, "mis_sync": 120_000}
MONTH_DAYS = 30
REMINDER_EVERY = timedelta(minutes=5)
SYNC_EVERY = timedelta(minutes=15)
STEP = timedelta(seconds=15)  # between two updates of one patient's session
ALARMS = 2  # HandoffDLQAlarm, MisSyncFailedAlarm (counted from the template below)

# A clinic's day (Moscow time): share of the day's patient sessions starting in each hour.
HOUR_WEIGHTS = [0.2, 0.1, 0.1, 0.1, 0.1, 0.2, 0.5, 2, 5, 8, 9, 9, 8, 7, 7, 7, 7, 7, 6.5, 5.5, 4, 3, 2, 1]
DAY_WEIGHTS = [1.1, 1.05, 1.05, 1.0, 1.0, 0.8, 0.5]  # Monday ... Sunday

# Sessions per month of a clinic with ~20,000 patient messages, and what each one does (see Sim.session).
SESSIONS_PER_MONTH = {
    "onboarding": 400,  # /start, consent, share phone
    "booking": 850,  # /menu, book, by specialty, specialty, doctor, day, time, confirm
    "visits": 400,  # /menu, my visits
    "faq": 4500,  # a question in free text
    "menu": 1000,  # /menu and /help
    "callback": 150,  # call me back: 6 steps
    "chat": 250,  # write to the clinic: 4 steps
}
SESSION_STEPS = {
    "onboarding": 3,
    "booking": 8,
    "visits": 2,
    "faq": 1,
    "menu": 2,
    "callback": 6,
    "chat": 4,
    "reaction": 1,
}
REACT_TO_REMINDER = 0.5  # share of reminders/surveys with buttons that the patient presses
LINKED_PATIENTS = 250  # patients linked before the sample (more than a sync run's page of 200)
VISITS_PER_DAY = 28  # visits of linked patients per day (booked by the bot or by phone)


# =================================================================================== measurement
@dataclass
class Invocation:
    fn: str
    at: float
    cpu_ms: float = 0.0
    wall_ms: float = 0.0
    ddb: int = 0
    rru: float = 0.0
    wru: float = 0.0
    rollup_wru: float = 0.0
    tables: set[str] = field(default_factory=set)
    sqs: int = 0
    botapi: int = 0
    out_bytes: int = 0
    log_bytes: int = 0
    warn_log_bytes: int = 0
    usage: dict[str, int] = field(default_factory=dict)
    metrics: set[str] = field(default_factory=set)  # the functions' own EMF metrics emitted
    metrics_nonzero: set[str] = field(default_factory=set)  # … of them with a value other than 0
    patient_updates: int = 0
    ops: dict[str, list[float]] = field(default_factory=dict)  # "Operation table" -> [requests, RRU, WRU]


_INFO_LINE = re.compile(r'"level":\s*"(DEBUG|INFO)"')


@dataclass(frozen=True)
class Deployment:
    """What ``template.yaml`` deploys with its parameters' defaults, as far as the bill is concerned."""

    log_level: str = "WARN"
    tracing: bool = False
    alarms: int = 0  # alarms deployed
    alarms_optional: int = 0  # alarms behind the Alarms parameter
    kms: bool = False
    sqs_pollers: bool = False  # an SQS event source mapping: its pollers receive around the clock
    scheduler: bool = False  # EventBridge Scheduler (billed per invocation) rather than rules (free)
    http_api: bool = True

    @property
    def platform_logs(self) -> bool:
        return self.log_level in ("DEBUG", "INFO")

    @classmethod
    def from_template(cls, template: dict[str, Any], **overrides: str) -> Deployment:
        params = {k: str(v.get("Default", "")) for k, v in (template.get("Parameters") or {}).items()}
        params.update(overrides)
        conditions = {
            "AlarmsOn": params.get("Alarms") == "on",
            "TracingOn": params.get("Tracing") == "on",
            "TablesUseKms": params.get("TableEncryption") == "aws-managed-kms",
        }
        resources = template["Resources"]
        deployed = {
            n: r
            for n, r in resources.items()
            if r.get("Condition") is None or conditions.get(r["Condition"], True)
        }
        alarms = [r for r in resources.values() if r.get("Type") == "AWS::CloudWatch::Alarm"]
        tracing = (template.get("Globals") or {}).get("Function", {}).get("Tracing")
        if isinstance(tracing, dict):  # !If [TracingOn, Active, PassThrough]
            cond, yes, no = tracing["Fn::If"]
            tracing = yes if conditions.get(cond) else no
        sse = [
            r["Properties"].get("SSESpecification")
            for r in deployed.values()
            if r["Type"] == "AWS::DynamoDB::Table"
        ]
        kms = any(
            (conditions.get(x["Fn::If"][0]) and x["Fn::If"][1].get("SSEType") == "KMS")
            if isinstance(x, dict) and "Fn::If" in x
            else isinstance(x, dict) and x.get("SSEType") == "KMS"
            for x in sse
        )
        events = [
            e
            for r in deployed.values()
            if r["Type"] == "AWS::Serverless::Function"
            for e in ((r.get("Properties") or {}).get("Events") or {}).values()
        ]
        queues = {n for n, r in deployed.items() if r["Type"] == "AWS::SQS::Queue"}
        esm_sqs = any(
            r["Type"] == "AWS::Lambda::EventSourceMapping"
            and any(q in json.dumps(r["Properties"].get("EventSourceArn")) for q in queues)
            for r in deployed.values()
        ) or any(e.get("Type") == "SQS" for e in events)
        return cls(
            log_level=params.get("LogLevel", "INFO"),
            tracing=tracing == "Active",
            alarms=sum(1 for r in deployed.values() if r.get("Type") == "AWS::CloudWatch::Alarm"),
            alarms_optional=sum(1 for r in alarms if r.get("Condition") == "AlarmsOn"),
            kms=kms,
            sqs_pollers=esm_sqs,
            scheduler=any(e.get("Type") == "ScheduleV2" for e in events)
            or any(r["Type"] == "AWS::Scheduler::Schedule" for r in deployed.values()),
            http_api=any(e.get("Type") == "HttpApi" for e in events),
        )


class CountingStream(io.TextIOBase):
    """Swallows what is written, counting UTF-8 bytes; keeps EMF documents (for the metrics they create)."""

    def __init__(self) -> None:
        self.bytes = 0
        self.warn_bytes = 0  # what is left at LogLevel WARN: records of WARNING and above, and EMF documents
        self.emf: list[dict[str, Any]] = []

    def write(self, text: str) -> int:
        size = len(text.encode("utf-8"))
        self.bytes += size
        if not _INFO_LINE.search(text):
            self.warn_bytes += size
        if '"_aws"' in text:
            for line in text.splitlines():
                with contextlib.suppress(ValueError):
                    doc = json.loads(line)
                    if isinstance(doc, dict) and "_aws" in doc:
                        self.emf.append(doc)
        return len(text)

    def reset(self) -> None:
        self.bytes = 0
        self.warn_bytes = 0
        self.emf.clear()


def metric_ids(doc: dict[str, Any], *, nonzero: bool = False) -> set[str]:
    """The custom metrics an EMF document creates (``nonzero``: only those with a value other than 0)."""
    ids = set()
    for directive in doc["_aws"].get("CloudWatchMetrics") or []:
        for dims in directive.get("Dimensions") or [[]]:
            dim = ",".join(f"{d}={doc.get(d)}" for d in sorted(dims))
            for metric in directive.get("Metrics") or []:
                value = doc.get(metric["Name"])
                values = value if isinstance(value, list) else [value]
                if nonzero and not any(v for v in values):
                    continue
                ids.add(f"{directive.get('Namespace')}:{metric['Name']}[{dim}]")
    return ids


class Recorder:
    """Counts what the functions ask of AWS, per invocation (main thread only)."""

    def __init__(self, schemas: dict[str, Any]) -> None:
        self.schemas = schemas
        self.current: Invocation | None = None
        self.esm_sqs = 0  # SQS requests outside the functions: Lambda's on-failure records sent to the DLQ
        self.warmup = Counter[str]()
        self.invocations: list[Invocation] = []
        self._side = threading.local()
        self._original: Any = None
        self.stream = CountingStream()

    # ---------------------------------------------------------------- the botocore hook
    @contextlib.contextmanager
    def installed(self) -> Iterator[Recorder]:
        from botocore.client import BaseClient

        original = BaseClient._make_api_call
        self._original = original
        recorder = self

        def hooked(client: Any, operation: str, params: dict[str, Any]) -> Any:
            # every botocore call is the functions' (main thread, or the asyncio executor threads the
            # reminders run its DynamoDB calls in); the servers on loopback make none. Side reads are ours.
            if getattr(recorder._side, "on", False):
                return original(client, operation, params)
            service = client.meta.service_model.service_name
            if service == "dynamodb":
                return recorder._dynamodb(client, operation, params)
            if service == "sqs":
                if recorder.current is not None:
                    recorder.current.sqs += 1
                else:
                    recorder.esm_sqs += 1
            return original(client, operation, params)

        BaseClient._make_api_call = hooked  # type: ignore[method-assign]
        try:
            yield self
        finally:
            BaseClient._make_api_call = original  # type: ignore[method-assign]

    def _side_call(self, client: Any, operation: str, params: dict[str, Any]) -> dict[str, Any]:
        self._side.on = True
        try:
            answer: dict[str, Any] = self._original(client, operation, params)
            return answer
        finally:
            self._side.on = False

    def _get(self, client: Any, table: str, key: dict[str, Any]) -> dict[str, Any] | None:
        item = self._side_call(
            client, "GetItem", {"TableName": table, "Key": key, "ConsistentRead": True}
        ).get("Item")
        return item or None

    def _dynamodb(self, client: Any, operation: str, params: dict[str, Any]) -> Any:
        from botocore.exceptions import ClientError

        from clinicbot.metering.capacity import (
            index_write_units,
            item_size,
            read_units,
            read_units_for_items,
            write_units,
        )

        inv = self.current
        rollup = operation == "UpdateItem" and str(
            (params.get("Key") or {}).get("pk", {}).get("S", "")
        ).startswith("USAGE#")
        rru = wru = 0.0
        tables: set[str] = set()

        def schema(table: str) -> Any:
            return self.schemas[table]

        writes: list[tuple[str, dict[str, Any], dict[str, Any] | None, dict[str, Any] | None, bool, str]] = []
        try:
            if operation == "GetItem":
                answer = self._original(client, operation, params)
                rru = read_units(item_size(answer.get("Item")), consistent=bool(params.get("ConsistentRead")))
                tables.add(params["TableName"])
                return answer
            if operation in ("Query", "Scan"):
                answer = self._original(client, operation, params)
                items = answer.get("Items") or []
                if (
                    any(k in params for k in ("FilterExpression", "ProjectionExpression"))
                    or params.get("Select") == "COUNT"
                ):
                    items = self._side_call(client, operation, _unfiltered(params)).get("Items") or []
                rru = read_units_for_items(items, consistent=bool(params.get("ConsistentRead")))
                tables.add(params["TableName"])
                return answer
            if operation == "BatchGetItem":
                answer = self._original(client, operation, params)
                for table, request in params["RequestItems"].items():
                    got = (answer.get("Responses") or {}).get(table) or []
                    consistent = bool(request.get("ConsistentRead"))
                    rru += sum(read_units(item_size(i), consistent=consistent) for i in got)
                    rru += read_units(0, consistent=consistent) * max(
                        0, len(request.get("Keys") or []) - len(got)
                    )
                    tables.add(table)
                return answer
            if operation == "TransactGetItems":
                answer = self._original(client, operation, params)
                for item in answer.get("Responses") or []:
                    rru += read_units(item_size(item.get("Item")), transactional=True)
                for entry in params.get("TransactItems") or []:
                    tables.add(entry["Get"]["TableName"])
                return answer
            # writes: the item before (a consistent read on the side), the call, the item after
            if operation in ("PutItem", "UpdateItem", "DeleteItem"):
                table = params["TableName"]
                key = params.get("Key") or schema(table).key_of(params.get("Item") or {})
                writes.append((table, key, self._get(client, table, key), None, False, operation))
            elif operation == "BatchWriteItem":
                for table, requests in params["RequestItems"].items():
                    for request in requests:
                        if "PutRequest" in request:
                            item = request["PutRequest"]["Item"]
                            key = schema(table).key_of(item)
                            writes.append((table, key, self._get(client, table, key), item, False, "PutItem"))
                        else:
                            key = request["DeleteRequest"]["Key"]
                            writes.append(
                                (table, key, self._get(client, table, key), None, False, "DeleteItem")
                            )
            elif operation == "TransactWriteItems":
                for entry in params["TransactItems"]:
                    ((kind, spec),) = entry.items()
                    table = spec["TableName"]
                    key = spec.get("Key") or schema(table).key_of(spec.get("Item") or {})
                    op = {"Put": "PutItem", "Update": "UpdateItem", "Delete": "DeleteItem"}.get(
                        kind, "ConditionCheck"
                    )
                    writes.append((table, key, self._get(client, table, key), spec.get("Item"), True, op))
            else:
                return self._original(client, operation, params)
            try:
                answer = self._original(client, operation, params)
            except ClientError:
                for table, _key, old, _new, tx, _op in writes:  # a refused write still costs its units
                    wru += write_units(item_size(old), 0, transactional=tx)
                    tables.add(table)
                raise
            for table, key, old, new, tx, op in writes:
                if op == "PutItem" and new is None:
                    new = params.get("Item")
                if op == "UpdateItem":
                    new = self._get(client, table, key)
                if op in ("DeleteItem", "ConditionCheck"):
                    new = None if op == "DeleteItem" else old
                if op == "ConditionCheck":
                    wru += write_units(item_size(old), 0, transactional=True)
                else:
                    wru += write_units(item_size(old), item_size(new), transactional=tx)
                    wru += index_write_units(old, new, schema(table), transactional=tx)
                tables.add(table)
            return answer
        finally:
            if inv is not None:
                inv.ddb += 1
                inv.rru += rru
                inv.wru += wru
                if rollup:
                    inv.rollup_wru += wru
                inv.tables |= tables
                op = inv.ops.setdefault(f"{operation} {','.join(sorted(tables)) or '-'}", [0, 0.0, 0.0])
                op[0] += 1
                op[1] += rru
                op[2] += wru
            else:
                self.warmup["ddb"] += 1


def function_cpu() -> dict[int, float]:
    """CPU seconds of the threads that run function code: this (main) thread and the asyncio executor's
    (``asyncio.to_thread``: the reminders run do their DynamoDB calls there). Not the moto server, the fake
    Bot API or the fake CRM: they stand in for other services."""
    clocks = {0: time.thread_time()}
    for thread in threading.enumerate():
        if thread.name.startswith("asyncio_") and thread.ident is not None:
            with contextlib.suppress(OSError, AttributeError):
                clocks[thread.ident] = time.clock_gettime(time.pthread_getcpuclockid(thread.ident))
    return clocks


def _cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    return sum(value - before.get(ident, 0.0) for ident, value in after.items())


def _unfiltered(params: dict[str, Any]) -> dict[str, Any]:
    """The same page without its filter and projection: the items DynamoDB evaluated (and bills)."""
    side = {
        k: v for k, v in params.items() if k not in ("FilterExpression", "ProjectionExpression", "Select")
    }
    used = " ".join(str(side.get(k, "")) for k in ("KeyConditionExpression",))
    names = {k: v for k, v in (side.get("ExpressionAttributeNames") or {}).items() if k in used}
    values = {
        k: v
        for k, v in (side.get("ExpressionAttributeValues") or {}).items()
        if re.search(re.escape(k) + r"\b", used)
    }
    side.pop("ExpressionAttributeNames", None)
    side.pop("ExpressionAttributeValues", None)
    if names:
        side["ExpressionAttributeNames"] = names
    if values:
        side["ExpressionAttributeValues"] = values
    return side


def init_cpu_seconds(function: str, env: dict[str, str], runs: int) -> float:
    """CPU seconds (user + sys) of a fresh interpreter importing ``functions/<fn>/app.py``: the INIT phase."""
    code = textwrap.dedent(
        f"""
        import importlib.util
        spec = importlib.util.spec_from_file_location("app", {str(ROOT / "functions" / function / "app.py")!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        """
    )
    samples = []
    for _ in range(runs):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        subprocess.run(
            [sys.executable, "-c", code],
            env=env,
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        samples.append((after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime))
    return statistics.median(samples)


# =================================================================================== the simulation
@dataclass
class Patient:
    user_id: int
    patient_id: str | None = None
    phone: str = ""


class Sim:
    def __init__(
        self, args: argparse.Namespace, modules: dict[str, Any], recorder: Recorder, world: dict[str, Any]
    ) -> None:
        self.args = args
        self.rng = random.Random(args.seed)
        self.modules = modules
        self.recorder = recorder
        self.botapi = world["botapi"]
        self.sqs = world["sqs"]
        self.handoff_lambda = world["handoff_lambda"]
        self.traveller = world["traveller"]
        self.mis = world["mis"]
        self.meters = {fn: _function_meter(fn, modules[fn]) for fn in FUNCTIONS}
        self.patients: list[Patient] = []
        self.next_user = 50_000_000
        self.events: list[tuple[float, int, str, Callable[[], None]]] = []
        self.seq = 0
        self.session_counts = Counter[str]()
        self.failed_steps = Counter[str]()
        self.recording = False

    # ------------------------------------------------------------------------- time
    def now(self) -> datetime:
        return datetime.now(UTC)

    def move(self, at: datetime) -> None:
        if at > self.now():
            self.traveller.move_to(at)

    def schedule(self, at: datetime, label: str, action: Callable[[], None]) -> None:
        self.seq += 1
        heapq.heappush(self.events, (at.timestamp(), self.seq, label, action))

    def run_until(self, end: datetime) -> None:
        while self.events and self.events[0][0] < end.timestamp():
            at, _, _label, action = heapq.heappop(self.events)
            self.move(datetime.fromtimestamp(at, UTC))
            action()

    # ------------------------------------------------------------------------- invoking
    def invoke(self, fn: str, event: dict[str, Any], *, patient: bool = False) -> Any:
        from clinicbot.local.lambda_runner import LambdaContext

        call, fm = self.meters[fn]
        inv = Invocation(fn=fn, at=time.time(), patient_updates=1 if patient else 0)
        stream = self.recorder.stream
        stream.reset()
        before_calls = len(self.botapi.calls)
        self.recorder.current = inv if self.recording else None
        saved = sys.stdout
        sys.stdout = stream
        cpu0, wall0 = function_cpu(), time.perf_counter()
        try:
            answer = call(event, LambdaContext(function_name=f"clinicbot-{fn}", timeout_ms=TIMEOUT_MS[fn]))
        finally:
            inv.cpu_ms = _cpu_delta(cpu0, function_cpu()) * 1000
            inv.wall_ms = (time.perf_counter() - wall0) * 1000
            sys.stdout = saved
            self.recorder.current = None
        direct = self.botapi.calls[before_calls:]
        inv.botapi = len(direct)
        inv.out_bytes = sum(len(json.dumps(c.params, ensure_ascii=False).encode()) + 400 for c in direct)
        if fn == "webhook" and isinstance(answer, dict):
            inv.out_bytes += len(str(answer.get("body") or "").encode()) + 200
        inv.log_bytes = stream.bytes
        inv.warn_log_bytes = stream.warn_bytes
        for doc in stream.emf:
            inv.metrics |= metric_ids(doc)
            inv.metrics_nonzero |= metric_ids(doc, nonzero=True)
        last = fm.last
        inv.usage = last.as_dict() if last is not None else {}
        if self.recording:
            self.recorder.invocations.append(inv)
        if fn == "webhook" and isinstance(answer, dict):
            self._execute(answer)
        if fn == "reminders" and self.recording:
            self._react(direct)
        return answer

    def _execute(self, response: dict[str, Any]) -> None:
        from clinicbot.local.chat import execute_response

        with contextlib.suppress(Exception):
            execute_response(response, self.botapi.api_url)

    def drain_queue(self) -> None:
        """What Lambda does with the webhook's asynchronous invocations of the hand-off function: one
        invocation per message (retried, then dead-lettered: clinicbot.local.handoff_runner.AsyncLambda)."""
        self.handoff_lambda.run_pending(lambda event: self.invoke("handoff", event))

    # ------------------------------------------------------------------------- patients
    def send(self, user: Any, update: dict[str, Any]) -> None:
        from tests.harness import http_event

        self.invoke("webhook", http_event(update, secret=SECRET), patient=True)
        self.drain_queue()

    def last_with_buttons(self, user_id: int) -> Any:
        for call in reversed(self.botapi.calls):
            shown = call.method in ("sendMessage", "editMessageText", "sendVenue")
            if shown and str(call.params.get("chat_id")) == str(user_id) and _buttons(call):
                return call
        return None

    def press(
        self, user: Any, label: str | None = None, *, prefix: str | None = None, index: int = 0
    ) -> bool:
        from tests.harness import callback_update

        call = self.last_with_buttons(user.id)
        if call is None:
            return False
        buttons = [b for b in _buttons(call) if b.get("callback_data")]
        if label is not None:
            buttons = [b for b in buttons if label.lower() in b["text"].lower()]
        if prefix is not None:
            buttons = [b for b in buttons if str(b["callback_data"]).startswith(prefix)]
        if len(buttons) <= index:
            return False
        message_id = (call.result or {}).get("message_id") if isinstance(call.result, dict) else None
        if message_id is None:
            message_id = call.params.get("message_id") or 1
        self.send(user, callback_update(user, buttons[index]["callback_data"], message_id=int(message_id)))
        return True

    def step(self) -> None:
        self.move(self.now() + STEP)

    def session(self, kind: str) -> None:
        from tests.harness import TgUser, contact_update, message_update

        self.session_counts[kind] += 1
        if kind == "onboarding" or not self.patients:
            self.next_user += 1
            patient = Patient(self.next_user, phone=f"+7 926 {self.next_user % 10_000_000:07d}")
            user = TgUser(id=patient.user_id, first_name="Пациент", last_name=None)
            self.send(user, message_update(user, "/start"))
            self.step()
            self.press(user, "✅")
            self.step()
            self.send(user, contact_update(user, patient.phone))
            self.patients.append(patient)
            return
        patient = self.rng.choice(self.patients)
        user = TgUser(id=patient.user_id, first_name="Пациент", last_name=None)
        ok = True
        if kind == "faq":
            self.send(user, message_update(user, self.rng.choice(FAQ_TEXTS)))
        elif kind == "menu":
            self.send(user, message_update(user, "/menu"))
            self.step()
            self.send(user, message_update(user, "/help"))
        elif kind == "visits":
            self.send(user, message_update(user, "/menu"))
            self.step()
            ok = self.press(user, "Мои визиты")
        elif kind == "booking":
            ok = self._book(user)
        elif kind == "callback":
            self.send(user, message_update(user, "/menu"))
            for label in ("Перезвоните мне", "На этот номер", "12:00–15:00", "Оплата", "Отправить"):
                self.step()
                if not self.press(user, label):
                    ok = False
                    break
        elif kind == "chat":
            self.send(user, message_update(user, "/menu"))
            self.step()
            ok = self.press(user, "Написать в клинику")
            if ok:
                self.step()
                self.send(user, message_update(user, "Можно ли перенести анализы на вечер?"))
                self.step()
                self.send(user, message_update(user, "Спасибо"))
        if not ok:
            self.failed_steps[kind] += 1

    def _book(self, user: Any) -> bool:
        from tests.harness import message_update

        self.send(user, message_update(user, "/menu"))
        self.step()
        if not self.press(user, "Записаться"):
            return False
        self.step()
        if not self.press(user, "По специальности"):
            return False
        for _ in range(4):  # specialty, doctor, then a day and a time
            self.step()
            call = self.last_with_buttons(user.id)
            buttons = [b for b in _buttons(call) if b.get("callback_data")] if call else []
            days = [b for b in buttons if str(b["callback_data"]).startswith("by:")]
            times = [b for b in buttons if str(b["callback_data"]).startswith("bt:")]
            if times:
                self.press(user, prefix="bt:", index=self.rng.randrange(len(times)))
                self.step()
                return self.press(user, "✅")
            if days:
                self.press(user, prefix="by:", index=min(len(days) - 1, self.rng.randrange(3)))
                continue
            skip = ("Назад", "Отмена", "›", "‹", "Меню", "Любой", "⚡")
            choices = [b for b in buttons if not any(w in b["text"] for w in skip)]
            if not choices:
                return False
            self.press(user, self.rng.choice(choices)["text"])
        return False

    def _react(self, direct: list[Any]) -> None:
        """Patients answer some reminders and surveys (a button), a while after they arrive."""
        from tests.harness import TgUser, callback_update

        for call in direct:
            if call.method != "sendMessage" or not call.ok:
                continue
            buttons = [b for b in _buttons(call) if b.get("callback_data")]
            if not buttons or self.rng.random() > REACT_TO_REMINDER:
                continue
            user = TgUser(id=int(call.params["chat_id"]), first_name="Пациент", last_name=None)
            data = buttons[0]["callback_data"]
            message_id = int((call.result or {}).get("message_id") or 1)
            at = self.now() + timedelta(minutes=self.rng.uniform(2, 90))

            def press(user: Any = user, data: str = data, message_id: int = message_id) -> None:
                self.session_counts["reaction"] += 1
                self.send(user, callback_update(user, data, message_id=message_id))

            self.schedule(at, "reaction", press)

    # ------------------------------------------------------------------------- ticks
    def reminders_tick(self) -> None:
        from tests.harness import load_event

        event = copy.deepcopy(load_event("reminders/scheduled"))
        event["time"] = self.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        self.invoke("reminders", event)

    def sync_tick(self) -> None:
        from tests.harness import load_event

        event = copy.deepcopy(load_event("mis_sync/scheduled"))
        event["time"] = self.now().strftime("%Y-%m-%dT%H:%M:%SZ")
        self.invoke("mis_sync", event)


FAQ_TEXTS = [
    "Сколько стоит приём терапевта?",
    "Как к вам проехать?",
    "До скольки вы работаете?",
    "Нужно ли приходить натощак на анализы?",
    "Есть ли парковка?",
    "здравствуйте",
    "Можно ли оплатить картой?",
]


def _buttons(call: Any) -> list[dict[str, Any]]:
    markup = call.params.get("reply_markup") or {}
    if isinstance(markup, str):
        try:
            markup = json.loads(markup)
        except ValueError:
            return []
    rows = markup.get("inline_keyboard") or []
    return [b for row in rows for b in row]


def _function_meter(fn: str, module: Any) -> tuple[Callable[..., Any], Any]:
    """The handler as Lambda calls it, and the metering that watches it (the module's own ``METER`` when
    ``functions/<fn>/app.py`` has it, else the same wiring applied here)."""
    from clinicbot import metering

    meter = getattr(module, "METER", None)
    if meter is not None:
        return module.handler, meter
    target = module.JOB if fn == "mis_sync" else module.APP
    fm = getattr(metering, f"for_{fn}")(target)
    return (lambda event, context: fm.call(module.handler, event, context)), fm


# =================================================================================== the month
def session_starts(
    rng: random.Random, start: datetime, days: float, per_month: dict[str, float]
) -> list[tuple[datetime, str]]:
    """Session start times over ``days`` days from ``start`` on the clinic's day curve."""
    total_hours = int(days * 24)
    hour_weight = [
        HOUR_WEIGHTS[(start + timedelta(hours=h)).astimezone(MSK).hour]
        * DAY_WEIGHTS[(start + timedelta(hours=h)).astimezone(MSK).weekday()]
        for h in range(total_hours)
    ]
    month_weight = sum(HOUR_WEIGHTS) * sum(DAY_WEIGHTS) / 7 * MONTH_DAYS
    out: list[tuple[datetime, str]] = []
    for kind, monthly in per_month.items():
        for h, weight in enumerate(hour_weight):
            expected = monthly * weight / month_weight
            n = _poisson(rng, expected)
            for _ in range(n):
                out.append((start + timedelta(hours=h, seconds=rng.uniform(0, 3600)), kind))
    return sorted(out)


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    threshold, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= threshold:
            return k
        k += 1


def month_arrivals(
    rng: random.Random, start: datetime, per_month: dict[str, float], steps: dict[str, int]
) -> list[float]:
    """A whole month of webhook arrival times (epoch seconds): sessions on the day curve, their steps 15 s apart."""
    times: list[float] = []
    for at, kind in session_starts(rng, start, MONTH_DAYS, per_month):
        times.extend(at.timestamp() + i * STEP.total_seconds() for i in range(max(1, steps.get(kind, 1))))
    return sorted(times)


# =================================================================================== main
def setup_world(args: argparse.Namespace) -> dict[str, Any]:
    import boto3
    from moto.server import ThreadedMotoServer

    from clinicbot.infra.template import create_tables, default_table_names, table_environment
    from clinicbot.local.fake_botapi import FakeBotAPI
    from clinicbot.local.fake_crm import TEST_CRM_SECRET, FakeCrm
    from clinicbot.local.handoff_runner import AsyncLambda, LambdaEndpoint, create_dead_letter_queue

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ["AWS_ENDPOINT_URL"] = endpoint
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=REGION)
    names = default_table_names()
    create_tables(client, names)
    os.environ.update(table_environment(names))
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    handoff_lambda = AsyncLambda(dead_letters=create_dead_letter_queue(sqs, prefix="bench"))
    lambda_endpoint = LambdaEndpoint(handoff_lambda).start()  # the webhook's LambdaOutbox calls it via boto3
    botapi = FakeBotAPI(token=TOKEN)
    botapi.start()
    crm = FakeCrm().start()
    os.environ.update(
        {
            "CLINICBOT_TELEGRAM_API_BASE": botapi.base_url,
            "CLINICBOT_HANDOFF_FUNCTION": handoff_lambda.function_name,
            "AWS_ENDPOINT_URL_LAMBDA": lambda_endpoint.url,
            "CLINICBOT_CRM_PROVIDER": "webhook",
            "CLINICBOT_CRM_URL": crm.webhook_url,
            "CLINICBOT_CRM_SECRET": TEST_CRM_SECRET,
        }
    )
    return {
        "server": server,
        "client": client,
        "names": names,
        "sqs": sqs,
        "handoff_lambda": handoff_lambda,
        "lambda_endpoint": lambda_endpoint,
        "botapi": botapi,
        "crm": crm,
    }


def seed_patients(sim: Sim, count: int) -> None:
    """Linked patients the clinic already has (cards + MIS records), as onboarding leaves them."""
    import asyncio

    from clinicbot.mis.models import PatientRegistration
    from clinicbot.storage.unit import StateUnit

    for _ in range(count):
        sim.next_user += 1
        phone = f"+7 925 {sim.next_user % 10_000_000:07d}"
        patient = asyncio.run(
            sim.mis.register_patient(PatientRegistration(first_name="Пациент", phone=phone))
        )
        unit = StateUnit(dialogue_ttl_seconds=72 * 3600)
        unit.save_card(
            sim.next_user,
            language="ru",
            consent_at=datetime.now(UTC),
            consent_version="1",
            patient_id=patient.id,
        )
        unit.flush()
        sim.patients.append(Patient(sim.next_user, patient.id, phone))


def seed_visits(sim: Sim, first: date, days: int, per_day: int) -> int:
    """Visits of linked patients (booked by phone) on each day: the reminders' steady state."""
    import asyncio

    booked = 0
    for offset in range(days):
        day = first + timedelta(days=offset)
        start = datetime.combine(day, dtime(8, 0), MSK)
        slots = asyncio.run(sim.mis.free_slots(start=start, end=start + timedelta(hours=13)))
        sim.rng.shuffle(slots)
        for slot in slots[:per_day]:
            patient = sim.rng.choice([p for p in sim.patients if p.patient_id])
            with contextlib.suppress(Exception):
                asyncio.run(sim.mis.book(patient.patient_id, slot.id))
                booked += 1
    return booked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000, help="patient messages in the month")
    parser.add_argument("--days", type=float, default=1.0, help="days simulated at the month's intensity")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument(
        "--sync-runs", type=int, default=0, help="MIS sync runs measured in the sample (0: all of them)"
    )
    parser.add_argument(
        "--memory",
        type=int,
        default=None,
        help="MB of every function (default: each function's MemorySize in the template)",
    )
    parser.add_argument("--idle-minutes", type=float, default=10.0, help="an environment idle longer is gone")
    parser.add_argument("--region", default=REGION, choices=["eu-central-1", "us-east-1"])
    parser.add_argument("--prices", help="another prices file (shape of clinicbot/data/prices.json)")
    parser.add_argument("--no-init-boost", action="store_true", help="INIT runs at memory/1769 of a vCPU too")
    parser.add_argument(
        "--init-runs", type=int, default=1, help="fresh interpreters per function for INIT CPU"
    )
    parser.add_argument(
        "--breakdown", action="store_true", help="DynamoDB requests and units per function and operation"
    )
    parser.add_argument("--write-readme", action="store_true", help="rewrite README.md's cost table")
    parser.add_argument("--write-model", action="store_true", help="write clinicbot/data/cost_model.json")
    args = parser.parse_args()

    import faulthandler
    import signal

    faulthandler.register(signal.SIGUSR1)  # kill -USR1 <pid>: where is it now?
    os.environ.update(BENCH_ENV)
    for name in ("AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        os.environ.pop(name, None)
    logging.getLogger().setLevel(logging.WARNING)
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # the moto server's request log
    import time_machine

    from clinicbot.infra.template import load_template, table_definitions
    from clinicbot.metering.capacity import TableSchema
    from clinicbot.metering.cost import LambdaModel

    started = time.perf_counter()
    world = setup_world(args)
    schemas = {
        world["names"][lid]: TableSchema.from_definition(world["names"][lid], d)
        for lid, d in table_definitions().items()
    }
    template = load_template()
    deployment = Deployment.from_template(template)
    memory = function_memory(template)
    if args.memory is not None:
        memory = dict.fromkeys(FUNCTIONS, args.memory)
    args.memory_by_fn = memory
    args.memory = memory["webhook"]

    print(
        f"measuring INIT CPU of each function in a fresh interpreter ({args.init_runs} run(s) each)…",
        flush=True,
    )
    env = {**os.environ}
    init_cpu = {fn: init_cpu_seconds(fn, env, args.init_runs) for fn in FUNCTIONS}

    # the sample starts on a Monday at 00:00 Moscow time, a week from now (a fresh demo schedule)
    today = datetime.now(MSK).date()
    monday = today + timedelta(days=(7 - today.weekday()) % 7 or 7)
    window_start = datetime.combine(monday, dtime(0, 0), MSK).astimezone(UTC)
    warmup_start = window_start - timedelta(days=3)
    window_end = window_start + timedelta(days=args.days)
    recorder = Recorder(schemas)

    with time_machine.travel(warmup_start, tick=False) as traveller, recorder.installed():
        from clinicbot.adapters.mis_demo import DemoClinic
        from clinicbot.local.lambda_runner import load_function

        mis = DemoClinic.shared()
        modules = {fn: load_function(fn) for fn in FUNCTIONS}
        _quiet_handlers(recorder.stream)
        world.update(traveller=traveller, mis=mis)
        sim = Sim(args, modules, recorder, world)
        print(
            f"warm-up: {LINKED_PATIENTS} linked patients, visits around the sample, two MIS sync runs…",
            flush=True,
        )
        seed_patients(sim, LINKED_PATIENTS)
        seeded = seed_visits(sim, warmup_start.astimezone(MSK).date(), int(args.days) + 7, VISITS_PER_DAY)
        sim.sync_tick()
        sim.sync_tick()
        sim.move(window_start - timedelta(minutes=1))
        sim.reminders_tick()  # what fell due before the sample is not part of it
        sim.recording = True
        # the sample
        tick = window_start
        while tick < window_end:
            sim.schedule(tick, "reminders", sim.reminders_tick)
            tick += REMINDER_EVERY
        # the MIS sync: every run of the sample by default (most skip the visits pass, which walks all linked
        # patients only every CLINICBOT_SYNC_VISITS_EVERY_MINUTES); --sync-runs N measures N runs spread evenly
        slots = int(args.days * 86400 // SYNC_EVERY.total_seconds())
        every = max(1, math.ceil(slots / args.sync_runs)) if args.sync_runs > 0 else 1
        for i in range(0, slots, every):
            sim.schedule(window_start + i * SYNC_EVERY + timedelta(seconds=1), "sync", sim.sync_tick)
        for at, kind in session_starts(sim.rng, window_start, args.days, dict(SESSIONS_PER_MONTH)):
            sim.schedule(at, kind, lambda kind=kind: sim.session(kind))
        print(f"sample: {args.days:g} days from {window_start.astimezone(MSK):%a %Y-%m-%d} (Moscow), "
              f"{len(sim.events)} events…", flush=True)  # fmt: skip
        sim.run_until(window_end)
        storage_bytes, storage_items = _table_storage(world["client"], world["names"])
        sim.recording = False

    wall = time.perf_counter() - started
    model = LambdaModel(memory_mb=args.memory, init_boost=not args.no_init_boost)
    result = month(args, sim, recorder, init_cpu, model, deployment, storage_bytes, window_start, template)
    report(args, result, sim, seeded, wall, storage_items, init_cpu)
    for fn in ("handoff",):
        with contextlib.suppress(Exception):
            modules[fn].APP.close()
    world["botapi"].stop()
    world["crm"].stop()
    world["server"].stop()


def _quiet_handlers(stream: CountingStream) -> None:
    """The functions' powertools loggers write JSON to stdout: count those bytes (log ingestion) instead."""
    for name in ("clinicbot", "", "service_undefined"):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and getattr(handler, "stream", None) in (
                sys.stdout,
                sys.stderr,
            ):
                handler.setStream(stream)  # type: ignore[arg-type]


def _table_storage(client: Any, names: dict[str, str]) -> tuple[int, int]:
    """Bytes DynamoDB bills as storage: item sizes + 100 bytes per item (and per index entry)."""
    from clinicbot.metering.capacity import item_size

    total = items = 0
    for table in names.values():
        kwargs: dict[str, Any] = {"TableName": table}
        while True:
            page = client.scan(**kwargs)
            for item in page.get("Items") or []:
                total += item_size(item) + 100
                items += 1
            if not page.get("LastEvaluatedKey"):
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return total, items


# =================================================================================== the month's profile
@dataclass
class MonthResult:
    profile: Any
    bill: Any
    quiet_bill: Any
    metrics_on_bill: Any
    per_fn: dict[str, dict[str, float]]
    scale_time: float
    scale_traffic: float
    patient_updates_sample: int
    rollup_per_update: float
    usage_metric_count: int
    memory_table: list[tuple[int, float, float, float, float]]
    what_if: dict[str, float]
    coefficients: dict[str, Any]
    deployment: Deployment


FUNCTION_RESOURCES = {
    "webhook": "WebhookFunction",
    "reminders": "ReminderFunction",
    "mis_sync": "MisSyncFunction",
    "handoff": "HandoffFunction",
}


def function_memory(template: dict[str, Any]) -> dict[str, int]:
    """MemorySize of each function: its own, else the Globals'."""
    default = int(((template.get("Globals") or {}).get("Function") or {}).get("MemorySize") or 128)
    resources = template["Resources"]
    return {
        fn: int((resources.get(rid, {}).get("Properties") or {}).get("MemorySize") or default)
        for fn, rid in FUNCTION_RESOURCES.items()
    }


def _memory_label(args: argparse.Namespace) -> str:
    mem = args.memory_by_fn
    if len(set(mem.values())) == 1:
        return f"{args.memory} MB"
    return ", ".join(f"{fn} {mb} MB" for fn, mb in mem.items())


def _app_log_bytes(inv: Invocation, dep: Deployment) -> int:
    return inv.log_bytes if dep.log_level in ("DEBUG", "INFO") else inv.warn_log_bytes


def month(
    args: argparse.Namespace,
    sim: Sim,
    recorder: Recorder,
    init_cpu: dict[str, float],
    model: Any,
    deployment: Deployment,
    storage_bytes: int,
    window_start: datetime,
    template: dict[str, Any],
) -> MonthResult:
    from clinicbot.metering.cost import (
        HOURS_PER_MONTH,
        EnvironmentPool,
        FunctionMonth,
        MonthProfile,
        Requests,
        decrypts,
        price,
    )
    from clinicbot.metering.emf import MESSAGES_METRIC, METRIC_NAMES
    from clinicbot.metering.prices import PriceBook

    book = PriceBook.load(args.region, args.prices)
    invs = recorder.invocations
    by_fn: dict[str, list[Invocation]] = defaultdict(list)
    for inv in invs:
        by_fn[inv.fn].append(inv)
    scale_time = MONTH_DAYS / args.days
    patient_updates = sum(i.patient_updates for i in invs)
    scale_traffic = args.messages / max(1, patient_updates * scale_time) * scale_time
    scale = {
        "webhook": scale_traffic,
        "handoff": scale_traffic,
        "reminders": scale_time,
        "mis_sync": scale_time,
    }

    def requests_of(inv: Invocation) -> Requests:
        return Requests(
            ddb=inv.ddb,
            sqs=inv.sqs,
            botapi=inv.botapi,
            mis=inv.usage.get("mis", 0),
            crm=inv.usage.get("crm", 0),
        )

    def billed(inv: Invocation, m: Any = model) -> float:
        return float(m.billed_ms(inv.fn, inv.cpu_ms, requests_of(inv)))

    # a whole month of arrivals for the cold-start simulation
    rng = random.Random(args.seed + 1)
    per_month = {k: float(v) for k, v in SESSIONS_PER_MONTH.items()}
    per_month["reaction"] = sim.session_counts["reaction"] * scale_time
    expected = sum(per_month[k] * SESSION_STEPS[k] for k in per_month)
    per_month = {k: v * args.messages / max(1.0, expected) for k, v in per_month.items()}
    month_start = window_start
    arrivals = month_arrivals(rng, month_start, per_month, SESSION_STEPS)
    reminder_times = [
        month_start.timestamp() + i * REMINDER_EVERY.total_seconds()
        for i in range(int(MONTH_DAYS * 86400 / REMINDER_EVERY.total_seconds()))
    ]
    sync_times = [
        month_start.timestamp() + i * SYNC_EVERY.total_seconds()
        for i in range(int(MONTH_DAYS * 86400 / SYNC_EVERY.total_seconds()))
    ]
    handoff_n = round(len(by_fn["handoff"]) * scale["handoff"])
    handoff_times = sorted(rng.sample(arrivals, min(handoff_n, len(arrivals)))) if arrivals else []
    timelines = {
        "webhook": arrivals,
        "reminders": reminder_times,
        "mis_sync": sync_times,
        "handoff": handoff_times,
    }

    def profile_for(
        m: Any,
        *,
        quiet: bool = False,
        metrics_on: bool = False,
        dep: Deployment = deployment,
        uniform: bool = False,
    ) -> tuple[MonthProfile, dict[str, dict[str, float]]]:
        prof = MonthProfile(alarms=dep.alarms, pitr=True)
        per_fn: dict[str, dict[str, float]] = {}
        m_all = m
        for fn in FUNCTIONS:
            m = (
                m_all
                if uniform
                else type(m_all)(memory_mb=args.memory_by_fn[fn], init_boost=m_all.init_boost)
            )
            sample = by_fn.get(fn, [])
            if quiet and fn in ("webhook", "handoff"):
                sample = []
            if quiet and fn == "reminders":
                sample = [i for i in sample if not any(k.startswith("msg.") for k in i.usage)] or sample
            n_month = len(timelines[fn]) if fn in ("reminders", "mis_sync") else len(sample) * scale[fn]
            if quiet and fn in ("webhook", "handoff"):
                n_month = 0
            mean_ms = statistics.fmean(billed(i, m) for i in sample) if sample else 0.0
            pool = EnvironmentPool(args.idle_minutes * 60)
            init_ms = m.init_ms(init_cpu[fn] * 1000)
            times = timelines[fn] if n_month else []
            for at in times:
                pool.invoke(at, mean_ms / 1000, init_ms / 1000)
            cold = pool.cold_starts * (n_month / max(1, len(times))) if times else 0
            prof.functions[fn] = FunctionMonth(
                fn, n_month, mean_ms * n_month, cold, init_ms * cold, m.memory_mb
            )
            per_fn[fn] = {
                "invocations": n_month,
                "mean_cpu_ms": statistics.fmean(i.cpu_ms for i in sample) if sample else 0.0,
                "mean_billed_ms": mean_ms,
                "cold_starts": cold,
                "init_ms": init_ms,
                "rru": statistics.fmean(i.rru for i in sample) if sample else 0.0,
                "wru": statistics.fmean(i.wru for i in sample) if sample else 0.0,
                "ddb": statistics.fmean(i.ddb for i in sample) if sample else 0.0,
                "log_bytes": statistics.fmean(_app_log_bytes(i, dep) for i in sample) if sample else 0.0,
                "sample": len(sample),
            }
            k = n_month / len(sample) if sample else 0.0
            prof.ddb_read_units += sum(i.rru for i in sample) * k
            prof.ddb_write_units += sum(i.wru for i in sample) * k
            prof.rollup_write_units += sum(i.rollup_wru for i in sample) * k
            prof.sqs_requests += sum(i.sqs for i in sample) * k
            prof.data_out_gb += sum(i.out_bytes for i in sample) * k / 1e9
            # Lambda's START/REPORT (+ INIT) lines, JSON format: only at SystemLogLevel INFO (LogLevel INFO/DEBUG)
            platform = (650 * n_month + 450 * cold) if dep.platform_logs else 0
            access = (
                300 * n_month if fn == "webhook" and dep.http_api else 0
            )  # the HTTP API's access log line
            prof.log_ingest_gb += (sum(_app_log_bytes(i, dep) for i in sample) * k + platform + access) / 1e9
            if fn == "webhook" and dep.http_api:
                prof.http_api_requests += n_month
        if not quiet:
            prof.sqs_requests += recorder.esm_sqs * scale["handoff"]
        if dep.sqs_pollers:
            # an SQS event source mapping polls with 5 pollers, each a 20-second long poll, around the clock
            prof.sqs_idle_receives = 5 * 3 * 60 * 24 * MONTH_DAYS
        if dep.scheduler:  # EventBridge Scheduler; a rule's scheduled events are free
            prof.scheduler_invocations = len(reminder_times) + len(sync_times)
        # Tracing: Active: at this traffic the default sampling rule (1 a second + 5 %) records every invocation
        if dep.tracing:
            prof.xray_traces = sum(f.invocations for f in prof.functions.values())
        prof.log_storage_gb = (
            prof.log_ingest_gb
        )  # 30-day retention: a month of logs kept, uncompressed (upper bound)
        prof.ddb_storage_gb = storage_bytes / 1e9
        # custom metrics: hours with data, from the sample (what the functions emitted) scaled to the month
        hours: dict[str, set[int]] = defaultdict(set)
        usage_hours: dict[str, set[int]] = defaultdict(set)
        for inv in invs:
            if quiet and inv.fn in ("webhook", "handoff"):
                continue
            hour = int((inv.at - window_start.timestamp()) // 3600)
            for metric in inv.metrics:
                hours[metric].add(hour)
            for counter, name in METRIC_NAMES.items():
                if inv.usage.get(counter):
                    usage_hours[name].add(hour)
            for key in inv.usage:
                if key.startswith("msg."):
                    usage_hours[f"{MESSAGES_METRIC}[kind={key[4:]}]"].add(hour)
        sample_hours = max(1, math.ceil(args.days * 24))

        def month_hours(h: set[int]) -> float:
            return min(HOURS_PER_MONTH, len(h) / sample_hours * HOURS_PER_MONTH)

        prof.metric_hours = {m_: month_hours(h) for m_, h in hours.items()}
        if metrics_on:
            prof.metric_hours.update({f"usage:{m_}": month_hours(h) for m_, h in usage_hours.items()})
            prof.usage_metric_names = frozenset(f"usage:{m_}" for m_ in usage_hours)
        # KMS: DynamoDB re-decrypts a table key for a caller after 5 minutes (modelled, per function and table)
        # on the month's timeline of each function: the share of its invocations that touched each table
        kms = 0
        for fn in FUNCTIONS:
            sample = by_fn.get(fn, [])
            if not sample or (quiet and fn in ("webhook", "handoff")):
                continue
            touched = Counter(t for inv in sample for t in inv.tables)
            for _table, n in touched.items():
                step = max(1, round(len(sample) / n))
                kms += decrypts(timelines[fn][::step])
        prof.kms_requests = kms if dep.kms else 0
        return prof, per_fn

    profile, per_fn = profile_for(model)
    bill = price(profile, book)
    quiet_profile, _ = profile_for(model, quiet=True)
    quiet_bill = price(quiet_profile, book)
    on_profile, _ = profile_for(model, metrics_on=True)
    metrics_on_bill = price(on_profile, book)

    # the knobs: the same month priced with one parameter of the template changed (model only)
    def with_params(**params: str) -> float:
        dep = Deployment.from_template(template, **params)
        return float(price(profile_for(model, dep=dep)[0], book).total)

    what_if = {
        f"Alarms=on ({deployment.alarms_optional} alarms)": with_params(Alarms="on"),
        "Tracing=on (X-Ray)": with_params(Tracing="on"),
        "TableEncryption=aws-managed-kms": with_params(TableEncryption="aws-managed-kms"),
        "LogLevel=INFO (and Lambda's START/REPORT lines)": with_params(LogLevel="INFO"),
        "all four": with_params(
            Alarms="on", Tracing="on", TableEncryption="aws-managed-kms", LogLevel="INFO"
        ),
    }

    memory_table = []
    for mb in (128, 256, 512, 1024, 1769):
        m = type(model)(memory_mb=mb, init_boost=model.init_boost)
        prof, _ = profile_for(m, uniform=True)
        lam = sum(ln.usd for ln in price(prof, book).lines if ln.service == "Lambda")
        warm = statistics.median(billed(i, m) for i in by_fn["webhook"]) if by_fn["webhook"] else 0
        cold_boost = m.init_ms(init_cpu["webhook"] * 1000) + warm
        cold_plain = type(model)(memory_mb=mb, init_boost=False).init_ms(init_cpu["webhook"] * 1000) + warm
        memory_table.append((mb, lam, warm, cold_boost, cold_plain))

    webhook_invs = by_fn["webhook"]
    rollup_per_update = sum(i.rollup_wru for i in webhook_invs) / max(1, len(webhook_invs))
    coefficients = {
        fn: {
            "rru_per_invocation": round(per_fn[fn]["rru"], 4),
            "wru_per_invocation": round(per_fn[fn]["wru"], 4),
            "log_bytes_per_invocation": round(
                per_fn[fn]["log_bytes"] + (650 if deployment.platform_logs else 0), 1
            ),
            "cpu_ms_per_invocation": round(per_fn[fn]["mean_cpu_ms"], 2),
            "billed_ms_per_invocation": round(per_fn[fn]["mean_billed_ms"], 1),
        }
        for fn in FUNCTIONS
    }
    coefficients["_sqs_requests_per_handoff"] = round(
        (sum(i.sqs for i in invs if i.fn == "webhook") + recorder.esm_sqs)
        / max(1, sum(i.usage.get("handoffs", 0) for i in invs)),
        3,
    )
    coefficients["_kms_requests_per_month"] = round(profile.kms_requests, 1)
    coefficients["_storage_gb"] = round(profile.ddb_storage_gb, 6)
    return MonthResult(
        profile, bill, quiet_bill, metrics_on_bill, per_fn, scale_time, scale_traffic, patient_updates,
        rollup_per_update, len(on_profile.usage_metric_names), memory_table, what_if, coefficients, deployment,
    )  # fmt: skip


# =================================================================================== output
def report(
    args: argparse.Namespace,
    r: MonthResult,
    sim: Sim,
    seeded: int,
    wall: float,
    storage_items: int,
    init_cpu: dict[str, float],
) -> None:
    from clinicbot.metering.prices import PriceBook

    book = PriceBook.load(args.region, args.prices)
    usage = Counter[str]()
    for inv in sim.recorder.invocations:
        usage.update(inv.usage)
    print()
    print(f"Sample: {args.days:g} simulated days, {r.patient_updates_sample:,} patient messages, "
          f"{len(sim.recorder.invocations):,} invocations, {wall:.0f} s of wall time; {seeded} visits seeded, "
          f"{LINKED_PATIENTS} linked patients before it.")  # fmt: skip
    print(f"Scaled to the month: x{r.scale_traffic:.2f} (webhook, hand-off: {args.messages:,} patient messages), "
          f"x{r.scale_time:.1f} (scheduled runs: 30 days).")  # fmt: skip
    print("Sessions in the sample: " + ", ".join(f"{k} {v}" for k, v in sorted(sim.session_counts.items()))
          + (f"; steps not found: {dict(sim.failed_steps)}" if sim.failed_steps else ""))  # fmt: skip
    msgs = {k[4:]: v for k, v in usage.items() if k.startswith("msg.")}
    print(f"Usage counted by the metering in the sample: updates {usage['updates']}, messages {msgs}, "
          f"hand-offs {usage['handoffs']}, MIS calls {usage['mis']}, CRM calls {usage['crm']}")  # fmt: skip
    print()
    print(f"Per invocation (means over the sample; billed = CPU x 1769/MB ({_memory_label(args)}) + waits "
          "for DynamoDB 6 ms, SQS 10 ms, Bot API 40 ms, MIS 60 ms, CRM 120 ms per request):")  # fmt: skip
    print(f"{'function':<10}{'month':>10}{'cpu ms':>9}{'billed ms':>11}{'DDB req':>9}{'RRU':>8}{'WRU':>8}"
          f"{'log B':>8}{'cold':>7}{'INIT cpu s':>12}{'INIT ms':>9}")  # fmt: skip
    for fn in FUNCTIONS:
        p = r.per_fn[fn]
        print(f"{fn:<10}{p['invocations']:>10,.0f}{p['mean_cpu_ms']:>9.1f}{p['mean_billed_ms']:>11.1f}{p['ddb']:>9.2f}"
              f"{p['rru']:>8.2f}{p['wru']:>8.2f}{p['log_bytes']:>8.0f}{p['cold_starts']:>7.0f}{init_cpu[fn]:>12.2f}"
              f"{p['init_ms']:>9.0f}")  # fmt: skip
    if args.breakdown:
        print_breakdown(sim.recorder.invocations)
    print(f"Usage rollup: {r.rollup_per_update:.3f} WRU per webhook update on top of its budget of 1 read + 1 write "
          f"(N = 50 alone: 0.020; at a clinic's pace the T = 300 s rule flushes first, which bounds what a "
          f"reclaimed container can lose to 5 minutes of updates).")  # fmt: skip
    print()
    print(f"The month's bill, {book.region_name} ({args.region}), on-demand list prices of {book.taken_on}, "
          "no free tier (* = paid whatever the traffic):")  # fmt: skip
    print(r.bill.text())
    dominant = r.bill.dominant()
    goal = 0.10
    verdict = (
        "met"
        if r.bill.total <= goal
        else f"missed by ${r.bill.total - goal:.4f} ({r.bill.total / goal:.1f} x)"
    )
    print()
    print(f"Goal <= ${goal:.2f}/month: {verdict}. Dominant line: {dominant.service} / {dominant.item} "
          f"(${dominant.usd:.4f}, {r.bill.share(dominant):.0%}).")  # fmt: skip
    print("By service: " + ", ".join(f"{s} ${v:.4f}" for s, v in r.bill.by_service().items()))
    print(f"Paid whatever the traffic: ${r.bill.fixed_total:.4f}. A quiet month (no patient writes; the schedules "
          f"still run): ${r.quiet_bill.total:.4f}.")  # fmt: skip
    print(f"With CLINICBOT_USAGE_METRICS=on ({r.usage_metric_count} custom metrics for this clinic): "
          f"${r.metrics_on_bill.total:.4f} (+${r.metrics_on_bill.total - r.bill.total:.4f}).")  # fmt: skip
    print(f"What 20,000 messages add to a quiet month: ${r.bill.total - r.quiet_bill.total:.4f}.")
    alone = r.bill.total - r.bill.free_tier_usd(book)
    print(f"Alone in its own AWS account (the always-free offers taken off: Lambda's 1 M requests and 400,000 "
          f"GB-s, CloudWatch's, KMS's…; none for DynamoDB requests): ${alone:.4f}.")  # fmt: skip
    print("The same month if other functions' settings changed (model only):")
    for label, total in r.what_if.items():
        print(f"  {label:<74} ${total:.4f}")
    print()
    print("The knob: memory size (every function; CPU is memory/1769 of a vCPU below 1,769 MB).")
    print(
        f"{'MB':>6}{'Lambda $/month':>16}{'warm update ms':>16}{'cold start ms':>15}{'(no INIT boost)':>17}"
    )
    for mb, lam, warm, cold, cold_plain in r.memory_table:
        print(f"{mb:>6}{lam:>16.4f}{warm:>16.0f}{cold:>15.0f}{cold_plain:>17.0f}")
    unverified = book.unverified
    if unverified:
        print(f"\nPrices marked unverified in {args.region}: {', '.join(unverified)}.")
    if args.write_readme:
        write_readme(args, r, book)
        print(f"README.md: cost table rewritten ({args.region}).")
    if args.write_model:
        write_model(args, r, book)
        print(f"{MODEL_FILE.relative_to(ROOT)} written.")


def print_breakdown(invocations: list[Invocation]) -> None:
    """DynamoDB per invocation of each function, by operation and table (means over the sample)."""
    for fn in FUNCTIONS:
        runs = [i for i in invocations if i.fn == fn]
        if not runs:
            continue
        total: dict[str, list[float]] = defaultdict(lambda: [0, 0.0, 0.0])
        for inv in runs:
            for key, (n, rru, wru) in inv.ops.items():
                t = total[key]
                t[0] += n
                t[1] += rru
                t[2] += wru
        print(f"  {fn} ({len(runs)} invocations): per invocation")
        for key, (n, rru, wru) in sorted(total.items(), key=lambda kv: -(kv[1][1] / 4 + kv[1][2])):
            print(
                f"    {key:<60} req {n / len(runs):7.2f}  RRU {rru / len(runs):8.2f}  WRU {wru / len(runs):7.2f}"
            )


def write_model(args: argparse.Namespace, r: MonthResult, book: Any) -> None:
    data = {
        "generated_by": "bench/cost_month.py",
        "generated_on": datetime.now(UTC).date().isoformat(),
        "sample_days": args.days,
        "memory_mb": args.memory,
        "memory_mb_by_function": dict(args.memory_by_fn),
        "idle_minutes": args.idle_minutes,
        "region": args.region,
        "functions": {fn: r.coefficients[fn] for fn in FUNCTIONS},
        "sqs_requests_per_handoff": r.coefficients["_sqs_requests_per_handoff"],
        "kms_requests_per_month": r.coefficients["_kms_requests_per_month"],
        "storage_gb": r.coefficients["_storage_gb"],
        "alarms": r.profile.alarms,
        "sqs_idle_receives_per_month": r.profile.sqs_idle_receives,
        "functions_metric_months": round(sum(r.profile.metric_hours.values()) / 730.0, 3),
        "xray_tracing": 1 if r.profile.xray_traces else 0,
        # the month the README's table shows (tests/unit/test_cost_readme.py checks that they agree)
        "month_total_usd": round(r.bill.total, 4),
        "month_dominant_line": f"{r.bill.dominant().service} / {r.bill.dominant().item}",
        "month_lines_usd": {f"{ln.service} / {ln.item}": round(ln.usd, 4) for ln in r.bill.lines},
        "platform_logs": 1 if r.deployment.platform_logs else 0,
        "http_api": 1 if r.deployment.http_api else 0,
        "scheduler": 1 if r.deployment.scheduler else 0,
    }
    MODEL_FILE.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def write_readme(args: argparse.Namespace, r: MonthResult, book: Any) -> None:
    start, end = "<!-- cost-table:start -->", "<!-- cost-table:end -->"
    text = README.read_text(encoding="utf-8")
    if start not in text or end not in text:
        raise SystemExit(f"README.md has no {start} … {end} section")
    dominant = r.bill.dominant()
    memory = "\n".join(
        f"| {mb} | {lam:.4f} | {warm:.0f} | {cold:.0f} | {plain:.0f} |"
        for mb, lam, warm, cold, plain in r.memory_table
    )
    body = (
        f"\n`python -m bench.cost_month --days {args.days:g}` ({book.region_name}, list prices of {book.taken_on}, "
        f"no free tier; {args.messages:,} patient messages, {_memory_label(args)}, cold start after "
        f"{args.idle_minutes:g} idle minutes):\n\n"
        f"{r.bill.markdown()}\n\n"
        f"Dominant line: **{dominant.service} / {dominant.item}** (${dominant.usd:.4f}, {r.bill.share(dominant):.0%}). "
        f"Goal ≤ $0.10: {'met' if r.bill.total <= 0.10 else f'missed by ${r.bill.total - 0.10:.4f}'}. "
        f"Paid whatever the traffic: ${r.bill.fixed_total:.4f}; a quiet month: ${r.quiet_bill.total:.4f}; "
        f"with `CLINICBOT_USAGE_METRICS=on`: ${r.metrics_on_bill.total:.4f}; what the messages add to a quiet "
        f"month: ${r.bill.total - r.quiet_bill.total:.4f}. A clinic alone in its own AWS account, after AWS's "
        f"always-free offers (Lambda's 1 million requests and 400,000 GB-s a month and the like; none for "
        f"DynamoDB requests): ${r.bill.total - r.bill.free_tier_usd(book):.4f}.\n\n"
        "| the same month if … (model only) | USD/month |\n|---|---:|\n"
        + "".join(f"| {label} | {total:.4f} |\n" for label, total in r.what_if.items())
        + "\n"
        "| memory MB | Lambda $/month | warm update ms | cold start ms | cold start ms, no INIT boost |\n"
        "|---:|---:|---:|---:|---:|\n"
        f"{memory}\n"
    )
    before, rest = text.split(start, 1)
    _, after = rest.split(end, 1)
    README.write_text(before + start + body + end + after, encoding="utf-8")


if __name__ == "__main__":
    main()
