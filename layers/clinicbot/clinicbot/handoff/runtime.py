"""The hand-off function's insides, built once per cold start from :class:`~clinicbot.config.Settings`.

``functions/handoff/app.py`` hands every event to :meth:`HandoffApp.handle_event`, which tells them apart
by shape:

* an outbox message (``kind``, ``idempotency_key``, ``payload``, ...: one per asynchronous invocation,
  see ``clinicbot.handoff.outbox.LambdaOutbox``) goes to the consumer. Processed, duplicate and dropped
  messages return normally; so does a poison message (logged: it can never succeed, a retry would only
  dead-letter it). A transient failure (CRM or MIS down, Telegram errors, another consumer holding the
  message, DynamoDB errors, no time left) raises :class:`RetryLater`, so that Lambda retries the event
  (``HandoffRetryAttempts``, about 1 and 2 minutes apart) and then sends it to the dead-letter queue.
  Its message names the error's type only: Lambda copies it into the dead-letter record.
* an API Gateway HTTP API event (``requestContext.http``) is ``POST /crm/inbound``.

Ordering between messages is not guaranteed (concurrent invocations, retries minutes later): see
``clinicbot.handoff.consumer``. One event loop lives across warm invocations (the aiohttp sessions are
bound to it). No aiogram here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any

from clinicbot.config import Settings
from clinicbot.handoff.bot_api import HandoffBotApi
from clinicbot.handoff.consumer import HandoffConsumer, MisPatients, PatientSource, PoisonMessage, Processed
from clinicbot.handoff.inbound import InboundHandler, InboundResponse
from clinicbot.handoff.outbox import is_outbox_message
from clinicbot.handoff.port import CrmPort
from clinicbot.handoff.retry import Deadline
from clinicbot.handoff.store import DynamoHandoffStore, HandoffStore

__all__ = ["HandoffApp", "RetryLater", "build_handoff", "crm_channel", "is_http_event"]

log = logging.getLogger(__name__)

SAFETY_MARGIN_SECONDS = 4.0


class RetryLater(Exception):
    """The message failed for now: the invocation fails, Lambda retries it (then dead-letters it)."""


def is_http_event(event: Mapping[str, Any]) -> bool:
    return isinstance((event.get("requestContext") or {}).get("http"), dict)


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

    # ------------------------------------------------------------------ events
    def handle_event(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """One invocation: an outbox message or an HTTP API request (see the module's docstring)."""
        if is_http_event(event):
            return self.handle_http(event)
        if is_outbox_message(event):
            try:
                processed = self.handle_message(event, context)
            except PoisonMessage as exc:
                log.error(
                    "poison hand-off message dropped: it can never be processed",
                    extra={"kind": str(event.get("kind"))[:64], "reason": str(exc)[:300],
                           "message_id": str(event.get("message_id"))[:64]},
                )  # fmt: skip
                return {"result": "poison"}
            except Exception as exc:
                log.warning(
                    "hand-off message failed: Lambda retries it, then dead-letters it",
                    extra={"kind": str(event.get("kind"))[:64], "error": type(exc).__name__,
                           "message_id": str(event.get("message_id"))[:64]},
                    exc_info=True,
                )  # fmt: skip
                raise RetryLater(f"{type(exc).__name__}: retried by Lambda") from exc
            return {"result": processed.result.value, "kind": processed.kind}
        log.warning("unknown event shape dropped", extra={"keys": sorted(map(str, event))[:10]})
        return {"statusCode": 400, "body": '{"error": "unknown event"}'}

    def handle_message(self, event: Mapping[str, Any], context: Any = None) -> Processed:
        """One outbox message: processed (or a duplicate, or dropped), else the consumer's exception
        (:class:`~clinicbot.handoff.consumer.PoisonMessage` or a transient one)."""
        remaining = context.get_remaining_time_in_millis() / 1000 if context is not None else 25.0
        deadline = Deadline.after(max(1.0, remaining - SAFETY_MARGIN_SECONDS))
        if deadline.remaining < 2.0:
            raise TimeoutError("no time left in this invocation: Lambda retries it")
        return self.loop.run_until_complete(self.consumer.process(event, deadline=deadline))

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
