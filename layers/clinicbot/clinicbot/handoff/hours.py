"""When the clinic's staff answer: working hours in a small ``opening_hours``-like syntax, pure code.

``"Mo-Fr 09:00-20:00; Sa 10:00-16:00"`` -- day ranges (``Mo Tu We Th Fr Sa Su``), then one or more
comma-separated ``HH:MM-HH:MM`` intervals in the clinic's time zone; ``"24/7"`` for always. Used to tell a
patient who writes to the clinic when to expect an answer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

__all__ = ["DAYS", "WorkingHours"]

DAYS = ("Mo", "Tu", "We", "Th", "Fr", "Sa", "Su")
_DAY_NAMES = {
    "ru": ("пн", "вт", "ср", "чт", "пт", "сб", "вс"),
    "en": ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"),
}
_RULE = re.compile(
    r"^(?P<days>[A-Za-z]{2}(?:-[A-Za-z]{2})?(?:,[A-Za-z]{2}(?:-[A-Za-z]{2})?)*)\s+(?P<times>.+)$"
)
_INTERVAL = re.compile(r"^(\d{2}):(\d{2})-(\d{2}):(\d{2})$")


def _day(code: str) -> int:
    try:
        return DAYS.index(code[:1].upper() + code[1:].lower())
    except ValueError:
        raise ValueError(f"unknown day {code!r}: use {' '.join(DAYS)}") from None


@dataclass(frozen=True)
class WorkingHours:
    """Opening intervals per weekday (Monday = 0) in ``timezone``."""

    intervals: tuple[tuple[tuple[time, time], ...], ...]
    timezone: str = "Europe/Moscow"

    @classmethod
    def parse(cls, spec: str, timezone: str = "Europe/Moscow") -> WorkingHours:
        ZoneInfo(timezone)  # raises for an unknown zone
        week: list[list[tuple[time, time]]] = [[] for _ in DAYS]
        text = spec.strip()
        if text == "24/7":
            return cls(tuple(((time(0, 0), time(23, 59, 59)),) for _ in DAYS), timezone)
        if not text:
            raise ValueError("working hours are empty")
        for rule in (r.strip() for r in text.split(";")):
            if not rule:
                continue
            match = _RULE.match(rule)
            if match is None:
                raise ValueError(f"cannot read {rule!r}: expected e.g. 'Mo-Fr 09:00-20:00'")
            days: list[int] = []
            for part in match["days"].split(","):
                first, _, last = part.partition("-")
                lo, hi = _day(first), _day(last or first)
                if hi < lo:
                    raise ValueError(f"day range {part!r} runs backwards")
                days.extend(range(lo, hi + 1))
            for piece in match["times"].replace(" ", "").split(","):
                m = _INTERVAL.match(piece)
                if m is None:
                    raise ValueError(f"cannot read the interval {piece!r}: expected HH:MM-HH:MM")
                h1, m1, h2, m2 = (int(x) for x in m.groups())
                if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
                    raise ValueError(f"no such time in {piece!r}")
                opens = time(h1, m1)
                closes = time(23, 59, 59) if h2 == 24 else time(h2, m2)
                if closes <= opens:
                    raise ValueError(f"{piece!r} closes before it opens")
                for d in days:
                    week[d].append((opens, closes))
        return cls(tuple(tuple(sorted(day)) for day in week), timezone)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def is_open(self, at: datetime) -> bool:
        local = at.astimezone(self.zone)
        now = local.time()
        return any(opens <= now < closes for opens, closes in self.intervals[local.weekday()])

    def next_opening(self, at: datetime) -> datetime | None:
        """The next moment the staff start working, after ``at`` (None if the clinic is never open)."""
        local = at.astimezone(self.zone)
        for offset in range(8):
            day = (local + timedelta(days=offset)).date()
            for opens, _closes in self.intervals[day.weekday()]:
                candidate = datetime.combine(day, opens, tzinfo=self.zone)
                if candidate > local:
                    return candidate
        return None

    def describe(self, language: str) -> str:
        """``"пн–пт 09:00–20:00; сб 10:00–16:00"``: consecutive days with the same hours grouped."""
        names = _DAY_NAMES.get(language, _DAY_NAMES["en"])
        groups: list[tuple[int, int, tuple[tuple[time, time], ...]]] = []
        for d, day in enumerate(self.intervals):
            if not day:
                continue
            if groups and groups[-1][1] == d - 1 and groups[-1][2] == day:
                groups[-1] = (groups[-1][0], d, day)
            else:
                groups.append((d, d, day))
        parts = []
        for lo, hi, day in groups:
            span = names[lo] if lo == hi else f"{names[lo]}–{names[hi]}"
            times = ", ".join(
                f"{o:%H:%M}–{'24:00' if c == time(23, 59, 59) else f'{c:%H:%M}'}" for o, c in day
            )
            parts.append(f"{span} {times}")
        return "; ".join(parts)
