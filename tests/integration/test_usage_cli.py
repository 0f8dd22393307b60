"""``python -m clinicbot usage --month YYYY-MM``: the rollup items (moto) read back, usage and cost printed."""

from __future__ import annotations

import json
from typing import Any

import pytest

from clinicbot.cli import main
from clinicbot.metering import MessageKind, Meter, MeteringConfig, Usage
from clinicbot.metering.rollup import DynamoRollupStore

MONTH = "2026-11"
NOW = 1_795_000_000.0  # 2026-11-18 UTC


def every_line_model(tmp_path: Any) -> str:
    """A cost model of a deployment with every billable part: an HTTP API, SQS pollers, EventBridge Scheduler,
    alarms, X-Ray (the shipped model, from the template as it is, has none of these)."""
    from clinicbot.metering.report import CostModel

    data = dict(CostModel.load().data)
    data.update(
        http_api=1, scheduler=1, alarms=2, xray_tracing=1, platform_logs=1,
        sqs_idle_receives_per_month=648_000, sqs_requests_per_handoff=3, kms_requests_per_month=40_000,
    )  # fmt: skip
    path = tmp_path / "cost_model.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return str(path)


def write(clinic: str, counts: dict[str, int], *, flushes: int = 1) -> None:
    store = DynamoRollupStore()
    for _ in range(flushes):
        store.add(MONTH, clinic, counts, now=NOW)


def test_the_report_prints_usage_and_every_cost_line(
    aws: Any, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    write("north", {"updates": 600, "msg.reply": 900, "msg.reminder": 40, "msg.relay": 5, "handoffs": 7,
                    "mis": 120, "crm": 7, "inv.webhook": 610, "ms.webhook": 91_500, "cold.webhook": 4,
                    "initms.webhook": 14_000, "inv.reminders": 288, "ms.reminders": 30_000,
                    "inv.mis_sync": 96, "ms.mis_sync": 400_000, "cold.mis_sync": 96,
                    "initms.mis_sync": 70_000}, flushes=3)  # fmt: skip
    assert (
        main(["usage", "--month", MONTH, "--region", "us-east-1", "--model", every_line_model(tmp_path)]) == 0
    )
    out = capsys.readouterr().out
    assert "Clinic north, 2026-11 (3 rollup flushes)" in out
    assert "updates handled" in out and "1,800" in out  # 600 x 3 flushes
    assert "reminder" in out and "hand-offs" in out
    for line in (
        "Lambda",
        "DynamoDB",
        "API Gateway",
        "SQS",
        "Scheduler",
        "CloudWatch",
        "KMS",
        "usage rollup flushes",
    ):
        assert line in out, line
    assert "US East (N. Virginia)" in out and "total" in out and "Largest line:" in out
    # the template as shipped: function URLs, async invocation, EventBridge rules, no alarm, no tracing
    assert main(["usage", "--month", MONTH, "--region", "us-east-1"]) == 0
    shipped = capsys.readouterr().out
    assert "Lambda" in shipped and "DynamoDB" in shipped
    for line in ("API Gateway", "SQS", "Scheduler", "alarms", "X-Ray"):
        assert line not in shipped, line


def test_json_one_clinic_and_the_month_boundary(
    aws: Any, capsys: pytest.CaptureFixture[str], tmp_path: Any
) -> None:
    write("north", {"updates": 5, "inv.webhook": 5, "ms.webhook": 500})
    write("south", {"updates": 2, "inv.webhook": 2, "ms.webhook": 200})
    model = every_line_model(tmp_path)
    assert main(["usage", "--month", MONTH, "--clinic", "south", "--json", "--model", model]) == 0
    [report] = json.loads(capsys.readouterr().out)
    assert report["clinic"] == "south" and report["usage"]["updates"] == 2 and report["flushes"] == 1
    assert report["region"] == "eu-central-1"
    lines = {(ln["service"], ln["item"]): ln for ln in report["lines"]}
    assert lines[("API Gateway", "HTTP API requests")]["quantity"] == 2
    assert lines[("SQS", "event source mapping's empty polls")]["fixed"] is True
    assert report["total_usd"] == pytest.approx(sum(ln["usd"] for ln in report["lines"]), abs=1e-5)
    assert main(["usage", "--month", "2026-10"]) == 0
    assert "No usage recorded for 2026-10." in capsys.readouterr().out


def test_what_the_functions_flushed_is_what_the_report_reads(
    aws: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    import time_machine

    with time_machine.travel(NOW, tick=False):
        meter = Meter("webhook", config=MeteringConfig(clinic="east", flush_invocations=2))
        for _ in range(4):
            with meter.invocation() as usage:
                usage.add("updates")
                usage.message(MessageKind.REPLY, 2)
    assert meter.buffer.flushes == 2
    [item] = DynamoRollupStore().month(MONTH, "east")
    assert (
        item.usage.as_dict().items()
        >= Usage.of({"updates": 4, "msg.reply": 8, "inv.webhook": 4}).as_dict().items()
    )
    assert main(["usage", "--month", MONTH, "--clinic", "east"]) == 0
    assert "(2 rollup flushes)" in capsys.readouterr().out


def test_a_bad_month_is_refused(aws: Any, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["usage", "--month", "2026-13"]) == 2
    assert "YYYY-MM" in capsys.readouterr().err
