"""The MIS sync on a large synthetic schedule, and the cold start of functions/mis_sync next to the webhook.

1. DynamoDB writes of a sync of 30,000 free slots (50 doctors x 30 days x 20 slots, FHIR-like UUID slot ids)
   through the real job and the ScheduleTable under moto (in-process): the first sync, a sync with nothing
   changed (goal: 0 cache writes), and a sync after 1 % of the slots changed (half booked, half moved;
   goal: writes ~ 1 % of the slots). Write units are estimated from the item sizes (1 WCU per started KB).
2. What the bot's month calendar costs to read from the cache (one doctor, one Query).
3. Cold start, CPU seconds of a fresh interpreter: `import aiogram`, the webhook's init and the MIS sync's init
   (venv; with --layer also the layer/hash tree bench/cold_start.py builds, as the function ships).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import math
import os
import random
import sys
import textwrap
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta
from datetime import time as dtime
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from tests.conftest import TEST_ENV  # sets the test environment before clinicbot is imported

SCHEDULE = "clinicbot-schedule"
TZ = ZoneInfo("Europe/Moscow")


# =========================================================================== a large synthetic MIS
class SyntheticMis:
    """An MIS port with ``doctors`` doctors, each with ``per_day`` free 30-minute slots (09:00-19:00 Moscow)
    on each of the ``days`` days after today: 50 x 30 x 20 = 30,000 slots by default."""

    def __init__(
        self, *, doctors: int = 50, days: int = 30, per_day: int = 20, today: date | None = None
    ) -> None:
        from clinicbot.mis.models import Branch, Doctor, LocalizedText, Service, Slot, Specialty

        self.today = today or datetime.now(TZ).date()
        self.capabilities: frozenset[str] = frozenset()
        self._branches = [
            Branch(id=f"b-{i}", name=LocalizedText(ru=f"Филиал {i}"), address=LocalizedText(ru="ул. Примерная, 1"),
                   timezone="Europe/Moscow")
            for i in range(3)
        ]  # fmt: skip
        self._specialties = [
            Specialty(id=f"sp-{i}", name=LocalizedText(ru=f"Специальность {i}")) for i in range(10)
        ]
        self._doctors = [
            Doctor(id=str(uuid.uuid5(uuid.NAMESPACE_URL, f"doctor/{i}")), full_name=LocalizedText(ru=f"Врач {i}"),
                   specialty_ids=(f"sp-{i % 10}",), branch_id=f"b-{i % 3}")
            for i in range(doctors)
        ]  # fmt: skip
        self._services = [
            Service(id=f"sv-{i}", name=LocalizedText(ru=f"Приём {i}"), specialty_id=f"sp-{i % 10}",
                    price=Decimal(1500 + 100 * i), duration_minutes=30)
            for i in range(30)
        ]  # fmt: skip
        self.slots: dict[str, Slot] = {}
        for doctor in self._doctors:
            for day in range(1, days + 1):
                start = datetime.combine(self.today + timedelta(days=day), dtime(9), TZ).astimezone(UTC)
                for n in range(per_day):
                    begins = start + timedelta(minutes=30 * n)
                    slot_id = str(uuid.uuid5(uuid.NAMESPACE_URL, f"slot/{doctor.id}/{begins.isoformat()}"))
                    self.slots[slot_id] = Slot.model_construct(
                        id=slot_id, doctor_id=doctor.id, branch_id=doctor.branch_id, start=begins,
                        end=begins + timedelta(minutes=30), service_id=None,
                    )  # fmt: skip

    def change(self, share: float, seed: int = 4) -> int:
        """Book half of ``share`` of the slots away and move the other half by 10 minutes."""
        rng = random.Random(seed)
        chosen = rng.sample(sorted(self.slots), int(len(self.slots) * share))
        for i, slot_id in enumerate(chosen):
            if i % 2:
                del self.slots[slot_id]
            else:
                s = self.slots[slot_id]
                self.slots[slot_id] = s.model_copy(
                    update={"start": s.start + timedelta(minutes=10), "end": s.end + timedelta(minutes=10)}
                )
        return len(chosen)

    async def branches(self) -> list[Any]:
        return list(self._branches)

    async def specialties(self) -> list[Any]:
        return list(self._specialties)

    async def doctors(self, **_: Any) -> list[Any]:
        return list(self._doctors)

    async def services(self, **_: Any) -> list[Any]:
        return list(self._services)

    async def free_slots(
        self, *, start: datetime, end: datetime, doctor_id: str | None = None, **_: Any
    ) -> list[Any]:
        now = datetime.now(UTC)
        found = [
            s for s in self.slots.values()
            if (doctor_id is None or s.doctor_id == doctor_id) and max(start, now) <= s.start < end
        ]  # fmt: skip
        return sorted(found, key=lambda s: (s.start, s.doctor_id))

    async def slot(self, slot_id: str) -> Any:
        return self.slots[slot_id]


# =========================================================================== counting DynamoDB
def _size(attributes: dict[str, Any]) -> int:
    """An item's size as DynamoDB bills it, roughly: names + values (numbers ~ half their digits)."""
    total = 0
    for name, value in attributes.items():
        ((kind, raw),) = value.items()
        total += len(name) + (len(str(raw)) // 2 + 1 if kind == "N" else len(str(raw).encode()))
    return total


class Meter:
    def __init__(self) -> None:
        self.requests: Counter[str] = Counter()
        self.items_put = 0
        self.items_deleted = 0
        self.wcu = 0
        self.read_bytes = 0
        self.items_read = 0
        self.state_puts = 0

    @property
    def rru(self) -> float:
        """Eventually consistent reads: 0.5 read unit per started 4 KB (per request; summed here)."""
        return 0.5 * math.ceil(self.read_bytes / 4096)

    @classmethod
    @contextlib.contextmanager
    def installed(cls) -> Iterator[Meter]:
        from pynamodb.connection.base import Connection

        meter = cls()
        original = Connection._make_api_call

        def metered(self: Connection, operation: str, kwargs: dict[str, Any]) -> Any:
            tables = (
                kwargs.get("RequestItems", {})
                if operation == "BatchWriteItem"
                else {kwargs.get("TableName"): 0}
            )
            if SCHEDULE in tables:
                meter.requests[operation] += 1
                if operation == "BatchWriteItem":
                    for request in kwargs["RequestItems"][SCHEDULE]:
                        if "PutRequest" in request:
                            meter.items_put += 1
                            meter.wcu += math.ceil(_size(request["PutRequest"]["Item"]) / 1024)
                        else:
                            meter.items_deleted += 1
                            meter.wcu += 1  # a day item is ~1-2 KB; counted as one unit
                elif operation == "PutItem":
                    meter.state_puts += 1
            answer = original(self, operation, kwargs)
            if SCHEDULE in tables and operation in ("Query", "GetItem"):
                items = answer.get("Items") or ([answer["Item"]] if answer.get("Item") else [])
                meter.items_read += len(items)
                meter.read_bytes += sum(_size(i) for i in items)
            return answer

        Connection._make_api_call = metered  # type: ignore[method-assign]
        try:
            yield meter
        finally:
            Connection._make_api_call = original  # type: ignore[method-assign]


# =========================================================================== the sync bench
def bench_sync(doctors: int, days: int, per_day: int, share: float) -> None:
    from tests.harness import aws_tables

    from clinicbot.booking.schedule import HORIZON, SlotFilter
    from clinicbot.schedule import models as schedule_models
    from clinicbot.schedule.cache_dynamo import DynamoScheduleCache
    from clinicbot.schedule.job import SyncJob, SyncSettings
    from clinicbot.schedule.reader import CachedSchedule

    mis = SyntheticMis(doctors=doctors, days=days, per_day=per_day)
    total = len(mis.slots)
    print(
        f"MIS sync of {total:,} free slots ({doctors} doctors x {days} days x {per_day}), ScheduleTable under moto"
    )
    print(f"{'run':<28}{'slots chg':>10}{'items put':>10}{'deleted':>9}{'batches':>8}{'~WCU':>7}"
          f"{'% of slots':>11}{'Queries':>8}{'~RRU':>7}{'state':>6}{'wall s*':>8}")  # fmt: skip
    with aws_tables():
        schedule_models.configure(region=os.environ["AWS_DEFAULT_REGION"])
        cache = DynamoScheduleCache()
        job = SyncJob(mis=mis, cache=cache, settings=SyncSettings(days=days))  # type: ignore[arg-type]

        def run(label: str, changed: int) -> None:
            with Meter.installed() as meter:
                started = time.perf_counter()
                result = job.handle(remaining_seconds=900)
                wall = time.perf_counter() - started
            assert result.schedule.ok, result.as_dict()
            cache_items = meter.items_put + meter.items_deleted  # the sync state's PutItem aside
            print(
                f"{label:<28}{changed:>10,}{meter.items_put:>10,}{meter.items_deleted:>9,}"
                f"{meter.requests['BatchWriteItem']:>8,}{meter.wcu:>7,}{100 * cache_items / total:>10.2f}%"
                f"{meter.requests['Query']:>8,}{meter.rru:>7.0f}{meter.state_puts:>6}{wall:>8.2f}"
            )

        run("first sync (empty cache)", total)
        run("nothing changed", 0)
        changed = mis.change(share)
        run(f"{share:.0%} of the slots changed", changed)
        run("nothing changed again", 0)

        doctor = mis._doctors[0].id
        reader = CachedSchedule(mis, cache)  # type: ignore[arg-type]
        now = datetime.now(UTC)
        with Meter.installed() as meter:
            started = time.perf_counter()
            slots = asyncio.run(reader.free_slots(SlotFilter(doctor_id=doctor), start=now, end=now + HORIZON))
            wall = (time.perf_counter() - started) * 1000
        print(
            f"the bot's month calendar of one doctor from the cache: {meter.requests['Query']} Query + "
            f"{meter.requests['GetItem']} GetItem (sync state), {meter.items_read} items, "
            f"~{meter.read_bytes / 1024:.1f} KB, ~{meter.rru:.1f} RRU, {len(slots)} slots, {wall:.1f} ms (moto)"
        )
    print(
        "items put / deleted / batches / ~WCU: the cache's BatchWriteItem traffic; state: the sync-state PutItem"
    )
    print(
        "(the freshness heartbeat the bot checks, 1 per successful run); *wall time is mostly moto's Query,"
    )
    print("which scans the whole table per call (DynamoDB: ~10 ms per Query)")
    print("goal: nothing changed -> 0 cache writes; 1 % changed -> about 1 % of the slots in item writes")


# =========================================================================== cold start
def _init(function: str, check: str) -> str:
    from bench.cold_start import ROOT

    return textwrap.dedent(
        f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("app", {str(ROOT / "functions" / function / "app.py")!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.{check} is not None
        """
    )


def bench_cold_start(runs: int, layer: bool) -> None:
    from bench.cold_start import ENV, IMPORT_AIOGRAM, PY312, best, build_layer

    env_extra = {"CLINICBOT_SCHEDULE_TABLE": SCHEDULE, "POWERTOOLS_METRICS_NAMESPACE": "ClinicBot"}
    base_env = {k: v for k, v in os.environ.items() if not k.startswith(("CLINICBOT_", "AWS_", "PYTHON"))}
    settings: list[tuple[str, str, dict[str, str]]] = [
        ("venv", sys.executable, {**base_env, **ENV, **env_extra})
    ]
    if layer:
        tree = build_layer("hash")  # the current clinicbot on the cached dependencies
        settings.append(
            (
                "layer/hash",
                PY312,
                {**base_env, **ENV, **env_extra, "PYTHONPATH": str(tree), "PYTHONDONTWRITEBYTECODE": "1"},
            )
        )
    print(f"Cold start, CPU seconds of a fresh interpreter (best / median of {runs} runs)")
    print(
        f"{'setting':<12}{'import aiogram':>18}{'webhook init':>18}{'mis_sync init':>18}{'sync/webhook':>14}"
    )
    for name, python, env in settings:
        aiogram = best(python, IMPORT_AIOGRAM, env, runs)
        webhook = best(python, _init("webhook", "APP"), env, runs)
        sync = best(python, _init("mis_sync", "JOB"), env, runs)
        print(
            f"{name:<12}{aiogram[0]:>9.2f} /{aiogram[1]:>6.2f}{webhook[0]:>9.2f} /{webhook[1]:>6.2f}"
            f"{sync[0]:>9.2f} /{sync[1]:>6.2f}{sync[0] / webhook[0]:>13.2f}x"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--doctors", type=int, default=50)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--per-day", type=int, default=20)
    parser.add_argument("--share", type=float, default=0.01, help="share of the slots changed (default 1 %%)")
    parser.add_argument("--runs", type=int, default=3, help="cold-start runs per figure")
    parser.add_argument("--layer", action="store_true", help="also the layer/hash tree (python3.12)")
    parser.add_argument("--skip-cold-start", action="store_true")
    args = parser.parse_args()
    os.environ.update(TEST_ENV)
    os.environ["POWERTOOLS_LOG_LEVEL"] = "WARNING"
    import logging

    logging.getLogger("clinicbot").setLevel(logging.WARNING)
    bench_sync(args.doctors, args.days, args.per_day, args.share)
    if not args.skip_cold_start:
        print()
        bench_cold_start(args.runs, args.layer)


if __name__ == "__main__":
    main()
