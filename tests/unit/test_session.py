"""The Bot API session retries the first call of an invocation once on a reset connection."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.exceptions import TelegramNetworkError
from aiogram.methods import GetMe

from clinicbot.telegram.session import ResilientSession, direct_calls


def make(monkeypatch: pytest.MonkeyPatch, failures: list[str]) -> tuple[ResilientSession, list[str]]:
    attempts: list[str] = []

    async def fake_request(self: Any, bot: Bot, method: Any, timeout: Any = None) -> str:  # noqa: ASYNC109
        attempts.append(method.__api_method__)
        if failures:
            raise TelegramNetworkError(method=method, message=failures.pop(0))
        return "ok"

    monkeypatch.setattr(AiohttpSession, "make_request", fake_request)
    return ResilientSession(api_base="http://127.0.0.1:1", timeout=1.0), attempts


def test_first_call_after_a_freeze_is_retried_once(monkeypatch: pytest.MonkeyPatch) -> None:
    session, attempts = make(monkeypatch, ["ServerDisconnectedError: Server disconnected"])
    bot = Bot("1:x", session=session)
    assert asyncio.run(session.make_request(bot, GetMe())) == "ok"
    assert attempts == ["getMe", "getMe"]


def test_later_calls_and_other_errors_are_not_retried(monkeypatch: pytest.MonkeyPatch) -> None:
    session, _ = make(monkeypatch, ["Request timeout error"])
    bot = Bot("1:x", session=session)
    with pytest.raises(TelegramNetworkError):
        asyncio.run(session.make_request(bot, GetMe()))  # a timeout may have reached Telegram
    session_2, _ = make(monkeypatch, [])
    asyncio.run(session_2.make_request(bot, GetMe()))
    session_2._fresh_invocation = False
    make_failures = ["ClientOSError: [Errno 104] Connection reset by peer"]
    monkeypatch.setattr(
        AiohttpSession,
        "make_request",
        lambda *a, **k: (_ for _ in ()).throw(TelegramNetworkError(method=GetMe(), message=make_failures[0])),
    )
    with pytest.raises(TelegramNetworkError):
        asyncio.run(session_2.make_request(bot, GetMe()))
    session_2.new_invocation()  # the next invocation's first call may retry again
    assert session_2._fresh_invocation


def test_direct_calls_are_counted_per_update(monkeypatch: pytest.MonkeyPatch) -> None:
    session, _ = make(monkeypatch, [])
    bot = Bot("1:x", session=session)
    calls: list[str] = []
    token = direct_calls.set(calls)
    try:
        asyncio.run(session.make_request(bot, GetMe()))
    finally:
        direct_calls.reset(token)
    assert calls == ["getMe"]
