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

    @property
    def has_consent(self) -> bool:
        return self.consent_at is not None

    @property
    def is_linked(self) -> bool:
        return self.patient_id is not None

    def with_changes(self, **changes: object) -> PatientCard:
        return replace(self, **changes)  # type: ignore[arg-type]
