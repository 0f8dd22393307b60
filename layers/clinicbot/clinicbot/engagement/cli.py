"""Engagement commands of ``python -m clinicbot``: ``feedback-report``, ``broadcast``, ``broadcast-run``.

They read the same environment as the functions (``CLINICBOT_*``, ``AWS_ENDPOINT_URL`` for a local stack).
Broadcasts are sent here or by a scheduled function, never by the webhook.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
from typing import Any, TextIO

__all__ = ["add_commands", "print_report"]


def _settings() -> Any:
    from clinicbot.config import load_settings

    return load_settings()


def _configure_tables(settings: Any) -> None:
    from clinicbot.engagement import feedback_store
    from clinicbot.storage import models

    models.configure(table_name=settings.state_table)
    feedback_store.configure(table_name=settings.feedback_table)


def print_report(rows: list[Any], names: dict[str, str], month: str, out: TextIO) -> None:
    from clinicbot.engagement.feedback import DoctorMonth

    header = f"{'doctor':<44} {'ratings':>7} {'average':>7} {'NPS n':>6} {'NPS':>6}"
    out.write(f"Feedback for {month}\n{header}\n{'-' * len(header)}\n")
    total = DoctorMonth(month, "*")
    for row in rows:
        total.ratings += row.ratings
        total.nps_scores += row.nps_scores
        label = f"{names.get(row.doctor_id, row.doctor_id)} ({row.doctor_id})"
        out.write(_line(label, row))
    if not rows:
        out.write("(no answers)\n")
    out.write(f"{'-' * len(header)}\n" + _line("all doctors", total))


def _line(label: str, row: Any) -> str:
    average = f"{row.average:.2f}" if row.average is not None else "-"
    nps = f"{row.nps:+.1f}" if row.nps is not None else "-"
    return f"{label[:44]:<44} {len(row.ratings):>7} {average:>7} {len(row.nps_scores):>6} {nps:>6}\n"


def cmd_feedback_report(args: argparse.Namespace) -> int:
    """NPS and average rating per doctor for a month (anonymous and named answers alike)."""
    from clinicbot.engagement.feedback import monthly_report
    from clinicbot.engagement.feedback_store import FeedbackRepository

    settings = _settings()
    _configure_tables(settings)
    rows = monthly_report(FeedbackRepository().month(args.month))
    if args.json:
        data = [
            {
                "doctor_id": r.doctor_id,
                "ratings": len(r.ratings),
                "average": r.average,
                "nps": r.nps,
                "nps_answers": len(r.nps_scores),
            }
            for r in rows
        ]
        json.dump({"month": args.month, "doctors": data}, sys.stdout, ensure_ascii=False, indent=2)
        sys.stdout.write("\n")
        return 0
    names: dict[str, str] = {}
    if not args.no_names:
        try:
            from clinicbot.bootstrap import build_mis

            names = {
                d.id: d.full_name.get(settings.default_language)
                for d in asyncio.run(build_mis(settings).doctors())
            }
        except Exception:  # the report stands on its own: ids are enough
            names = {}
    print_report(rows, names, args.month, sys.stdout)
    return 0


async def _run_broadcasts(settings: Any, campaign_id: str | None, budget: float) -> list[Any]:
    from clinicbot.bootstrap import build_mis
    from clinicbot.engagement.broadcasts import BroadcastRunner, run_pending_broadcasts
    from clinicbot.sending.sender import BulkSender
    from clinicbot.telegram_api.client import BotApiClient

    client = BotApiClient(settings.resolved_bot_token(), base_url=settings.telegram_api_base)
    try:
        runner = BroadcastRunner(
            sender=BulkSender(client), mis=build_mis(settings), default_language=settings.default_language
        )
        deadline = time.monotonic() + budget
        if campaign_id:
            return [await runner.run(campaign_id, deadline=deadline)]
        return await run_pending_broadcasts(runner, deadline=deadline)
    finally:
        await client.close()


def cmd_broadcast(args: argparse.Namespace) -> int:
    """Create a campaign for patients with the marketing consent; with --run, send it now."""
    from clinicbot.engagement.broadcasts import Campaign, Segment, start_broadcast

    settings = _settings()
    _configure_tables(settings)
    texts = {"ru": args.text_ru, **({"en": args.text_en} if args.text_en else {})}
    campaign = Campaign(texts=texts, segment=Segment.parse(args.segment), total_segments=args.segments)
    campaign_id = start_broadcast(campaign)
    print(json.dumps({"campaign_id": campaign_id, "status": "pending"}))
    if args.run:
        for report in asyncio.run(_run_broadcasts(settings, campaign_id, args.budget)):
            print(json.dumps(report.as_dict(), ensure_ascii=False))
    return 0


def cmd_broadcast_run(args: argparse.Namespace) -> int:
    """Send unfinished campaigns (or one) for at most --budget seconds; run again to go on."""
    settings = _settings()
    _configure_tables(settings)
    for report in asyncio.run(_run_broadcasts(settings, args.campaign, args.budget)):
        print(json.dumps(report.as_dict(), ensure_ascii=False))
    return 0


def add_commands(sub: Any) -> None:
    report = sub.add_parser("feedback-report", help=cmd_feedback_report.__doc__)
    report.add_argument("--month", required=True, help="YYYY-MM")
    report.add_argument("--json", action="store_true", help="machine-readable output")
    report.add_argument("--no-names", action="store_true", help="doctor ids only (do not ask the MIS)")
    report.set_defaults(func=cmd_feedback_report)

    broadcast = sub.add_parser("broadcast", help=cmd_broadcast.__doc__)
    broadcast.add_argument("--text-ru", required=True, help="the message in Russian (plain text)")
    broadcast.add_argument("--text-en", help="the message in English (optional)")
    broadcast.add_argument("--segment", default="all", help="all | branch:<id> | lapsed:<YYYY-MM-DD>")
    broadcast.add_argument("--segments", type=int, default=8, help="scan segments (chunks) of the audience")
    broadcast.add_argument("--run", action="store_true", help="send now (else: leave it to broadcast-run)")
    broadcast.add_argument("--budget", type=float, default=600.0, help="seconds to send for")
    broadcast.set_defaults(func=cmd_broadcast)

    run = sub.add_parser("broadcast-run", help=cmd_broadcast_run.__doc__)
    run.add_argument("--campaign", help="one campaign id (default: every unfinished one)")
    run.add_argument("--budget", type=float, default=600.0, help="seconds to send for")
    run.set_defaults(func=cmd_broadcast_run)
