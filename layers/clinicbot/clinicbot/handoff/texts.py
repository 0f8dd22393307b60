"""Texts the staff read (cards in the staff group, comments in a CRM), in the clinic's language.

Nothing medical goes here beyond what the patient wrote: no doctor, specialty or service names (a
specialty can reveal a condition); a visit is shown by its time, branch and id, which staff can open in
the MIS. The patient's own messages are copied, not retyped.
"""

from __future__ import annotations

import html
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from clinicbot.domain.phones import format_phone
from clinicbot.handoff.requests import (
    BookingCopy,
    CallbackRequest,
    CertificateRequest,
    Notice,
    PatientInfo,
)
from clinicbot.i18n import Translator

__all__ = [
    "CARD_PREFIX",
    "booking_text",
    "callback_text",
    "card_callback",
    "certificate_text",
    "chat_header_text",
    "generic_text",
    "notice_text",
]

CARD_PREFIX = "hcard"


def card_callback(action: str, number: str) -> str:
    """Callback data of a card's buttons; ``telegram.routers.staff.CardCb`` parses the same format."""
    return f"{CARD_PREFIX}:{action}:{number}:0"  # the last field: who took it (0: nobody yet)


def _when(at: datetime, tz: str) -> str:
    return at.astimezone(ZoneInfo(tz)).strftime("%d.%m.%Y %H:%M")


def _patient(t: Translator, patient: PatientInfo | None, patient_id: str | None) -> str:
    if patient is None:
        return t("handoff.card.patient_id", id=html.escape(patient_id or "?"))
    return t(
        "handoff.card.patient", name=html.escape(patient.display_name), id=html.escape(patient.patient_id)
    )


def callback_text(
    t: Translator, request: CallbackRequest, patient: PatientInfo | None, phone: str | None, tz: str
) -> str:
    lines = [
        t("handoff.card.callback_title", number=request.number),
        _patient(t, patient, request.patient_id),
    ]
    lines.append(t("handoff.card.phone", phone=format_phone(phone) if phone else "—"))
    if request.window is not None:
        lines.append(t("handoff.card.window", window=t(f"callback.window.{request.window.value}")))
    if request.topic is not None:
        lines.append(t("handoff.card.topic", topic=t(f"callback.topic.{request.topic.value}")))
    if request.reason == "visit" and request.start is not None:
        lines.append(
            t(
                "handoff.card.visit",
                when=_when(request.start, tz),
                branch=html.escape(request.branch_id or "—"),
                id=html.escape(request.appointment_id or "—"),
            )
        )
    return "\n".join(lines)


def certificate_text(t: Translator, request: CertificateRequest, patient: PatientInfo | None) -> str:
    return "\n".join(
        [
            t("handoff.card.certificate_title", number=request.number),
            _patient(t, patient, request.patient_id),
            t("handoff.card.years", years=", ".join(str(y) for y in request.years)),
            t(
                "handoff.card.taxpayer",
                name=html.escape(request.taxpayer_full_name),
                relation=t(f"certificate.relation.{request.relation.value}"),
            ),
            t("handoff.card.inn", inn=request.inn),
            t("handoff.card.birth_date", date=request.birth_date.strftime("%d.%m.%Y")),
        ]
    )


def chat_header_text(t: Translator, number: str, patient: PatientInfo | None, patient_id: str | None) -> str:
    return "\n".join(
        [
            t("handoff.card.chat_title", number=number),
            _patient(t, patient, patient_id),
            t("handoff.card.chat_hint"),
        ]
    )


def booking_text(t: Translator, booking: BookingCopy, tz: str) -> str:
    event = booking.event if booking.event in ("booked", "rescheduled", "cancelled") else "other"
    return t(
        "handoff.card.booking",
        event=t(f"handoff.booking.{event}"),
        when=_when(booking.start, tz),
        branch=html.escape(booking.branch_id or "—"),
        id=html.escape(booking.appointment_id),
        patient=html.escape(booking.patient_id),
    )


def generic_text(kind: str, payload: dict[str, Any]) -> str:
    """A plain rendering of a message kind this module has no card for (ids and codes only, by the
    outbox's rule), e.g. ``"low_rating: patient_id=p-1, rating=2"``."""
    fields = ", ".join(
        f"{k}={v}" for k, v in sorted(payload.items()) if k not in ("user_id", "sealed") and v is not None
    )
    return f"ℹ️ {kind}: {fields}"


def notice_text(t: Translator, notice: Notice) -> str:
    return t(f"handoff.notice.{notice.reason.value}", about=html.escape(notice.about or "—"))
