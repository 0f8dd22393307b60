"""Medication schedules ("series"): from an MIS prescription or set up by the patient in the bot.

A series is a small JSON-able dict, copied into each of its due items so that the run can chain the next
occurrence without reading anything::

    {"id": "x<rx ref>" | "u<hex>", "source": "mis" | "user", "label": "..." | None,
     "times": ["08:00", "20:00"], "days": [0, ..., 6], "start": "2026-11-23", "end": "2026-12-07",
     "tz": "Europe/Moscow"}

``times`` are wall-clock times in ``tz``; ``days`` are weekdays (Monday = 0); ``start``/``end`` inclusive.
Exactly one occurrence of a series is pending at a time: the run writes the next one when it takes the
current one (see ``clinicbot.reminders.runner``), so the table holds a bounded number of items however
long the course.
"""

from __future__ import annotations

import secrets
from collections.abc import Iterable, Mapping
from datetime import UTC, date, datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from clinicbot.booking.refs import ref_of
from clinicbot.mis.models import Prescription

__all__ = [
    "ALL_DAYS",
    "MAX_COURSE_DAYS",
    "MAX_TIMES",
    "first_occurrence",
    "new_user_series",
    "next_occurrence",
    "parse_times",
    "series_from_prescription",
]

ALL_DAYS: tuple[int, ...] = (0, 1, 2, 3, 4, 5, 6)
MAX_TIMES = 6
MAX_COURSE_DAYS = 366
MAX_LABEL = 64


def parse_times(text: str) -> list[str]:
    """``"8:00, 20:30"`` -> ``["08:00", "20:30"]`` (sorted, distinct, at most ``MAX_TIMES``)."""
    found: set[time] = set()
    for part in text.replace(";", ",").replace(" ", ",").split(","):
        part = part.strip().replace(".", ":")
        if not part:
            continue
        hours, _, minutes = part.partition(":")
        if not hours.isdigit() or (minutes and not minutes.isdigit()):
            raise ValueError(f"not a time: {part!r}")
        value = time(int(hours), int(minutes or 0))  # ValueError when out of range
        found.add(value)
    if not found or len(found) > MAX_TIMES:
        raise ValueError(f"between 1 and {MAX_TIMES} times of day")
    return [f"{t:%H:%M}" for t in sorted(found)]


def series_from_prescription(rx: Prescription) -> dict[str, Any]:
    return {
        "id": "x" + ref_of(rx.id),
        "source": "mis",
        "rx_id": rx.id,
        "label": rx.label,
        "times": [f"{t:%H:%M}" for t in sorted(set(rx.times_of_day))],
        "days": list(ALL_DAYS),
        "start": rx.start.isoformat(),
        "end": rx.end.isoformat(),
        "tz": rx.timezone,
    }


def new_user_series(
    *,
    label: str | None,
    times: Iterable[str],
    days: Iterable[int],
    start: date,
    end: date,
    tz: str,
) -> dict[str, Any]:
    days_list = sorted({int(d) for d in days if 0 <= int(d) <= 6})
    if not days_list:
        raise ValueError("at least one day of the week")
    if end < start or (end - start).days > MAX_COURSE_DAYS:
        raise ValueError("the course ends after it starts and lasts at most a year")
    ZoneInfo(tz)
    clean = (label or "").strip()[:MAX_LABEL] or None
    return {
        "id": "u" + secrets.token_hex(3),
        "source": "user",
        "label": clean,
        "times": sorted(set(times)),
        "days": days_list,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "tz": tz,
    }


def _occurrences_from(series: Mapping[str, Any], day: date) -> Iterable[datetime]:
    tz = ZoneInfo(str(series["tz"]))
    start = date.fromisoformat(str(series["start"]))
    end = date.fromisoformat(str(series["end"]))
    days = {int(d) for d in series.get("days") or ALL_DAYS}
    times = sorted(time.fromisoformat(str(t)) for t in series["times"])
    current = max(day, start)
    while current <= end:
        if current.weekday() in days:
            for at in times:
                yield datetime.combine(current, at, tz).astimezone(UTC)
        current += timedelta(days=1)


def next_occurrence(series: Mapping[str, Any], after: datetime) -> datetime | None:
    """The first occurrence strictly after ``after``, or None when the course is over."""
    tz = ZoneInfo(str(series["tz"]))
    day = after.astimezone(tz).date()
    for occurrence in _occurrences_from(series, day):
        if occurrence > after:
            return occurrence
    return None


def first_occurrence(series: Mapping[str, Any], now: datetime) -> datetime | None:
    """The first occurrence at or after ``now``."""
    return next_occurrence(series, now - timedelta(microseconds=1))


def same_schedule(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    keys = ("times", "days", "start", "end", "tz", "label")
    return all(a.get(k) == b.get(k) for k in keys)
