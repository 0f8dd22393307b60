"""BulkSender against the fake Bot API: limits kept, faults survived, every message sent exactly once.

Rates are scaled up (100 msg/s, 5 msg/s per chat) so each test takes a second or two.
"""

from __future__ import annotations

import asyncio
import itertools
import re
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from clinicbot.local.fake_botapi import Call, FakeBotAPI
from clinicbot.sending import BulkSender, Outcome, OutgoingMessage, SendReport, SendStatus
from clinicbot.telegram_api import BotApiClient, RetryAfter, ServerError

KEY_RE = re.compile(r"\[(k\d+)\]")


@pytest.fixture
def api() -> Iterator[FakeBotAPI]:
    with FakeBotAPI() as fake:
        yield fake


def messages(count: int, *, chats: int | None = None, first_chat: int = 1000) -> list[OutgoingMessage]:
    chats = chats or count
    return [
        OutgoingMessage(key=f"k{i}", chat_id=first_chat + i % chats, text=f"Напоминание [k{i}]")
        for i in range(count)
    ]


def run_sender(
    api: FakeBotAPI,
    msgs: list[OutgoingMessage],
    *,
    deadline_in: float = 30.0,
    on_result: Any = None,
    **settings: Any,
) -> SendReport:
    settings.setdefault("global_rate", 100.0)
    settings.setdefault("per_chat_interval", 0.2)
    settings.setdefault("backoff_base", 0.05)

    async def main() -> SendReport:
        async with BotApiClient(api.token, base_url=api.base_url, timeout=5) as client:
            sender = BulkSender(client, **settings)
            return await sender.send(msgs, deadline=time.monotonic() + deadline_in, on_result=on_result)

    return asyncio.run(main())


def delivered_keys(api: FakeBotAPI) -> Counter[str]:
    """How many times each key reached a chat (successful sends only)."""
    counts: Counter[str] = Counter()
    for call in api.calls_of("sendMessage", ok_only=True):
        match = KEY_RE.search(call.params["text"])
        assert match, "every test message carries its key"
        counts[match.group(1)] += 1
    return counts


def test_every_message_delivered_exactly_once_within_limits(api: FakeBotAPI) -> None:
    api.enforce_rate_limits(global_per_second=100, per_chat_per_second=5)
    msgs = messages(120, chats=50)  # several messages per chat

    report = run_sender(api, msgs)

    assert set(report.sent) == {m.key for m in msgs}
    assert delivered_keys(api) == Counter({m.key: 1 for m in msgs})
    assert api.stats().rate_limited == 0 and report.rate_limited == 0
    assert api.peak_per_second("sendMessage") <= 100
    # per chat: never two sends within 1/5 s, and in the order given
    by_chat: dict[int, list[Call]] = {}
    for call in api.calls_of("sendMessage", ok_only=True):
        by_chat.setdefault(call.params["chat_id"], []).append(call)
    for chat_id, calls in by_chat.items():
        gaps = [b.mono - a.mono for a, b in itertools.pairwise(calls)]
        assert all(gap >= 0.2 for gap in gaps), (chat_id, gaps)
        keys = [int(KEY_RE.search(c.params["text"]).group(1)[1:]) for c in calls]  # type: ignore[union-attr]
        assert keys == sorted(keys)
    # message ids come back per key
    assert all(mid >= 1 for mid in report.sent.values())


