"""MIS sync: an EventBridge Scheduler event -> schedule cache + linked patients' visits. Thin: the logic is in
`clinicbot.schedule`. No aiogram anywhere on this path (its import alone costs seconds of cold start)."""

from __future__ import annotations

import os
from typing import Any

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from clinicbot import metering
from clinicbot.schedule.job import SyncJob

logger = Logger()
metrics = Metrics()  # namespace: POWERTOOLS_METRICS_NAMESPACE; service dimension: POWERTOOLS_SERVICE_NAME
# The alarm in template.yaml watches SyncFailed with exactly these dimensions (service, stack).
metrics.set_default_dimensions(stack=os.environ.get("CLINICBOT_STACK_NAME", "local"))
# Cold start: settings validated, tables configured; the MIS adapter is built on first use.
JOB = SyncJob.from_environment()
# Usage per clinic (clinicbot.metering): MIS calls; the rollup is written after every run.
METER = metering.for_mis_sync(JOB)


@METER.handler
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if isinstance(event, dict):  # the scheduler's event; a hand-made invocation may send anything
        logger.append_keys(scheduled_time=event.get("time"), execution_id=event.get("id"))
    result = JOB.handle(remaining_seconds=context.get_remaining_time_in_millis() / 1000)
    if not result.ok:
        # Emitted only on failure: a custom metric costs nothing in an hour it gets no data.
        metrics.add_metric(name="SyncFailed", unit=MetricUnit.Count, value=1)
        metrics.flush_metrics()
    body = result.as_dict()
    logger.info("mis sync finished", extra={"ok": body["ok"], "duration_ms": body["duration_ms"]})
    return body
