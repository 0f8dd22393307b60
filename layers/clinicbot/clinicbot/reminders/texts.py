"""What a reminder says and which buttons it carries. Pure (i18n templates, HTML-escaped values).

Neutral wording (323-FZ art. 13: even the fact of seeking care is a secret): a visit reminder names the
date, time, doctor and branch -- never the service or specialty unless the clinic opts in
(``CLINICBOT_REMINDERS_REVEAL_SERVICE``); a medication reminder from the MIS says "your medication"
unless the clinic opts in (the patient's own schedules show the label the patient chose, which may be
generic); memos come from the clinic's configuration, which keeps them neutral.
"""

from __future__ import annotations

import html
import time as _time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from clinicbot.booking.texts import branch_line, doctor_name, fmt_day, fmt_time
from clinicbot.i18n import Translator
from clinicbot.mis.models import AppointmentStatus, Branch, Doctor, Service, Specialty
from clinicbot.reminders.callbacks import RemAction, pack, pack_settings, visit_button
from clinicbot.reminders.config import ReminderConfig
from clinicbot.reminders.items import DueItem, Kind
from clinicbot.reminders.memos import Memos

__all__ = ["Reference", "Rendered", "render", "visit_keyboard", "when_text"]

Markup = dict[str, Any]


@dataclass
class Reference:
    """The MIS's reference data a reminder needs (names, addresses), loaded once and kept a while."""

    branches: dict[str, Branch] = field(default_factory=dict)
    doctors: dict[str, Doctor] = field(default_factory=dict)
    services: dict[str, Service] = field(default_factory=dict)
    specialties: dict[str, Specialty] = field(default_factory=dict)
    loaded_at: float = 0.0

    @classmethod
    async def load(cls, mis: Any) -> Reference:
        return cls(
            branches={b.id: b for b in await mis.branches()},
            doctors={d.id: d for d in await mis.doctors()},
            services={s.id: s for s in await mis.services()},
            specialties={s.id: s for s in await mis.specialties()},
            loaded_at=_time.monotonic(),
        )


@dataclass(frozen=True)
class Rendered:
    text: str
    reply_markup: Markup | None = None


def _button(text: str, data: str) -> dict[str, str]:
    return {"text": text, "callback_data": data}


def settings_keyboard(t: Translator) -> Markup:
    return {"inline_keyboard": [[_button(t("reminders.btn.settings"), pack_settings("open"))]]}


def visit_keyboard(t: Translator, appointment_id: str, *, confirmed: bool) -> Markup:
    rows = (
        []
        if confirmed
        else [[_button(t("reminders.btn.confirm"), visit_button(RemAction.CONFIRM, appointment_id))]]
    )
    rows.append(
        [
            _button(t("reminders.btn.reschedule"), visit_button(RemAction.RESCHEDULE, appointment_id)),
            _button(t("reminders.btn.cancel"), visit_button(RemAction.CANCEL, appointment_id)),
        ]
    )
    return {"inline_keyboard": rows}


def when_text(t: Translator, start: datetime, now: datetime, tz: ZoneInfo) -> str:
    days = (start.astimezone(tz).date() - now.astimezone(tz).date()).days
    if days == 0:
        return t("reminders.when.today")
    if days == 1:
        return t("reminders.when.tomorrow")
    return t("reminders.when.date", date=fmt_day(t, start.astimezone(tz).date()))


def _service_line(t: Translator, item: DueItem, ref: Reference) -> str | None:
    service = ref.services.get(item.service_id or "")
    if service is not None:
        return service.name.get(t.language)
    doctor = ref.doctors.get(item.doctor_id or "")
    if doctor is None:
        return None
    names = [ref.specialties[s].name.get(t.language) for s in doctor.specialty_ids if s in ref.specialties]
    return ", ".join(names) or None


def render(
    item: DueItem,
    t: Translator,
    ref: Reference,
    config: ReminderConfig,
    memos: Memos,
    *,
    now: datetime,
    status: AppointmentStatus | None = None,
) -> Rendered | None:
    """The message for a visit, memo or medication item (None: nothing to say). Surveys: see survey.py."""
    tz = ZoneInfo(item.tz)
    if item.kind is Kind.MED:
        return _medication(item, t, config, tz)
    assert item.start is not None
    branch = ref.branches.get(item.branch_id or "")
    zone = branch.tz if branch else tz
    local = item.start.astimezone(zone)
    name, address = branch_line(branch, t)
    if item.kind is Kind.VISIT:
        lines = [
            t("reminders.visit.title", when=when_text(t, item.start, now, zone)),
            "",
            t(
                "reminders.visit.details",
                date=fmt_day(t, local.date()),
                time=fmt_time(local),
                doctor=html.escape(doctor_name(ref.doctors.get(item.doctor_id or ""), t)),
                branch=name,
                address=address,
            ),
        ]
        if config.reveal_service:
            service = _service_line(t, item, ref)
            if service:
                lines.append(t("reminders.visit.service", service=html.escape(service)))
        confirmed = status is AppointmentStatus.CONFIRMED
        lines += ["", t("reminders.visit.confirmed" if confirmed else "reminders.visit.ask")]
        assert item.appointment_id is not None
        return Rendered("\n".join(lines), visit_keyboard(t, item.appointment_id, confirmed=confirmed))
    memo = memos.text("before" if item.kind is Kind.MEMO_BEFORE else "after", item.service_id, t.language)
    if not memo:
        return None
    if item.kind is Kind.MEMO_BEFORE:
        text = t(
            "reminders.memo.before",
            text=html.escape(memo),
            date=fmt_day(t, local.date()),
            time=fmt_time(local),
            branch=name,
            address=address,
        )
    else:
        text = t("reminders.memo.after", text=html.escape(memo))
    return Rendered(text, settings_keyboard(t))


def _medication(item: DueItem, t: Translator, config: ReminderConfig, tz: ZoneInfo) -> Rendered:
    series: Mapping[str, Any] = item.series or {}
    at = fmt_time(item.planned_at.astimezone(tz))
    label = series.get("label")
    own = series.get("source") == "user"
    if label and (own or config.reveal_service):
        text = t("reminders.med.label", label=html.escape(str(label)), time=at)
    elif own:
        text = t("reminders.med.generic", time=at)
    else:
        text = t("reminders.med.prescribed", time=at)
    markup = {
        "inline_keyboard": [
            [_button(t("reminders.btn.taken"), pack(RemAction.TAKEN, item.item_id))],
            [_button(t("reminders.btn.settings"), pack_settings("open"))],
        ]
    }
    return Rendered(text, markup)
