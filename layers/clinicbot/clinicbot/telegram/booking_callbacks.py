"""Callback data of the booking wizard and of "My visits" (aiogram ``CallbackData``, 64 bytes at most).

Every wizard button carries ``f``, the id of the wizard run it belongs to (4 hex digits, kept in the FSM
data). A button from an older run -- an old message, a finished or cancelled booking -- does not match
and gets a polite "this button is out of date". Ids are references (``clinicbot.booking.refs``) that are
only ever resolved against lists fetched for this patient, so forged data matches nothing. Fields are
validated by pydantic: anything malformed does not parse and falls through to the fallback router.
"""

from __future__ import annotations

from typing import Annotated, Literal

from aiogram.filters.callback_data import CallbackData
from pydantic import Field

from clinicbot.booking.refs import REF_PATTERN

Flow = Annotated[str, Field(pattern=r"^[0-9a-f]{4}$")]
Ref = Annotated[str, Field(pattern=REF_PATTERN)]
DoctorRef = Annotated[str, Field(pattern=r"^(\*|[A-Za-z0-9_.@~-]{1,24})$")]
ANY_DOCTOR = "*"


class BookBy(CallbackData, prefix="bk"):
    """How to book: by specialty (``sp``) or by doctor (``dr``)."""

    f: Flow
    by: Literal["sp", "dr"]


class BookSpec(CallbackData, prefix="bs"):
    f: Flow
    s: Ref


class BookDoc(CallbackData, prefix="bd"):
    """A doctor, or ``*``: any doctor of the chosen specialty."""

    f: Flow
    d: DoctorRef


class BookPage(CallbackData, prefix="bp"):
    """A page of the specialty or doctor list."""

    f: Flow
    p: Annotated[int, Field(ge=0, le=99)]


class BookMonth(CallbackData, prefix="bm"):
    f: Flow
    m: Annotated[str, Field(pattern=r"^\d{6}$")]


class BookDay(CallbackData, prefix="by"):
    f: Flow
    y: Annotated[str, Field(pattern=r"^\d{8}$")]


class BookTime(CallbackData, prefix="bt"):
    f: Flow
    s: Ref


class BookAlt(CallbackData, prefix="ba"):
    """One of the alternatives offered after losing a slot."""

    f: Flow
    s: Ref


class BookOk(CallbackData, prefix="bo"):
    """Confirm the slot on the confirmation screen."""

    f: Flow
    s: Ref


class BookNav(CallbackData, prefix="bn"):
    f: Flow
    a: Literal["back", "cancel", "noop", "idle", "earliest"]
    """``noop``: a day without free time; ``idle``: a label (month name, weekday, page number)."""


class VisitCb(CallbackData, prefix="vi"):
    """My visits: ``list``; one visit: ``show``, ``cx`` (ask to cancel), ``cxok`` (cancel), ``rs``
    (reschedule), ``cb`` (call me back)."""

    a: Literal["list", "show", "cx", "cxok", "rs", "cb"]
    v: Ref = "-"
