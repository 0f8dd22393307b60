"""A fake Telegram Bot API server on loopback, for tests, benchmarks and the local terminal chat.

The server is an aiohttp application running in a background thread with its own event loop, so
synchronous tests and code that runs its own event loop can both talk to it::

    with FakeBotAPI() as api:                       # or api.start() / api.stop()
        bot = Bot(api.token, session=AiohttpSession(api=TelegramAPIServer.from_base(api.base_url)))
        ...
        call = api.wait_for(lambda c: c.method == "sendMessage", timeout=5)

URLs have Telegram's form ``{base_url}/bot{token}/{method}``. Requests may be multipart/form-data or
urlencoded (how aiogram sends them: complex fields such as ``reply_markup`` are JSON strings) or a
plain JSON body. Every request is recorded as a :class:`Call` -- including the ones answered with an
error, see :attr:`Call.ok` -- and answered the way Telegram answers.

Faults: :meth:`FakeBotAPI.fail_next`, :meth:`FakeBotAPI.block_chat`, :meth:`FakeBotAPI.delay` and
:meth:`FakeBotAPI.enforce_rate_limits` (a sliding one-second window, like Telegram's flood control).

The fake never logs message texts (they may carry patients' personal data).
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import itertools
import json
import logging
import math
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from aiohttp import web

__all__ = ["Call", "FakeBotAPI", "FakeStats"]

log = logging.getLogger(__name__)

DEFAULT_TOKEN = "123456:TEST-TOKEN"

# Parameters whose values are JSON-serialized objects in form-encoded requests.
_JSON_FIELDS = frozenset(
    {
        "reply_markup",
        "entities",
        "caption_entities",
        "explanation_entities",
        "question_entities",
        "text_entities",
        "commands",
        "scope",
        "link_preview_options",
        "reply_parameters",
        "allowed_updates",
        "menu_button",
        "media",
        "message_ids",
        "options",
        "results",
        "reaction",
        "permissions",
        "rights",
    }
)
# Parameters that stay strings even when they look like numbers or JSON.
_STRING_FIELDS = frozenset(
    {
        "text",
        "caption",
        "parse_mode",
        "callback_query_id",
        "inline_query_id",
        "inline_message_id",
        "name",
        "title",
        "address",
        "description",
        "short_description",
        "url",
        "secret_token",
        "ip_address",
        "question",
        "explanation",
        "emoji",
        "icon_custom_emoji_id",
        "business_connection_id",
        "foursquare_id",
        "foursquare_type",
        "google_place_id",
        "google_place_type",
        "phone_number",
        "first_name",
        "last_name",
        "vcard",
        "language_code",
        "file_id",
        "photo",
        "document",
        "video",
        "audio",
        "voice",
        "animation",
        "sticker",
        "thumbnail",
        "message_effect_id",
        "custom_title",
        "payload",
        "currency",
        "chat_id",  # coerced separately: an int, or "@channelusername"
    }
)
_TAG_RE = re.compile(r"<[^>]+>")
_INT_RE = re.compile(r"-?\d+\Z")
_FLOAT_RE = re.compile(r"-?\d+\.\d*\Z")

# Methods that deliver a message to a chat: blocked chats and flood control apply to them.
_SEND_METHODS = frozenset(
    {
        "sendMessage",
        "sendPhoto",
        "sendDocument",
        "sendVideo",
        "sendAudio",
        "sendVoice",
        "sendAnimation",
        "sendSticker",
        "sendVenue",
        "sendLocation",
        "sendContact",
        "sendPoll",
        "sendDice",
        "sendMediaGroup",
        "copyMessage",
        "copyMessages",
        "forwardMessage",
        "forwardMessages",
    }
)
# Methods that answer ``true`` and need nothing else.
_TRUE_METHODS = (
    "answerCallbackQuery",
    "answerInlineQuery",
    "deleteMessage",
    "deleteMessages",
    "sendChatAction",
    "pinChatMessage",
    "unpinChatMessage",
    "unpinAllChatMessages",
    "editForumTopic",
    "closeForumTopic",
    "reopenForumTopic",
    "deleteForumTopic",
    "unpinAllForumTopicMessages",
    "setMyDescription",
    "setMyShortDescription",
    "setMyName",
    "setMessageReaction",
    "banChatMember",
    "unbanChatMember",
    "logOut",
    "close",
)

_ERROR_DESCRIPTIONS = {
    400: "Bad Request",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    404: "Not Found",
    409: "Conflict",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}


@dataclass(frozen=True)
class Call:
    """One request the fake received.

    ``at`` is wall-clock time (``time.time()``) when the request arrived; ``mono`` is
    ``time.monotonic()`` at the same moment (use it for intervals). ``status`` is the HTTP status
    answered and ``response`` the JSON body answered.
    """

    method: str
    params: dict[str, Any]
    at: float
    status: int = 200
    response: dict[str, Any] = field(default_factory=dict)
    mono: float = 0.0

    @property
    def ok(self) -> bool:
        return self.status == 200

    @property
    def result(self) -> Any:
        return self.response.get("result")

    @property
    def chat_id(self) -> Any:
        return self.params.get("chat_id")


@dataclass(frozen=True)
class FakeStats:
    requests: int
    ok: int
    by_status: dict[int, int]
    rate_limited: int  # 429s answered by the flood control of enforce_rate_limits()
    injected: int  # errors answered because of fail_next()
    blocked: int  # 403s answered because of block_chat()


class _ApiError(Exception):
    def __init__(self, status: int, description: str, parameters: dict[str, Any] | None = None) -> None:
        super().__init__(description)
        self.status = status
        self.description = description
        self.parameters = parameters


@dataclass
class _FailRule:
    method: str | None
    status: int
    times: int
    retry_after: int | None
    description: str | None


@dataclass
class _RateLimit:
    count: int
    window: float


def _rate_limit(per_second: float) -> _RateLimit:
    if per_second <= 0:
        raise ValueError("rate must be positive")
    if per_second >= 1:
        return _RateLimit(count=int(per_second), window=1.0)
    return _RateLimit(count=1, window=1.0 / per_second)


def _error_body(status: int, description: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"ok": False, "error_code": status, "description": description}
    if parameters:
        body["parameters"] = parameters
    return body


def _coerce(key: str, value: str) -> Any:
    """Turn a form/query string value into what Telegram would understand it as."""
    if key in _JSON_FIELDS:
        try:
            return json.loads(value)
        except ValueError:
            what = "reply keyboard markup" if key == "reply_markup" else key
            raise _ApiError(400, f"Bad Request: can't parse {what} JSON object") from None
    if key == "chat_id" or key == "from_chat_id":
        return int(value) if _INT_RE.match(value) else value
    if key in _STRING_FIELDS:
        return value
    if value == "true":
        return True
    if value == "false":
        return False
    if _INT_RE.match(value):
        return int(value)
    if _FLOAT_RE.match(value):
        return float(value)
    return value


class FakeBotAPI:
    """A fake Telegram Bot API server. Thread-safe; see the module docstring."""

    def __init__(
        self,
        token: str = DEFAULT_TOKEN,
        bot_username: str = "clinicbot_local_bot",
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        bot_first_name: str = "ClinicBot",
    ) -> None:
        self.token = token
        self.host = host
        self.port = port
        bot_id_part = token.split(":", 1)[0]
        self.bot_user: dict[str, Any] = {
            "id": int(bot_id_part) if bot_id_part.isdigit() else 123456,
            "is_bot": True,
            "first_name": bot_first_name,
            "username": bot_username,
            "can_join_groups": True,
            "can_read_all_group_messages": False,
            "supports_inline_queries": False,
        }
        self._lock = threading.RLock()
        self._cond = threading.Condition(self._lock)
        self._calls: list[Call] = []
        self._subscribers: list[Callable[[Call], None]] = []
        # server thread
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._base_url: str | None = None
        self._updates_event: asyncio.Event | None = None
        self._closing: asyncio.Event | None = None
        # state
        self._message_ids: dict[Any, int] = {}
        self._messages: dict[tuple[Any, int], tuple[str | None, Any]] = {}
        self._updates: list[dict[str, Any]] = []
        self._last_update_id = 0
        self._webhook: dict[str, Any] = {}
        self._commands: dict[str, list[Any]] = {}
        self._menu_button: dict[str, Any] = {"type": "commands"}
        self._topic_ids = itertools.count(2)
        self._file_ids = itertools.count(1)
        self._members: dict[tuple[Any, int], str] = {}  # (chat id, user id) -> getChatMember status
        # faults
        self._fail_rules: list[_FailRule] = []
        self._blocked: set[Any] = set()
        self._delays: dict[str | None, float] = {}
        self._global_limit: _RateLimit | None = None
        self._chat_limit: _RateLimit | None = None
        self._group_limit: _RateLimit | None = None
        self._global_window: deque[float] = deque()
        self._chat_windows: dict[Any, deque[float]] = {}
        # stats
        self._status_counts: Counter[int] = Counter()
        self._rate_limited = 0
        self._injected = 0
        self._blocked_count = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def base_url(self) -> str:
        if self._base_url is None:
            raise RuntimeError("FakeBotAPI is not started")
        return self._base_url

    @property
    def api_url(self) -> str:
        """``{base_url}/bot{token}`` -- append ``/{method}``."""
        return f"{self.base_url}/bot{self.token}"

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def start(self) -> str:
        """Start serving (idempotent) and return the base URL, e.g. ``http://127.0.0.1:40123``."""
        with self._lock:
            if self._base_url is not None and self.running:
                return self._base_url
            ready = threading.Event()
            failure: list[BaseException] = []
            loop = asyncio.new_event_loop()
            self._loop = loop
            thread = threading.Thread(
                target=self._serve, args=(loop, ready, failure), name="fake-botapi", daemon=True
            )
            self._thread = thread
            thread.start()
        if not ready.wait(10):
            raise RuntimeError("FakeBotAPI did not start in 10 s")
        if failure:
            raise RuntimeError("FakeBotAPI failed to start") from failure[0]
        log.debug("fake Bot API listening on %s", self._base_url)
        return self.base_url

    def stop(self) -> None:
        """Stop serving (idempotent). Recorded calls stay available."""
        with self._lock:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
        if loop.is_running():
            fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
            with contextlib.suppress(Exception):
                fut.result(10)
            loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        with self._lock:
            self._loop = None
            self._thread = None
            self._base_url = None

    def __enter__(self) -> FakeBotAPI:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _serve(
        self, loop: asyncio.AbstractEventLoop, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # startup failure is reported to start()
            failure.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _startup(self) -> None:
        self._updates_event = asyncio.Event()
        self._closing = asyncio.Event()
        app = web.Application(client_max_size=60 * 1024 * 1024)
        app.router.add_route("*", "/bot{token}/{method}", self._handle)
        app.router.add_route("GET", "/file/bot{token}/{path:.*}", self._download)
        app.router.add_route("*", "/{tail:.*}", self._not_found)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port, reuse_address=True)
        await site.start()
        sockets = [s for s in (runner.addresses or [])]
        port = sockets[0][1] if sockets else self.port
        self._runner = runner
        self._base_url = f"http://{self.host}:{port}"

    async def _shutdown(self) -> None:
        if self._closing is not None:
            self._closing.set()
        if self._updates_event is not None:
            self._updates_event.set()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # ------------------------------------------------------------------ recorded calls

    @property
    def calls(self) -> list[Call]:
        """A snapshot of every call received so far, in the order they were answered."""
        with self._lock:
            return list(self._calls)

    def calls_of(self, method: str, *, ok_only: bool = False) -> list[Call]:
        with self._lock:
            return [c for c in self._calls if c.method == method and (c.ok or not ok_only)]

    def messages_to(self, chat_id: int | str) -> list[Call]:
        """Successful sends to ``chat_id`` (any send method), oldest first."""
        with self._lock:
            return [c for c in self._calls if c.ok and c.method in _SEND_METHODS and c.chat_id == chat_id]

    def clear(self) -> None:
        """Forget recorded calls and statistics (state such as message ids and faults stays)."""
        with self._lock:
            self._calls.clear()
            self._status_counts.clear()
            self._rate_limited = self._injected = self._blocked_count = 0

    def wait_for(self, predicate: Callable[[Call], bool], timeout: float = 5.0, *, start: int = 0) -> Call:
        """Block until a recorded call (index >= ``start``) matches ``predicate``; return it.

        Raises ``TimeoutError``. Do not call it from the event loop the code under test runs on
        (use :meth:`async_wait_for` there).
        """
        deadline = time.monotonic() + timeout
        index = start
        with self._cond:
            while True:
                while index < len(self._calls):
                    call = self._calls[index]
                    index += 1
                    if predicate(call):
                        return call
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"no matching Bot API call within {timeout} s")
                self._cond.wait(remaining)

    async def async_wait_for(
        self,
        predicate: Callable[[Call], bool],
        timeout: float = 5.0,  # noqa: ASYNC109 - same signature as wait_for
        *,
        start: int = 0,
    ) -> Call:
        """Like :meth:`wait_for`, but yields to the running event loop while waiting."""
        deadline = time.monotonic() + timeout
        index = start
        while True:
            with self._lock:
                pending = self._calls[index:]
            for call in pending:
                index += 1
                if predicate(call):
                    return call
            if time.monotonic() >= deadline:
                raise TimeoutError(f"no matching Bot API call within {timeout} s")
            await asyncio.sleep(0.01)

    def on_call(self, callback: Callable[[Call], None]) -> Callable[[], None]:
        """Call ``callback(call)`` (in the server thread) for every call from now on.

        Returns a function that unsubscribes. Exceptions in the callback are logged and ignored.
        """
        with self._lock:
            self._subscribers.append(callback)

        def unsubscribe() -> None:
            with self._lock, contextlib.suppress(ValueError):
                self._subscribers.remove(callback)

        return unsubscribe

    # ------------------------------------------------------------------ statistics

    def stats(self) -> FakeStats:
        with self._lock:
            return FakeStats(
                requests=len(self._calls),
                ok=self._status_counts.get(200, 0),
                by_status=dict(self._status_counts),
                rate_limited=self._rate_limited,
                injected=self._injected,
                blocked=self._blocked_count,
            )

    def _successful_sends(self, method: str | None) -> list[float]:
        with self._lock:
            return sorted(
                c.mono
                for c in self._calls
                if c.ok and (c.method == method if method else c.method in _SEND_METHODS)
            )

    def sent_per_second(self, method: str | None = None) -> float:
        """Achieved rate of successful sends (any send method, or ``method``): (n - 1) / time span."""
        times = self._successful_sends(method)
        if len(times) < 2 or times[-1] <= times[0]:
            return 0.0
        return (len(times) - 1) / (times[-1] - times[0])

    def peak_per_second(self, method: str | None = None, window: float = 1.0) -> int:
        """The largest number of successful sends that arrived within any ``window`` seconds."""
        times = self._successful_sends(method)
        best = 0
        lo = 0
        for hi, t in enumerate(times):
            while times[lo] <= t - window:
                lo += 1
            best = max(best, hi - lo + 1)
        return best

    # ------------------------------------------------------------------ updates (long polling)

    def push_update(self, update: dict[str, Any]) -> int:
        """Queue an update for ``getUpdates``; ``update_id`` is assigned if missing. Returns it."""
        with self._lock:
            update = dict(update)
            if "update_id" not in update:
                update["update_id"] = self._last_update_id + 1
            self._last_update_id = max(self._last_update_id, int(update["update_id"]))
            self._note_incoming_message(update)
            self._updates.append(update)
            loop, event = self._loop, self._updates_event
        if loop is not None and event is not None and loop.is_running():
            loop.call_soon_threadsafe(event.set)
        return int(update["update_id"])

    def _note_incoming_message(self, update: dict[str, Any]) -> None:
        # Keep the bot's message ids above the ids of messages the user sent, as Telegram does.
        for key in ("message", "edited_message", "channel_post"):
            msg = update.get(key)
            if isinstance(msg, dict) and isinstance(msg.get("chat"), dict):
                chat_id = msg["chat"].get("id")
                mid = msg.get("message_id")
                if isinstance(mid, int):
                    self._message_ids[chat_id] = max(self._message_ids.get(chat_id, 0), mid)

    @property
    def pending_updates(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._updates)

    # ------------------------------------------------------------------ faults

    def fail_next(
        self,
        method: str | None,
        status: int,
        *,
        times: int = 1,
        retry_after: int | None = None,
        description: str | None = None,
    ) -> None:
        """Answer the next ``times`` calls of ``method`` (``None``: any method but getUpdates) with an error.

        429 answers carry ``parameters.retry_after`` (default 1 s).
        """
        if status == 429 and retry_after is None:
            retry_after = 1
        with self._lock:
            self._fail_rules.append(_FailRule(method, status, times, retry_after, description))

    def block_chat(self, chat_id: int | str) -> None:
        """Every send to ``chat_id`` answers 403 (the user blocked the bot) until unblocked."""
        with self._lock:
            self._blocked.add(chat_id)

    def unblock_chat(self, chat_id: int | str) -> None:
        with self._lock:
            self._blocked.discard(chat_id)

    def set_member(self, chat_id: int | str, user_id: int, status: str = "member") -> None:
        """What ``getChatMember`` answers for this user in this chat (default for anyone: ``left``)."""
        with self._lock:
            self._members[(chat_id, user_id)] = status

    def delay(self, seconds: float, method: str | None = None) -> None:
        """Hold every answer (or answers to ``method``) for ``seconds`` before processing; 0 removes it.

        The request is still processed after the delay even if the client gave up, as a real server
        would: a client timeout does not mean the message was not delivered.
        """
        with self._lock:
            if seconds > 0:
                self._delays[method] = seconds
            else:
                self._delays.pop(method, None)

    def enforce_rate_limits(
        self,
        global_per_second: float = 30,
        per_chat_per_second: float = 1,
        *,
        per_group_per_minute: float | None = None,
    ) -> None:
        """Flood control on send methods: over a limit (sliding window) the answer is 429 with
        ``retry_after`` = seconds until the window has room again (rounded up, at least 1)."""
        with self._lock:
            self._global_limit = _rate_limit(global_per_second)
            self._chat_limit = _rate_limit(per_chat_per_second)
            self._group_limit = (
                _RateLimit(count=max(1, int(per_group_per_minute)), window=60.0)
                if per_group_per_minute
                else None
            )
            self._global_window.clear()
            self._chat_windows.clear()

    def disable_rate_limits(self) -> None:
        with self._lock:
            self._global_limit = self._chat_limit = self._group_limit = None

    def reset_faults(self) -> None:
        """Remove every fault: pending fail_next rules, blocked chats, delays, rate limits."""
        with self._lock:
            self._fail_rules.clear()
            self._blocked.clear()
            self._delays.clear()
        self.disable_rate_limits()

    # ------------------------------------------------------------------ HTTP

    async def _not_found(self, request: web.Request) -> web.Response:
        return web.json_response(_error_body(404, "Not Found"), status=404)

    async def _download(self, request: web.Request) -> web.Response:
        """``{base}/file/bot<token>/<file_path>`` (after getFile): a few fake bytes named by the path."""
        if request.match_info["token"] != self.token:
            return web.json_response(_error_body(401, "Unauthorized"), status=401)
        return web.Response(body=f"FAKE FILE {request.match_info['path']}".encode())

    async def _handle(self, request: web.Request) -> web.Response:
        at, mono = time.time(), time.monotonic()
        raw_method = request.match_info["method"]
        method = _CANONICAL.get(raw_method.lower(), raw_method)
        params: dict[str, Any] = {}
        try:
            if request.match_info["token"] != self.token:
                raise _ApiError(401, "Unauthorized")
            params = await self._read_params(request)
            if method not in _HANDLERS:
                raise _ApiError(404, "Not Found: method not found")
            with self._lock:
                pause = self._delays.get(method, self._delays.get(None, 0.0))
            if pause:
                # The delay models the way to the server: the call "arrives" after it.
                await asyncio.sleep(pause)
                at, mono = time.time(), time.monotonic()
            if method == "getUpdates":
                result = await self._get_updates(params)
            else:
                with self._lock:
                    self._check_faults(method, params, mono)
                    result = _HANDLERS[method](self, params)
            status, body = 200, {"ok": True, "result": result}
        except _ApiError as err:
            status, body = err.status, _error_body(err.status, err.description, err.parameters)
        except Exception:
            log.exception("fake Bot API failed on %s", method)
            status, body = 500, _error_body(500, "Internal Server Error")
        self._record(Call(method=method, params=params, at=at, status=status, response=body, mono=mono))
        return web.json_response(body, status=status)

    async def _read_params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = {k: _coerce(k, v) for k, v in request.query.items()}
        if request.method not in ("POST", "PUT") or not request.body_exists:
            return params
        if request.content_type == "application/json":
            try:
                body = await request.json()
            except ValueError:
                raise _ApiError(400, "Bad Request: can't parse JSON") from None
            if not isinstance(body, dict):
                raise _ApiError(400, "Bad Request: JSON object expected")
            for key, value in body.items():
                if key in _JSON_FIELDS and isinstance(value, str):
                    value = _coerce(key, value)
                params[key] = value
            return params
        form = await request.post()
        files: dict[str, dict[str, Any]] = {}
        for key, value in form.items():
            if isinstance(value, web.FileField):
                content = value.file.read()
                files[key] = {
                    "upload": True,
                    "filename": value.filename,
                    "content_type": value.content_type,
                    "size": len(content),
                }
            else:
                params[key] = _coerce(key, str(value))
        for key, value in list(params.items()):
            if isinstance(value, str) and value.startswith("attach://"):
                params[key] = files.pop(value[len("attach://") :], value)
        params.update(files)
        return params

    def _record(self, call: Call) -> None:
        with self._cond:
            self._calls.append(call)
            self._status_counts[call.status] += 1
            subscribers = list(self._subscribers)
            self._cond.notify_all()
        if call.method != "getUpdates":
            log.debug("fake Bot API %s -> %s", call.method, call.status)
        for callback in subscribers:
            try:
                callback(call)
            except Exception:
                log.exception("fake Bot API on_call subscriber failed")

    # ------------------------------------------------------------------ faults (called under the lock)

    def _check_faults(self, method: str, params: dict[str, Any], now: float) -> None:
        for rule in self._fail_rules:
            if rule.method == method or (rule.method is None and method != "getUpdates"):
                rule.times -= 1
                if rule.times <= 0:
                    self._fail_rules.remove(rule)
                self._injected += 1
                raise self._injected_error(rule)
        if method not in _SEND_METHODS:
            return
        chat_id = params.get("chat_id")
        if chat_id in self._blocked:
            self._blocked_count += 1
            if isinstance(chat_id, int) and chat_id < 0:
                raise _ApiError(403, "Forbidden: bot was kicked from the supergroup chat")
            raise _ApiError(403, "Forbidden: bot was blocked by the user")
        if self._global_limit is None and self._chat_limit is None and self._group_limit is None:
            return
        windows: list[tuple[deque[float], _RateLimit]] = []
        if self._global_limit is not None:
            windows.append((self._global_window, self._global_limit))
        chat_window = self._chat_windows.setdefault(chat_id, deque())
        if isinstance(chat_id, int) and chat_id < 0 and self._group_limit is not None:
            windows.append((chat_window, self._group_limit))
        elif self._chat_limit is not None:
            windows.append((chat_window, self._chat_limit))
        retry_after = 0.0
        for window, limit in windows:
            while window and window[0] <= now - limit.window:
                window.popleft()
            if len(window) >= limit.count:
                retry_after = max(retry_after, window[len(window) - limit.count] + limit.window - now)
        if retry_after > 0:
            self._rate_limited += 1
            seconds = max(1, math.ceil(retry_after))
            raise _ApiError(429, f"Too Many Requests: retry after {seconds}", {"retry_after": seconds})
        for window, _limit in windows:
            window.append(now)

    @staticmethod
    def _injected_error(rule: _FailRule) -> _ApiError:
        status = rule.status
        if status == 429:
            seconds = rule.retry_after or 1
            return _ApiError(
                429,
                rule.description or f"Too Many Requests: retry after {seconds}",
                {"retry_after": seconds},
            )
        description = rule.description or _ERROR_DESCRIPTIONS.get(status, f"Error {status}")
        if status == 400 and rule.description is None:
            description = "Bad Request: chat not found"
        return _ApiError(status, description)

    # ------------------------------------------------------------------ methods

    async def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        with self._lock:
            if self._webhook.get("url"):
                raise _ApiError(
                    409,
                    "Conflict: can't use getUpdates method while webhook is active; "
                    "use deleteWebhook to delete the webhook first",
                )
            self._check_faults("getUpdates", params, time.monotonic())
        offset = int(params.get("offset") or 0)
        limit = max(1, min(100, int(params.get("limit") or 100)))
        timeout = max(0.0, float(params.get("timeout") or 0))
        deadline = time.monotonic() + timeout
        event, closing = self._updates_event, self._closing
        assert event is not None and closing is not None
        while True:
            event.clear()
            with self._lock:
                if offset < 0:
                    self._updates = self._updates[offset:]
                elif offset:
                    self._updates = [u for u in self._updates if u["update_id"] >= offset]
                ready = self._updates[:limit]
            if ready or closing.is_set():
                return ready
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return []
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(event.wait(), remaining)

    def _chat(self, chat_id: Any) -> dict[str, Any]:
        if isinstance(chat_id, int):
            if chat_id > 0:
                return {"id": chat_id, "type": "private", "first_name": "User"}
            return {"id": chat_id, "type": "supergroup", "title": "Group", "is_forum": True}
        if isinstance(chat_id, str) and chat_id.startswith("@"):
            return {"id": -1001000000000 - len(chat_id), "type": "channel", "username": chat_id[1:]}
        if chat_id is None or chat_id == "":
            raise _ApiError(400, "Bad Request: chat_id is empty")
        raise _ApiError(400, "Bad Request: chat not found")

    def _message(self, params: dict[str, Any], **content: Any) -> dict[str, Any]:
        chat = self._chat(params.get("chat_id"))
        mid = self._message_ids.get(chat["id"], 0) + 1
        self._message_ids[chat["id"]] = mid
        msg: dict[str, Any] = {
            "message_id": mid,
            "from": self.bot_user,
            "date": int(time.time()),
            "chat": chat,
        }
        thread_id = params.get("message_thread_id")
        if thread_id:
            msg["message_thread_id"] = thread_id
            msg["is_topic_message"] = True
        if params.get("protect_content"):
            msg["has_protected_content"] = True
        msg.update({k: v for k, v in content.items() if v is not None})
        markup = params.get("reply_markup")
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            msg["reply_markup"] = markup
        self._messages[(chat["id"], mid)] = (msg.get("text"), markup)
        return msg

    def _file(self, value: Any, kind: str) -> dict[str, Any]:
        n = next(self._file_ids)
        file_id = value if isinstance(value, str) and not value.startswith("http") else f"FAKE-{kind}-{n}"
        out = {"file_id": file_id, "file_unique_id": f"U{kind}{n}", "file_size": 1024}
        if isinstance(value, dict) and value.get("filename"):
            out["file_name"] = value["filename"]
            out["file_size"] = value.get("size", 0)
        return out

    def _m_send_message(self, p: dict[str, Any]) -> dict[str, Any]:
        text = p.get("text")
        if not isinstance(text, str) or not text.strip():
            self._chat(p.get("chat_id"))
            raise _ApiError(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            raise _ApiError(400, "Bad Request: message is too long")
        _check_markup(p.get("reply_markup"))
        shown = _strip_html(text) if str(p.get("parse_mode") or "").lower() == "html" else text
        return self._message(p, text=shown, entities=p.get("entities"))

    def _m_edit_text(self, p: dict[str, Any]) -> Any:
        text = p.get("text")
        if not isinstance(text, str) or not text.strip():
            raise _ApiError(400, "Bad Request: message text is empty")
        if len(text) > 4096:
            raise _ApiError(400, "Bad Request: message is too long")
        _check_markup(p.get("reply_markup"))
        shown = _strip_html(text) if str(p.get("parse_mode") or "").lower() == "html" else text
        return self._edited(p, text=shown)

    def _m_edit_markup(self, p: dict[str, Any]) -> Any:
        _check_markup(p.get("reply_markup"))
        return self._edited(p, text=None)

    def _m_edit_caption(self, p: dict[str, Any]) -> Any:
        return self._edited(p, text=None, caption=p.get("caption"))

    def _edited(self, p: dict[str, Any], *, text: str | None, caption: str | None = None) -> Any:
        if p.get("inline_message_id"):
            return True
        message_id = p.get("message_id")
        if not isinstance(message_id, int):
            raise _ApiError(400, "Bad Request: message identifier is not specified")
        chat = self._chat(p.get("chat_id"))
        key = (chat["id"], message_id)
        markup = p.get("reply_markup")
        known = self._messages.get(key)
        new_text = text if text is not None else (known[0] if known else None)
        if known is not None and known == (new_text, markup) and caption is None:
            raise _ApiError(
                400,
                "Bad Request: message is not modified: specified new message content and reply markup "
                "are exactly the same as a current content and reply markup of the message",
            )
        self._messages[key] = (new_text, markup)
        msg: dict[str, Any] = {
            "message_id": message_id,
            "from": self.bot_user,
            "date": int(time.time()),
            "edit_date": int(time.time()),
            "chat": chat,
        }
        if new_text is not None:
            msg["text"] = new_text
        if caption is not None:
            msg["caption"] = caption
        if isinstance(markup, dict) and "inline_keyboard" in markup:
            msg["reply_markup"] = markup
        return msg

    def _m_copy(self, p: dict[str, Any]) -> dict[str, Any]:
        self._chat(p.get("from_chat_id"))
        return {"message_id": self._message(p)["message_id"]}

    def _m_forward(self, p: dict[str, Any]) -> dict[str, Any]:
        source = self._chat(p.get("from_chat_id"))
        origin: dict[str, Any] = {"type": "chat", "date": int(time.time()), "sender_chat": source}
        if source["type"] == "private":
            origin = {"type": "hidden_user", "date": int(time.time()), "sender_user_name": "User"}
        return self._message(p, forward_origin=origin)

    def _m_get_me(self, p: dict[str, Any]) -> dict[str, Any]:
        return self.bot_user

    def _m_true(self, p: dict[str, Any]) -> bool:
        return True

    def _m_answer_callback(self, p: dict[str, Any]) -> bool:
        if not p.get("callback_query_id"):
            raise _ApiError(
                400, "Bad Request: query is too old and response timeout expired or query ID is invalid"
            )
        text = p.get("text")
        if isinstance(text, str) and len(text) > 200:
            raise _ApiError(400, "Bad Request: MESSAGE_TOO_LONG")
        return True

    def _m_set_commands(self, p: dict[str, Any]) -> bool:
        commands = p.get("commands")
        if not isinstance(commands, list):
            raise _ApiError(400, 'Bad Request: parameter "commands" is required')
        self._commands[_commands_key(p)] = commands
        return True

    def _m_delete_commands(self, p: dict[str, Any]) -> bool:
        self._commands.pop(_commands_key(p), None)
        return True

    def _m_get_commands(self, p: dict[str, Any]) -> list[Any]:
        return self._commands.get(_commands_key(p), [])

    def _m_set_webhook(self, p: dict[str, Any]) -> bool:
        url = p.get("url") or ""
        if url and not str(url).startswith("https://"):
            raise _ApiError(400, "Bad Request: bad webhook: An HTTPS URL must be provided for webhook")
        self._webhook = {k: v for k, v in p.items() if k in ("url", "max_connections", "allowed_updates")}
        if p.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _m_delete_webhook(self, p: dict[str, Any]) -> bool:
        self._webhook = {}
        if p.get("drop_pending_updates"):
            self._updates.clear()
        return True

    def _m_webhook_info(self, p: dict[str, Any]) -> dict[str, Any]:
        info: dict[str, Any] = {
            "url": self._webhook.get("url", ""),
            "has_custom_certificate": False,
            "pending_update_count": 0 if self._webhook.get("url") else len(self._updates),
        }
        for key in ("max_connections", "allowed_updates"):
            if key in self._webhook:
                info[key] = self._webhook[key]
        return info

    def _m_set_menu_button(self, p: dict[str, Any]) -> bool:
        button = p.get("menu_button")
        self._menu_button = button if isinstance(button, dict) else {"type": "default"}
        return True

    def _m_get_menu_button(self, p: dict[str, Any]) -> dict[str, Any]:
        return self._menu_button

    def _m_create_topic(self, p: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(p.get("chat_id"))
        if chat["type"] != "supergroup":
            raise _ApiError(400, "Bad Request: the chat is not a forum")
        name = p.get("name")
        if not isinstance(name, str) or not 1 <= len(name) <= 128:
            raise _ApiError(400, "Bad Request: invalid forum topic name specified")
        topic: dict[str, Any] = {
            "message_thread_id": next(self._topic_ids),
            "name": name,
            "icon_color": int(p.get("icon_color") or 7322096),
        }
        if p.get("icon_custom_emoji_id"):
            topic["icon_custom_emoji_id"] = p["icon_custom_emoji_id"]
        return topic

    def _m_get_chat(self, p: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(p.get("chat_id"))
        return {**chat, "accent_color_id": 0, "max_reaction_count": 11}

    def _m_get_chat_member(self, p: dict[str, Any]) -> dict[str, Any]:
        chat = self._chat(p.get("chat_id"))
        user_id = p.get("user_id")
        if not isinstance(user_id, int):
            raise _ApiError(400, "Bad Request: invalid user_id specified")
        status = self._members.get((chat["id"], user_id), "left")
        member: dict[str, Any] = {
            "status": status,
            "user": {"id": user_id, "is_bot": False, "first_name": "User"},
        }
        if status == "administrator":
            member.update(can_be_edited=False, is_anonymous=False, can_manage_chat=True, can_delete_messages=True,
                          can_manage_video_chats=True, can_restrict_members=True, can_promote_members=False,
                          can_change_info=True, can_invite_users=True, can_post_stories=False,
                          can_edit_stories=False, can_delete_stories=False)  # fmt: skip
        elif status == "creator":
            member["is_anonymous"] = False
        elif status == "restricted":
            member.update(is_member=True, can_send_messages=True, can_send_audios=True, can_send_documents=True,
                          can_send_photos=True, can_send_videos=True, can_send_video_notes=True,
                          can_send_voice_notes=True, can_send_polls=True, can_send_other_messages=True,
                          can_add_web_page_previews=True, can_change_info=False, can_invite_users=False,
                          can_pin_messages=False, can_manage_topics=False, until_date=0)  # fmt: skip
        elif status == "kicked":
            member["until_date"] = 0
        return member

    def _m_get_file(self, p: dict[str, Any]) -> dict[str, Any]:
        file_id = p.get("file_id")
        if not file_id:
            raise _ApiError(400, "Bad Request: invalid file_id")
        return {
            "file_id": file_id,
            "file_unique_id": f"U{file_id}",
            "file_size": 1024,
            "file_path": "documents/file.pdf",
        }

    def _m_media_group(self, p: dict[str, Any]) -> list[dict[str, Any]]:
        media = p.get("media")
        if not isinstance(media, list) or not 2 <= len(media) <= 10:
            raise _ApiError(400, "Bad Request: wrong number of media in the album")
        group = f"{next(self._file_ids)}"
        return [self._message(p, media_group_id=group, caption=m.get("caption")) for m in media]


def _strip_html(text: str) -> str:
    return html.unescape(_TAG_RE.sub("", text))


def _commands_key(p: dict[str, Any]) -> str:
    return json.dumps([p.get("scope") or {"type": "default"}, p.get("language_code") or ""], sort_keys=True)


def _check_markup(markup: Any) -> None:
    if markup is None:
        return
    if not isinstance(markup, dict):
        raise _ApiError(400, "Bad Request: can't parse reply keyboard markup JSON object")
    rows = markup.get("inline_keyboard")
    if rows is None:
        return
    if not isinstance(rows, list) or not all(isinstance(r, list) for r in rows):
        raise _ApiError(
            400, "Bad Request: can't parse inline keyboard button: InlineKeyboardButton must be an Object"
        )
    for row in rows:
        for button in row:
            if not isinstance(button, dict) or not button.get("text"):
                raise _ApiError(
                    400,
                    "Bad Request: can't parse inline keyboard button: "
                    "Text buttons are unallowed in the inline keyboard",
                )
            data = button.get("callback_data")
            if data is not None and not 1 <= len(str(data).encode()) <= 64:
                raise _ApiError(400, "Bad Request: BUTTON_DATA_INVALID")


def _media_handler(
    kind: str, *, field_name: str | None = None
) -> Callable[[FakeBotAPI, dict[str, Any]], dict[str, Any]]:
    name = field_name or kind

    def handler(self: FakeBotAPI, p: dict[str, Any]) -> dict[str, Any]:
        value = p.get(name)
        if value is None or value == "":
            self._chat(p.get("chat_id"))
            raise _ApiError(400, f"Bad Request: there is no {name} in the request")
        caption = p.get("caption")
        if isinstance(caption, str) and len(caption) > 1024:
            raise _ApiError(400, "Bad Request: message caption is too long")
        _check_markup(p.get("reply_markup"))
        content: Any = self._file(value, kind)
        if kind == "photo":
            content = [{**content, "width": 320, "height": 240}]
        return self._message(p, **{kind: content, "caption": caption})

    return handler


def _location(p: dict[str, Any]) -> dict[str, Any]:
    try:
        return {"latitude": float(p["latitude"]), "longitude": float(p["longitude"])}
    except (KeyError, TypeError, ValueError):
        raise _ApiError(400, "Bad Request: wrong latitude or longitude") from None


def _send_location(self: FakeBotAPI, p: dict[str, Any]) -> dict[str, Any]:
    return self._message(p, location=_location(p))


def _send_venue(self: FakeBotAPI, p: dict[str, Any]) -> dict[str, Any]:
    location = _location(p)
    if not p.get("title") or not p.get("address"):
        raise _ApiError(400, "Bad Request: venue title and address must be non-empty")
    venue = {"location": location, "title": p["title"], "address": p["address"]}
    return self._message(p, venue=venue, location=location)


def _send_contact(self: FakeBotAPI, p: dict[str, Any]) -> dict[str, Any]:
    contact = {"phone_number": p.get("phone_number"), "first_name": p.get("first_name")}
    return self._message(p, contact=contact)


def _send_dice(self: FakeBotAPI, p: dict[str, Any]) -> dict[str, Any]:
    return self._message(p, dice={"emoji": p.get("emoji") or "🎲", "value": 6})


def _send_poll(self: FakeBotAPI, p: dict[str, Any]) -> dict[str, Any]:
    options = p.get("options")
    if not isinstance(options, list) or not 2 <= len(options) <= 10:
        raise _ApiError(400, "Bad Request: poll must have 2-10 options")
    poll = {
        "id": str(next(self._file_ids)),
        "question": p.get("question"),
        "options": [
            {"text": o.get("text") if isinstance(o, dict) else str(o), "voter_count": 0} for o in options
        ],
        "total_voter_count": 0,
        "is_closed": False,
        "is_anonymous": p.get("is_anonymous", True),
        "type": p.get("type") or "regular",
        "allows_multiple_answers": bool(p.get("allows_multiple_answers")),
    }
    return self._message(p, poll=poll)


def _copy_many(self: FakeBotAPI, p: dict[str, Any]) -> list[dict[str, Any]]:
    ids = p.get("message_ids")
    if not isinstance(ids, list) or not ids:
        raise _ApiError(400, "Bad Request: message identifiers are not specified")
    return [{"message_id": self._message(p)["message_id"]} for _ in ids]


_Handler = Callable[[FakeBotAPI, dict[str, Any]], Any]
_HANDLERS: dict[str, _Handler] = {
    "getMe": FakeBotAPI._m_get_me,
    "getUpdates": FakeBotAPI._m_true,  # served asynchronously by _get_updates
    "sendMessage": FakeBotAPI._m_send_message,
    "sendPhoto": _media_handler("photo"),
    "sendDocument": _media_handler("document"),
    "sendVideo": _media_handler("video"),
    "sendAudio": _media_handler("audio"),
    "sendVoice": _media_handler("voice"),
    "sendAnimation": _media_handler("animation"),
    "sendSticker": _media_handler("sticker"),
    "sendLocation": _send_location,
    "sendVenue": _send_venue,
    "sendContact": _send_contact,
    "sendDice": _send_dice,
    "sendPoll": _send_poll,
    "sendMediaGroup": FakeBotAPI._m_media_group,
    "editMessageText": FakeBotAPI._m_edit_text,
    "editMessageReplyMarkup": FakeBotAPI._m_edit_markup,
    "editMessageCaption": FakeBotAPI._m_edit_caption,
    "copyMessage": FakeBotAPI._m_copy,
    "copyMessages": _copy_many,
    "forwardMessage": FakeBotAPI._m_forward,
    "forwardMessages": _copy_many,
    "setMyCommands": FakeBotAPI._m_set_commands,
    "deleteMyCommands": FakeBotAPI._m_delete_commands,
    "getMyCommands": FakeBotAPI._m_get_commands,
    "setWebhook": FakeBotAPI._m_set_webhook,
    "deleteWebhook": FakeBotAPI._m_delete_webhook,
    "getWebhookInfo": FakeBotAPI._m_webhook_info,
    "setChatMenuButton": FakeBotAPI._m_set_menu_button,
    "getChatMenuButton": FakeBotAPI._m_get_menu_button,
    "createForumTopic": FakeBotAPI._m_create_topic,
    "getChat": FakeBotAPI._m_get_chat,
    "getFile": FakeBotAPI._m_get_file,
    "getChatMember": FakeBotAPI._m_get_chat_member,
    "answerCallbackQuery": FakeBotAPI._m_answer_callback,
    **{name: FakeBotAPI._m_true for name in _TRUE_METHODS if name != "answerCallbackQuery"},
}
_CANONICAL: dict[str, str] = {name.lower(): name for name in _HANDLERS}
