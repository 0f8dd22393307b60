"""Metering a Lambda function: one :class:`Meter` per container, wrapped around the handler.

``functions/<fn>/app.py`` builds its app, then ``METER = metering.for_<fn>(APP)`` (which also instruments
the app's MIS port, CRM port, outbox and Bot API clients) and decorates its handler with
``@METER.handler``. Each invocation then:

1. gets a fresh :class:`~clinicbot.metering.usage.Usage` in the context (the ports record into it);
2. after the handler returns, adds what only the answer tells (the webhook's outcome and the reply in its
   response body; the reminders run's messages by kind), its invocation count and wall time, and on the
   first invocation of a container the cold start and the CPU spent before it (the INIT phase);
3. publishes it per invocation (EMF metrics, or one ``usage`` log line: :mod:`clinicbot.metering.emf`);
4. adds it to the container's :class:`~clinicbot.metering.rollup.RollupBuffer`, flushed every N invocations
   or T seconds (event-driven functions) or at the end of every scheduled run that did something billable
   (sent a message, called the MIS); an idle scheduled run (the reminders every 5 minutes with nothing
   due) only adds its invocation to the buffer, flushed by the N/T rule with the next billable run.

Metering never fails an invocation: its own errors are logged and swallowed.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import re
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from clinicbot.metering.emf import EmfPublisher
from clinicbot.metering.instrument import (
    CountingProxy,
    OutboxProxy,
    count_response_body,
    meter_bot_api_client,
    port_methods,
    webhook_chat_capture,
    webhook_request_middleware,
)
from clinicbot.metering.rollup import DynamoRollupStore, RollupBuffer, RollupStore
from clinicbot.metering.usage import MessageKind, Name, Usage, current_usage, message_kind_of_reminder

__all__ = [
    "DEFAULT_CLINIC_ID",
    "FunctionMeter",
    "Meter",
    "MeteringConfig",
    "for_handoff",
    "for_mis_sync",
    "for_reminders",
    "for_webhook",
    "valid_clinic_id",
]

log = logging.getLogger(__name__)

DEFAULT_CLINIC_ID = "demo"
_CLINIC_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
Observe = Callable[[Mapping[str, Any], Any, Usage], None]


def valid_clinic_id(value: str) -> str:
    if not _CLINIC_RE.match(value or ""):
        raise ValueError("a clinic id is 1-64 characters of A-Z, a-z, 0-9, '_', '.' and '-'")
    return value


def _flag(value: str | None, default: bool) -> bool:
    if value is None or value == "":
        return default
    return value.strip().lower() in ("1", "true", "on", "yes", "emf")


@dataclass(frozen=True)
class MeteringConfig:
    """``CLINICBOT_CLINIC_ID`` (the ``clinic`` dimension and the rollup's sort key), ``CLINICBOT_USAGE_METRICS``
    (``on``: CloudWatch custom metrics via EMF; ``off``, the default: a log line only),
    ``CLINICBOT_USAGE_FLUSH_INVOCATIONS`` (N, 50) and ``CLINICBOT_USAGE_FLUSH_SECONDS`` (T, 300),
    ``CLINICBOT_USAGE_ROLLUP`` (``off`` disables the rollup writes)."""

    clinic: str = DEFAULT_CLINIC_ID
    metrics: bool = False
    flush_invocations: int = 50
    flush_seconds: float = 300.0
    rollup: bool = True

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> MeteringConfig:
        env = os.environ if env is None else env
        return cls(
            clinic=valid_clinic_id(env.get("CLINICBOT_CLINIC_ID") or DEFAULT_CLINIC_ID),
            metrics=_flag(env.get("CLINICBOT_USAGE_METRICS"), False),
            flush_invocations=max(1, int(env.get("CLINICBOT_USAGE_FLUSH_INVOCATIONS") or 50)),
            flush_seconds=max(0.0, float(env.get("CLINICBOT_USAGE_FLUSH_SECONDS") or 300)),
            rollup=_flag(env.get("CLINICBOT_USAGE_ROLLUP"), True),
        )


class Meter:
    """One function's metering in one container."""

    def __init__(
        self,
        function: str,
        *,
        config: MeteringConfig | None = None,
        store: RollupStore | None = None,
        clock: Callable[[], float] = time.time,
        flush_every_run: bool = False,
    ) -> None:
        self.function = function
        self.config = config or MeteringConfig.from_env()
        self.emf = EmfPublisher(clinic=self.config.clinic, function=function, enabled=self.config.metrics)
        self.buffer = RollupBuffer(
            store=store if store is not None else DynamoRollupStore(),
            clinic=self.config.clinic,
            max_invocations=self.config.flush_invocations,
            max_seconds=self.config.flush_seconds,
            clock=clock,
        )
        self.flush_every_run = flush_every_run
        self._cold = True
        self.last: Usage | None = None

    @contextmanager
    def invocation(self) -> Iterator[Usage]:
        """Counts recorded inside land in the yielded usage; published and buffered on the way out."""
        usage = Usage()
        if self._cold:
            self._cold = False
            usage.add(f"cold.{self.function}")
            usage.add(f"initms.{self.function}", int(time.process_time() * 1000))
        token = current_usage.set(usage)
        started = time.perf_counter()
        try:
            yield usage
        finally:
            current_usage.reset(token)
            usage.add(f"inv.{self.function}")
            usage.add(f"ms.{self.function}", max(1, math.ceil((time.perf_counter() - started) * 1000)))
            self.finish(usage)

    def finish(self, usage: Usage) -> None:
        self.last = usage
        try:
            self.emf.publish(usage)
        except Exception:
            log.warning("usage metrics could not be published", exc_info=True)
        if not self.config.rollup:
            return
        self.buffer.add(usage)
        if self.flush_every_run and _billable(usage):
            self.buffer.flush()
        else:
            self.buffer.maybe_flush()

    def flush(self) -> int:
        return self.buffer.flush() if self.config.rollup else 0


_BOOKKEEPING = ("inv.", "ms.", "cold.", "initms.")


def _billable(usage: Usage) -> bool:
    """Counts beyond the invocation's own bookkeeping: messages, MIS or CRM calls, updates, hand-offs."""
    return any(v and not k.startswith(_BOOKKEEPING) for k, v in usage.as_dict().items())


class FunctionMeter:
    """A :class:`Meter` plus what a function's answer says (``observe``)."""

    def __init__(self, meter: Meter, observe: Observe | None = None) -> None:
        self.meter = meter
        self.observe = observe

    def call(self, fn: Callable[..., Any], event: Mapping[str, Any], *args: Any) -> Any:
        with self.meter.invocation() as usage:
            result = fn(event, *args)
            if self.observe is not None:
                try:
                    self.observe(event, result, usage)
                except Exception:
                    log.warning("usage could not be read from the answer", exc_info=True)
            return result

    def handler(self, fn: Callable[..., Any]) -> Callable[..., Any]:
        """Decorate a Lambda handler ``(event, context)``."""

        @functools.wraps(fn)
        def metered(event: Mapping[str, Any], context: Any = None) -> Any:
            return self.call(fn, event, context)

        return metered

    def wrap_app(self, app: Any) -> Any:
        """``app`` whose ``handle_event`` is metered (the test harness holds an app, not a handler)."""
        return _MeteredApp(app, self)

    @property
    def last(self) -> Usage | None:
        return self.meter.last

    def flush(self) -> int:
        return self.meter.flush()


class _MeteredApp:
    def __init__(self, app: Any, function_meter: FunctionMeter) -> None:
        self._app = app
        self._fm = function_meter

    def handle_event(self, event: Mapping[str, Any], *args: Any) -> Any:
        return self._fm.call(self._app.handle_event, event, *args)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._app, name)


