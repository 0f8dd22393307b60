"""A patient's whole booking journey in the local run (moto server, the demo clinic on today's date, the
webhook function, the terminal chat), chosen the way a patient chooses: by reading the buttons' labels.

The test runs the journey in a child process (the local run sets AWS endpoint variables for its whole
process) and reads the transcript the terminal chat prints."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from typing import Any

import pytest

from tests.harness import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PHONE = "+7 999 555-44-33"  # not a demo patient: the journey starts with a new patient card


class Patient:
    """Types and taps in the terminal chat, choosing buttons by what they say."""

    def __init__(self, chat: Any) -> None:
        self.chat = chat

    def labels(self) -> list[str]:
        return [b.label for b in self.chat.buttons]

    def _press(self, index: int) -> None:
        self.chat.say(f"\n> {index + 1}")
        self.chat.handle_line(str(index + 1))

    def type(self, text: str) -> None:
        self.chat.say(f"\n> {text}")
        self.chat.handle_line(text)

    def tap(self, label: str) -> None:
        for index, button in enumerate(self.chat.buttons):
            if label.lower() in button.label.lower():
                self._press(index)
                return
        raise AssertionError(f"no button {label!r} among {self.labels()}")

    def tap_first(self, pattern: str) -> None:
        for index, button in enumerate(self.chat.buttons):
            if re.fullmatch(pattern, button.label):
                self._press(index)
                return
        raise AssertionError(f"no button like {pattern!r} among {self.labels()}")


def journey() -> None:
    """Runs in the child process."""
    from clinicbot.cli import _quiet_logs

    _quiet_logs()
    from clinicbot.local.chat import ChatUser, TerminalChat
    from clinicbot.local.fake_botapi import FakeBotAPI
    from clinicbot.local.lambda_runner import load_function
    from clinicbot.local.stack import LOCAL_TOKEN, local_function_env, start_aws

    stack = start_aws()
    botapi = FakeBotAPI(token=LOCAL_TOKEN)
    botapi.start()
    try:
        env = local_function_env(api_base=botapi.base_url)
        handler = load_function("webhook").handler
        chat = TerminalChat(
            handler=handler, botapi=botapi, secret=env["CLINICBOT_WEBHOOK_SECRET"], user=ChatUser(phone=PHONE)
        )
        me = Patient(chat)
        me.type("/start")
        me.tap("Даю согласие")
        me.tap("Поделиться номером")

        # 1. by specialty, any doctor, the earliest time
        me.tap("Записаться на приём")
        me.tap("По специальности")
        me.tap("Терапевт")
        me.tap("Любой врач")
        me.tap("Ближайшее")
        me.tap("✅ Записаться")

        # 2. by doctor: a day, a time
        me.tap("Меню")
        me.tap("Записаться на приём")
        me.tap("К определённому врачу")
        me.tap("Стоматолог")  # the first dentist in the list
        me.tap_first(r"\d{1,2}")  # the first day with free time
        me.tap_first(r"\d\d:\d\d")  # the first free time
        me.tap("✅ Записаться")

        # 3. my visits: reschedule the first one, ask for a call back, cancel
        me.tap("Мои визиты")
        me.tap_first(r".+ · .+")
        me.tap("Перенести")
        me.tap_first(r"\d{1,2}")
        me.tap_first(r"\d\d:\d\d")
        me.tap("✅ Перенести")
        me.tap("Мои визиты")
        me.tap_first(r".+ · .+")
        me.tap("Перезвоните мне")
        me.tap("Мои визиты")
        me.tap_first(r".+ · .+")
        me.tap("Отменить визит")
        me.tap("Да, отменить")
        me.tap("Мои визиты")
        chat.say("\nE2E-DONE")
    finally:
        botapi.stop()
        stack.stop()


def test_a_patient_books_moves_asks_for_a_call_and_cancels_in_the_local_run() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLINICBOT_", "AWS_", "TELEGRAM_"))}
    result = subprocess.run(
        [sys.executable, "-m", "tests.e2e.test_booking_e2e"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    out = result.stdout
    assert result.returncode == 0, (out[-3000:], result.stderr[-3000:])
    assert "E2E-DONE" in out
    assert out.count("✅ Вы записаны!") == 2
    assert "Терапевт, любой врач" in out
    assert "Проверьте, пожалуйста, запись" in out and "Стоимость приёма: от" in out
    assert "[opens https://calendar.google.com" not in out  # a URL button, shown with its label only
    assert "Добавить в Google Календарь" in out
    assert "Перенести визит?" in out and "✅ Визит перенесён." in out
    assert re.search(r"Заявка № \d{4}-\d{4} принята", out)
    assert re.search(r"Визит .+ отменён\.", out)
    final = out.rsplit("Ваши предстоящие визиты:", 1)[-1]
    assert final.count(" — ") == 1  # two booked, one moved, one cancelled: one visit left
    assert "Traceback" not in result.stderr and "устарела" not in out


if __name__ == "__main__":
    journey()
