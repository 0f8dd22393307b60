"""The bot's command menu, published once at deploy time (``clinicbot set-commands``), not per update."""

from __future__ import annotations

import asyncio

from aiogram import Bot
from aiogram.types import BotCommand, BotCommandScopeAllPrivateChats

from clinicbot.config import Settings
from clinicbot.i18n import DEFAULT_LANGUAGE, LANGUAGES, Translator

COMMANDS = ("start", "menu", "info", "language", "help", "mydata", "stop", "withdraw", "forget")
"""In the order of the menu; each has a handler (a ``Command`` filter in a router) and ``cmd.<name>`` in
every language (tests/unit/test_commands.py)."""


def commands_for(language: str) -> list[BotCommand]:
    t = Translator(language)
    return [BotCommand(command=name, description=t(f"cmd.{name}")) for name in COMMANDS]


async def _publish(bot: Bot) -> None:
    scope = BotCommandScopeAllPrivateChats()
    for language in LANGUAGES:
        code = None if language == DEFAULT_LANGUAGE else language
        await bot.set_my_commands(commands_for(language), scope=scope, language_code=code)


def publish_commands(settings: Settings) -> None:
    from clinicbot.telegram.webhook import build_bot

    async def run() -> None:
        bot = build_bot(settings)
        try:
            await _publish(bot)
        finally:
            await bot.session.close()

    asyncio.run(run())
