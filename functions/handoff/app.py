"""Hand-off: outbox messages -> CRM / staff group / patients, and POST /crm/inbound (CRM -> patient).

Thin: the logic is in ``clinicbot.handoff``. Dispatch by event shape (``HandoffApp.handle_event``): an
outbox message -- one per asynchronous invocation by the webhook (``LambdaOutbox``) -- goes to the
consumer; success, a duplicate and a poison message (logged) return normally; a transient failure raises,
so that Lambda retries the event (``HandoffRetryAttempts``: after about 1 and 2 more minutes) and then
sends it to the on-failure destination, the ``HandoffDLQ`` queue (``python -m clinicbot handoff-redrive``
after a fix). An API Gateway HTTP API event is an inbound CRM call. No queue is polled, no aiogram here.
"""

from __future__ import annotations

import atexit
from typing import Any

from aws_lambda_powertools import Logger

from clinicbot import metering
from clinicbot.config import load_settings
from clinicbot.handoff.runtime import build_handoff

logger = Logger()
# Cold start: settings validated, the HandoffTable, the Bot API client, the CRM adapter, one event loop.
APP = build_handoff(load_settings())
atexit.register(APP.close)  # a local `clinicbot invoke` exits cleanly; Lambda just freezes the process
# Usage per clinic (clinicbot.metering): CRM and MIS calls, messages relayed; the rollup every 50 invocations.
METER = metering.for_handoff(APP)


@METER.handler
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return APP.handle_event(event, context)
