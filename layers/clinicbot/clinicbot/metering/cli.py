"""``python -m clinicbot usage --month YYYY-MM``: the month's usage per clinic and its estimated AWS cost."""

from __future__ import annotations

import argparse
import os
import sys
from typing import Any

from clinicbot.metering.prices import DEFAULT_REGION

__all__ = ["add_commands", "cmd_usage"]


def cmd_usage(args: argparse.Namespace) -> int:
    """Print a month's usage (from the rollup items in the UsageTable) and its estimated AWS cost by line."""
    from clinicbot.metering.prices import PriceBook
    from clinicbot.metering.report import MONTH_RE, CostModel, print_report
    from clinicbot.metering.rollup import DynamoRollupStore

    if not MONTH_RE.match(args.month):
        print("--month must be YYYY-MM, e.g. 2026-11", file=sys.stderr)
        return 2
    region = (
        args.region or os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or DEFAULT_REGION
    )
    if not args.prices and region not in ("eu-central-1", "us-east-1"):
        print(f"no prices for {region}: using {DEFAULT_REGION}'s (give yours with --prices)", file=sys.stderr)
        region = DEFAULT_REGION
    try:
        book = PriceBook.load(region, args.prices)
    except (KeyError, ValueError) as exc:
        print(f"prices: {exc}", file=sys.stderr)
        return 2
    store = DynamoRollupStore(
        args.table or os.environ.get("CLINICBOT_USAGE_TABLE") or "clinicbot-usage",
        region=os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or region,
        host=args.endpoint
        or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB")
        or os.environ.get("AWS_ENDPOINT_URL"),
    )
    items = store.month(args.month, args.clinic)
    metrics = (args.metrics or os.environ.get("CLINICBOT_USAGE_METRICS") or "off").lower() in (
        "on",
        "true",
        "1",
    )
    print_report(
        items,
        args.month,
        book,
        CostModel.load(args.model),
        sys.stdout,
        memory_mb=args.memory,
        usage_metrics=metrics,
        as_json=args.json,
    )
    return 0


def add_commands(sub: Any) -> None:
    usage = sub.add_parser("usage", help=cmd_usage.__doc__)
    usage.add_argument("--month", required=True, help="YYYY-MM (UTC months)")
    usage.add_argument(
        "--clinic", help="one clinic (CLINICBOT_CLINIC_ID of its stack); default: every clinic"
    )
    usage.add_argument(
        "--region",
        help=f"price list region: eu-central-1 or us-east-1 (default: AWS_REGION, else {DEFAULT_REGION})",
    )
    usage.add_argument("--prices", help="another prices file (the shape of clinicbot/data/prices.json)")
    usage.add_argument(
        "--model", help="another cost model (clinicbot/data/cost_model.json, written by bench/cost_month.py)"
    )
    usage.add_argument(
        "--memory", type=int, default=512, help="MB of the functions (the template's MemorySize)"
    )
    usage.add_argument(
        "--metrics",
        choices=["on", "off"],
        help="were CloudWatch usage metrics on (default: CLINICBOT_USAGE_METRICS)",
    )
    usage.add_argument(
        "--table", help="the UsageTable (default: CLINICBOT_USAGE_TABLE, else clinicbot-usage)"
    )
    usage.add_argument(
        "--endpoint", help="DynamoDB endpoint (default: AWS_ENDPOINT_URL_DYNAMODB / AWS_ENDPOINT_URL)"
    )
    usage.add_argument("--json", action="store_true", help="machine-readable output")
    usage.set_defaults(func=cmd_usage)
