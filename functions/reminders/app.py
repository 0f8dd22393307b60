"""Reminders: EventBridge Scheduler -> what is due -> Telegram, exactly once. Thin: the logic is in
`clinicbot.reminders`. No aiogram on this path (a test checks): it would cost seconds of cold start."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit, single_metric

from clinicbot import metering
from clinicbot.config import load_settings
from clinicbot.reminders.app import build_reminders

logger = Logger()
metrics = Metrics()
# Cold start: settings validated, Bot API client, sender, stores and one event loop built.
APP = build_reminders(load_settings())
# Usage per clinic (clinicbot.metering): messages by kind, MIS calls; the rollup is written after every run.
METER = metering.for_reminders(APP)


@METER.handler
@metrics.log_metrics
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    report = APP.handle_event(event, context)
    for kind, count in (report.get("sent") or {}).items():
        # one EMF record per kind: messages sent, by kind (visit, memo_before, memo_after, survey, med)
        with single_metric(name="RemindersSent", unit=MetricUnit.Count, value=count) as metric:
            metric.add_dimension(name="kind", value=str(kind))
    for name in ("due", "blocked", "failed", "deferred", "left_for_next_run", "lost_claims"):
        metrics.add_metric(name=f"Reminders_{name}", unit=MetricUnit.Count, value=int(report.get(name) or 0))
    return report
