"""A stand-in for the clinic's CRM on loopback: a Standard Webhooks receiver and a Bitrix24 REST endpoint.

For tests and the local run (``python -m clinicbot local`` starts one and prints what arrives)::

    with FakeCrm(secret=TEST_CRM_SECRET) as crm:
        crm.webhook_url          # POST here, signed (webhook-id / webhook-timestamp / webhook-signature)
        crm.bitrix_url           # https://<portal>/rest/1/<code>/ as Bitrix24 gives it
        crm.fail_next(503, times=2)          # the next answers fail (Bitrix: QUERY_LIMIT_EXCEEDED by default)
        crm.delay(3.0)                       # answers after 3 s (processed anyway, like a slow server)
        crm.events, crm.leads, crm.comments  # what arrived (signature-checked and de-duplicated)

The webhook receiver checks every signature and timestamp and answers 401 on a bad one, so a test that
passes proves the bot signs correctly; it keeps one event per ``webhook-id`` (a redelivery is counted in
``duplicates``, not stored twice) and answers ``{"id": ...}``.

``python -m clinicbot.local.fake_crm sign EVENT [--secret S]`` re-signs an API Gateway event of
``events/handoff/`` with the current time (the samples' signatures are for a fixed timestamp, which the
bot rightly refuses as stale), for ``python -m clinicbot invoke handoff``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import json
import logging
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

from aiohttp import web

from clinicbot.handoff.signing import WebhookVerificationError, signed_headers, verify

__all__ = ["TEST_CRM_SECRET", "CrmEvent", "FakeCrm", "describe_event", "sign_event"]

log = logging.getLogger(__name__)

TEST_CRM_SECRET = "whsec_Y2xpbmljYm90LXRlc3QtY3JtLXNlY3JldC0wMTIzNDU2Nzg5"
"""The dummy shared secret of the tests and the samples in events/handoff/ (base64 of
``clinicbot-test-crm-secret-0123456789``). Never a real one."""
BITRIX_PATH = "/rest/1/testcode0123456789"


@dataclass(frozen=True)
class CrmEvent:
    webhook_id: str
    type: str
    data: dict[str, Any]
    at: float


@dataclass
class _Fault:
    status: int
    times: int
    code: str | None
    retry_after: int | None


@dataclass
class FakeCrm:
    secret: str = TEST_CRM_SECRET
    host: str = "127.0.0.1"
    port: int = 0
    on_event: Callable[[str, dict[str, Any]], None] | None = None
    events: list[CrmEvent] = field(default_factory=list)
    duplicates: int = 0
    rejected: int = 0  # bad signatures or stale timestamps
    requests: int = 0
    leads: dict[int, dict[str, Any]] = field(default_factory=dict)
    comments: list[dict[str, Any]] = field(default_factory=list)
    bitrix_calls: list[str] = field(default_factory=list)
    _seen: dict[str, str] = field(default_factory=dict)
    _faults: list[_Fault] = field(default_factory=list)
    _delay: float = 0.0
    _ids: Any = field(default_factory=lambda: itertools.count(101))
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _thread: threading.Thread | None = None
    _loop: asyncio.AbstractEventLoop | None = None
    _runner: web.AppRunner | None = None
    _base: str | None = None

    # ------------------------------------------------------------------ lifecycle
    @property
    def base_url(self) -> str:
        if self._base is None:
            raise RuntimeError("FakeCrm is not started")
        return self._base

    @property
    def webhook_url(self) -> str:
        return f"{self.base_url}/hooks/clinicbot"

    @property
    def bitrix_url(self) -> str:
        return f"{self.base_url}{BITRIX_PATH}/"

    def start(self) -> FakeCrm:
        ready = threading.Event()
        loop = asyncio.new_event_loop()
        self._loop = loop

        def serve() -> None:
            asyncio.set_event_loop(loop)
            loop.run_until_complete(self._startup())
            ready.set()
            loop.run_forever()
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

        self._thread = threading.Thread(target=serve, name="fake-crm", daemon=True)
        self._thread.start()
        if not ready.wait(10):
            raise RuntimeError("FakeCrm did not start")
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        if self._runner is not None:
            with contextlib.suppress(Exception):
                asyncio.run_coroutine_threadsafe(self._runner.cleanup(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        self._loop = self._thread = self._runner = None
        self._base = None

    def __enter__(self) -> FakeCrm:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    async def _startup(self) -> None:
        app = web.Application(client_max_size=30 * 1024 * 1024)
        app.router.add_post("/hooks/clinicbot", self._webhook)
        app.router.add_post(BITRIX_PATH + "/{method}.json", self._bitrix)
        runner = web.AppRunner(app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await runner.setup()
        site = web.TCPSite(runner, self.host, self.port)
        await site.start()
        self._runner = runner
        port = runner.addresses[0][1]
        self._base = f"http://{self.host}:{port}"

    # ------------------------------------------------------------------ faults
    def fail_next(
        self, status: int, *, times: int = 1, code: str | None = None, retry_after: int | None = None
    ) -> None:
        """The next ``times`` requests answer ``status`` (for Bitrix with error ``code``, by default
        QUERY_LIMIT_EXCEEDED for 503). The request is not executed."""
        with self._lock:
            self._faults.append(_Fault(status, times, code, retry_after))

    def delay(self, seconds: float) -> None:
        """Answer after ``seconds`` -- and still do the work: a timed-out client's request may have landed."""
        with self._lock:
            self._delay = seconds

    def reset(self) -> None:
        with self._lock:
            self._faults.clear()
            self._delay = 0.0
            self.events.clear()
            self._seen.clear()
            self.leads.clear()
            self.comments.clear()
            self.bitrix_calls.clear()
            self.duplicates = self.rejected = self.requests = 0

    def of_type(self, event_type: str) -> list[CrmEvent]:
        with self._lock:
            return [e for e in self.events if e.type == event_type]

    def wait_for(self, predicate: Callable[[FakeCrm], bool], timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while not predicate(self):
            if time.monotonic() > deadline:
                raise TimeoutError("the fake CRM did not get what was expected")
            time.sleep(0.01)

    def _take_fault(self) -> _Fault | None:
        with self._lock:
            self.requests += 1
            if not self._faults:
                return None
            fault = self._faults[0]
            fault.times -= 1
            if fault.times <= 0:
                self._faults.pop(0)
            return fault

    # ------------------------------------------------------------------ the webhook receiver
    async def _webhook(self, request: web.Request) -> web.Response:
        body = await request.read()
        fault = self._take_fault()
        if fault is not None:
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else None
            return web.json_response({"error": "injected"}, status=fault.status, headers=headers)
        if self._delay:
            await asyncio.sleep(self._delay)
        try:
            webhook_id, _ = verify(self.secret, dict(request.headers), body)
        except WebhookVerificationError as exc:
            with self._lock:
                self.rejected += 1
            return web.json_response({"error": exc.problem.value}, status=401)
        with self._lock:
            known = self._seen.get(webhook_id)
            if known is not None:
                self.duplicates += 1
                return web.json_response({"id": known, "duplicate": True})
            document = json.loads(body)
            crm_id = f"crm-{next(self._ids)}"
            self._seen[webhook_id] = crm_id
            self.events.append(
                CrmEvent(webhook_id, document["type"], document.get("data") or {}, time.time())
            )
        if self.on_event is not None:
            self.on_event(document["type"], document.get("data") or {})
        return web.json_response({"id": crm_id})

    # ------------------------------------------------------------------ Bitrix24
    async def _bitrix(self, request: web.Request) -> web.Response:
        method = request.match_info["method"]
        params = await request.json()
        fault = self._take_fault()
        if fault is not None:
            code = fault.code or ("QUERY_LIMIT_EXCEEDED" if fault.status == 503 else "INTERNAL_SERVER_ERROR")
            return web.json_response({"error": code, "error_description": "injected"}, status=fault.status)
        if self._delay:
            await asyncio.sleep(self._delay)
        with self._lock:
            self.bitrix_calls.append(method)
            if method == "crm.lead.add":
                lead_id = next(self._ids)
                self.leads[lead_id] = dict(params.get("fields") or {})
                result: Any = lead_id
            elif method == "crm.lead.list":
                wanted = params.get("filter") or {}
                result = [
                    {"ID": str(i)}
                    for i, lead in self.leads.items()
                    if all(str(lead.get(k)) == str(v) for k, v in wanted.items())
                ]
            elif method == "crm.timeline.comment.add":
                self.comments.append(dict(params.get("fields") or {}))
                result = next(self._ids)
            else:
                return web.json_response(
                    {"error": "ERROR_METHOD_NOT_FOUND", "error_description": method}, status=404
                )
        if self.on_event is not None:
            self.on_event(f"bitrix:{method}", params)
        return web.json_response({"result": result, "time": {"start": time.time()}})


# ---------------------------------------------------------------------------------- helpers
def describe_event(event_type: str, data: dict[str, Any]) -> str:
    """One line for the local run's terminal: what arrived, never the whole personal payload."""
    parts = [f"CRM ← {event_type}"]
    if data.get("request_number"):
        parts.append(f"№{data['request_number']}")
    if isinstance(data.get("patient"), dict):
        parts.append(f"patient {data['patient'].get('id')}")
    for key in ("window", "topic", "event", "start"):
        if data.get(key):
            parts.append(f"{key}={data[key]}")
    if data.get("years"):
        parts.append("years=" + ",".join(str(y) for y in data["years"]))
    if isinstance(data.get("message"), dict):
        parts.append(f"message type={data['message'].get('type')}")
    if isinstance(data.get("fields"), dict) and data["fields"].get("TITLE"):
        parts.append(str(data["fields"]["TITLE"]))
    return " · ".join(parts) + "  [signature ✓]"


def sign_event(
    event: dict[str, Any], secret: str = TEST_CRM_SECRET, *, now: float | None = None
) -> dict[str, Any]:
    """The same API Gateway event with fresh Standard Webhooks headers for its body."""
    signed = json.loads(json.dumps(event))
    headers = {k: v for k, v in (signed.get("headers") or {}).items() if not k.startswith("webhook-")}
    msg_id = (event.get("headers") or {}).get("webhook-id") or f"msg_local_{int(time.time())}"
    headers.update(signed_headers(secret, msg_id, signed.get("body") or "", now=now))
    signed["headers"] = headers
    return signed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m clinicbot.local.fake_crm")
    sub = parser.add_subparsers(dest="command", required=True)
    sign = sub.add_parser(
        "sign", help="re-sign an API Gateway event of events/handoff/ with the current time"
    )
    sign.add_argument("event")
    sign.add_argument("--secret", default=TEST_CRM_SECRET)
    args = parser.parse_args(argv)
    event = json.loads(Path(args.event).read_text(encoding="utf-8"))
    print(json.dumps(sign_event(event, args.secret), ensure_ascii=False, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