def _mis_methods() -> frozenset[str]:
    from clinicbot.mis.port import MisPort

    return port_methods(MisPort)


def _crm_methods() -> frozenset[str]:
    from clinicbot.handoff.port import CrmPort

    return port_methods(CrmPort) - {"close"}


def _counting(target: Any, counter: Name, methods: frozenset[str]) -> Any:
    return (
        target
        if target is None or isinstance(target, CountingProxy)
        else CountingProxy(target, counter, methods)
    )


# ----------------------------------------------------------------------------------- the functions
def for_webhook(
    app: Any,
    *,
    meter: Meter | None = None,
    store: RollupStore | None = None,
    config: MeteringConfig | None = None,
) -> FunctionMeter:
    """The webhook (``clinicbot.telegram.webhook.WebhookApp``): counts updates by outcome, replies and
    relays (the response body and the Bot API calls), hand-offs queued, MIS calls."""
    meter = meter or Meter("webhook", config=config, store=store)
    processor = app.processor
    dispatcher = processor.dispatcher
    if not getattr(dispatcher, "_clinicbot_metered", False):
        dispatcher["mis"] = _counting(dispatcher.get("mis"), Name.MIS_CALLS, _mis_methods())
        outbox = dispatcher.get("outbox")
        if outbox is not None and not isinstance(outbox, CountingProxy):
            dispatcher["outbox"] = OutboxProxy(outbox)
        dispatcher.update.outer_middleware(webhook_chat_capture())
        processor.bot.session.middleware(webhook_request_middleware())
        dispatcher._clinicbot_metered = True

    def observe(event: Mapping[str, Any], response: Any, usage: Usage) -> None:
        outcome = processor.last_outcome
        status = getattr(outcome, "status", None)
        if status in (400, 401, 403):
            usage.add(Name.REJECTED)
            return
        if getattr(outcome, "outcome", None) == "duplicate":
            usage.add(Name.DUPLICATES)
            return
        usage.add(Name.UPDATES)
        if isinstance(response, Mapping):
            count_response_body(response)

    return FunctionMeter(meter, observe)


