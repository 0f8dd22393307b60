"""The fake Telegram Bot API server: aiogram talks to it like to Telegram; faults behave like Telegram's."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest
from aiogram import Bot
from aiogram.client.session.aiohttp import AiohttpSession
from aiogram.client.telegram import TelegramAPIServer
from aiogram.exceptions import (
    TelegramBadRequest,
    TelegramForbiddenError,
    TelegramRetryAfter,
    TelegramServerError,
    TelegramUnauthorizedError,
)
from aiogram.types import BotCommand, BufferedInputFile, InlineKeyboardButton, InlineKeyboardMarkup

from clinicbot.local.fake_botapi import Call, FakeBotAPI


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    with FakeBotAPI() as fake:
        yield fake


def make_bot(api: FakeBotAPI, token: str | None = None) -> Bot:
    return Bot(token or api.token, session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)))


def run_with_bot(api: FakeBotAPI, scenario: Any, token: str | None = None) -> Any:
    async def main() -> Any:
        bot = make_bot(api, token)
        try:
            return await scenario(bot)
        finally:
            await bot.session.close()

    return asyncio.run(main())


def post(api: FakeBotAPI, method: str, *, json: Any = None, data: Any = None, timeout: float = 5) -> Any:
    async def main() -> tuple[int, dict[str, Any]]:
        async with (
            aiohttp.ClientSession() as session,
            session.post(
                f"{api.api_url}/{method}", json=json, data=data, timeout=aiohttp.ClientTimeout(total=timeout)
            ) as resp,
        ):
            return resp.status, await resp.json()

    return asyncio.run(main())


# --------------------------------------------------------------------------- aiogram against the fake


def test_aiogram_get_me_send_message_with_inline_keyboard_callback_and_commands(api: FakeBotAPI) -> None:
    keyboard = InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text="Подтвердить", callback_data="confirm:42")],
            [InlineKeyboardButton(text="Отменить", callback_data="cancel:42")],
        ]
    )

    async def scenario(bot: Bot) -> Any:
        me = await bot.get_me()
        first = await bot.send_message(1001, "Напоминание о визите", reply_markup=keyboard)
        second = await bot.send_message(1001, "Второе")
        answered = await bot.answer_callback_query("cbq-1", text="Готово")
        commands = await bot.set_my_commands([BotCommand(command="start", description="Начать")])
        listed = await bot.get_my_commands()
        return me, first, second, answered, commands, listed

    me, first, second, answered, commands, listed = run_with_bot(api, scenario)

    assert me.username == "clinicbot_local_bot" and me.is_bot and me.id == 123456
    assert first.chat.id == 1001 and first.chat.type == "private"
    assert first.from_user is not None and first.from_user.id == me.id
    assert first.text == "Напоминание о визите"
    assert first.reply_markup is not None
    assert first.reply_markup.model_dump() == keyboard.model_dump()
    assert second.message_id == first.message_id + 1
    assert answered is True and commands is True
    assert [c.command for c in listed] == ["start"]

    sent = api.calls_of("sendMessage")
    assert len(sent) == 2
    assert sent[0].params["chat_id"] == 1001  # coerced to int
    assert sent[0].params["reply_markup"] == {
        "inline_keyboard": [
            [{"text": "Подтвердить", "callback_data": "confirm:42"}],
            [{"text": "Отменить", "callback_data": "cancel:42"}],
        ]
    }
    assert api.calls_of("answerCallbackQuery")[0].params == {"callback_query_id": "cbq-1", "text": "Готово"}
    assert api.calls_of("setMyCommands")[0].params["commands"] == [
        {"command": "start", "description": "Начать"}
    ]
    assert [c.method for c in api.calls] == [
        "getMe",
        "sendMessage",
        "sendMessage",
        "answerCallbackQuery",
        "setMyCommands",
        "getMyCommands",
    ]
    assert all(c.ok and c.at > 0 for c in api.calls)


def test_supergroup_topics_edits_and_documents(api: FakeBotAPI) -> None:
    async def scenario(bot: Bot) -> Any:
        topic = await bot.create_forum_topic(-1001234, "Пациент #7")
        in_topic = await bot.send_message(-1001234, "Вопрос", message_thread_id=topic.message_thread_id)
        edited = await bot.edit_message_text(
            "Вопрос (ред.)", chat_id=-1001234, message_id=in_topic.message_id
        )
        with pytest.raises(TelegramBadRequest, match="message is not modified"):
            await bot.edit_message_text("Вопрос (ред.)", chat_id=-1001234, message_id=in_topic.message_id)
        doc = await bot.send_document(
            1001, BufferedInputFile(b"%PDF-1.4", filename="memo.pdf"), caption="Памятка"
        )
        by_id = await bot.send_document(1001, "BQACAgIAAxkBAAIB")
        return topic, in_topic, edited, doc, by_id

    topic, in_topic, edited, doc, by_id = run_with_bot(api, scenario)
    assert topic.name == "Пациент #7" and topic.message_thread_id >= 2
    assert in_topic.chat.type == "supergroup"
    assert in_topic.message_thread_id == topic.message_thread_id
    assert edited.text == "Вопрос (ред.)" and edited.message_id == in_topic.message_id
    assert doc.document is not None and doc.document.file_name == "memo.pdf" and doc.caption == "Памятка"
    assert by_id.document is not None and by_id.document.file_id == "BQACAgIAAxkBAAIB"
    upload = api.calls_of("sendDocument")[0].params["document"]
    assert upload["filename"] == "memo.pdf" and upload["size"] == 8


def test_bad_requests_like_telegram(api: FakeBotAPI) -> None:
    long_data = InlineKeyboardMarkup(
        inline_keyboard=[[InlineKeyboardButton(text="x", callback_data="x" * 65)]]
    )

    async def scenario(bot: Bot) -> None:
        with pytest.raises(TelegramBadRequest, match="message is too long"):
            await bot.send_message(1, "x" * 4097)
        with pytest.raises(TelegramBadRequest, match="BUTTON_DATA_INVALID"):
            await bot.send_message(1, "ok", reply_markup=long_data)

    run_with_bot(api, scenario)
    assert [c.status for c in api.calls] == [400, 400]
    assert api.calls_of("sendMessage", ok_only=True) == []


def test_wrong_token_is_unauthorized(api: FakeBotAPI) -> None:
    async def scenario(bot: Bot) -> None:
        with pytest.raises(TelegramUnauthorizedError):
            await bot.get_me()

    run_with_bot(api, scenario, token="654321:WRONG")
    assert api.calls[0].status == 401


def test_unknown_method_is_404_and_json_bodies_work(api: FakeBotAPI) -> None:
    status, body = post(api, "sendTelepathy", json={"chat_id": 1})
    assert status == 404
    assert body == {"ok": False, "error_code": 404, "description": "Not Found: method not found"}

    markup = {"inline_keyboard": [[{"text": "A", "callback_data": "a"}]]}
    status, body = post(api, "sendMessage", json={"chat_id": 5, "text": "hi", "reply_markup": markup})
    assert status == 200 and body["ok"] is True
    assert body["result"]["reply_markup"] == markup and body["result"]["chat"]["id"] == 5

    # urlencoded with a JSON-string field, method name case-insensitive like Telegram
    status, body = post(
        api, "SENDMESSAGE", data={"chat_id": "5", "text": "007", "reply_markup": '{"inline_keyboard":[]}'}
    )
    assert status == 200 and body["result"]["text"] == "007" and body["result"]["message_id"] == 2
    assert api.calls[-1].method == "sendMessage" and api.calls[-1].params["reply_markup"] == {
        "inline_keyboard": []
    }


# --------------------------------------------------------------------------- faults


def test_fail_next_429_carries_retry_after(api: FakeBotAPI) -> None:
    api.fail_next("sendMessage", 429, retry_after=7)
    status, body = post(api, "sendMessage", json={"chat_id": 1, "text": "a"})
    assert status == 429
    assert body == {
        "ok": False,
        "error_code": 429,
        "description": "Too Many Requests: retry after 7",
        "parameters": {"retry_after": 7},
    }
    assert post(api, "sendMessage", json={"chat_id": 1, "text": "a"})[0] == 200  # only once

    api.fail_next("sendMessage", 429, retry_after=3)

    async def scenario(bot: Bot) -> None:
        with pytest.raises(TelegramRetryAfter) as info:
            await bot.send_message(1, "b")
        assert info.value.retry_after == 3

    run_with_bot(api, scenario)
    assert api.stats().injected == 2


def test_fail_next_5xx_and_403_and_any_method(api: FakeBotAPI) -> None:
    api.fail_next("sendMessage", 500, times=2)
    api.fail_next(None, 502)
    assert post(api, "sendMessage", json={"chat_id": 1, "text": "a"}) == (
        500,
        {"ok": False, "error_code": 500, "description": "Internal Server Error"},
    )
    assert post(api, "sendMessage", json={"chat_id": 1, "text": "a"})[0] == 500
    assert post(api, "getMe", json={}) == (
        502,
        {"ok": False, "error_code": 502, "description": "Bad Gateway"},
    )
    assert post(api, "getMe", json={})[0] == 200

    api.fail_next("sendMessage", 403)

    async def scenario(bot: Bot) -> None:
        with pytest.raises(TelegramForbiddenError, match="bot was blocked by the user"):
            await bot.send_message(1, "a")
        api.fail_next("answerCallbackQuery", 500)
        with pytest.raises(TelegramServerError):
            await bot.answer_callback_query("q")

    run_with_bot(api, scenario)
    assert api.stats().by_status == {500: 3, 502: 1, 200: 1, 403: 1}


def test_block_chat(api: FakeBotAPI) -> None:
    api.block_chat(77)
    assert post(api, "sendMessage", json={"chat_id": 77, "text": "a"}) == (
        403,
        {"ok": False, "error_code": 403, "description": "Forbidden: bot was blocked by the user"},
    )
    assert post(api, "sendMessage", json={"chat_id": 78, "text": "a"})[0] == 200
    api.unblock_chat(77)
    assert post(api, "sendMessage", json={"chat_id": 77, "text": "a"})[0] == 200
    assert api.stats().blocked == 1


def test_delay_makes_clients_time_out(api: FakeBotAPI) -> None:
    api.delay(0.5, "sendMessage")
    with pytest.raises(asyncio.TimeoutError):
        post(api, "sendMessage", json={"chat_id": 1, "text": "slow"}, timeout=0.1)
    assert post(api, "getMe", json={}, timeout=0.3)[0] == 200  # other methods unaffected
    api.delay(0, "sendMessage")
    assert post(api, "sendMessage", json={"chat_id": 1, "text": "fast"}, timeout=0.3)[0] == 200


def test_rate_limits_sliding_window(api: FakeBotAPI) -> None:
    api.enforce_rate_limits(global_per_second=5, per_chat_per_second=1)
    statuses = [post(api, "sendMessage", json={"chat_id": 100 + i, "text": "x"})[0] for i in range(7)]
    assert statuses == [200] * 5 + [429, 429]
    status, body = post(api, "sendMessage", json={"chat_id": 200, "text": "x"})
    assert status == 429 and body["parameters"]["retry_after"] == 1
    assert body["description"] == "Too Many Requests: retry after 1"
    assert post(api, "getMe", json={})[0] == 200  # not a send: not limited

    api.enforce_rate_limits(global_per_second=100, per_chat_per_second=1)
    assert post(api, "sendMessage", json={"chat_id": 1, "text": "x"})[0] == 200
    assert post(api, "sendMessage", json={"chat_id": 1, "text": "x"})[0] == 429  # same chat within 1 s
    assert post(api, "sendMessage", json={"chat_id": 2, "text": "x"})[0] == 200
    assert api.stats().rate_limited == 4
    assert api.peak_per_second(window=60) == 7


def test_statistics_rate(api: FakeBotAPI) -> None:
    for i in range(5):
        post(api, "sendMessage", json={"chat_id": i + 1, "text": "x"})
        time.sleep(0.05)
    assert 5 < api.sent_per_second() < 30
    api.clear()
    assert api.calls == [] and api.sent_per_second() == 0.0


# --------------------------------------------------------------------------- updates, waiting, subscriptions


def test_get_updates_long_polling_with_offset(api: FakeBotAPI) -> None:
    first = api.push_update(
        {"message": {"message_id": 10, "date": 0, "chat": {"id": 5, "type": "private"}, "text": "/start"}}
    )

    async def scenario(bot: Bot) -> Any:
        got = await bot.get_updates(timeout=1)
        assert [u.update_id for u in got] == [first]
        t0 = time.monotonic()
        threading.Timer(
            0.2,
            api.push_update,
            args=(
                {
                    "callback_query": {
                        "id": "q",
                        "from": {"id": 5, "is_bot": False, "first_name": "A"},
                        "chat_instance": "c",
                        "data": "x",
                    }
                },
            ),
        ).start()
        later = await bot.get_updates(offset=first + 1, timeout=3)
        waited = time.monotonic() - t0
        empty = await bot.get_updates(offset=later[-1].update_id + 1, timeout=0)
        reply = await bot.send_message(5, "hi")
        return later, waited, empty, reply

    later, waited, empty, reply = run_with_bot(api, scenario)
    assert [u.update_id for u in later] == [first + 1] and later[0].callback_query is not None
    assert 0.1 < waited < 2.0
    assert empty == []
    assert reply.message_id == 11  # above the user's message id
    assert api.pending_updates == []


def test_get_updates_conflicts_with_webhook(api: FakeBotAPI) -> None:
    assert post(api, "setWebhook", json={"url": "https://example.org/hook"})[0] == 200
    assert post(api, "getUpdates", json={})[0] == 409
    assert post(api, "deleteWebhook", json={})[0] == 200
    assert post(api, "getUpdates", json={}) == (200, {"ok": True, "result": []})


def test_wait_for_and_on_call_from_other_threads(api: FakeBotAPI) -> None:
    seen: list[Call] = []
    unsubscribe = api.on_call(seen.append)
    start = len(api.calls)
    threading.Timer(
        0.1, post, args=(api, "sendMessage"), kwargs={"json": {"chat_id": 9, "text": "later"}}
    ).start()
    call = api.wait_for(
        lambda c: c.method == "sendMessage" and c.params["text"] == "later", timeout=3, start=start
    )
    assert call.result["chat"]["id"] == 9
    assert [c.method for c in seen] == ["sendMessage"]
    unsubscribe()
    post(api, "getMe", json={})
    assert len(seen) == 1
    with pytest.raises(TimeoutError):
        api.wait_for(lambda c: c.method == "sendPhoto", timeout=0.1)
    assert [c.params["text"] for c in api.messages_to(9)] == ["later"]


def test_async_wait_for_inside_a_running_loop(api: FakeBotAPI) -> None:
    async def scenario(bot: Bot) -> Call:
        task = asyncio.create_task(api.async_wait_for(lambda c: c.method == "sendMessage", timeout=3))
        await asyncio.sleep(0.05)
        await bot.send_message(3, "x")
        return await task

    assert run_with_bot(api, scenario).params["chat_id"] == 3


def test_restart_and_stop_are_idempotent() -> None:
    fake = FakeBotAPI()
    url = fake.start()
    assert fake.start() == url
    fake.stop()
    fake.stop()
    url2 = fake.start()
    try:
        assert post(fake, "getMe", json={})[0] == 200
    finally:
        fake.stop()
    assert url2.startswith("http://127.0.0.1:")
