"""Where the counters come from: thin wrappers around the ports and clients a function already has.

Nothing here changes what is called or what it returns; each wrapper counts into the invocation in progress
(:data:`clinicbot.metering.usage.current_usage`) and forwards everything else. No aiogram import at module
level (the scheduled functions must not pay for it): the webhook's pieces import it where they are built.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

from clinicbot.metering.usage import MessageKind, Name, current_usage, record, record_message

__all__ = [
    "MESSAGE_METHODS",
    "CountingProxy",
    "OutboxProxy",
    "count_bot_call",
    "count_response_body",
    "meter_bot_api_client",
    "port_methods",
    "webhook_chat_capture",
    "webhook_request_middleware",
]

MESSAGE_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendVenue",
        "sendLocation",
        "sendContact",
        "sendMediaGroup",
        "sendPoll",
        "sendAudio",
        "sendVideo",
        "sendVoice",
        "sendAnimation",
        "sendSticker",
        "sendDice",
        "copyMessage",
        "copyMessages",
        "forwardMessage",
        "forwardMessages",
        # a dialogue step answered by editing the screen the patient pressed a button on is a reply too
        "editMessageText",
        "editMessageCaption",
        "editMessageMedia",
    }
)
"""Bot API methods that put a message (or a new screen of one) in front of someone. Not counted:
``answerCallbackQuery``, ``editMessageReplyMarkup``, ``deleteMessage``, ``sendChatAction``, topic management."""


def port_methods(protocol: type) -> frozenset[str]:
    """Public coroutine/function names a Protocol class declares (``MisPort``, ``CrmPort``)."""
    return frozenset(
        name
        for name, member in vars(protocol).items()
        if not name.startswith("_") and (inspect.isfunction(member) or inspect.iscoroutinefunction(member))
    )


class CountingProxy:
    """Forwards every attribute to ``target``; calls of ``methods`` count ``counter`` once each (when
    called: a call that fails was still a call to the MIS or CRM). Attribute writes go to the target."""

    __slots__ = ("_counter", "_methods", "_target")

    def __init__(self, target: Any, counter: Name | str, methods: Iterable[str]) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_counter", str(counter))
        object.__setattr__(self, "_methods", frozenset(methods))

    @property
    def wrapped(self) -> Any:
        return self._target

    def __getattr__(self, name: str) -> Any:
        value = getattr(self._target, name)
        if name not in self._methods or not callable(value):
            return value
        counter = self._counter

        def counted(*args: Any, **kwargs: Any) -> Any:
            record(counter)
            return value(*args, **kwargs)

        return counted

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._target, name, value)

    def __repr__(self) -> str:
        return f"CountingProxy({self._target!r}, {self._counter})"


class OutboxProxy(CountingProxy):
    """The hand-off outbox: each ``publish`` is a hand-off queued for the staff or the CRM."""

    __slots__ = ()

    def __init__(self, target: Any) -> None:
        super().__init__(target, Name.HANDOFFS, ("publish",))


def _kind_for(chat_id: Any) -> MessageKind:
    usage = current_usage.get()
    if usage is None or usage.chat_id is None or chat_id is None:
        return MessageKind.REPLY
    try:
        return MessageKind.REPLY if int(chat_id) == int(usage.chat_id) else MessageKind.RELAY
    except (TypeError, ValueError):  # "@channel" usernames: never the patient's chat
        return MessageKind.RELAY


def count_bot_call(method: str, chat_id: Any = None) -> MessageKind | None:
    """Count a successful Bot API call of the webhook: a reply to the update's chat, or a relay."""
    if method not in MESSAGE_METHODS:
        return None
    kind = _kind_for(chat_id)
    record_message(kind)
    return kind


def count_response_body(response: Mapping[str, Any]) -> MessageKind | None:
    """The method a webhook answered with in its HTTP response body (Telegram executes it)."""
    body = response.get("body")
    if not isinstance(body, str) or '"method"' not in body:
        return None
    try:
        payload = json.loads(body)
    except ValueError:
        return None
    if not isinstance(payload, dict) or not isinstance(payload.get("method"), str):
        return None
    return count_bot_call(payload["method"], payload.get("chat_id"))


def webhook_request_middleware() -> Any:
    """An aiogram session middleware: counts each successful Bot API call the webhook makes itself."""

    async def middleware(make_request: Callable[..., Awaitable[Any]], bot: Any, method: Any) -> Any:
        response = await make_request(bot, method)
        count_bot_call(getattr(method, "__api_method__", ""), getattr(method, "chat_id", None))
        return response

    return middleware


def webhook_chat_capture() -> Any:
    """An aiogram outer middleware on ``update``: remembers the update's chat (reply vs relay)."""

    async def capture(handler: Callable[..., Awaitable[Any]], event: Any, data: dict[str, Any]) -> Any:
        usage = current_usage.get()
        chat = data.get("event_chat")
        if usage is not None and chat is not None:
            usage.chat_id = chat.id
        return await handler(event, data)

    return capture


def meter_bot_api_client(client: Any, kind: MessageKind) -> Any:
    """Count the message-sending calls a ``BotApiClient`` makes as ``kind`` (its methods all go through
    ``call``). Idempotent: a client is wrapped once."""
    if getattr(client, "_clinicbot_metered", False):
        return client
    original = client.call

    async def call(method: str, /, **params: Any) -> Any:
        result = await original(method, **params)
        if method in MESSAGE_METHODS:
            record_message(kind)
        return result

    client.call = call
    client._clinicbot_metered = True
    return client
