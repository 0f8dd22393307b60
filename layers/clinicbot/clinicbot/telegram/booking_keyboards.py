"""Keyboards of the booking wizard and of "My visits": lists, the calendar, time buttons."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, timedelta

from aiogram.types import InlineKeyboardButton, InlineKeyboardMarkup

from clinicbot.booking.texts import month_grid, month_title
from clinicbot.i18n import Translator
from clinicbot.telegram.booking_callbacks import (
    BookAlt,
    BookBy,
    BookDay,
    BookDoc,
    BookMonth,
    BookNav,
    BookOk,
    BookPage,
    BookSpec,
    BookTime,
    VisitCb,
)
from clinicbot.telegram.callbacks import MenuCb

PAGE_SIZE = 10
BLANK = "\u2800"  # a blank that Telegram accepts as a button label
INACTIVE = "·"


def _nav_row(t: Translator, f: str, *, back: bool = True) -> list[InlineKeyboardButton]:
    row = []
    if back:
        row.append(InlineKeyboardButton(text=t("booking.back"), callback_data=BookNav(f=f, a="back").pack()))
    row.append(InlineKeyboardButton(text=t("booking.cancel"), callback_data=BookNav(f=f, a="cancel").pack()))
    return row


def _noop(f: str, text: str) -> InlineKeyboardButton:
    """A label-only button (Telegram's inline buttons always call back)."""
    return InlineKeyboardButton(text=text, callback_data=BookNav(f=f, a="idle").pack())


def _inactive_day(f: str) -> InlineKeyboardButton:
    return InlineKeyboardButton(text=INACTIVE, callback_data=BookNav(f=f, a="noop").pack())


def mode_keyboard(t: Translator, f: str) -> InlineKeyboardMarkup:
    rows = [
        [InlineKeyboardButton(text=t("booking.mode.specialty"), callback_data=BookBy(f=f, by="sp").pack())],
        [InlineKeyboardButton(text=t("booking.mode.doctor"), callback_data=BookBy(f=f, by="dr").pack())],
        _nav_row(t, f, back=False),
    ]
    return InlineKeyboardMarkup(inline_keyboard=rows)


def _pager(t: Translator, f: str, page: int, total: int) -> list[InlineKeyboardButton]:
    pages = max(1, -(-total // PAGE_SIZE))
    if pages == 1:
        return []
    row = [
        InlineKeyboardButton(text="‹", callback_data=BookPage(f=f, p=page - 1).pack())
        if page > 0
        else _noop(f, BLANK),
        _noop(f, f"{page + 1}/{pages}"),
        InlineKeyboardButton(text="›", callback_data=BookPage(f=f, p=page + 1).pack())
        if page + 1 < pages
        else _noop(f, BLANK),
    ]
    return row


def page_of(items: Sequence[object], page: int) -> tuple[int, slice]:
    pages = max(1, -(-len(items) // PAGE_SIZE))
    page = min(max(page, 0), pages - 1)
    return page, slice(page * PAGE_SIZE, (page + 1) * PAGE_SIZE)


def list_keyboard(
    t: Translator,
    f: str,
    items: Sequence[tuple[str, str]],
    *,
    kind: str,
    page: int = 0,
    first: tuple[str, str] | None = None,
    columns: int = 1,
) -> InlineKeyboardMarkup:
    """A paged list of specialties (``kind="spec"``) or doctors (``kind="doc"``): (ref, label) pairs;
    ``first`` is an extra entry above the list (``any doctor``)."""
    page, window = page_of(items, page)
    rows: list[list[InlineKeyboardButton]] = []
    if first is not None:
        rows.append([InlineKeyboardButton(text=first[1], callback_data=BookDoc(f=f, d=first[0]).pack())])
    row: list[InlineKeyboardButton] = []
    for ref, label in items[window]:
        data = BookSpec(f=f, s=ref).pack() if kind == "spec" else BookDoc(f=f, d=ref).pack()
        row.append(InlineKeyboardButton(text=label, callback_data=data))
        if len(row) == columns:
            rows.append(row)
            row = []
    if row:
        rows.append(row)
    pager = _pager(t, f, page, len(items))
    if pager:
        rows.append(pager)
    rows.append(_nav_row(t, f))
    return InlineKeyboardMarkup(inline_keyboard=rows)


def calendar_keyboard(
    t: Translator,
    f: str,
    month: date,
    *,
    active: set[date],
    first_day: date,
    last_day: date,
    earliest: str | None = None,
) -> InlineKeyboardMarkup:
    """A month grid of the weeks that overlap the booking window (``first_day`` .. ``last_day``): days with
    free time are buttons, the others dots; ‹ › move between the months of the window."""
    first = month.replace(day=1)
    prev_month = (first - timedelta(days=1)).replace(day=1)
    next_month = (first.replace(day=28) + timedelta(days=4)).replace(day=1)
    header = [
        InlineKeyboardButton(text="‹", callback_data=BookMonth(f=f, m=f"{prev_month:%Y%m}").pack())
        if prev_month >= first_day.replace(day=1)
        else _noop(f, BLANK),
        _noop(f, month_title(t, first)),
        InlineKeyboardButton(text="›", callback_data=BookMonth(f=f, m=f"{next_month:%Y%m}").pack())
        if next_month <= last_day
        else _noop(f, BLANK),
    ]
    rows: list[list[InlineKeyboardButton]] = [header]
    rows.append([_noop(f, name) for name in t("calendar.weekdays").split()])
    for week in month_grid(first.year, first.month):
        if not any(day is not None and first_day <= day <= last_day for day in week):
            continue  # a week wholly outside the booking window: no row at all
        cells = []
        for day in week:
            if day is None:
                cells.append(_noop(f, BLANK))
            elif day in active and first_day <= day <= last_day:
                cells.append(
                    InlineKeyboardButton(
                        text=str(day.day), callback_data=BookDay(f=f, y=f"{day:%Y%m%d}").pack()
                    )
                )
            else:
                cells.append(_inactive_day(f))
        rows.append(cells)
    if earliest:
        rows.append([InlineKeyboardButton(text=earliest, callback_data=BookNav(f=f, a="earliest").pack())])
    rows.append(_nav_row(t, f))
    return InlineKeyboardMarkup(inline_keyboard=rows)


def times_keyboard(
    t: Translator, f: str, times: Sequence[tuple[str, str]], *, columns: int = 4
) -> InlineKeyboardMarkup:
    """(slot ref, label) pairs as buttons, ``columns`` per row."""
    rows: list[list[InlineKeyboardButton]] = []
    for start in range(0, len(times), columns):
        rows.append(
            [
                InlineKeyboardButton(text=label, callback_data=BookTime(f=f, s=ref).pack())
                for ref, label in times[start : start + columns]
            ]
        )
    rows.append(_nav_row(t, f))
    return InlineKeyboardMarkup(inline_keyboard=rows)


def confirm_keyboard(
    t: Translator, f: str, slot_ref: str, *, reschedule: bool = False
) -> InlineKeyboardMarkup:
    label = t("booking.confirm.reschedule_yes" if reschedule else "booking.confirm.yes")
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=label, callback_data=BookOk(f=f, s=slot_ref).pack())],
            _nav_row(t, f),
        ]
    )


def alternatives_keyboard(t: Translator, f: str, options: Sequence[tuple[str, str]]) -> InlineKeyboardMarkup:
    rows = [
        [InlineKeyboardButton(text=label, callback_data=BookAlt(f=f, s=ref).pack())] for ref, label in options
    ]
    rows.append(_nav_row(t, f))
    return InlineKeyboardMarkup(inline_keyboard=rows)


def summary_keyboard(t: Translator, calendar_url: str | None) -> InlineKeyboardMarkup:
    rows: list[list[InlineKeyboardButton]] = []
    if calendar_url:
        rows.append([InlineKeyboardButton(text=t("booking.add_to_calendar"), url=calendar_url)])
    rows.append(
        [
            InlineKeyboardButton(text=t("visits.menu"), callback_data=VisitCb(a="list").pack()),
            InlineKeyboardButton(text=t("booking.to_menu"), callback_data=MenuCb(action="main").pack()),
        ]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


def back_to_menu_keyboard(t: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [InlineKeyboardButton(text=t("booking.to_menu"), callback_data=MenuCb(action="main").pack())]
        ]
    )


# --------------------------------------------------------------------------- my visits
def visits_keyboard(t: Translator, visits: Sequence[tuple[str, str]]) -> InlineKeyboardMarkup:
    rows = [
        [InlineKeyboardButton(text=label, callback_data=VisitCb(a="show", v=ref).pack())]
        for ref, label in visits
    ]
    rows.append(
        [
            InlineKeyboardButton(text=t("booking.menu"), callback_data=MenuCb(action="book").pack()),
            InlineKeyboardButton(text=t("booking.to_menu"), callback_data=MenuCb(action="main").pack()),
        ]
    )
    return InlineKeyboardMarkup(inline_keyboard=rows)


def visit_keyboard(t: Translator, ref: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("visits.reschedule"), callback_data=VisitCb(a="rs", v=ref).pack()
                ),
                InlineKeyboardButton(text=t("visits.cancel"), callback_data=VisitCb(a="cx", v=ref).pack()),
            ],
            [InlineKeyboardButton(text=t("visits.callback"), callback_data=VisitCb(a="cb", v=ref).pack())],
            [InlineKeyboardButton(text=t("visits.back"), callback_data=VisitCb(a="list").pack())],
        ]
    )


def cancel_confirm_keyboard(t: Translator, ref: str) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(
                    text=t("visits.cancel_yes"), callback_data=VisitCb(a="cxok", v=ref).pack()
                )
            ],
            [InlineKeyboardButton(text=t("visits.cancel_no"), callback_data=VisitCb(a="show", v=ref).pack())],
        ]
    )


def after_visit_keyboard(t: Translator) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        inline_keyboard=[
            [
                InlineKeyboardButton(text=t("visits.menu"), callback_data=VisitCb(a="list").pack()),
                InlineKeyboardButton(text=t("booking.to_menu"), callback_data=MenuCb(action="main").pack()),
            ]
        ]
    )
