"""A small async Telegram Bot API client (JSON bodies, typed errors, one aiohttp session per loop).

Never import aiogram here: this module is what keeps the scheduled functions' cold start short.
The bot token is part of every URL, so URLs are never logged; neither are message texts.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref
from types import TracebackType
from typing import Any

import aiohttp

__all__ = [
    "DEFAULT_BASE_URL",
    "BadRequest",
    "BotApiClient",
    "BotApiError",
    "Forbidden",
    "NetworkError",
    "RetryAfter",
    "ServerError",
    "Unauthorized",
]

log = logging.getLogger(__name__)

DEFAULT_BASE_URL = "https://api.telegram.org"


class BotApiError(Exception):
    """A Bot API call failed. ``error_code`` is Telegram's (the HTTP status), if there was an answer."""

    def __init__(self, method: str, description: str, error_code: int | None = None) -> None:
        super().__init__(f"{method}: {description}")
        self.method = method
        self.description = description
        self.error_code = error_code


class RetryAfter(BotApiError):
    """429 Too Many Requests: wait ``retry_after`` seconds before sending again."""

    def __init__(self, method: str, description: str, retry_after: float) -> None:
        super().__init__(method, description, 429)
        self.retry_after = retry_after


class Forbidden(BotApiError):
    """403: the user blocked the bot, deleted the account, or the bot is not in the chat."""


class BadRequest(BotApiError):
    """400: the request is wrong (chat not found, message too long, ...); retrying will not help.

    ``migrate_to_chat_id`` is set when a group became a supergroup.
    """

    def __init__(
        self, method: str, description: str, error_code: int = 400, migrate_to_chat_id: int | None = None
    ) -> None:
        super().__init__(method, description, error_code)
        self.migrate_to_chat_id = migrate_to_chat_id


class Unauthorized(BotApiError):
    """401: the bot token is wrong or revoked."""


class ServerError(BotApiError):
    """5xx from Telegram, or no usable answer at all (see :class:`NetworkError`): worth retrying."""


class NetworkError(ServerError):
    """No answer: the connection failed or timed out.

    ``maybe_delivered`` is False only when the request certainly never reached the server (the
    connection could not be opened); after a timeout or a dropped connection Telegram may have
    executed the call.
    """

    def __init__(self, method: str, description: str, *, maybe_delivered: bool) -> None:
        super().__init__(method, description, None)
        self.maybe_delivered = maybe_delivered


def _clean(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if v is not None}


