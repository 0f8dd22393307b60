"""``python -m clinicbot local``: call-back and certificate requests typed into the terminal chat arrive at
the local CRM stand-in (signature checked): the webhook invokes the hand-off function asynchronously through
boto3 and a local stand-in for the Lambda Invoke API, and functions/handoff/app.py runs each event."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime

import pytest

from clinicbot.handoff.requests import certificate_years
from clinicbot.telegram.keyboards import MAIN_MENU
from tests.harness import ROOT

pytestmark = [pytest.mark.slow]


def menu(action: str) -> str:
    return str([a for a, _ in MAIN_MENU].index(action) + 1)


def test_requests_typed_locally_arrive_at_the_crm_stand_in() -> None:
    last_year = str(certificate_years(datetime.now(UTC).date()).index(datetime.now(UTC).year - 1) + 1)
    script = [
        "/start", "1", "1",                  # consent, share the number: p-001 of the demo clinic
        menu("callback"), "1", "1", "2", "1",  # the record's number, as soon as possible, payment, send
        menu("certificate"), last_year, "5", "1", "Кузьмина Анна Сергеевна",
        "5001 0073 2259",                    # digits with spaces: a bare number would press a button
        "05.03.1980", "1",
        ":quit",
    ]  # fmt: skip
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CLINICBOT_", "AWS_", "TELEGRAM_"))}
    result = subprocess.run(
        [sys.executable, "-m", "clinicbot", "local", "--phone", "+7 999 100-00-01"],
        cwd=ROOT, env=env, input="\n".join(script) + "\n", capture_output=True, text=True, timeout=240, check=False,
    )  # fmt: skip
    out = result.stdout
    assert result.returncode == 0, result.stderr[-3000:]
    assert "CRM stand-in (webhook, Standard Webhooks signatures checked)" in out
    assert (
        "CRM ← callback.requested · №1001 · patient p-001 · window=asap · topic=payment  [signature ✓]" in out
    )
    assert "Заявка №1001 принята" in out
    assert "CRM ← certificate.requested · №1002 · patient p-001" in out and "Запрос №1002 принят" in out
    assert "Unclosed client session" not in result.stderr
