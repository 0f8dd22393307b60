"""DynamoDB requests and wall time per update over a 10-step dialogue, through the real webhook handler
(aiogram dispatch, the StateTable under moto, the demo clinic, a fake Bot API on loopback).

Goal: <= 1 read and <= 1 write per update, duplicate detection included."""

from __future__ import annotations

import os
import statistics
import time

from tests.conftest import TEST_ENV  # sets the test environment before clinicbot is imported
from tests.harness import (
    DdbCounter,
    TgUser,
    WebhookHarness,
    aws_tables,
    callback_update,
    contact_update,
    demo_mis,
    message_update,
)


def main() -> None:
    from clinicbot.local.fake_botapi import FakeBotAPI

    os.environ.update(TEST_ENV)
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    user = TgUser(id=31337)
    with aws_tables(), DdbCounter.installed() as ddb:
        botapi = FakeBotAPI(token=TEST_ENV["CLINICBOT_BOT_TOKEN"])
        botapi.start()
        harness = WebhookHarness.create(botapi=botapi, mis=demo_mis())
        steps: list[tuple[str, object]] = [
            ("/start", lambda: message_update(user, "/start")),
            (
                "consent ✅",
                lambda: callback_update(
                    user,
                    harness.last_message().button("✅")["callback_data"],
                    message_id=harness.last_message().message_id or 1,
                ),
            ),
            ("share phone", lambda: contact_update(user, "+7 916 555-00-01")),
            ("free text", lambda: message_update(user, "здравствуйте")),
            ("/language", lambda: message_update(user, "/language")),
            (
                "English",
                lambda: callback_update(user, "lang:en", message_id=harness.last_message().message_id or 1),
            ),
            ("/help", lambda: message_update(user, "/help")),
            ("/menu", lambda: message_update(user, "/menu")),
            ("menu: help", lambda: callback_update(user, "menu:help")),
            ("retry of the last update", None),
        ]
        rows = []
        last_update: dict[str, object] | None = None
        for label, build in steps:
            update = last_update if build is None else build()  # type: ignore[operator]
            assert isinstance(update, dict)
            ddb.reset()
            started = time.perf_counter()
            harness.send(update)
            elapsed = (time.perf_counter() - started) * 1000
            rows.append((label, ddb.reads, ddb.writes, elapsed, harness.outcome.outcome))
            last_update = update
        harness.close()
        botapi.stop()

    print("DynamoDB requests and wall time per update (10-step dialogue, moto in-process)")
    print(f"{'step':<28}{'reads':>6}{'writes':>8}{'wall ms':>10}  outcome")
    for label, reads, writes, ms, outcome in rows:
        print(f"{label:<28}{reads:>6}{writes:>8}{ms:>10.1f}  {outcome}")
    print(
        f"max reads/update {max(r[1] for r in rows)}, max writes/update {max(r[2] for r in rows)}, "
        f"median wall {statistics.median(r[3] for r in rows):.1f} ms  (goal: <= 1 read, <= 1 write)"
    )


if __name__ == "__main__":
    main()
