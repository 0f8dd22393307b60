"""Hand-off: the SQS hand-off queue -> CRM / staff group / patients, and POST /crm/inbound (CRM -> patient).

Thin: the logic is in ``clinicbot.handoff``. Dispatch by event shape: an SQS batch goes through
powertools' ``BatchProcessor`` (each failed record is reported in ``batchItemFailures`` and retried
alone; after ``HandoffMaxReceiveCount`` deliveries it lands in the dead-letter queue); an API Gateway
HTTP API event is an inbound CRM call. No aiogram here.
"""

from __future__ import annotations

import atexit
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from clinicbot import metering
from clinicbot.config import load_settings
from clinicbot.handoff.runtime import build_handoff

logger = Logger()
# Cold start: settings validated, the HandoffTable, the Bot API client, the CRM adapter, one event loop.
APP = build_handoff(load_settings())
atexit.register(APP.close)  # a local `clinicbot invoke` exits cleanly; Lambda just freezes the process
# A batch that failed entirely is reported like any other (every record in batchItemFailures), not raised:
# the same redelivery, without an invocation error per CRM outage (the DLQ alarm is the signal).
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)
# Usage per clinic (clinicbot.metering): CRM and MIS calls, messages relayed; the rollup every 50 invocations.
METER = metering.for_handoff(APP)


@METER.handler
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    if isinstance(event.get("Records"), list):
        APP.begin_batch(context)
        return process_partial_response(
            event=event, record_handler=APP.handle_record, processor=processor, context=context
        )
    if isinstance((event.get("requestContext") or {}).get("http"), dict):
        return APP.handle_http(event)
    logger.warning("unknown event shape", extra={"keys": sorted(event)[:10]})
    return {"statusCode": 400, "body": '{"error": "unknown event"}'}
