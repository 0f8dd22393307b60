"""The reminders function's runtime, built once per cold start (``functions/reminders/app.py`` is thin).

No aiogram anywhere on this path (its import alone costs seconds of cold start): messages go out through
``clinicbot.telegram_api.BotApiClient`` and the one rate-limited ``BulkSender``. One event loop lives
across warm invocations, like the webhook's, so the HTTP session and its keep-alive connection survive.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from clinicbot.config import Settings
from clinicbot.reminders.config import ReminderConfig
from clinicbot.reminders.planner import ReminderPlanner
from clinicbot.reminders.runner import ReminderRunner, RunReport, utc_now
from clinicbot.reminders.store import PatientDirectory, ReminderStore
from clinicbot.reminders.survey import SurveyHook
from clinicbot.sending import BulkSender

__all__ = ["DEADLINE_MARGIN_SECONDS", "RemindersApp", "build_reminders"]

log = logging.getLogger(__name__)

DEADLINE_MARGIN_SECONDS = 10.0
"""Kept free at the end of an invocation for the last writes and the unlock."""
DEFAULT_BUDGET_SECONDS = 60.0  # when invoked without a Lambda context (scripts)


@dataclass
class RemindersApp:
    runner: ReminderRunner
    loop: asyncio.AbstractEventLoop
    client: Any

    def handle_event(self, event: Mapping[str, Any], context: Any = None) -> dict[str, Any]:
        """An EventBridge (Scheduler) event in; the run's report (counts, no personal data) out."""
        remaining = (
            context.get_remaining_time_in_millis() / 1000.0
            if context is not None and hasattr(context, "get_remaining_time_in_millis")
            else DEFAULT_BUDGET_SECONDS
        )
        deadline = time.monotonic() + max(0.0, remaining - DEADLINE_MARGIN_SECONDS)
        report: RunReport = self.loop.run_until_complete(self.runner.run(deadline=deadline))
        answer = report.as_log()
        answer["scheduled_time"] = event.get("time")
        return answer

    def close(self) -> None:
        self.loop.run_until_complete(self.client.close())


def build_reminders(
    settings: Settings,
    *,
    mis: Any | None = None,
    store: ReminderStore | None = None,
    directory: PatientDirectory | None = None,
    client: Any | None = None,
    survey: SurveyHook | None = None,
    clock: Callable[[], datetime] = utc_now,
    **sender_options: Any,
) -> RemindersApp:
    from clinicbot import bootstrap
    from clinicbot.storage import models as state_models
    from clinicbot.telegram_api import BotApiClient

    state_models.configure(
        table_name=settings.state_table,
        connect_timeout=settings.ddb_connect_timeout_seconds,
        read_timeout=settings.ddb_read_timeout_seconds,
        max_retries=settings.ddb_max_retries,
    )
    if store is None:
        from clinicbot.reminders.dynamo import DynamoReminderStore

        store = DynamoReminderStore.configured(settings)
    if directory is None:
        from clinicbot.storage.patients import DynamoPatientDirectory

        directory = DynamoPatientDirectory()
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    if client is None:
        client = BotApiClient(
            settings.resolved_bot_token(),
            base_url=settings.telegram_api_base,
            timeout=settings.telegram_timeout_seconds,
        )
    config = ReminderConfig.from_settings(settings)
    mis = mis if mis is not None else bootstrap.build_mis(settings)
    runner_box: list[ReminderRunner] = []

    def branch_tz(branch_id: str) -> str | None:
        reference = runner_box[0]._reference if runner_box else None
        branch = reference.branches.get(branch_id) if reference else None
        return branch.timezone if branch else None

    planner = ReminderPlanner(store, config=config, branch_tz=branch_tz, directory=directory)
    runner = ReminderRunner(
        store=store,
        directory=directory,
        sender=BulkSender(client, **sender_options),
        mis=mis,
        config=config,
        planner=planner,
        survey=survey,
        default_language=settings.default_language,
        clock=clock,
    )
    runner_box.append(runner)
    return RemindersApp(runner=runner, loop=loop, client=client)
