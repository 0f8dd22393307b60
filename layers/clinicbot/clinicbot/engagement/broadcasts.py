"""Marketing broadcasts: a campaign to a segment of the patients who gave the separate marketing consent,
through the one rate-limited :class:`~clinicbot.sending.sender.BulkSender`, never inside the webhook.

* :func:`start_broadcast` stores a campaign (``pending``) and returns its id. The CRM's signed inbound route
  (hand-off function) or ``python -m clinicbot broadcast`` call it; nothing is sent yet.
* :class:`BroadcastRunner` sends a campaign in chunks within a time budget: ``python -m clinicbot
  broadcast-run`` or a scheduled function (the reminders tick: :func:`run_pending_broadcasts`). A run that
  hits its deadline leaves the campaign ``running``; the next run goes on where it stopped.

Audience: the StateTable is read as ``total_segments`` parallel-scan segments (a consistent Scan with a filter:
patient cards with both consents), one segment per chunk; the campaign's progress is the number of the next
segment -- never a patient's key, so a campaign item holds nothing personal. The segment filter: ``all``;
``branch:<id>`` (a visit at that branch, past or upcoming, not cancelled); ``lapsed:<YYYY-MM-DD>`` (the last attended visit
started before that day and nothing is booked). The MIS is asked only for the last two.

Exactly once: before a message goes, a mark ``USER#<id> / BCAST#<campaign>`` is written with a condition
(absent): a patient already marked is skipped, so a repeated chunk (a crash, a deadline) sends nobody a
second message. A message deferred by the deadline gives its mark back for the next run; a 403 or a 400
keeps it (no blind retries). The marks live in the patient's partition: an erasure takes them too.
Every message carries an "unsubscribe" button (``mkt:off``); ``/stop`` works as well.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from pynamodb.exceptions import PutError, UpdateError

from clinicbot.i18n import LANGUAGES, Translator
from clinicbot.mis.models import AppointmentStatus
from clinicbot.sending.sender import BulkSender, Outcome, OutgoingMessage, SendStatus

__all__ = [
    "UNSUBSCRIBE_CALLBACK",
    "BroadcastRunner",
    "Campaign",
    "CampaignStatus",
    "CampaignStore",
    "RunReport",
    "Segment",
    "run_pending_broadcasts",
    "start_broadcast",
]

log = logging.getLogger(__name__)

UNSUBSCRIBE_CALLBACK = "mkt:off"
"""The bot's ``MarketingCb(a="off")``: unsubscribes from news and offers."""
CAMPAIGN_PK = "CAMPAIGN"
MARK_PREFIX = "BCAST#"
MARK_TTL = timedelta(days=90)
DEFAULT_SEGMENTS = 8
MAX_TEXT = 4096


class CampaignStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    DONE = "done"


@dataclass(frozen=True)
class Segment:
    kind: str = "all"  # all | branch | lapsed
    branch_id: str | None = None
    before: date | None = None

    @classmethod
    def parse(cls, text: str) -> Segment:
        """``all``, ``branch:<branch id>`` or ``lapsed:<YYYY-MM-DD>``."""
        kind, _, value = text.strip().partition(":")
        if kind == "all" and not value:
            return cls()
        if kind == "branch" and value:
            return cls("branch", branch_id=value)
        if kind == "lapsed" and value:
            return cls("lapsed", before=date.fromisoformat(value))
        raise ValueError("a segment is all, branch:<id> or lapsed:<YYYY-MM-DD>")

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "branch_id": self.branch_id,
            "before": self.before.isoformat() if self.before else None,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Segment:
        before = data.get("before")
        return cls(
            str(data.get("kind") or "all"),
            data.get("branch_id"),
            date.fromisoformat(before) if before else None,
        )

    @property
    def needs_mis(self) -> bool:
        return self.kind != "all"

    async def matches(self, mis: Any, patient_id: str | None) -> bool:
        if self.kind == "all":
            return True
        if not patient_id:
            return False
        visits = await mis.visits(patient_id)
        if self.kind == "branch":
            return any(
                v.branch_id == self.branch_id and v.status is not AppointmentStatus.CANCELLED
                for v in (*visits.upcoming, *visits.past)
            )
        if self.kind == "lapsed":
            attended = [v.start for v in visits.past if v.status is AppointmentStatus.FULFILLED]
            if not attended or visits.upcoming:
                return False
            assert self.before is not None
            return max(attended).date() < self.before
        return False


