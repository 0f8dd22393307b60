"""Benchmark BulkSender against the fake Bot API enforcing Telegram's limits.

    .venv/bin/python bench/bench_sender.py               # 10,000 messages to 10,000 chats (~5.5 min)
    .venv/bin/python bench/bench_sender.py --count 600   # ~20 s

Prints the achieved rate and its share of the limit (goal: >= 95 %), and the 429s received.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import time

from clinicbot.local.fake_botapi import FakeBotAPI
from clinicbot.sending import BulkSender, OutgoingMessage
from clinicbot.telegram_api import BotApiClient


async def run(args: argparse.Namespace, api: FakeBotAPI) -> None:
    messages = [
        OutgoingMessage(key=f"m{i}", chat_id=1_000_000 + i, text=f"Напоминание m{i}: завтра в 10:00")
        for i in range(args.count)
    ]
    async with BotApiClient(api.token, base_url=api.base_url) as client:
        sender = BulkSender(client, global_rate=args.rate, concurrency=args.concurrency)
        started = time.monotonic()
        report = await sender.send(messages, deadline=started + args.deadline)
    stats = api.stats()
    fake_rate = api.sent_per_second("sendMessage")
    print(f"messages:        {args.count} to {args.count} chats, latency {args.latency * 1000:.0f} ms")
    print(
        f"sent:            {len(report.sent)}  deferred: {len(report.deferred)}  failed: {len(report.failed)}"
    )
    print(f"elapsed:         {report.elapsed:.1f} s")
    print(
        f"achieved:        {fake_rate:.2f} msg/s at the server = {100 * fake_rate / args.rate:.1f} % of {args.rate:g}"
    )
    print(f"overall:         {report.rate:.2f} msg/s including ramp-up and the last round trip")
    print(f"peak 1-s window: {api.peak_per_second('sendMessage')} (limit {int(args.rate)})")
    print(f"429s:            {stats.rate_limited} from the limiter, {report.rate_limited} seen by the sender")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=30.0, help="limit enforced by the fake and the sender")
    parser.add_argument("--latency", type=float, default=0.1, help="seconds added to every request")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--deadline", type=float, default=3600.0, help="seconds")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    with FakeBotAPI() as api:
        api.enforce_rate_limits(global_per_second=args.rate, per_chat_per_second=1)
        if args.latency > 0:
            api.delay(args.latency)
        asyncio.run(run(args, api))


if __name__ == "__main__":
    main()
