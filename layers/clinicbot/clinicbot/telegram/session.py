"""The Bot API session: short timeouts, one retry on a dead keep-alive socket, and a count of the calls
made during the current update (so the webhook knows whether the update had effects outside its
response)."""

from __future__ import annotations

import logging
from contextvars import ContextVar
from typing import Any

from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import TelegramMethod
from aiogram.methods.base import TelegramType

log = logging.getLogger(__name__)

direct_calls: ContextVar[list[str] | None] = ContextVar("clinicbot_direct_calls", default=None)


class ResilientSession(AiohttpSession):
    """A thawed Lambda's pooled keep-alive connection may have been closed by the peer while frozen:
    the first request then fails with a reset. That request never reached Telegram, so one immediate
    retry on a fresh connection is safe. Later failures surface to the caller."""

    def __init__(self, *, api_base: str, timeout: float, **kwargs: Any) -> None:
        super().__init__(api=TelegramAPIServer.from_base(api_base), timeout=timeout, **kwargs)
        self._fresh_invocation = True

    def new_invocation(self) -> None:
        self._fresh_invocation = True

    async def make_request(
        self,
        bot: Bot,
        method: TelegramMethod[TelegramType],
        timeout: int | None = None,  # noqa: ASYNC109
    ) -> TelegramType:
        calls = direct_calls.get()
        if calls is not None:
            calls.append(method.__api_method__)
        first, self._fresh_invocation = self._fresh_invocation, False
        try:
            return await super().make_request(bot, method, timeout)
        except TelegramNetworkError as exc:
            if not first or not _is_connection_reset(exc):
                raise
            log.warning("Bot API connection was reset after a freeze; retrying once on a new connection")
            return await super().make_request(bot, method, timeout)


def _is_connection_reset(exc: TelegramNetworkError) -> bool:
    text = exc.message
    return any(
        marker in text
        for marker in ("ServerDisconnectedError", "ClientOSError", "Connection reset", "ConnectionResetError")
    )
