"""The hand-off function's insides, built once per cold start from :class:`~clinicbot.config.Settings`.

``functions/handoff/app.py`` hands each SQS record (powertools ``BatchProcessor``) to
:meth:`HandoffApp.handle_record` and each ``POST /crm/inbound`` to :meth:`HandoffApp.handle_http`. One
event loop lives across warm invocations (the aiohttp sessions are bound to it). No aiogram here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from clinicbot.config import Settings
from clinicbot.handoff.bot_api import HandoffBotApi
from clinicbot.handoff.consumer import HandoffConsumer, MisPatients, PatientSource, Processed
from clinicbot.handoff.inbound import InboundHandler, InboundResponse
from clinicbot.handoff.port import CrmPort
from clinicbot.handoff.retry import Deadline
from clinicbot.handoff.store import DynamoHandoffStore, HandoffStore

__all__ = ["HandoffApp", "build_handoff", "crm_channel"]

log = logging.getLogger(__name__)

SAFETY_MARGIN_SECONDS = 4.0


def crm_channel(settings: Settings) -> str:
    """The thread channel inbound CRM calls name conversations in."""
    if settings.crm_provider == "telegram_group" and settings.staff_group_id is not None:
        from clinicbot.handoff.crm_telegram_group import channel_of

        return channel_of(settings.staff_group_id)
    return {"bitrix24": "bitrix"}.get(settings.crm_provider, "webhook")


class HandoffApp:
    def __init__(
        self,
        *,
        consumer: HandoffConsumer,
        inbound: InboundHandler | None,
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.consumer = consumer
        self.inbound = inbound
        self.loop = loop or asyncio.new_event_loop()
        self._deadline: Deadline | None = None

    # ------------------------------------------------------------------ SQS
    def begin_batch(self, context: Any = None) -> None:
        """Call once per invocation before the records: sets the deadline from the Lambda context."""
        self.consumer.new_batch()
        remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else 25.0
        self._deadline = Deadline.after(max(1.0, remaining - SAFETY_MARGIN_SECONDS))

    def handle_record(self, record: Any) -> Processed:
        """One SQS record (powertools ``SQSRecord`` or the raw dict): processed, or an exception that the
        batch processor reports as this message's failure."""
        body, receive_count = _record_fields(record)
        deadline = self._deadline or Deadline.after(20)
        if deadline.remaining < 2.0:
            raise TimeoutError("no time left in this invocation: the queue redelivers it")
        return self.loop.run_until_complete(
            self.consumer.process(body, receive_count=receive_count, deadline=deadline)
        )

    # ------------------------------------------------------------------ HTTP
    def handle_http(self, event: Mapping[str, Any]) -> dict[str, Any]:
        method = ((event.get("requestContext") or {}).get("http") or {}).get("method", "POST")
        if method != "POST":
            return InboundResponse(405, {"error": "POST only"}).to_api_gateway()
        if self.inbound is None:
            return InboundResponse(404, {"error": "inbound CRM calls are not configured"}).to_api_gateway()
        response = self.loop.run_until_complete(
            self.inbound.handle(
                event.get("headers") or {}, event.get("body"), is_base64=bool(event.get("isBase64Encoded"))
            )
        )
        return response.to_api_gateway()

    def close(self) -> None:
        async def shut() -> None:
            await self.consumer.crm.close()
            if self.consumer.bot is not None:
                await self.consumer.bot.close()

        self.loop.run_until_complete(shut())


def _record_fields(record: Any) -> tuple[str, int]:
    if isinstance(record, Mapping):
        attributes = record.get("attributes") or {}
        return str(record.get("body") or ""), int(attributes.get("ApproximateReceiveCount") or 1)
    return str(record.body or ""), int(record.attributes.approximate_receive_count or 1)


def _language_of(user_id: int) -> str | None:
    """The patient's chosen language from the StateTable card (None: unknown, use the clinic's)."""
    try:
        from clinicbot.storage.models import PROFILE_SK, ProfileItem, StateItem, user_pk

        item = StateItem.get(user_pk(user_id), PROFILE_SK)
        return item.language if isinstance(item, ProfileItem) else None
    except Exception:
        return None


def _directory() -> Any:
    try:
        from clinicbot.storage.patients import DynamoPatientDirectory
    except ImportError:  # the reminders' patient index is not in this build
        return None
    return DynamoPatientDirectory().telegram_user_of


def build_handoff(
    settings: Settings,
    *,
    store: HandoffStore | None = None,
    crm: CrmPort | None = None,
    mis: Any | None = None,
    patients: PatientSource | None = None,
    bot: HandoffBotApi | None = None,
    clock: Any = None,
) -> HandoffApp:
    from clinicbot import bootstrap
    from clinicbot.storage import models

    models.configure(
        table_name=settings.state_table,
        connect_timeout=settings.ddb_connect_timeout_seconds,
        read_timeout=settings.ddb_read_timeout_seconds,
        max_retries=settings.ddb_max_retries,
    )
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    store = store or DynamoHandoffStore(settings.handoff_table)
    bot = bot or HandoffBotApi(
        settings.resolved_bot_token(),
        base_url=settings.telegram_api_base,
        timeout=settings.telegram_timeout_seconds,
    )
    crm = crm or bootstrap.build_crm(settings, store=store, bot=bot)
    if patients is None:
        patients = MisPatients(mis if mis is not None else bootstrap.build_mis(settings), _directory())
    consumer = HandoffConsumer(crm=crm, store=store, bot=bot, patients=patients)
    inbound: InboundHandler | None = None
    if settings.crm_provider in ("webhook", "bitrix24") or settings.crm_secret or settings.crm_secret_param:
        extra = {"clock": clock} if clock is not None else {}
        inbound = InboundHandler(
            secret=settings.resolved_crm_secret,
            store=store,
            bot=bot,
            channel=crm_channel(settings),
            clinic_name=settings.clinic_name,
            language_of=_language_of,
            default_language=settings.default_language,
            **extra,
        )
    return HandoffApp(consumer=consumer, inbound=inbound, loop=loop)
