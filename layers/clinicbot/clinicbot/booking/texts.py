"""How visits, days, times, doctors and prices read to a patient (through i18n), and the
"add to calendar" details. Pure functions; HTML-escaped where a value lands in an HTML message."""

from __future__ import annotations

import calendar
import html
from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from urllib.parse import quote, urlencode

from clinicbot.i18n import Translator
from clinicbot.mis.models import Branch, Doctor, Specialty

__all__ = [
    "branch_line",
    "doctor_name",
    "fmt_day",
    "fmt_price",
    "fmt_time",
    "google_calendar_url",
    "month_grid",
    "month_title",
    "short_name",
    "specialty_names",
]


def _words(t: Translator, key: str) -> list[str]:
    return t(key).split()


def fmt_day(t: Translator, day: date, *, year: bool = False) -> str:
    """``Вт, 24 ноября`` / ``Tue, 24 November`` (with the year when asked)."""
    weekday = _words(t, "calendar.weekdays_short")[day.weekday()]
    month = _words(t, "calendar.months_genitive")[day.month - 1]
    key = "calendar.date_year" if year else "calendar.date"
    return t(key, weekday=weekday, day=day.day, month=month, year=day.year)


def fmt_time(instant: datetime) -> str:
    return f"{instant:%H:%M}"


def month_title(t: Translator, first: date) -> str:
    return t("calendar.title", month=_words(t, "calendar.months")[first.month - 1], year=first.year)


def fmt_price(t: Translator, amount: Decimal | None) -> str:
    if amount is None:
        return t("booking.price_unknown")
    rounded = int(amount) if amount == amount.to_integral_value() else amount
    text = f"{rounded:,}".replace(",", " ")  # a no-break space between thousands
    return t("booking.price_from", price=text)


def doctor_name(doctor: Doctor | None, t: Translator) -> str:
    if doctor is None:
        return t("visits.doctor_unknown")
    return doctor.full_name.get(t.language)


def short_name(doctor: Doctor | None, t: Translator) -> str:
    """``Иванова М. С.`` for a Russian three-part name; other names as they are."""
    name = doctor_name(doctor, t)
    parts = name.split()
    if len(parts) == 3 and all(p[:1].isupper() for p in parts):
        return f"{parts[0]} {parts[1][0]}. {parts[2][0]}."
    return name


def specialty_names(
    doctor: Doctor | None, specialties: Iterable[Specialty], t: Translator, only: str | None = None
) -> str:
    if doctor is None:
        return ""
    by_id = {s.id: s for s in specialties}
    ids = [only] if only and only in doctor.specialty_ids else list(doctor.specialty_ids)
    return ", ".join(by_id[i].name.get(t.language) for i in ids if i in by_id)


def branch_line(branch: Branch | None, t: Translator) -> tuple[str, str]:
    """(name, address) of a branch, escaped."""
    if branch is None:
        return "", ""
    return html.escape(branch.name.get(t.language)), html.escape(branch.address.get(t.language))


def month_grid(year: int, month: int) -> list[list[date | None]]:
    """Weeks of a month, Monday first; days of the neighbouring months are None."""
    weeks = calendar.Calendar(firstweekday=0).monthdatescalendar(year, month)
    return [[d if d.month == month else None for d in week] for week in weeks]


def google_calendar_url(*, title: str, start: datetime, end: datetime, details: str, location: str) -> str:
    """A Google Calendar "add event" link (the patient opens it; nothing is sent to Google by the bot)."""
    stamp = "%Y%m%dT%H%M%SZ"
    params = {
        "action": "TEMPLATE",
        "text": title,
        "dates": f"{start.astimezone(UTC):{stamp}}/{end.astimezone(UTC):{stamp}}",
        "details": details,
        "location": location,
    }
    return "https://calendar.google.com/calendar/render?" + urlencode(params, quote_via=quote)