class BotApiClient:
    """Calls ``{base_url}/bot{token}/{method}`` with a JSON body.

    The aiohttp session is created lazily, one per running event loop (a Lambda that runs a new
    loop per invocation still works; sessions of closed loops are dropped). Call :meth:`close`
    (or use ``async with``) on the loop that used the client when you are done.
    """

    def __init__(
        self,
        token: str,
        *,
        base_url: str = DEFAULT_BASE_URL,
        timeout: float = 10.0,
        connection_limit: int = 100,
    ) -> None:
        if not token:
            raise ValueError("a bot token is required")
        self._token = token
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._connection_limit = connection_limit
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary()
        )

    def __repr__(self) -> str:  # never show the token
        return f"BotApiClient(base_url={self.base_url!r})"

    # -------------------------------------------------------------------- session

    def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        for other in [lp for lp in self._sessions if lp.is_closed()]:
            del self._sessions[other]
        session = self._sessions.get(loop)
        if session is None or session.closed:
            session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=self._connection_limit),
                json_serialize=lambda obj: json.dumps(obj, ensure_ascii=False),
                raise_for_status=False,
            )
            self._sessions[loop] = session
        return session

    async def close(self) -> None:
        """Close the session of the running loop (sessions of other loops are left alone)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None and not session.closed:
            await session.close()

    async def __aenter__(self) -> BotApiClient:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -------------------------------------------------------------------- calls

    async def call(self, method: str, /, *, request_timeout: float | None = None, **params: Any) -> Any:
        """Call any Bot API method; ``None`` parameters are left out. Returns ``result``.

        Raises :class:`RetryAfter`, :class:`Forbidden`, :class:`BadRequest`, :class:`Unauthorized`,
        :class:`ServerError` / :class:`NetworkError`, or :class:`BotApiError` for anything else.
        """
        url = f"{self.base_url}/bot{self._token}/{method}"
        timeout = aiohttp.ClientTimeout(
            total=request_timeout if request_timeout is not None else self.timeout
        )
        try:
            async with self._session().post(url, json=_clean(params), timeout=timeout) as resp:
                status = resp.status
                raw = await resp.read()
        except aiohttp.ClientConnectorError as exc:
            raise NetworkError(
                method, f"cannot connect: {type(exc).__name__}", maybe_delivered=False
            ) from exc
        except TimeoutError as exc:
            raise NetworkError(method, "request timed out", maybe_delivered=True) from exc
        except aiohttp.ClientError as exc:
            raise NetworkError(
                method, f"connection error: {type(exc).__name__}", maybe_delivered=True
            ) from exc
        return self._result(method, status, raw)

    @staticmethod
    def _result(method: str, status: int, raw: bytes) -> Any:
        try:
            body = json.loads(raw)
            if not isinstance(body, dict):
                raise ValueError("not an object")
        except ValueError:
            if status >= 500 or status == 200:
                raise ServerError(method, f"HTTP {status} with a body that is not JSON", status) from None
            raise BotApiError(method, f"HTTP {status} with a body that is not JSON", status) from None
        if status == 200 and body.get("ok") is True:
            return body.get("result")
        code = int(body.get("error_code") or status)
        description = str(body.get("description") or f"HTTP {status}")
        parameters = body.get("parameters") or {}
        log.debug("Bot API %s answered %s", method, code)
        if parameters.get("retry_after") is not None:
            raise RetryAfter(method, description, float(parameters["retry_after"]))
        if code == 400:
            migrate = parameters.get("migrate_to_chat_id")
            raise BadRequest(method, description, 400, int(migrate) if migrate is not None else None)
        if code == 403:
            raise Forbidden(method, description, code)
        if code == 401:
            raise Unauthorized(method, description, code)
        if code == 429:
            raise RetryAfter(method, description, 1.0)
        if code >= 500:
            raise ServerError(method, description, code)
        raise BotApiError(method, description, code)

    async def send_message(
        self,
        chat_id: int | str,
        text: str,
        *,
        reply_markup: dict[str, Any] | None = None,
        parse_mode: str | None = None,
        protect_content: bool = False,
        message_thread_id: int | None = None,
        disable_notification: bool = False,
        link_preview_options: dict[str, Any] | None = None,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        """sendMessage; returns the sent Message as a dict."""
        result = await self.call(
            "sendMessage",
            request_timeout=request_timeout,
            chat_id=chat_id,
            text=text,
            reply_markup=reply_markup,
            parse_mode=parse_mode,
            protect_content=protect_content or None,
            message_thread_id=message_thread_id,
            disable_notification=disable_notification or None,
            link_preview_options=link_preview_options,
        )
        return dict(result)

    async def send_document(
        self,
        chat_id: int | str,
        document: str,
        *,
        caption: str | None = None,
        reply_markup: dict[str, Any] | None = None,
        parse_mode: str | None = None,
        protect_content: bool = False,
        message_thread_id: int | None = None,
        disable_notification: bool = False,
        request_timeout: float | None = None,
    ) -> dict[str, Any]:
        """sendDocument by ``file_id`` or HTTPS URL (no uploads); returns the sent Message as a dict."""
        result = await self.call(
            "sendDocument",
            request_timeout=request_timeout,
            chat_id=chat_id,
            document=document,
            caption=caption,
            reply_markup=reply_markup,
            parse_mode=parse_mode,
            protect_content=protect_content or None,
            message_thread_id=message_thread_id,
            disable_notification=disable_notification or None,
        )
        return dict(result)
