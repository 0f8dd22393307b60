"""Telegram webhook: API Gateway HTTP API -> one update -> aiogram. Thin: the logic is in `clinicbot`."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from clinicbot import metering
from clinicbot.config import load_settings
from clinicbot.telegram.webhook import build_webhook

logger = Logger()
# Cold start: settings validated (a clear ConfigError otherwise), Bot, Dispatcher and one event loop built.
APP = build_webhook(load_settings())
# Usage per clinic (clinicbot.metering): updates, replies/relays, hand-offs, MIS calls -> a log line or EMF
# metrics per invocation, and the monthly rollup item every 50 invocations or 5 minutes.
METER = metering.for_webhook(APP)


@METER.handler
@logger.inject_lambda_context(clear_state=True)
def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    return APP.handle_event(event)
