"""Callback data of reminder buttons, shared by the reminders function (which has no aiogram) and the
bot (``clinicbot.telegram.routers.reminders`` parses the same strings with aiogram ``CallbackData``
factories of the same prefixes).

Format ``<prefix>:<action>:<value>``, at most 64 bytes (Telegram's limit)::

    rem:c:<appointment ref>    confirm the visit              rem:x:<ref>   cancel: ask first
    rem:xy:<ref>               cancel: yes                    rem:xn:<ref>  cancel: no, keep it
    rem:r:<ref>                reschedule (the booking wizard's calendar)
    rem:t:<medication item id> "taken"
    rset:<action>:<value>      the reminder settings menu (see the router)

``<ref>`` is ``clinicbot.booking.refs.ref_of(appointment id)``: it is only ever resolved against the
pressing patient's own upcoming visits, and a medication item id only inside the presser's own partition,
so forged data matches nothing.
"""

from __future__ import annotations

import re
from enum import StrEnum

from clinicbot.booking.refs import ref_of

__all__ = [
    "MAX_BYTES",
    "PREFIX",
    "SETTINGS_PREFIX",
    "VALUE_PATTERN",
    "RemAction",
    "pack",
    "pack_settings",
    "unpack",
]

PREFIX = "rem"
SETTINGS_PREFIX = "rset"
MAX_BYTES = 64
VALUE_PATTERN = r"^[A-Za-z0-9_.@~#-]{1,56}$"
_VALUE = re.compile(VALUE_PATTERN)


class RemAction(StrEnum):
    CONFIRM = "c"
    CANCEL = "x"
    CANCEL_YES = "xy"
    CANCEL_NO = "xn"
    RESCHEDULE = "r"
    TAKEN = "t"


def _pack(prefix: str, action: str, value: str) -> str:
    if not _VALUE.match(value):
        raise ValueError("callback value has characters outside the allowed set")
    data = f"{prefix}:{action}:{value}"
    if len(data.encode()) > MAX_BYTES:
        raise ValueError("callback data longer than 64 bytes")
    return data


def pack(action: RemAction, value: str) -> str:
    return _pack(PREFIX, str(action), value)


def pack_settings(action: str, value: str = "-") -> str:
    return _pack(SETTINGS_PREFIX, action, value)


def visit_button(action: RemAction, appointment_id: str) -> str:
    return pack(action, ref_of(appointment_id))


def unpack(data: str) -> tuple[RemAction, str] | None:
    """``(action, value)`` of a ``rem:`` string, or None if it is not one."""
    parts = data.split(":")
    if len(parts) != 3 or parts[0] != PREFIX or not _VALUE.match(parts[2]):
        return None
    try:
        return RemAction(parts[1]), parts[2]
    except ValueError:
        return None