def for_reminders(
    app: Any,
    *,
    meter: Meter | None = None,
    store: RollupStore | None = None,
    config: MeteringConfig | None = None,
) -> FunctionMeter:
    """The reminders function (``clinicbot.reminders.app.RemindersApp``): messages by kind from the run's
    report, MIS calls (the visit checks). Flushes the rollup at the end of every run."""
    meter = meter or Meter("reminders", config=config, store=store, flush_every_run=True)
    runner = app.runner
    runner.mis = _counting(runner.mis, Name.MIS_CALLS, _mis_methods())

    def observe(event: Mapping[str, Any], report: Any, usage: Usage) -> None:
        sent = report.get("sent") if isinstance(report, Mapping) else None
        for kind, value in (sent or {}).items():
            usage.message(message_kind_of_reminder(str(kind)), int(value or 0))
        broadcasts = report.get("broadcasts_sent") if isinstance(report, Mapping) else None
        if broadcasts:
            usage.message(MessageKind.BROADCAST, int(broadcasts))

    return FunctionMeter(meter, observe)


def for_mis_sync(
    job: Any,
    *,
    meter: Meter | None = None,
    store: RollupStore | None = None,
    config: MeteringConfig | None = None,
) -> FunctionMeter:
    """The MIS sync (``clinicbot.schedule.job.SyncJob``): MIS calls. Flushes at the end of every run."""
    meter = meter or Meter("mis_sync", config=config, store=store, flush_every_run=True)
    job.mis = _counting(job.mis, Name.MIS_CALLS, _mis_methods())
    return FunctionMeter(meter)


def for_handoff(
    app: Any,
    *,
    meter: Meter | None = None,
    store: RollupStore | None = None,
    config: MeteringConfig | None = None,
) -> FunctionMeter:
    """The hand-off function (``clinicbot.handoff.runtime.HandoffApp``): CRM calls, MIS calls (patient
    look-ups), messages relayed to patients or into the staff group."""
    meter = meter or Meter("handoff", config=config, store=store)
    consumer = app.consumer
    consumer.crm = _counting(consumer.crm, Name.CRM_CALLS, _crm_methods())
    patients = consumer.patients
    if patients is not None and hasattr(patients, "_mis"):
        patients._mis = _counting(patients._mis, Name.MIS_CALLS, _mis_methods())
    bots = {id(b): b for b in (consumer.bot, getattr(app.inbound, "bot", None)) if b is not None}
    for bot in bots.values():
        meter_bot_api_client(bot, MessageKind.RELAY)
    return FunctionMeter(meter)
