"""Reminders: EventBridge Scheduler -> what is due -> Telegram, exactly once. Thin: the logic is in
`clinicbot.reminders`. No aiogram on this path (a test checks): it would cost seconds of cold start."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from clinicbot import metering
from clinicbot.config import load_settings
from clinicbot.reminders.app import build_reminders

logger = Logger()
metrics = Metrics()
# Cold start: settings validated, Bot API client, sender, stores and one event loop built.
APP = build_reminders(load_settings())
# Usage per clinic (clinicbot.metering): messages by kind, MIS calls; the rollup is written after every run.
METER = metering.for_reminders(APP)

ANOMALIES = ("failed", "lost_claims", "left_for_next_run", "deferred", "blocked")
"""Counts of a run worth a metric. Each is emitted only when it is not zero: a custom metric is billed for
every hour it gets data, zeros included, and messages sent are counted by the usage metering already."""


@METER.handler
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    report = APP.handle_event(event, context)
    emitted = False
    for name in ANOMALIES:
        value = int(report.get(name) or 0)
        if value:
            metrics.add_metric(name=f"Reminders_{name}", unit=MetricUnit.Count, value=value)
            emitted = True
    if emitted:
        metrics.flush_metrics()
    return report
