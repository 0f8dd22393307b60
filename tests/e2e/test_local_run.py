"""The README's first command, driven the way a patient would: the terminal chat, typed into."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.harness import ROOT

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def chat(script: list[str], *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLINICBOT_", "AWS_", "TELEGRAM_"))}
    result = subprocess.run(
        [sys.executable, "-m", "clinicbot", "local", *args],
        cwd=ROOT,
        env=env,
        input="\n".join(script) + "\n",
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_a_patient_onboards_in_the_terminal_chat() -> None:
    out = chat(
        [
            "/start",
            "1",  # ✅ consent (inline button [1])
            "1",  # 📱 share my number (reply keyboard button [1]) -> a demo clinic patient
            "/help",
            "2",  # a main menu button that no longer exists on the help message: helpful answer anyway
            "какая-то фраза",
            ":quit",
        ],
        "--phone",
        "+7 999 100-00-01",
    )
    assert "Здравствуйте!" in out
    assert "[1] ✅ Даю согласие" in out and "[2] Не сейчас" in out
    assert "[1] 📱 Поделиться номером" in out
    assert "Нашли вашу карту в клинике" in out
    assert "Главное меню" in out
    assert "/start — начать заново" in out
    assert "Не совсем понял вас" in out  # the FAQ found nothing: offers to write to the clinic
    assert "Написать в клинику" in out


def test_declining_and_english(tmp_path: object) -> None:
    out = chat(["/start", "2", "hello", ":quit"], "--lang", "en")
    assert "Hello!" in out
    assert "we have stored nothing about you" in out
    assert "To continue we need your consent" in out
