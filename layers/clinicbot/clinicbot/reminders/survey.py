"""The post-visit survey trigger: the seam with the engagement work, which builds the survey itself.

A ``survey`` due item comes due some hours after the visit (``ReminderConfig.survey_delay``, moved out of
quiet hours). The run asks the configured :class:`SurveyHook` for the message to send; with no hook (the
default, until the survey exists) the item is closed as ``skipped`` with reason ``no-survey`` and nothing
is sent. A hook gets ids only and returns the text and the buttons (its own callback data).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

from clinicbot.domain.patient import PatientCard
from clinicbot.i18n import Translator
from clinicbot.reminders.items import DueItem

__all__ = ["NoSurvey", "SurveyHook", "SurveyMessage"]


@dataclass(frozen=True)
class SurveyMessage:
    text: str
    reply_markup: dict[str, Any] | None = None


class SurveyHook(Protocol):
    def message(self, item: DueItem, card: PatientCard, t: Translator) -> SurveyMessage | None:
        """The survey invitation for the visit ``item.appointment_id`` (None: send nothing)."""
        ...


class NoSurvey:
    def message(self, item: DueItem, card: PatientCard, t: Translator) -> SurveyMessage | None:
        return None