def test_faults_429_5xx_403_are_survived(api: FakeBotAPI) -> None:
    api.enforce_rate_limits(global_per_second=100, per_chat_per_second=5)
    msgs = messages(60, chats=30)  # chat 1007 gets k7 and k37
    api.block_chat(1007)
    api.fail_next("sendMessage", 500, times=2)
    api.fail_next("sendMessage", 502)
    api.fail_next("sendMessage", 429, retry_after=1)

    results: list[tuple[str, Outcome]] = []

    async def on_result(key: str, outcome: Outcome) -> None:
        results.append((key, outcome))

    started = time.monotonic()
    report = run_sender(api, msgs, on_result=on_result)
    elapsed = time.monotonic() - started

    assert sorted(report.blocked) == ["k37", "k7"]
    to_blocked = [c for c in api.calls_of("sendMessage") if c.params["chat_id"] == 1007]
    assert [c.status for c in to_blocked] == [403]  # k37 was not even tried after k7 was refused
    expected = {m.key for m in msgs} - {"k7", "k37"}
    assert set(report.sent) == expected and not report.failed and not report.deferred
    assert delivered_keys(api) == Counter({k: 1 for k in expected})
    assert report.rate_limited == 1 and report.retries == 4
    assert api.stats().rate_limited == 0
    # the 429 paused everything for retry_after
    flood = next(c for c in api.calls_of("sendMessage") if c.status == 429)
    after = [c.mono - flood.mono for c in api.calls_of("sendMessage") if c.mono > flood.mono]
    assert after and min(after) >= 0.95
    assert elapsed < 5
    # on_result: once per message, the blocked ones included
    assert sorted(k for k, _ in results) == sorted(m.key for m in msgs)
    assert {o.status for k, o in results if k in ("k7", "k37")} == {SendStatus.BLOCKED}


def test_bad_request_and_exhausted_retries_fail(api: FakeBotAPI) -> None:
    api.fail_next("sendMessage", 500, times=3)
    exhausted = run_sender(api, [OutgoingMessage(key="k1", chat_id=1, text="[k1]")], max_retries=2)
    assert exhausted.failed == {"k1": "Internal Server Error"}
    assert exhausted.outcomes["k1"].attempts == 3 and exhausted.retries == 2

    msgs = [
        OutgoingMessage(key="k2", chat_id=2, text=""),  # Telegram: message text is empty
        OutgoingMessage(key="k3", chat_id=3, text="[k3]"),
    ]
    report = run_sender(api, msgs, max_retries=2)
    assert report.failed == {"k2": "Bad Request: message text is empty"}
    assert report.outcomes["k2"].attempts == 1  # a 400 is not retried
    assert list(report.sent) == ["k3"]
    assert delivered_keys(api) == Counter({"k3": 1})


def test_deadline_leaves_the_rest_deferred(api: FakeBotAPI) -> None:
    api.enforce_rate_limits(global_per_second=20, per_chat_per_second=1)
    msgs = messages(100)

    started = time.monotonic()
    report = run_sender(api, msgs, global_rate=20, deadline_in=1.0)
    elapsed = time.monotonic() - started

    assert 15 <= len(report.sent) <= 22
    assert len(report.sent) + len(report.deferred) == 100
    assert elapsed < 1.5
    sent_keys = delivered_keys(api)
    assert set(sent_keys) == set(report.sent) and set(sent_keys).isdisjoint(report.deferred)
    assert all(report.outcomes[k].attempts == 0 for k in report.deferred)
    assert api.stats().rate_limited == 0


def test_concurrency_hides_latency(api: FakeBotAPI) -> None:
    api.enforce_rate_limits(global_per_second=100, per_chat_per_second=1)
    api.delay(0.1)  # 100 ms per request: one at a time would manage 10 msg/s
    msgs = messages(60)

    report = run_sender(api, msgs, concurrency=16)

    assert len(report.sent) == 60
    assert report.elapsed < 1.3  # ~0.6 s at 97 msg/s + one round trip
    assert api.stats().rate_limited == 0


def test_timeouts_are_retried(api: FakeBotAPI) -> None:
    msgs = messages(3)
    api.delay(0.6, "sendMessage")

    async def main() -> SendReport:
        async with BotApiClient(api.token, base_url=api.base_url, timeout=0.3) as client:
            sender = BulkSender(client, global_rate=100, max_retries=1, backoff_base=0.05)
            task = asyncio.create_task(sender.send(msgs, deadline=time.monotonic() + 10))
            await asyncio.sleep(0.35)
            api.delay(0, "sendMessage")
            return await task

    report = asyncio.run(main())
    assert len(report.sent) == 3 and report.retries == 3
    # the timed-out first attempts were still delivered by the server: at-least-once, not exactly-once
    time.sleep(0.4)
    assert sum(delivered_keys(api).values()) == 6


