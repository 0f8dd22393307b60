"""The prices file, DynamoDB capacity units from item sizes, the Lambda duration model and the bill."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clinicbot.metering.capacity import (
    Index,
    TableSchema,
    index_write_units,
    item_size,
    read_units,
    write_units,
)
from clinicbot.metering.cost import (
    EnvironmentPool,
    FunctionMonth,
    LambdaModel,
    MonthProfile,
    Requests,
    decrypts,
    price,
)
from clinicbot.metering.prices import REQUIRED, PriceBook
from clinicbot.metering.report import CostModel, estimate
from clinicbot.metering.usage import Usage


@pytest.mark.parametrize("region", ["eu-central-1", "us-east-1"])
def test_prices_file_has_every_price_with_a_source_and_a_status(region: str) -> None:
    book = PriceBook.load(region)
    for key in REQUIRED:
        price_ = book[key]
        assert price_.usd > 0 and price_.per > 0
        assert price_.source.startswith("https://aws.amazon.com/")
        assert price_.status in ("verified", "unverified")
    assert book.taken_on
    assert book.cost("lambda_requests", 1_000_000) == pytest.approx(0.20)
    # DynamoDB on-demand after the November 2024 cut
    assert book["ddb_write_request_units"].usd < 1.0 and book["ddb_read_request_units"].usd < 0.2


def test_us_east_prices_are_the_verified_ones() -> None:
    book = PriceBook.load("us-east-1")
    assert book.cost("ddb_write_request_units", 1_000_000) == pytest.approx(0.625)
    assert book.cost("ddb_read_request_units", 1_000_000) == pytest.approx(0.125)
    assert book.cost("lambda_arm64_gb_second", 1) == pytest.approx(0.0000133334)
    assert "ddb_write_request_units" not in book.unverified


def test_unknown_region_and_incomplete_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(KeyError):
        PriceBook.load("mars-north-1")
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"regions": {"x": {"prices": {"lambda_requests": {"usd": 0.2, "per": 1e6}}}}}))
    with pytest.raises(ValueError, match="lack"):
        PriceBook.load("x", path)


def test_item_sizes_follow_dynamodb_rules() -> None:
    assert item_size({"pk": {"S": "USER#1"}}) == 2 + 6
    assert item_size({"n": {"N": "12345"}}) == 1 + 4  # 5 digits -> 3 bytes + 1
    assert item_size({"b": {"BOOL": True}, "z": {"NULL": True}}) == 2 + 2
    assert item_size({"m": {"M": {"a": {"S": "xy"}}}}) == 1 + 3 + (1 + 2 + 1)
    assert item_size({"l": {"L": [{"N": "1"}, {"N": "2"}]}}) == 1 + 3 + 2 * (2 + 1)
    assert item_size({"s": {"S": "ё"}}) == 1 + 2  # UTF-8 bytes
    assert item_size(None) == 0


def test_read_and_write_units() -> None:
    assert read_units(10) == 0.5 and read_units(10, consistent=True) == 1.0
    assert read_units(4097, consistent=True) == 2.0 and read_units(0) == 0.5
    assert read_units(100, transactional=True) == 2.0
    assert write_units(0, 100) == 1.0 and write_units(3000, 100) == 3.0
    assert write_units(100, 100, transactional=True) == 2.0


def test_index_writes_only_when_the_change_reaches_the_index() -> None:
    schema = TableSchema(
        "t",
        indexes=(
            Index("due", ("due_bucket", "due_at"), "ALL"),
            Index("patient", ("patient_id",), "KEYS_ONLY"),
        ),
    )
    base = {"pk": {"S": "U#1"}, "sk": {"S": "R#1"}, "status": {"S": "pending"}}
    due = {**base, "due_bucket": {"S": "H#2026112309"}, "due_at": {"N": "1"}}
    assert index_write_units(None, base, schema) == 0  # not in any index
    assert index_write_units(None, due, schema) == 1  # a put into "due"
    moved = {**due, "due_at": {"N": "2"}}
    assert index_write_units(due, moved, schema) == 2  # the index key changed: delete + put
    sent = {**due, "status": {"S": "sent"}}
    assert index_write_units(due, sent, schema) == 1  # ALL projection: any change
    card = {**base, "patient_id": {"S": "p1"}}
    assert (
        index_write_units(card, {**card, "language": {"S": "en"}}, schema) == 0
    )  # KEYS_ONLY: unchanged keys
    assert index_write_units(due, None, schema) == 1  # deleted from "due"


def test_billed_duration_scales_cpu_by_memory_and_adds_waits() -> None:
    model = LambdaModel(memory_mb=512)
    assert model.cpu_factor == pytest.approx(1769 / 512)
    assert model.billed_ms("webhook", 10.0, Requests(ddb=2)) == pytest.approx(35 + 12, abs=1)
    assert LambdaModel(memory_mb=2048).cpu_factor == 1.0
    assert model.io_ms("mis_sync", Requests(mis=8)) == pytest.approx(8 * 60 / 4)
    assert model.init_ms(1000) == 1040 and LambdaModel(init_boost=False).init_ms(1000) == pytest.approx(
        3456 + 40, abs=1
    )


def test_environment_pool_counts_a_cold_start_after_an_idle_gap_and_for_overlaps() -> None:
    pool = EnvironmentPool(idle_timeout=600)
    assert pool.invoke(0, 1.0, init=3.0) is True
    assert pool.invoke(100, 1.0) is False  # warm
    assert pool.invoke(100.5, 1.0) is True  # the only environment is busy: a second one
    assert pool.invoke(2000, 1.0) is True  # idle for > 10 minutes: gone
    assert pool.cold_starts == 3 and pool.invocations == 4


def test_kms_decrypts_once_per_five_minutes_of_use() -> None:
    assert decrypts([0, 10, 299, 300, 301, 1000]) == 3


def test_the_bill_prices_every_line_and_finds_the_dominant_one() -> None:
    book = PriceBook.load("us-east-1")
    profile = MonthProfile(
        functions={"webhook": FunctionMonth("webhook", 20_000, 20_000 * 100.0, 50, 50 * 3500.0)},
        ddb_read_units=20_000,
        ddb_write_units=20_400,
        rollup_write_units=400,
        ddb_storage_gb=0.01,
        http_api_requests=20_000,
        sqs_requests=3_000,
        sqs_idle_receives=648_000,
        scheduler_invocations=11_520,
        metric_hours={"a": 730.0},
        alarms=2,
        log_ingest_gb=0.02,
        log_storage_gb=0.02,
        kms_requests=20_000,
        data_out_gb=0.05,
    )
    bill = price(profile, book)
    by_item = {(ln.service, ln.item): ln.usd for ln in bill.lines}
    assert by_item[("Lambda", "requests")] == pytest.approx(0.004)
    assert by_item[("Lambda", "webhook: duration @ 512 MB")] == pytest.approx(1000 * 0.0000133334)
    assert by_item[("DynamoDB", "usage rollup flushes")] == pytest.approx(400 * 0.625e-6)
    assert by_item[("SQS", "event source mapping's empty polls")] == pytest.approx(0.2592)
    assert by_item[("CloudWatch", "alarms")] == pytest.approx(0.20)
    assert bill.total == pytest.approx(sum(by_item.values()))
    assert bill.dominant().usd == max(by_item.values())
    assert bill.fixed_total == pytest.approx(0.2592 + 0.20 + 11_520e-6)
    assert "| **total** |" in bill.markdown() and "total" in bill.text()


def test_the_report_estimate_uses_the_rollup_as_measured() -> None:
    usage = Usage.of({"inv.webhook": 1000, "ms.webhook": 150_000, "cold.webhook": 3, "initms.webhook": 9000,
                      "updates": 1000, "handoffs": 10, "inv.reminders": 288, "ms.reminders": 28_800})  # fmt: skip
    model = CostModel({"functions": {"webhook": {"rru_per_invocation": 1, "wru_per_invocation": 1,
                                                 "log_bytes_per_invocation": 1000}},
                       "sqs_requests_per_handoff": 3, "alarms": 2, "scheduler": 1})  # fmt: skip
    bill = estimate(usage, PriceBook.load("us-east-1"), model, flushes=20)
    by_item = {(ln.service, ln.item): ln for ln in bill.lines}
    assert by_item[("Lambda", "requests")].quantity == 1288
    assert by_item[("Lambda", "webhook: duration @ 512 MB")].quantity == pytest.approx(0.5 * 150)
    assert by_item[("Lambda", "webhook: INIT x 3 cold starts")].quantity == pytest.approx(0.5 * 3 * 3.040)
    assert by_item[("DynamoDB", "usage rollup flushes")].quantity == 20
    assert by_item[("DynamoDB", "write request units")].quantity == 1000
    assert by_item[("API Gateway", "HTTP API requests")].quantity == 1000
    assert by_item[("SQS", "hand-off messages")].quantity == 30
    assert by_item[("Scheduler", "EventBridge Scheduler invocations")].quantity == 288
    # the template as shipped: EventBridge rules (free), no SQS pollers, no alarms unless Alarms=on
    lean = CostModel({**model.data, "scheduler": 0, "alarms": 0})
    items = {(ln.service, ln.item) for ln in estimate(usage, PriceBook.load("us-east-1"), lean).lines}
    assert not {i for i in items if i[0] == "Scheduler" or "alarm" in i[1] or "empty polls" in i[1]}


def test_the_shipped_cost_model_is_complete() -> None:
    model = CostModel.load()
    for fn in ("webhook", "reminders", "mis_sync", "handoff"):
        assert model.fn(fn, "billed_ms_per_invocation") > 0
    assert model.get("sqs_idle_receives_per_month") == 0  # nothing polls while no one writes
    assert {"platform_logs", "http_api", "scheduler", "xray_tracing", "alarms"} <= set(model.data)


def test_the_always_free_offers_are_taken_off_per_price_and_never_below_zero() -> None:
    from clinicbot.metering.cost import ALWAYS_FREE, Bill, Line

    book = PriceBook.load("us-east-1")
    gbs = book.cost("lambda_arm64_gb_second", 1.0)
    bill = Bill(
        "us-east-1",
        [
            # two lines priced per GB-second share one allowance of 400,000 GB-s
            Line("Lambda", "a: duration", 300_000, "GB-s", 300_000 * gbs, key="lambda_arm64_gb_second"),
            Line("Lambda", "b: duration", 300_000, "GB-s", 300_000 * gbs, key="lambda_arm64_gb_second"),
            # below its allowance: free entirely, not negative
            Line("KMS", "requests", 5_000, "requests", book.cost("kms_requests", 5_000), key="kms_requests"),
            # no always-free offer: paid in full
            Line(
                "DynamoDB",
                "writes",
                1e6,
                "WRU",
                book.cost("ddb_write_request_units", 1e6),
                key="ddb_write_request_units",
            ),
        ],
    )
    free = bill.free_tier_usd(book)
    assert ALWAYS_FREE["lambda_arm64_gb_second"] == 400_000
    assert free == pytest.approx(400_000 * gbs + book.cost("kms_requests", 5_000))
    assert bill.total - free == pytest.approx(200_000 * gbs + book.cost("ddb_write_request_units", 1e6))
