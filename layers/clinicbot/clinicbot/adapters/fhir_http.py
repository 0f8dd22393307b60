"""A small asynchronous HTTP client for a FHIR REST API (JSON), used by the FHIR MIS adapter.

* One ``aiohttp.ClientSession`` per event loop, created lazily on first use. When the loop was started by
  ``asyncio.run`` the session is closed as that loop shuts down (``asyncio.run`` finalises async generators,
  and a tiny generator tied to the session does the closing), so a client can be driven by several
  ``asyncio.run`` calls one after another without leaking sockets. ``close()`` closes the running loop's
  session explicitly.
* Each attempt has a total timeout. Retries use exponential backoff with full jitter and happen only where a
  repeat cannot do harm: reads (GET) on any connection error, timeout, 429 or 5xx; writes (PUT/POST/...)
  only when the connection could not be opened (nothing was sent) or a gateway said 502/503/504 (the
  request did not reach the server). When the attempts are used up: ``MisUnavailable``.
* Status codes become MIS errors: 404/410 ``NotFound``, 403 ``NotAllowed``, 412 ``PreconditionFailed``
  (the adapter decides what a stale version means), 409 ``Conflict``; other 4xx ``FhirStatusError``.
* Nothing personal is logged or put into messages: only methods, resource types and status codes (the
  query string of a patient search carries a phone number, so URLs are never logged).
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import weakref
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp
from yarl import URL

from clinicbot.mis.errors import MisError, MisUnavailable, NotAllowed, NotFound

__all__ = [
    "Conflict",
    "FhirHttp",
    "FhirStatusError",
    "InvalidResponse",
    "PreconditionFailed",
    "Response",
]

logger = logging.getLogger("clinicbot.mis.fhir")

FHIR_JSON = "application/fhir+json"
SAFE_METHODS = frozenset({"GET", "HEAD"})
RETRY_ANY_METHOD = frozenset({502, 503, 504})
RETRY_SAFE_METHOD = frozenset({429, 500, 502, 503, 504})


class FhirStatusError(MisError):
    """The server refused the request (a 4xx not mapped to a more specific error)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class PreconditionFailed(FhirStatusError):
    """412: the ``If-Match`` version is stale (someone changed the resource in between)."""


class Conflict(FhirStatusError):
    """409: the change conflicts with the resource's current state."""


class InvalidResponse(MisUnavailable):
    """The server answered with something that is not the FHIR resource expected (bad JSON, an unknown
    code value, a missing element): the MIS cannot be used until that is fixed, so callers treat it like
    an outage."""


@dataclass(frozen=True)
class Response:
    status: int
    body: dict[str, Any]


