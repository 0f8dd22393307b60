"""The post-visit survey invitation and the callback data of the feedback dialogue, without aiogram.

The reminders function sends the invitation when its ``survey`` due item comes due: it calls
:class:`FeedbackSurvey` (a ``clinicbot.reminders.survey.SurveyHook``) and sends what it returns: a neutral
text (date only: no doctor, no specialty -- 323-FZ) with five rating buttons. The bot's feedback router
(``clinicbot.telegram.routers.feedback``) handles the buttons; its aiogram ``CallbackData`` factory
``FeedbackCb`` (prefix ``fb``) packs exactly these strings::

    fb:r:<visit ref>:<1-5>      rate the visit (the invitation's buttons)
    fb:i:<visit ref>:<0-4>      tick / untick "what could be better" option n
    fb:c:<visit ref>:0          add a comment             fb:b:<visit ref>:0   back from the comment
    fb:s:<visit ref>:<0|1>      send, named (0) or anonymous (1)
    fb:n:<visit ref>:<0-10>     the NPS answer (-1: skip)

``<visit ref>`` is ``clinicbot.booking.refs.ref_of(appointment id)``, resolved only against the pressing
patient's own past visits, so a forged button matches nothing.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any
from zoneinfo import ZoneInfo

from clinicbot.booking.refs import ref_of

__all__ = ["PREFIX", "FbAction", "FeedbackSurvey", "pack", "rating_keyboard"]

PREFIX = "fb"
MAX_BYTES = 64


class FbAction(StrEnum):
    RATE = "r"
    IMPROVE = "i"
    COMMENT = "c"
    BACK = "b"
    SEND = "s"
    NPS = "n"


def pack(action: FbAction, appointment_ref: str, number: int = 0) -> str:
    data = f"{PREFIX}:{action.value}:{appointment_ref}:{number}"
    if len(data.encode()) > MAX_BYTES:
        raise ValueError("callback data longer than 64 bytes")
    return data


def rating_keyboard(appointment_id: str) -> dict[str, Any]:
    """Five buttons "1" ... "5" (with stars) for the Bot API's ``reply_markup``."""
    ref = ref_of(appointment_id)
    row = [
        {"text": f"{'⭐' if n >= 4 else ''}{n}", "callback_data": pack(FbAction.RATE, ref, n)}
        for n in range(1, 6)
    ]
    return {"inline_keyboard": [row]}


def _day(t: Any, start: datetime, tz: str) -> str:
    local = start.astimezone(ZoneInfo(tz))
    month = t("calendar.months_genitive").split()[local.month - 1]
    return f"{local.day} {month}"


class FeedbackSurvey:
    """``SurveyHook`` for the reminders runner: the invitation to rate visit ``item.appointment_id``."""

    def message(self, item: Any, card: Any, t: Any) -> Any:
        from clinicbot.reminders.survey import SurveyMessage

        if not item.appointment_id or item.start is None:
            return None
        text = t("feedback.survey", date=_day(t, item.start, item.tz or "Europe/Moscow"))
        return SurveyMessage(text=text, reply_markup=rating_keyboard(item.appointment_id))
