"""The reminders function: no aiogram on its import path, the sample event, texts and buttons."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from clinicbot.i18n import Translator
from clinicbot.mis.models import AppointmentStatus
from clinicbot.reminders.callbacks import RemAction, pack, unpack, visit_button
from clinicbot.reminders.config import ReminderConfig
from clinicbot.reminders.items import DueItem, Kind, bucket_of, buckets_between
from clinicbot.reminders.memos import load_memos
from clinicbot.reminders.texts import Reference, render
from tests.harness import EVENTS, ROOT, TODAY

MSK = ZoneInfo("Europe/Moscow")


def test_the_function_never_imports_aiogram() -> None:
    code = textwrap.dedent(
        f"""
        import importlib.util, sys
        spec = importlib.util.spec_from_file_location("app", {str(ROOT / "functions" / "reminders" / "app.py")!r})
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        assert module.APP is not None and callable(module.handler)
        print(sorted(m for m in sys.modules if m == "aiogram" or m.startswith("aiogram.")))
        """
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_ENDPOINT")}
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().splitlines()[-1] == "[]"


def test_the_sample_event_is_an_eventbridge_scheduled_event() -> None:
    event = json.loads((EVENTS / "reminders" / "scheduled.json").read_text())
    assert event["detail-type"] == "Scheduled Event" and event["detail"] == {}
    datetime.strptime(event["time"], "%Y-%m-%dT%H:%M:%SZ")


def test_callback_strings() -> None:
    assert pack(RemAction.CONFIRM, "a-0001") == "rem:c:a-0001"
    assert unpack("rem:t:m#u1a2b3c#202611230600") == (RemAction.TAKEN, "m#u1a2b3c#202611230600")
    assert unpack("rem:zz:a") is None and unpack("consent:1:1") is None
    assert visit_button(RemAction.CANCEL, "x" * 200).startswith("rem:x:~")


def test_hour_buckets() -> None:
    at = datetime(2026, 11, 23, 9, 59, tzinfo=UTC)
    assert bucket_of(at) == "H#2026112309"
    assert buckets_between("H#2026112307", at) == ["H#2026112307", "H#2026112308", "H#2026112309"]
    assert buckets_between("H#2026112310", at) == []


def visit_item(**changes: object) -> DueItem:
    start = datetime.combine(TODAY + timedelta(days=3), datetime.min.time(), MSK).replace(hour=9, minute=30)
    values: dict[str, object] = {
        "user_id": 1,
        "item_id": "a#a-0006#202611260630#r24",
        "kind": Kind.VISIT,
        "planned_at": start - timedelta(hours=24),
        "due_at": start - timedelta(hours=24),
        "patient_id": "p-003",
        "appointment_id": "a-0006",
        "start": start.astimezone(UTC),
        "end": (start + timedelta(minutes=30)).astimezone(UTC),
        "doctor_id": "d-10",
        "branch_id": "b-profsoyuznaya",
        "service_id": "sv-gyn-1",
        "lead_hours": 24,
    }
    values.update(changes)
    return DueItem(**values)  # type: ignore[arg-type]


def reference() -> Reference:
    import asyncio

    from tests.reminders_helpers import demo_clinic

    return asyncio.run(Reference.load(demo_clinic()))


def test_a_visit_reminder_is_neutral_unless_the_clinic_opts_in() -> None:
    ref = reference()
    item = visit_item()
    now = item.planned_at
    t = Translator("ru")
    shown = render(item, t, ref, ReminderConfig(), load_memos(), now=now)
    assert shown is not None
    assert "завтра" in shown.text and "09:30" in shown.text and "Профсоюзной" in shown.text
    assert "гинеколог" not in shown.text.lower()
    datas = [b["callback_data"] for row in shown.reply_markup["inline_keyboard"] for b in row]  # type: ignore[index]
    assert datas == ["rem:c:a-0006", "rem:r:a-0006", "rem:x:a-0006"]
    revealed = render(item, t, ref, ReminderConfig(reveal_service=True), load_memos(), now=now)
    assert revealed is not None and "гинеколог" in revealed.text.lower()
    confirmed = render(
        item, t, ref, ReminderConfig(), load_memos(), now=now, status=AppointmentStatus.CONFIRMED
    )
    assert confirmed is not None and "rem:c:" not in json.dumps(confirmed.reply_markup)


def test_medication_reminders_hide_a_prescribed_label() -> None:
    ref = reference()
    at = datetime(2026, 11, 23, 6, 0, tzinfo=UTC)
    series = {
        "id": "xrx-001",
        "source": "mis",
        "label": "Витамин D3",
        "times": ["09:00"],
        "tz": "Europe/Moscow",
    }
    item = DueItem(1, "m#xrx-001#202611230600", Kind.MED, at, at, tz="Europe/Moscow", series=series)
    shown = render(item, Translator("en"), ref, ReminderConfig(), load_memos(), now=at)
    assert shown is not None and "Витамин" not in shown.text and "09:00" in shown.text
    own = DueItem(
        1, "m#u1#202611230600", Kind.MED, at, at, tz="Europe/Moscow", series=series | {"source": "user"}
    )
    mine = render(own, Translator("en"), ref, ReminderConfig(), load_memos(), now=at)
    assert mine is not None and "Витамин D3" in mine.text