class _Retryable(Exception):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FhirHttp:
    """JSON over HTTP to one FHIR base URL (e.g. ``https://mis.example/fhir/R4``)."""

    def __init__(
        self,
        base_url: str,
        *,
        timeout: float = 5.0,
        retries: int = 2,
        token: str | None = None,
        backoff: float = 0.2,
        max_backoff: float = 2.0,
        connection_limit: int = 50,
    ) -> None:
        if timeout <= 0 or retries < 0:
            raise ValueError("timeout must be positive and retries not negative")
        self.base = URL(base_url.rstrip("/"))
        if not self.base.is_absolute():
            raise ValueError("the FHIR base URL must be absolute")
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self._token = token
        self._connection_limit = connection_limit
        self._sessions: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, aiohttp.ClientSession] = (
            weakref.WeakKeyDictionary()
        )
        self._closers: dict[int, AsyncIterator[None]] = {}

    def __repr__(self) -> str:  # never show the token
        return f"FhirHttp(base_url={str(self.base)!r})"

    # --- session --------------------------------------------------------------------------------------

    async def _session(self) -> aiohttp.ClientSession:
        loop = asyncio.get_running_loop()
        for other in [lp for lp in self._sessions if lp.is_closed()]:
            del self._sessions[other]
        session = self._sessions.get(loop)
        if session is None or session.closed:
            headers = {"Accept": FHIR_JSON}
            if self._token:
                headers["Authorization"] = f"Bearer {self._token}"
            session = aiohttp.ClientSession(
                headers=headers,
                connector=aiohttp.TCPConnector(limit=self._connection_limit),
                raise_for_status=False,
            )
            # aiohttp silently repeats a PUT/DELETE once when a pooled connection breaks after the request
            # was sent; a repeated write must be this client's decision (see the module docstring).
            if hasattr(session, "_retry_connection"):
                session._retry_connection = False
            self._sessions[loop] = session
            closer = self._close_on_shutdown(session)
            await closer.__anext__()  # the loop now tracks it and finalises it in shutdown_asyncgens()
            self._closers[id(session)] = closer
        return session

    async def _close_on_shutdown(self, session: aiohttp.ClientSession) -> AsyncIterator[None]:
        try:
            yield
        finally:
            self._closers.pop(id(session), None)
            if not session.closed:
                await session.close()

    async def close(self) -> None:
        """Close the running loop's session (sessions of other loops are left alone)."""
        session = self._sessions.pop(asyncio.get_running_loop(), None)
        if session is not None:
            closer = self._closers.pop(id(session), None)
            if not session.closed:
                await session.close()
            if closer is not None:
                await closer.aclose()  # type: ignore[attr-defined]

    # --- URLs -----------------------------------------------------------------------------------------

    def url(self, *parts: str) -> URL:
        """``base/part/part``; every part is one path segment (quoted, never split)."""
        url = self.base
        for part in parts:
            url = url / part
        return url

    def same_origin(self, url: URL) -> bool:
        return url.origin() == self.base.origin()

    # --- requests -------------------------------------------------------------------------------------

    async def get(self, url: URL, params: Mapping[str, str | list[str]] | None = None) -> dict[str, Any]:
        return (await self.request("GET", url, params=params)).body

    async def request(
        self,
        method: str,
        url: URL,
        *,
        params: Mapping[str, str | list[str]] | None = None,
        body: Mapping[str, Any] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Response:
        """One FHIR interaction with retries: the status and the JSON body (``{}`` when there is none)."""
        if not self.same_origin(url):
            raise InvalidResponse("the FHIR server pointed to another origin")
        method = method.upper()
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode()
        send_headers = {"Content-Type": f"{FHIR_JSON}; charset=utf-8"} if data is not None else {}
        send_headers.update(headers or {})
        resource_type = _resource_type(url, self.base)
        attempts = self.retries + 1
        for attempt in range(attempts):
            try:
                return await self._once(method, url, params, data, send_headers)
            except _Retryable as exc:
                if attempt + 1 >= attempts:
                    logger.warning(
                        "FHIR %s %s failed after %d attempts: %s", method, resource_type, attempts, exc.reason
                    )
                    raise MisUnavailable(f"FHIR {method} {resource_type}: {exc.reason}") from None
                delay = random.uniform(0, min(self.max_backoff, self.backoff * 2**attempt))
                logger.info(
                    "FHIR %s %s: %s; retry %d in %.2f s",
                    method,
                    resource_type,
                    exc.reason,
                    attempt + 1,
                    delay,
                )
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _once(
        self,
        method: str,
        url: URL,
        params: Mapping[str, str | list[str]] | None,
        data: bytes | None,
        headers: Mapping[str, str],
    ) -> Response:
        safe = method in SAFE_METHODS
        session = await self._session()
        timeout = aiohttp.ClientTimeout(total=self.timeout)
        try:
            async with session.request(
                method, url, params=params, data=data, headers=headers, timeout=timeout
            ) as response:
                status = response.status
                raw = await response.read()
        except aiohttp.ClientConnectorError as exc:  # the connection was never opened: nothing was sent
            raise _Retryable(f"cannot connect ({type(exc).__name__})") from None
        except TimeoutError:
            if safe:
                raise _Retryable("timed out") from None
            raise MisUnavailable(
                f"FHIR {method} timed out (the change may or may not have been applied)"
            ) from None
        except aiohttp.ClientError as exc:
            if safe:
                raise _Retryable(f"connection error ({type(exc).__name__})") from None
            raise MisUnavailable(
                f"FHIR {method}: connection lost ({type(exc).__name__}); the change may or may not have been applied"
            ) from None

        if status in RETRY_ANY_METHOD or (safe and status in RETRY_SAFE_METHOD):
            raise _Retryable(f"HTTP {status}")
        if status >= 500:
            raise MisUnavailable(f"FHIR {method}: HTTP {status}")
        payload = _parse(raw, status)
        if status < 300:
            return Response(status, payload)
        message = f"FHIR {method} {_resource_type(url, self.base)}: HTTP {status}"
        if status in (404, 410):
            raise NotFound(message)
        if status == 412:
            raise PreconditionFailed(status, message)
        if status == 409:
            raise Conflict(status, message)
        if status == 403:
            raise NotAllowed(message)
        if status == 401:
            logger.error("FHIR server refused the credentials (HTTP 401)")
            raise MisUnavailable(message)
        raise FhirStatusError(status, message)


def _parse(raw: bytes, status: int) -> dict[str, Any]:
    if not raw.strip():
        return {}
    try:
        payload = json.loads(raw)
    except ValueError:
        if status >= 300:
            return {}
        raise InvalidResponse("the FHIR server did not answer with JSON") from None
    if not isinstance(payload, dict):
        raise InvalidResponse("the FHIR server answered with JSON that is not an object")
    return payload


def _resource_type(url: URL, base: URL) -> str:
    """The first path segment after the base (``Slot``), for logs and messages: never ids or queries."""
    base_parts = [p for p in base.parts if p != "/"]
    parts = [p for p in url.parts if p != "/"]
    rest = parts[len(base_parts) :] if parts[: len(base_parts)] == base_parts else parts
    return rest[0] if rest else "/"
