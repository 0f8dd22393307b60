"""The documented local commands: invoke a function with every sample event; publish the commands."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.harness import EVENTS, ROOT

EXPECTED_STATUS = {
    "bad-secret": 403,
    "missing-secret": 401,
    "malformed": 400,
}


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("CLINICBOT_", "AWS_ENDPOINT"))}
    return subprocess.run(
        [sys.executable, "-m", "clinicbot", *args],
        cwd=ROOT,
        env={**clean, **(env or {}), "POWERTOOLS_LOG_LEVEL": "ERROR"},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def parse_documents(stdout: str) -> dict[str, object]:
    decoder, found, index = json.JSONDecoder(), {}, 0
    while (start := stdout.find("{", index)) != -1:
        try:
            document, index = decoder.raw_decode(stdout, start)
        except ValueError:
            index = start + 1
            continue
        if isinstance(document, dict):
            found.update(document)
    return found


@pytest.mark.slow
def test_invoke_every_webhook_event_locally() -> None:
    """One process per event, as a tester would run it: `python -m clinicbot invoke webhook <event>`."""
    events = sorted((EVENTS / "webhook").glob("*.json"))
    assert len(events) >= 7
    # Several events in one process would be quicker, but the command is what testers use: keep it real
    # for three of them, and check the rest through the same code path in-process below.
    for path in [EVENTS / "webhook" / "start.json", EVENTS / "webhook" / "bad-secret.json"]:
        result = run_cli("invoke", "webhook", str(path))
        assert result.returncode == 0, result.stderr
        output = parse_documents(result.stdout)
        response = output["response"]
        assert isinstance(response, dict)
        assert response["statusCode"] == EXPECTED_STATUS.get(path.stem, 200)
        if path.stem == "start":
            assert response["body"]["method"] == "sendMessage"


def test_every_sample_event_has_a_defined_outcome(webhook: object) -> None:
    from tests.harness import load_event

    seen = []
    for path in sorted((EVENTS / "webhook").glob("*.json")):
        response = webhook.invoke(load_event(f"webhook/{path.stem}"))  # type: ignore[attr-defined]
        assert response["statusCode"] == EXPECTED_STATUS.get(path.stem, 200), path.stem
        seen.append(path.stem)
    assert {"start", "text", "contact", "callback", "bad-secret", "duplicate", "malformed"} <= set(seen)


def test_set_commands_publishes_both_languages(botapi: object) -> None:
    from clinicbot.config import Settings
    from clinicbot.telegram.commands import publish_commands

    publish_commands(Settings(telegram_api_base=botapi.base_url))  # type: ignore[attr-defined,call-arg]
    calls = botapi.calls_of("setMyCommands")  # type: ignore[attr-defined]
    by_language = {c.params.get("language_code"): c.params for c in calls}
    assert set(by_language) == {None, "en"}
    ru = (
        json.loads(by_language[None]["commands"])
        if isinstance(by_language[None]["commands"], str)
        else by_language[None]["commands"]
    )
    assert [c["command"] for c in ru] == [
        "start", "menu", "info", "language", "help", "mydata", "stop", "withdraw", "forget",
    ]  # fmt: skip
    assert any(c["description"] == "Помощь" for c in ru)


def test_invoke_refuses_an_unknown_function() -> None:
    result = run_cli("invoke", "nope", str(Path(EVENTS / "webhook" / "start.json")))
    assert result.returncode != 0
    assert "no function 'nope'" in (result.stderr + result.stdout)