@dataclass(frozen=True)
class Campaign:
    texts: Mapping[str, str]
    """Language -> text (plain text, up to 4096 characters); Russian is required, the fallback."""
    segment: Segment = field(default_factory=Segment)
    campaign_id: str = field(default_factory=lambda: uuid.uuid4().hex[:16])
    total_segments: int = DEFAULT_SEGMENTS

    def __post_init__(self) -> None:
        if not self.texts.get("ru", "").strip():
            raise ValueError("a campaign needs its Russian text")
        unknown = set(self.texts) - set(LANGUAGES)
        if unknown:
            raise ValueError(f"unknown languages {sorted(unknown)}")
        if any(len(text) > MAX_TEXT for text in self.texts.values()):
            raise ValueError("a campaign text is longer than 4096 characters")
        if not 1 <= self.total_segments <= 1000:
            raise ValueError("total_segments must be 1..1000")

    def text(self, language: str | None) -> str:
        return self.texts.get(language or "ru") or self.texts["ru"]


@dataclass
class StoredCampaign:
    campaign: Campaign
    status: CampaignStatus
    next_segment: int
    counts: dict[str, int]
    item: Any = None


class CampaignStore:
    """Campaign items in the StateTable (pk ``CAMPAIGN``, sk = campaign id) and the per-patient marks."""

    def create(self, campaign: Campaign) -> None:
        from clinicbot.storage.models import CampaignItem

        CampaignItem(
            pk=CAMPAIGN_PK,
            sk=campaign.campaign_id,
            texts=dict(campaign.texts),
            segment=campaign.segment.as_dict(),
            status=CampaignStatus.PENDING.value,
            total_segments=campaign.total_segments,
            next_segment=0,
            counts={},
            created_at=datetime.now(UTC),
        ).save(condition=CampaignItem.pk.does_not_exist())

    def get(self, campaign_id: str) -> StoredCampaign | None:
        from clinicbot.storage.models import CampaignItem

        try:
            item = CampaignItem.get(CAMPAIGN_PK, campaign_id, consistent_read=True)
        except CampaignItem.DoesNotExist:
            return None
        return _stored(item)

    def unfinished(self) -> list[StoredCampaign]:
        from clinicbot.storage.models import CampaignItem

        items = CampaignItem.query(CAMPAIGN_PK, consistent_read=True)
        found = [_stored(i) for i in items]
        return [c for c in found if c.status is not CampaignStatus.DONE]

    def save_progress(self, stored: StoredCampaign) -> None:
        item = stored.item
        item.status = stored.status.value
        item.next_segment = stored.next_segment
        item.counts = dict(stored.counts)
        item.updated_at = datetime.now(UTC)
        item.save()

    def audience_page(self, segment: int, total: int, start: Any) -> tuple[list[dict[str, Any]], Any]:
        """Cards with both consents in one scan segment: ``[{user_id, language, patient_id}]``, next key."""
        from clinicbot.storage.models import ProfileItem, StateItem

        condition = (
            (StateItem.kind == ProfileItem)
            & ProfileItem.marketing_at.exists()
            & ProfileItem.consent_at.exists()
        )
        answer = StateItem._get_connection().scan(
            filter_condition=condition,
            segment=segment,
            total_segments=total,
            exclusive_start_key=start,
            consistent_read=True,
        )
        people = []
        for raw in answer.get("Items", []):
            pk = raw.get("pk", {}).get("S", "")
            user = pk.removeprefix("USER#")
            if not user.lstrip("-").isdigit():
                continue
            people.append(
                {
                    "user_id": int(user),
                    "language": raw.get("language", {}).get("S"),
                    "patient_id": raw.get("patient_id", {}).get("S"),
                }
            )
        return people, answer.get("LastEvaluatedKey")

    def take_mark(self, user_id: int, campaign_id: str) -> bool:
        """The mark before a send; False if this patient has it already (sent, or being sent)."""
        from clinicbot.storage.models import BroadcastMarkItem, user_pk

        now = datetime.now(UTC)
        mark = BroadcastMarkItem(
            pk=user_pk(user_id),
            sk=MARK_PREFIX + campaign_id,
            status="sending",
            at=now,
            expires_at=now + MARK_TTL,
        )
        try:
            mark.save(condition=BroadcastMarkItem.pk.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def settle_mark(self, user_id: int, campaign_id: str, status: str | None) -> None:
        """Record the outcome on the mark, or (``None``) give the mark back for a later run."""
        from clinicbot.storage.models import BroadcastMarkItem, user_pk

        if status is None:
            BroadcastMarkItem(pk=user_pk(user_id), sk=MARK_PREFIX + campaign_id).delete()
            return
        try:
            BroadcastMarkItem._get_connection().update_item(
                user_pk(user_id),
                MARK_PREFIX + campaign_id,
                actions=[BroadcastMarkItem.status.set(status)],
                condition=BroadcastMarkItem.pk.exists(),  # erased meanwhile: it stays erased
            )
        except UpdateError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise


def _stored(item: Any) -> StoredCampaign:
    campaign = Campaign(
        texts=dict(item.texts),
        segment=Segment.from_dict(item.segment or {}),
        campaign_id=item.sk,
        total_segments=int(item.total_segments),
    )
    return StoredCampaign(
        campaign=campaign,
        status=CampaignStatus(item.status),
        next_segment=int(item.next_segment or 0),
        counts={k: int(v) for k, v in (item.counts or {}).items()},
        item=item,
    )


def start_broadcast(campaign: Campaign, *, store: CampaignStore | None = None) -> str:
    """Store a campaign for sending (by :class:`BroadcastRunner`, outside the webhook); its id."""
    (store or CampaignStore()).create(campaign)
    log.info(
        "broadcast campaign stored",
        extra={"campaign_id": campaign.campaign_id, "segment": campaign.segment.kind},
    )
    return campaign.campaign_id


@dataclass
class RunReport:
    campaign_id: str
    status: CampaignStatus
    sent: int = 0
    blocked: int = 0
    failed: int = 0
    skipped: int = 0
    deferred: int = 0
    rate_limited: int = 0
    segments_done: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {k: (v.value if isinstance(v, StrEnum) else v) for k, v in self.__dict__.items()}


def unsubscribe_markup(language: str | None) -> dict[str, Any]:
    label = Translator(language or "ru")("marketing.unsubscribe")
    return {"inline_keyboard": [[{"text": label, "callback_data": UNSUBSCRIBE_CALLBACK}]]}


class BroadcastRunner:
    """Sends campaigns through the BulkSender; see the module docstring. ``clock`` is monotonic seconds,
    the same clock as the ``deadline`` given to :meth:`run` and the sender's."""

    def __init__(
        self,
        *,
        sender: BulkSender,
        mis: Any,
        store: CampaignStore | None = None,
        default_language: str = "ru",
        clock: Callable[[], float] = time.monotonic,
        margin: float = 2.0,
        batch: int = 200,
    ) -> None:
        self.sender = sender
        self.mis = mis
        self.store = store or CampaignStore()
        self.default_language = default_language
        self.clock = clock
        self.margin = margin
        self.batch = batch  # marks taken at a time: about what the sender sends in a few seconds

    async def run(self, campaign_id: str, *, deadline: float, max_segments: int | None = None) -> RunReport:
        """Send segments of the campaign until it is done, ``deadline`` (monotonic seconds) is near, or
        ``max_segments`` segments are done."""
        stored = self.store.get(campaign_id)
        if stored is None:
            raise KeyError(f"no campaign {campaign_id}")
        report = RunReport(campaign_id, stored.status)
        campaign = stored.campaign
        while stored.next_segment < campaign.total_segments and self.clock() < deadline - self.margin:
            if max_segments is not None and report.segments_done >= max_segments:
                break
            if stored.status is CampaignStatus.PENDING:
                stored.status = CampaignStatus.RUNNING
            complete = await self._segment(stored, report, deadline)
            if not complete:
                break
            stored.next_segment += 1
            report.segments_done += 1
            if stored.next_segment >= campaign.total_segments:
                stored.status = CampaignStatus.DONE
            self.store.save_progress(stored)
        report.status = stored.status
        log.info("broadcast run", extra=report.as_dict())
        return report

    async def _segment(self, stored: StoredCampaign, report: RunReport, deadline: float) -> bool:
        """Send one scan segment; True if every message in it has its final outcome."""
        campaign = stored.campaign
        start: Any = None
        while True:
            people, start = self.store.audience_page(stored.next_segment, campaign.total_segments, start)
            for offset in range(0, len(people), self.batch):
                if self.clock() >= deadline - self.margin:
                    return False
                messages = await self._prepare(people[offset : offset + self.batch], campaign, report)
                if messages and not await self._send(messages, stored, report, deadline):
                    return False  # the deadline came: the rest waits for the next run
            if not start:
                return True

    async def _prepare(
        self, people: list[dict[str, Any]], campaign: Campaign, report: RunReport
    ) -> list[OutgoingMessage]:
        """The messages of a batch: people in the segment, each with a fresh mark (taken before the send)."""
        messages: list[OutgoingMessage] = []
        for person in people:
            if campaign.segment.needs_mis and not await campaign.segment.matches(
                self.mis, person["patient_id"]
            ):
                continue
            if not self.store.take_mark(person["user_id"], campaign.campaign_id):
                report.skipped += 1
                continue
            language = person["language"] or self.default_language
            messages.append(
                OutgoingMessage(
                    key=str(person["user_id"]),
                    chat_id=person["user_id"],
                    text=campaign.text(language),
                    reply_markup=unsubscribe_markup(language),
                )
            )
        return messages

    async def _send(
        self, messages: list[OutgoingMessage], stored: StoredCampaign, report: RunReport, deadline: float
    ) -> bool:
        campaign_id = stored.campaign.campaign_id
        counts = stored.counts

        async def on_result(key: str, outcome: Outcome) -> None:
            user_id = int(key)
            if outcome.status is SendStatus.DEFERRED:
                report.deferred += 1
                self.store.settle_mark(user_id, campaign_id, None)
                return
            status = outcome.status.value
            self.store.settle_mark(user_id, campaign_id, status)
            name = {"sent": "sent", "blocked": "blocked", "failed": "failed"}[status]
            setattr(report, name, getattr(report, name) + 1)
            counts[name] = counts.get(name, 0) + 1

        send_report = await self.sender.send(messages, deadline=deadline - self.margin, on_result=on_result)
        report.rate_limited += send_report.rate_limited
        return not send_report.deferred


async def run_pending_broadcasts(runner: BroadcastRunner, *, deadline: float) -> list[RunReport]:
    """Every unfinished campaign, oldest first, until the deadline (for a scheduled function or the CLI)."""
    reports = []
    pending = sorted(
        runner.store.unfinished(), key=lambda c: c.item.created_at if c.item else datetime.now(UTC)
    )
    for stored in pending:
        if runner.clock() >= deadline - runner.margin:
            break
        reports.append(await runner.run(stored.campaign.campaign_id, deadline=deadline))
    return reports
