"""Reminder settings of a clinic (from ``clinicbot.config.Settings``) and the quiet-hours rule. Pure."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

if TYPE_CHECKING:
    from clinicbot.config import Settings

__all__ = [
    "LEAD_CHOICES",
    "MAX_LEAD_HOURS",
    "QuietHours",
    "ReminderConfig",
    "parse_lead_hours",
    "parse_quiet_hours",
]

MAX_LEAD_HOURS = 168
LEAD_CHOICES: tuple[int, ...] = (72, 48, 24, 12, 6, 3, 2, 1)
"""Lead times a patient can pick in the settings menu."""

_LEADS_RE = re.compile(r"^\s*\d{1,3}(\s*,\s*\d{1,3})*\s*$")
_QUIET_RE = re.compile(r"^\s*([01]?\d|2[0-3]):([0-5]\d)\s*-\s*([01]?\d|2[0-3]):([0-5]\d)\s*$")


def parse_lead_hours(text: str) -> tuple[int, ...]:
    """``"24,2"`` -> ``(24, 2)``: distinct, 1..168 hours, longest first."""
    if not _LEADS_RE.match(text or ""):
        raise ValueError("lead hours must be a comma-separated list of whole hours, e.g. 24,2")
    hours = sorted({int(part) for part in text.split(",")}, reverse=True)
    if not hours or hours[-1] < 1 or hours[0] > MAX_LEAD_HOURS:
        raise ValueError(f"lead hours must be between 1 and {MAX_LEAD_HOURS}")
    return tuple(hours)


def parse_quiet_hours(text: str) -> QuietHours:
    """``"21:00-09:00"``; an empty window (``"00:00-00:00"``) turns quiet hours off."""
    match = _QUIET_RE.match(text or "")
    if not match:
        raise ValueError("quiet hours must look like 21:00-09:00")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    return QuietHours(time(h1, m1), time(h2, m2))


@dataclass(frozen=True)
class QuietHours:
    """A daily window of local wall-clock time when the clinic does not write to patients. It may wrap
    midnight (21:00-09:00)."""

    start: time = time(21, 0)
    end: time = time(9, 0)

    @property
    def enabled(self) -> bool:
        return self.start != self.end

    def contains(self, instant: datetime, tz: ZoneInfo) -> bool:
        if not self.enabled:
            return False
        local = instant.astimezone(tz).time()
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end

    def end_after(self, instant: datetime, tz: ZoneInfo) -> datetime:
        """When the quiet window that ``instant`` falls in ends (``instant`` itself if it is outside)."""
        if not self.contains(instant, tz):
            return instant
        local = instant.astimezone(tz)
        day = local.date()
        if self.start > self.end and local.time() >= self.start:
            day += timedelta(days=1)
        end = datetime.combine(day, self.end, tz)
        # a DST gap can make the wall-clock end not exist; combine() then gives a valid instant anyway
        return end.astimezone(instant.tzinfo)


@dataclass(frozen=True)
class ReminderConfig:
    """How a clinic reminds. Defaults are the issue's: 24 h and 2 h before, quiet 21:00-09:00."""

    lead_hours: tuple[int, ...] = (24, 2)
    quiet: QuietHours = field(default_factory=QuietHours)
    reveal_service: bool = False
    """Name the service / specialty in reminders (only if the clinic opts in; 323-FZ art. 13)."""
    memo_before_local: time = time(18, 0)
    """The before-visit memo goes at this local time the day before the visit."""
    memo_after_delay: timedelta = timedelta(hours=1)
    survey_delay: timedelta = timedelta(hours=3)
    min_gap: timedelta = timedelta(minutes=45)
    """Two reminders of one visit closer than this (after quiet hours moved them) become one."""
    med_late_limit: timedelta = timedelta(hours=2)
    """A medication reminder more than this late (an outage) is skipped, not sent at a wrong time."""
    lease: timedelta = timedelta(minutes=6)
    """How long a claimed item is ours; longer than a run can live (the function timeout)."""
    retry_delay: timedelta = timedelta(minutes=5)
    max_attempts: int = 5
    default_tz: str = "Europe/Moscow"
    """For patient-made medication schedules (the clinic's time zone)."""

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> ReminderConfig:
        values: dict[str, object] = {
            "lead_hours": parse_lead_hours(settings.reminder_lead_hours),
            "quiet": parse_quiet_hours(settings.quiet_hours),
            "reveal_service": settings.reminders_reveal_service,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]
