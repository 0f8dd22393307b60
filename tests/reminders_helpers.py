"""Helpers of the reminder tests (tests/*/test_reminders_*.py): patients linked to Telegram users, the
reminders function built against moto + the fake Bot API, and what the fake saw."""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from tests.harness import TODAY, load_event

REMINDER_TABLE = "clinicbot-reminder"
USERS = {1001: "p-001", 1002: "p-002", 1003: "p-003", 1004: "p-004", 1005: "p-005", 1006: "p-006"}


def configure_reminder_table() -> None:
    from clinicbot.reminders import models

    models.configure(table_name=REMINDER_TABLE, region="eu-central-1")


def link(user_id: int, patient_id: str | None, *, language: str = "ru", **card: Any) -> None:
    """A consented patient card in the StateTable (as onboarding leaves it)."""
    from clinicbot.storage.unit import StateUnit

    unit = StateUnit(dialogue_ttl_seconds=3600)
    unit.save_card(
        user_id,
        language=language,
        consent_at=datetime.now(UTC),
        consent_version="1",
        patient_id=patient_id,
        **card,
    )
    unit.flush()


def demo_clinic(today: date = TODAY) -> Any:
    """The demo clinic on the (possibly travelled) wall clock."""
    from clinicbot.adapters.mis_demo import DemoClinic

    return DemoClinic(today=today, clock=lambda: datetime.now(UTC))


def scheduled_event(at: datetime | None = None) -> dict[str, Any]:
    event = copy.deepcopy(load_event("reminders/scheduled"))
    if at is not None:
        event["time"] = at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    return event


@dataclass
class Fn:
    """The reminders function loaded as Lambda loads it (functions/reminders/app.py), pointed at the
    fake Bot API, moto and a demo clinic."""

    module: Any
    mis: Any

    @property
    def app(self) -> Any:
        return self.module.APP

    @property
    def runner(self) -> Any:
        return self.module.APP.runner

    def invoke(self, at: datetime | None = None) -> dict[str, Any]:
        from clinicbot.local.lambda_runner import invoke

        result: dict[str, Any] = invoke("reminders", scheduled_event(at))
        return result


@contextlib.contextmanager
def reminders_function(botapi: Any, mis: Any, monkeypatch: Any) -> Iterator[Fn]:
    from clinicbot.local.lambda_runner import load_function

    monkeypatch.setenv("CLINICBOT_TELEGRAM_API_BASE", botapi.base_url)
    configure_reminder_table()
    module = load_function("reminders")
    runner = module.APP.runner
    assert runner.sender.client.base_url == botapi.base_url, "the function was loaded for another fake"
    saved = (runner.mis, runner._reference, runner.verify_with_mis)
    runner.mis, runner._reference = mis, None
    try:
        yield Fn(module, mis)
    finally:
        runner.mis, runner._reference, runner.verify_with_mis = saved


def planner(mis_branches: list[Any] | None = None) -> Any:
    from clinicbot.config import Settings
    from clinicbot.reminders.planner import ReminderPlanner

    return ReminderPlanner.for_settings(Settings(), branches=mis_branches or [])  # type: ignore[call-arg]


def sends(botapi: Any, *, ok_only: bool = True) -> list[Any]:
    return [c for c in botapi.calls_of("sendMessage") if c.ok or not ok_only]


def invoke_killed_after_claim(fn: Fn, monkeypatch: Any) -> None:
    """One run of the reminders function that dies after claiming what is due, before sending it (the
    Lambda reclaimed mid-run): the claims stay ``sending`` under their lease."""
    import pytest

    async def killed(*_args: Any, **_kwargs: Any) -> None:
        raise RuntimeError("the Lambda died here")

    with monkeypatch.context() as patch:
        patch.setattr(fn.runner, "_send", killed)
        with pytest.raises(RuntimeError):
            fn.invoke()
