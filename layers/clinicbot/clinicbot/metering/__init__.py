"""Per-clinic usage metering: counters per invocation, EMF metrics or a log line, a batched monthly rollup.

* :mod:`~clinicbot.metering.usage` -- the counters (:class:`Usage`, :class:`MessageKind`);
* :mod:`~clinicbot.metering.instrument` -- wrappers that count MIS/CRM calls, hand-offs, Bot API messages;
* :mod:`~clinicbot.metering.emf` -- per-invocation publishing (powertools EMF, or a log line);
* :mod:`~clinicbot.metering.rollup` -- the monthly rollup item in the UsageTable;
* :mod:`~clinicbot.metering.runtime` -- the per-container :class:`Meter` and ``for_<function>`` wiring;
* :mod:`~clinicbot.metering.prices`, :mod:`~clinicbot.metering.cost`, :mod:`~clinicbot.metering.capacity`,
  :mod:`~clinicbot.metering.report` -- the prices file, the cost model, DynamoDB capacity units and the
  ``clinicbot usage`` report.

No aiogram, boto3 or pynamodb import at module import time: the scheduled functions stay light.
"""

from __future__ import annotations

from clinicbot.metering.runtime import (
    DEFAULT_CLINIC_ID,
    FunctionMeter,
    Meter,
    MeteringConfig,
    for_handoff,
    for_mis_sync,
    for_reminders,
    for_webhook,
)
from clinicbot.metering.usage import (
    MessageKind,
    Name,
    Usage,
    current_usage,
    record,
    record_message,
    recording,
)

__all__ = [
    "DEFAULT_CLINIC_ID",
    "FunctionMeter",
    "MessageKind",
    "Meter",
    "MeteringConfig",
    "Name",
    "Usage",
    "current_usage",
    "for_handoff",
    "for_mis_sync",
    "for_reminders",
    "for_webhook",
    "record",
    "record_message",
    "recording",
]
