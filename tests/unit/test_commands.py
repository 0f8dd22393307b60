"""The command menu published at deploy time matches what the bot answers to, in every language."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from clinicbot.i18n import LANGUAGES, Translator
from clinicbot.telegram.commands import COMMANDS, commands_for

ROUTERS = Path(__file__).resolve().parents[2] / "layers" / "clinicbot" / "clinicbot" / "telegram" / "routers"


def handled_commands() -> set[str]:
    found: set[str] = set()
    for source in ROUTERS.glob("*.py"):
        for args in re.findall(r"Command\(([^)]*)\)", source.read_text(encoding="utf-8")):
            found.update(re.findall(r'"([a-z_]+)"', args))
    return found


def test_every_published_command_has_a_handler() -> None:
    assert set(COMMANDS) - {"start"} <= handled_commands()  # /start: CommandStart() in onboarding


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_command_is_described_and_listed_in_the_help(language: str) -> None:
    t = Translator(language)
    menu = commands_for(language)
    assert [c.command for c in menu] == list(COMMANDS)
    for command in menu:
        assert command.description and command.description != f"cmd.{command.command}"
        assert 3 <= len(command.description) <= 256  # Bot API limits of a BotCommand description
    help_text = t("help.text", clinic="X")
    for name in COMMANDS:
        assert f"/{name} " in help_text, (language, name)
