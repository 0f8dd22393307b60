"""The reminder planner: turns a patient's visits and medication courses into due items.

Called by the MIS sync (``functions/mis_sync``), by the booking flow after a booking, a move or a
cancellation, and by the reminders' own settings menu. Every call is an idempotent upsert for ONE
patient: it reads the patient's items with one Query of their partition, then writes only what
differs (conditional writes, so two planners racing, or a planner racing the run, never lose or
duplicate an item)::

    planner = ReminderPlanner.for_settings(settings, branches=await mis.branches())
    planner.sync_patient_appointments(telegram_user_id=42, patient_id="p-001",
                                      appointments=list(visits.upcoming), now=now)
    planner.sync_patient_prescriptions(telegram_user_id=42, patient_id="p-001",
                                       prescriptions=await mis.prescriptions("p-001"), now=now)

What ``appointments`` should hold: the patient's upcoming visits as the MIS has them now (recent past
or cancelled ones may be included too; their status is read). For each active upcoming visit the
planner keeps: a reminder per lead time (the patient's own lead times, else the clinic's), the
before-visit memo (the day before at 18:00 local), the after-visit memo and the survey trigger. A
quiet-hours time moves to the end of the quiet hours, or is dropped when that is not before the
visit. Items of a visit that is cancelled, or that is not in the list while still in the future
(cancelled or moved elsewhere), are cancelled; a visit moved to another time gets new items. Items
of visits that are over are left alone (after-visit items are still to come; before-visit ones the run
skips as late). So a patient whose visits did not change costs one Query and no write (``sync_patient``,
the MIS sync's call, also reads their courses with that Query). Nothing here unsubscribes a patient.

No aiogram, boto3 or pynamodb: the store and the patient directory are ports.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

from clinicbot.domain.patient import PatientCard
from clinicbot.mis.models import Appointment, AppointmentStatus, Branch, Prescription
from clinicbot.reminders.config import ReminderConfig
from clinicbot.reminders.items import (
    DueItem,
    Kind,
    Status,
    appointment_prefix,
    default_expiry,
    item_id_for_appointment,
    item_id_for_medication,
)
from clinicbot.reminders.medication import first_occurrence, same_schedule, series_from_prescription
from clinicbot.reminders.memos import Memos, load_memos
from clinicbot.reminders.store import PatientDirectory, ReminderStore

if TYPE_CHECKING:
    from clinicbot.config import Settings

__all__ = ["PlanResult", "ReminderPlanner"]

log = logging.getLogger(__name__)

GRACE = timedelta(minutes=10)
"""A time that passed less than this ago is still planned (the next run sends it)."""
LATE_MEMO_MIN_LEAD = timedelta(hours=2)
"""A visit booked after its before-memo time still gets the memo right away if it is this far off."""


@dataclass
class PlanResult:
    """Item ids by what happened to them."""

    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    revived: list[str] = field(default_factory=list)
    cancelled: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return bool(self.created or self.updated or self.revived or self.cancelled)

    def __add__(self, other: PlanResult) -> PlanResult:
        return PlanResult(
            self.created + other.created,
            self.updated + other.updated,
            self.revived + other.revived,
            self.cancelled + other.cancelled,
            self.unchanged + other.unchanged,
        )


TzOf = Callable[[str], str | None]


class ReminderPlanner:
    """See the module docstring. ``branch_tz``: branch id -> IANA time zone (``Branch.timezone``);
    ``directory`` supplies the patient's own lead times when the caller does not pass ``leads``."""

    def __init__(
        self,
        store: ReminderStore,
        *,
        config: ReminderConfig | None = None,
        branch_tz: Mapping[str, str] | TzOf | None = None,
        directory: PatientDirectory | None = None,
        memos: Memos | None = None,
    ) -> None:
        self.store = store
        self.config = config or ReminderConfig()
        if branch_tz is None:
            self._tz_of: TzOf = lambda _branch: None
        elif callable(branch_tz):
            self._tz_of = branch_tz
        else:
            zones = dict(branch_tz)
            self._tz_of = zones.get
        self.directory = directory
        self.memos = memos or load_memos()
        self._cards: dict[int, PatientCard | None] = {}
        """Cards read ahead by ``prefetch_cards`` (None: no card), each used once."""

    @classmethod
    def for_settings(
        cls,
        settings: Settings,
        *,
        branches: Iterable[Branch] = (),
        store: ReminderStore | None = None,
        directory: PatientDirectory | None = None,
    ) -> ReminderPlanner:
        """The planner on DynamoDB (the ReminderTable and the StateTable of ``settings``)."""
        if store is None:
            from clinicbot.reminders.dynamo import DynamoReminderStore

            store = DynamoReminderStore.configured(settings)
        if directory is None:
            from clinicbot.storage.patients import DynamoPatientDirectory

            directory = DynamoPatientDirectory()
        branch_list = list(branches)
        config = ReminderConfig.from_settings(
            settings, **({"default_tz": branch_list[0].timezone} if branch_list else {})
        )
        return cls(
            store,
            config=config,
            branch_tz={b.id: b.timezone for b in branch_list},
            directory=directory,
        )

    # ================================================================== appointments

    def sync_patient_appointments(
        self,
        *,
        telegram_user_id: int,
        patient_id: str,
        appointments: Sequence[Appointment],
        now: datetime,
        leads: Sequence[int] | None = None,
    ) -> PlanResult:
        """Upsert the due items of a patient's visits; see the module docstring."""
        items = self.store.user_items(telegram_user_id, "a#")
        return self._plan_appointments(telegram_user_id, patient_id, appointments, now, leads, items)

    def sync_patient(
        self,
        *,
        telegram_user_id: int,
        patient_id: str,
        appointments: Sequence[Appointment],
        prescriptions: Sequence[Prescription] | None,
        now: datetime,
    ) -> PlanResult:
        """The MIS sync's call: a patient's visits and, when the MIS has them (not None), prescriptions,
        planned from ONE eventually consistent Query of the patient's items (every write here is
        conditional, so a stale read costs at most a failed condition, never a lost or doubled item).
        An unchanged patient costs that Query and nothing else: no write, and no read of the card unless
        they have an upcoming visit and their card was not read with their page (``prefetch_cards``)."""
        items = self.store.user_items(telegram_user_id, "", consistent=False)
        visit_items = [i for i in items if i.item_id.startswith("a#")]
        result = self._plan_appointments(telegram_user_id, patient_id, appointments, now, None, visit_items)
        if prescriptions is not None:
            course_items = [i for i in items if i.item_id.startswith("m#x")]
            result += self._sync_series(
                telegram_user_id,
                patient_id,
                self._wanted_series(patient_id, prescriptions),
                now,
                course_items,
            )
        return result

    def prefetch_cards(self, user_ids: Iterable[int]) -> None:
        """Read the cards of these patients in one batch (BatchGetItem, 100 a request) for the lead times
        of the next ``sync_patient`` calls; each card is used once, then forgotten."""
        if self.directory is None:
            return
        wanted = set(user_ids) - self._cards.keys()
        if not wanted:
            return
        found = self.directory.cards(wanted)
        for user_id in wanted:
            self._cards[user_id] = found.get(user_id)

    def _plan_appointments(
        self,
        telegram_user_id: int,
        patient_id: str,
        appointments: Sequence[Appointment],
        now: datetime,
        leads: Sequence[int] | None,
        items: Sequence[DueItem],
    ) -> PlanResult:
        result = PlanResult()
        existing = {i.item_id: i for i in items}
        listed = {a.id: a for a in appointments if a.patient_id == patient_id}
        upcoming = [a for a in listed.values() if a.is_active and a.start > now]
        wanted: dict[str, DueItem] = {}
        if upcoming:  # the lead times (the patient's card) matter only then
            lead_hours = self._leads(telegram_user_id, leads)
            for appointment in upcoming:
                for item in self._appointment_items(telegram_user_id, appointment, lead_hours):
                    wanted[item.item_id] = item

        for item_id, item in wanted.items():
            current = existing.get(item_id)
            if current is None:
                if item.planned_at < now - GRACE and not self._late_ok(item, now):
                    continue  # its time has passed (booked late, or a lead shorter than what is left)
                if item.planned_at < now:
                    item = item.with_changes(due_at=now)
                if self.store.create(item):
                    result.created.append(item_id)
                else:
                    result.unchanged.append(item_id)  # a concurrent planner was faster
            elif current.status is Status.PENDING and current.planned_at != item.planned_at:
                due = max(item.planned_at, now) if item.planned_at >= now - GRACE else None
                if due is None:
                    if self.store.update(
                        current, expect={Status.PENDING}, status=Status.CANCELLED, reason="replanned"
                    ):
                        result.cancelled.append(item_id)
                    continue
                if self.store.update(
                    current, expect={Status.PENDING}, planned_at=item.planned_at, due_at=due
                ):
                    result.updated.append(item_id)
            elif current.status is Status.CANCELLED and item.planned_at >= now - GRACE:
                # the visit is active again (it came back after an MIS glitch, or the lead was re-chosen)
                if self.store.update(
                    current,
                    expect={Status.CANCELLED},
                    status=Status.PENDING,
                    planned_at=item.planned_at,
                    due_at=max(item.planned_at, now),
                    reason=None,
                    attempts=0,
                ):
                    result.revived.append(item_id)
            else:
                result.unchanged.append(item_id)

        for item_id, current in existing.items():
            if item_id in wanted or current.status is not Status.PENDING:
                continue
            reason = self._why_obsolete(current, listed.get(current.appointment_id or ""), now)
            if reason is None:
                result.unchanged.append(item_id)
                continue
            if self.store.update(current, expect={Status.PENDING}, status=Status.CANCELLED, reason=reason):
                result.cancelled.append(item_id)
        if result.changed:
            log.info(
                "reminders planned",
                extra={
                    "patient_id": patient_id,
                    "items_created": len(result.created),
                    "items_updated": len(result.updated),
                    "items_revived": len(result.revived),
                    "items_cancelled": len(result.cancelled),
                },
            )
        return result

    def cancel_appointment(self, *, telegram_user_id: int, appointment_id: str, reason: str) -> PlanResult:
        """Cancel the pending items of one visit (e.g. right after the patient cancelled it in the bot)."""
        result = PlanResult()
        for item in self.store.user_items(telegram_user_id, appointment_prefix(appointment_id)):
            if item.status is Status.PENDING and self.store.update(
                item, expect={Status.PENDING}, status=Status.CANCELLED, reason=reason
            ):
                result.cancelled.append(item.item_id)
        return result

    def _leads(self, user_id: int, leads: Sequence[int] | None) -> tuple[int, ...]:
        if leads is not None:
            return tuple(sorted({int(h) for h in leads}, reverse=True))
        if self.directory is not None:
            card = self._cards.pop(user_id) if user_id in self._cards else self.directory.card(user_id)
            if card is not None and card.reminder_leads:
                return tuple(sorted(set(card.reminder_leads), reverse=True))
        return self.config.lead_hours

    def _tz(self, branch_id: str | None) -> str:
        return (self._tz_of(branch_id) if branch_id else None) or self.config.default_tz

    def _appointment_items(
        self, user_id: int, appointment: Appointment, leads: Sequence[int]
    ) -> list[DueItem]:
        tz_name = self._tz(appointment.branch_id)
        tz = ZoneInfo(tz_name)
        quiet = self.config.quiet
        start, end = appointment.start, appointment.end

        def item(kind: Kind, suffix: str, at: datetime, lead: int | None = None) -> DueItem:
            new = DueItem(
                user_id=user_id,
                item_id=item_id_for_appointment(appointment.id, start, suffix),
                kind=kind,
                planned_at=at,
                due_at=at,
                patient_id=appointment.patient_id,
                tz=tz_name,
                appointment_id=appointment.id,
                start=start,
                end=end,
                doctor_id=appointment.doctor_id,
                branch_id=appointment.branch_id,
                service_id=appointment.service_id,
                lead_hours=lead,
            )
            new.expires_at = default_expiry(new)
            return new

        reminders: list[tuple[int, datetime]] = []
        for lead in sorted(set(leads), reverse=True):
            at = quiet.end_after(start - timedelta(hours=lead), tz)
            if at < start:
                reminders.append((lead, at))
        kept: list[tuple[int, datetime]] = []
        for lead, at in sorted(reminders, key=lambda pair: (pair[1], -pair[0])):
            if kept and at - kept[-1][1] < self.config.min_gap:
                kept[-1] = (lead, at)  # two reminders (almost) at once: keep the one closer to the visit
            else:
                kept.append((lead, at))
        items = [item(Kind.VISIT, f"r{lead}", at, lead) for lead, at in kept]

        if self.memos.has("before", appointment.service_id):
            local_day = start.astimezone(tz).date() - timedelta(days=1)
            at = quiet.end_after(datetime.combine(local_day, self.config.memo_before_local, tz), tz)
            if at < start:
                items.append(item(Kind.MEMO_BEFORE, "mb", at))
        if self.memos.has("after", appointment.service_id):
            items.append(item(Kind.MEMO_AFTER, "ma", quiet.end_after(end + self.config.memo_after_delay, tz)))
        items.append(item(Kind.SURVEY, "sv", quiet.end_after(end + self.config.survey_delay, tz)))
        return items

    def _late_ok(self, item: DueItem, now: datetime) -> bool:
        """A before-visit memo whose time passed (a late booking) still goes if the visit is far enough."""
        return (
            item.kind is Kind.MEMO_BEFORE
            and item.start is not None
            and item.start - now >= LATE_MEMO_MIN_LEAD
            and not self.config.quiet.contains(now, ZoneInfo(item.tz))
        )

    @staticmethod
    def _why_obsolete(item: DueItem, appointment: Appointment | None, now: datetime) -> str | None:
        """Why a pending item no longer belongs (None: keep it).

        A before-visit item still pending once its visit has begun is left as it is: the run never sends
        it (it skips it as late if it reaches it) and TTL removes it. Cancelling it here would be a write
        for nothing: in practice such an item is one the run will never reach (left behind its cursor by
        an outage), and a run that does reach it skips it anyway."""
        if appointment is None:
            if item.start is not None and item.start > now:
                return "gone"  # cancelled or moved elsewhere while still in the future
            return None
        if appointment.status is AppointmentStatus.CANCELLED:
            return "cancelled"
        if appointment.status is AppointmentStatus.NOSHOW:
            return "noshow"
        if item.start is not None and appointment.start != item.start:
            return "moved"
        if appointment.is_active and appointment.start > now:
            return "replanned"  # a lead the patient no longer wants, or a kind the clinic dropped
        return None  # the visit is over: see above

    # ================================================================== medication

    def sync_patient_prescriptions(
        self,
        *,
        telegram_user_id: int,
        patient_id: str,
        prescriptions: Sequence[Prescription],
        now: datetime,
    ) -> PlanResult:
        """Keep one pending occurrence per current MIS prescription; cancel those of courses the MIS no
        longer lists or that changed (a changed course restarts from its next occurrence)."""
        wanted = self._wanted_series(patient_id, prescriptions)
        return self._sync_series(
            telegram_user_id, patient_id, wanted, now, self.store.user_items(telegram_user_id, "m#x")
        )

    @staticmethod
    def _wanted_series(patient_id: str, prescriptions: Sequence[Prescription]) -> dict[str, dict[str, Any]]:
        return {
            s["id"]: s
            for s in (series_from_prescription(rx) for rx in prescriptions if rx.patient_id == patient_id)
        }

    def add_medication(
        self, *, telegram_user_id: int, patient_id: str | None, series: Mapping[str, Any], now: datetime
    ) -> PlanResult:
        """A schedule the patient set up in the bot: stored, and its first occurrence planned."""
        self.store.put_series(telegram_user_id, series)
        return self._ensure_next(telegram_user_id, patient_id, dict(series), now, PlanResult())

    def remove_medication(self, *, telegram_user_id: int, series_id: str) -> PlanResult:
        self.store.delete_series(telegram_user_id, series_id)
        result = PlanResult()
        for item in self.store.user_items(telegram_user_id, f"m#{series_id}#"):
            if item.status is Status.PENDING and self.store.update(
                item, expect={Status.PENDING}, status=Status.CANCELLED, reason="removed"
            ):
                result.cancelled.append(item.item_id)
        return result

    def _sync_series(
        self,
        user_id: int,
        patient_id: str | None,
        wanted: Mapping[str, dict[str, Any]],
        now: datetime,
        items: Sequence[DueItem],
    ) -> PlanResult:
        """``items``: the patient's items of MIS courses (ids ``m#x...``)."""
        result = PlanResult()
        active: dict[str, list[DueItem]] = {}
        for item in items:
            if item.is_active and item.series_id:
                active.setdefault(item.series_id, []).append(item)
        for series_id, items in active.items():
            series = wanted.get(series_id)
            for item in items:
                if item.status is not Status.PENDING:
                    continue  # being sent right now: it chains the next occurrence itself
                if series is not None and item.series and same_schedule(item.series, series):
                    result.unchanged.append(item.item_id)
                    continue
                reason = "changed" if series is not None else "ended"
                if self.store.update(item, expect={Status.PENDING}, status=Status.CANCELLED, reason=reason):
                    result.cancelled.append(item.item_id)
        for series_id, series in wanted.items():
            still = [
                i
                for i in active.get(series_id, [])
                if i.item_id not in result.cancelled and i.series and same_schedule(i.series, series)
            ]
            if not still:
                self._ensure_next(user_id, patient_id, series, now, result)
        return result

    def _ensure_next(
        self, user_id: int, patient_id: str | None, series: dict[str, Any], now: datetime, result: PlanResult
    ) -> PlanResult:
        occurrence = first_occurrence(series, now)
        if occurrence is None:
            return result
        item = medication_item(user_id, patient_id, series, occurrence)
        if self.store.create(item):
            result.created.append(item.item_id)
        else:
            existing = self.store.get(user_id, item.item_id)
            if existing is not None and existing.status is Status.CANCELLED:
                if self.store.update(
                    existing,
                    expect={Status.CANCELLED},
                    status=Status.PENDING,
                    series=series,
                    reason=None,
                    planned_at=occurrence,
                    due_at=occurrence,
                    attempts=0,
                ):
                    result.revived.append(item.item_id)
            else:
                result.unchanged.append(item.item_id)
        return result


def medication_item(user_id: int, patient_id: str | None, series: Mapping[str, Any], at: datetime) -> DueItem:
    item = DueItem(
        user_id=user_id,
        item_id=item_id_for_medication(str(series["id"]), at),
        kind=Kind.MED,
        planned_at=at,
        due_at=at,
        patient_id=patient_id,
        tz=str(series["tz"]),
        series=dict(series),
    )
    item.expires_at = at + timedelta(days=30)
    return item
