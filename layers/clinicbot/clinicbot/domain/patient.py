"""The patient card as the domain sees it (no storage types)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime


@dataclass(frozen=True)
class PatientCard:
    """What the bot keeps about a Telegram user: language, consent and the link to the MIS patient.

    Names and phones stay in the clinic's MIS; the bot never copies them.
    """

    user_id: int
    created_at: datetime
    language: str | None = None
    consent_at: datetime | None = None
    consent_version: str | None = None
    patient_id: str | None = None
    # reminders (clinicbot.reminders): kinds switched off, the patient's own lead times (None: the
    # clinic's), when Telegram refused a message with 403 (blocked), when the last reminder went out
    reminders_off: tuple[str, ...] = ()
    reminder_leads: tuple[int, ...] | None = None
    unreachable_at: datetime | None = None
    last_reminder_at: datetime | None = None
    # engagement (clinicbot.engagement): marketing consent (separate, off by default), own referral code,
    # the referral code the patient joined through (until their first booking), last NPS question
    marketing_at: datetime | None = None
    referral_code: str | None = None
    referred_by: str | None = None
    nps_asked_at: datetime | None = None

    @property
    def has_consent(self) -> bool:
        return self.consent_at is not None

    @property
    def is_linked(self) -> bool:
        return self.patient_id is not None

    @property
    def wants_marketing(self) -> bool:
        return self.has_consent and self.marketing_at is not None

    def with_changes(self, **changes: object) -> PatientCard:
        return replace(self, **changes)  # type: ignore[arg-type]