def test_callback_errors_do_not_stop_sending(api: FakeBotAPI) -> None:
    async def on_result(key: str, outcome: Outcome) -> None:
        if key == "k1":
            raise RuntimeError("bookkeeping failed")

    report = run_sender(api, messages(3), on_result=on_result)
    assert len(report.sent) == 3 and report.callback_errors == ["k1"]


def test_duplicate_keys_are_sent_once(api: FakeBotAPI) -> None:
    msgs = [*messages(3), OutgoingMessage(key="k1", chat_id=5, text="[k1] again")]
    report = run_sender(api, msgs)
    assert report.duplicate_keys == ["k1"] and len(report.sent) == 3
    assert delivered_keys(api)["k1"] == 1


# --------------------------------------------------------------------------- virtual time, no server


class VirtualTime:
    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += max(0.0, seconds)
        await asyncio.sleep(0)


class ScriptedClient:
    """Answers from a script of exceptions (then success); records virtual send times."""

    def __init__(self, vt: VirtualTime, script: list[Exception]) -> None:
        self.vt = vt
        self.script = script
        self.sent: list[tuple[float, int | str, str]] = []

    async def send_message(self, chat_id: int | str, text: str, **_: Any) -> dict[str, Any]:
        await asyncio.sleep(0)
        if self.script:
            raise self.script.pop(0)
        self.sent.append((self.vt.now, chat_id, text))
        return {"message_id": len(self.sent)}

    async def send_document(self, chat_id: int | str, document: str, **_: Any) -> dict[str, Any]:
        return await self.send_message(chat_id, document)


def test_virtual_time_pacing_flood_pause_and_backoff() -> None:
    vt = VirtualTime()
    client = ScriptedClient(vt, [RetryAfter("sendMessage", "Too Many Requests: retry after 7", 7)])
    sender = BulkSender(client, global_rate=10, headroom=0.0, clock=vt.clock, sleep=vt.sleep, concurrency=1)
    report = asyncio.run(sender.send(messages(5), deadline=vt.now + 60))
    assert len(report.sent) == 5 and report.rate_limited == 1
    times = [t for t, _, _ in client.sent]
    assert times[0] >= 1007.0  # the first attempt hit the 429: nothing before retry_after
    gaps = [b - a for a, b in itertools.pairwise(times)]
    assert all(gap >= 0.1 - 1e-9 for gap in gaps)

    vt2 = VirtualTime()
    errors: list[Exception] = [ServerError("sendMessage", "Bad Gateway", 502) for _ in range(3)]
    client2 = ScriptedClient(vt2, errors)
    sender2 = BulkSender(
        client2, clock=vt2.clock, sleep=vt2.sleep, backoff_base=1.0, max_retries=5, concurrency=1
    )
    report2 = asyncio.run(sender2.send(messages(1), deadline=vt2.now + 60))
    assert report2.outcomes["k0"].attempts == 4
    # equal jitter: backoff n lies in [2**(n-1) / 2, 2**(n-1)]
    waited = client2.sent[0][0] - 1000.0
    assert 0.5 + 1 + 2 <= waited <= 1 + 2 + 4 + 0.1


def test_virtual_time_flood_beyond_deadline_defers() -> None:
    vt = VirtualTime()
    client = ScriptedClient(vt, [RetryAfter("sendMessage", "Too Many Requests: retry after 30", 30)])
    sender = BulkSender(client, clock=vt.clock, sleep=vt.sleep)
    report = asyncio.run(sender.send(messages(3), deadline=vt.now + 10))
    assert report.rate_limited == 1
    assert len(report.deferred) == 3 - len(report.sent)
    assert "k0" in report.deferred or report.outcomes["k0"].status is SendStatus.DEFERRED
    assert vt.now <= 1010.0 + 1e-9  # it did not sleep through the flood wait


def test_waiting_out_the_deadline_does_not_spin(api: FakeBotAPI) -> None:
    api.delay(0.3)
    msgs = [OutgoingMessage(key=f"k{i}", chat_id=1, text=f"[k{i}]") for i in range(2)]  # one chat: 1 s apart
    cpu = time.process_time()
    report = run_sender(api, msgs, per_chat_interval=1.0, deadline_in=0.6)
    assert list(report.sent) == ["k0"] and report.deferred == ["k1"]
    assert time.process_time() - cpu < 0.25
