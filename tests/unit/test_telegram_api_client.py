"""The package's own Bot API client: JSON calls, typed errors, no aiogram."""

from __future__ import annotations

import asyncio
import gc
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from clinicbot.local.fake_botapi import FakeBotAPI
from clinicbot.telegram_api import (
    BadRequest,
    BotApiClient,
    BotApiError,
    Forbidden,
    NetworkError,
    RetryAfter,
    ServerError,
    Unauthorized,
)


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    with FakeBotAPI() as fake:
        yield fake


def run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_import_does_not_pull_aiogram() -> None:
    code = (
        "import sys, clinicbot.telegram_api.client, clinicbot.telegram_api; "
        "bad = sorted(m for m in sys.modules if m == 'aiogram' or m.startswith('aiogram.')); "
        "print(bad); sys.exit(1 if bad else 0)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_send_message_and_document_and_generic_call(api: FakeBotAPI) -> None:
    markup = {"inline_keyboard": [[{"text": "Приду", "callback_data": "confirm:1"}]]}

    async def main() -> tuple[Any, ...]:
        async with BotApiClient(api.token, base_url=api.base_url) as client:
            msg = await client.send_message(
                501, "Завтра в 10:00", reply_markup=markup, protect_content=True, message_thread_id=None
            )
            doc = await client.send_document(501, "BQACAgIAAxkBAAIB", caption="Памятка", protect_content=True)
            me = await client.call("getMe")
            ok = await client.call("answerCallbackQuery", callback_query_id="q1")
            return msg, doc, me, ok

    msg, doc, me, ok = run(main())
    assert msg["chat"]["id"] == 501 and msg["text"] == "Завтра в 10:00" and msg["reply_markup"] == markup
    assert doc["document"]["file_id"] == "BQACAgIAAxkBAAIB" and doc["caption"] == "Памятка"
    assert me["username"] == "clinicbot_local_bot" and ok is True
    sent = api.calls_of("sendMessage")[0].params
    assert sent == {"chat_id": 501, "text": "Завтра в 10:00", "reply_markup": markup, "protect_content": True}


def test_errors_are_typed(api: FakeBotAPI) -> None:
    async def main() -> None:
        client = BotApiClient(api.token, base_url=api.base_url)
        try:
            api.fail_next("sendMessage", 429, retry_after=5)
            with pytest.raises(RetryAfter) as flood:
                await client.send_message(1, "a")
            assert flood.value.retry_after == 5 and flood.value.error_code == 429

            api.block_chat(2)
            with pytest.raises(Forbidden, match="blocked"):
                await client.send_message(2, "a")

            with pytest.raises(BadRequest, match="message text is empty"):
                await client.send_message(1, "")

            for status in (500, 502):
                api.fail_next("sendMessage", status)
                with pytest.raises(ServerError) as server:
                    await client.send_message(1, "a")
                assert server.value.error_code == status and not isinstance(server.value, NetworkError)

            with pytest.raises(BotApiError) as missing:
                await client.call("noSuchMethod")
            assert missing.value.error_code == 404

            api.delay(0.5, "sendMessage")
            with pytest.raises(NetworkError) as slow:
                await client.send_message(1, "a", request_timeout=0.1)
            assert slow.value.maybe_delivered is True
            api.delay(0, "sendMessage")
        finally:
            await client.close()

        async with BotApiClient("1:WRONG", base_url=api.base_url) as wrong:
            with pytest.raises(Unauthorized):
                await wrong.call("getMe")

    run(main())


def test_connection_refused_is_a_network_error_not_delivered() -> None:
    fake = FakeBotAPI()
    base = fake.start()
    fake.stop()  # nothing listens on that port now

    async def main() -> None:
        async with BotApiClient("1:X", base_url=base, timeout=2) as client:
            with pytest.raises(NetworkError) as info:
                await client.send_message(1, "a")
            assert info.value.maybe_delivered is False

    run(main())


def test_one_session_per_event_loop(api: FakeBotAPI) -> None:
    client = BotApiClient(api.token, base_url=api.base_url)

    async def invocation() -> Any:
        try:
            return await client.call("getMe")
        finally:
            await client.close()

    # a new loop per invocation (asyncio.run), closing the session at the end of each
    for _ in range(3):
        assert run(invocation())["is_bot"] is True
    assert api.token not in repr(client)


@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
def test_session_of_a_closed_loop_is_replaced(api: FakeBotAPI) -> None:
    client = BotApiClient(api.token, base_url=api.base_url)
    # forgetting close() leaks that loop's sockets, but the next loop still gets a working session
    for _ in range(2):
        assert run(client.call("getMe"))["is_bot"] is True
    run(client.close())
    gc.collect()  # let the leaked sockets' warnings surface here, where they are expected
