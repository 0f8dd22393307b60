"""What a clinic used: plain counters, one :class:`Usage` per invocation, summed into the monthly rollup.

Pure Python (no AWS, no aiogram). Counter names are short on purpose: they are the attribute names of the
rollup item (``clinicbot.metering.rollup``), which must stay under 1 KB so that each flush costs one write
unit.

===================  ==========================================================================
``updates``          Telegram updates the webhook handled (authenticated, parsed, not a retry)
``duplicates``       Telegram retries of an update already handled (answered 200, nothing done)
``rejected``         webhook calls refused (missing/wrong secret, not an update)
``msg.<kind>``       messages sent, by :class:`MessageKind`
``handoffs``         hand-offs queued for the staff/CRM (call-backs, certificates, chats, booking copies…)
``mis``              calls to the MIS port (any adapter; the demo clinic counts too)
``crm``              calls to the CRM port
``inv.<fn>``         invocations of a function (webhook, reminders, mis_sync, handoff)
``ms.<fn>``          their summed handler wall time, ms (what Lambda bills, the INIT phase aside)
``cold.<fn>``        cold starts
``initms.<fn>``      CPU ms spent before the first invocation of each cold start (the INIT phase)
===================  ==========================================================================
"""

from __future__ import annotations

from collections import Counter as _Counter
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from enum import StrEnum

__all__ = [
    "FUNCTIONS",
    "MessageKind",
    "Name",
    "Usage",
    "current_usage",
    "message_kind_of_reminder",
    "record",
    "record_message",
    "recording",
]


class MessageKind(StrEnum):
    """Why a message was sent."""

    REPLY = "reply"
    """The bot's answer in the chat the update came from (in the webhook response or by a call)."""
    REMINDER = "reminder"
    """Visit and medication reminders (the reminders function)."""
    MEMO = "memo"
    """Before/after-visit memos."""
    SURVEY = "survey"
    """Post-visit surveys and NPS questions."""
    BROADCAST = "broadcast"
    """Marketing broadcasts."""
    RELAY = "relay"
    """Carried between a patient and the staff: into the staff group or CRM thread, or a staff reply to
    the patient (any message the webhook sends to a chat other than the update's)."""


class Name(StrEnum):
    """Counters that are not per message kind or per function."""

    UPDATES = "updates"
    DUPLICATES = "duplicates"
    REJECTED = "rejected"
    HANDOFFS = "handoffs"
    MIS_CALLS = "mis"
    CRM_CALLS = "crm"


FUNCTIONS = ("webhook", "reminders", "mis_sync", "handoff")

_REMINDER_KINDS = {
    "visit": MessageKind.REMINDER,
    "med": MessageKind.REMINDER,
    "medication": MessageKind.REMINDER,
    "memo_before": MessageKind.MEMO,
    "memo_after": MessageKind.MEMO,
    "memo": MessageKind.MEMO,
    "survey": MessageKind.SURVEY,
    "nps": MessageKind.SURVEY,
    "broadcast": MessageKind.BROADCAST,
}


def message_kind_of_reminder(kind: str) -> MessageKind:
    """The message kind of an item kind of the reminders function (``visit``, ``memo_after``, ``survey``…)."""
    found = _REMINDER_KINDS.get(str(kind).lower())
    if found is not None:
        return found
    if str(kind).startswith("memo"):
        return MessageKind.MEMO
    if str(kind).startswith("broadcast"):
        return MessageKind.BROADCAST
    return MessageKind.REMINDER


@dataclass
class Usage:
    """Counters of one invocation (or a batch of them, or a month): name -> non-negative integer."""

    counts: _Counter[str] = field(default_factory=_Counter)
    chat_id: int | None = None
    """The chat of the update being handled (webhook): tells a reply from a relay."""

    # ------------------------------------------------------------------ recording
    def add(self, name: str, value: int = 1) -> None:
        if value < 0:
            raise ValueError("usage counters only grow")
        if value:
            self.counts[str(name)] += int(value)

    def message(self, kind: MessageKind | str, value: int = 1) -> None:
        self.add(f"msg.{MessageKind(kind).value}", value)

    def merge(self, other: Usage | Mapping[str, int]) -> None:
        counts = other.counts if isinstance(other, Usage) else other
        for name, value in counts.items():
            self.add(name, int(value))

    # ------------------------------------------------------------------ reading
    def __getitem__(self, name: str) -> int:
        return int(self.counts.get(str(name), 0))

    def __bool__(self) -> bool:
        return any(self.counts.values())

    def __iter__(self) -> Iterator[tuple[str, int]]:
        return iter(sorted(self.counts.items()))

    def messages(self) -> dict[MessageKind, int]:
        return {kind: self[f"msg.{kind.value}"] for kind in MessageKind if self[f"msg.{kind.value}"]}

    @property
    def messages_total(self) -> int:
        return sum(self.messages().values())

    def per_function(self, prefix: str) -> dict[str, int]:
        """``{"webhook": 12, …}`` for a per-function prefix (``inv``, ``ms``, ``cold``, ``initms``)."""
        head = f"{prefix}."
        return {name[len(head) :]: value for name, value in self.counts.items() if name.startswith(head)}

    def as_dict(self) -> dict[str, int]:
        return {name: int(value) for name, value in sorted(self.counts.items()) if value}

    def copy(self) -> Usage:
        return Usage(_Counter(self.counts))

    def clear(self) -> None:
        self.counts.clear()
        self.chat_id = None

    @classmethod
    def of(cls, counts: Mapping[str, int] | Iterable[tuple[str, int]]) -> Usage:
        usage = cls()
        usage.merge(dict(counts))
        return usage


current_usage: ContextVar[Usage | None] = ContextVar("clinicbot_usage", default=None)
"""The usage of the invocation in progress. Set in the synchronous handler *before* the event loop runs
its coroutine: the task copies the context, and the copy refers to the same :class:`Usage` object, so what
the instrumented ports and sessions record inside the loop is seen by the handler afterwards."""


def record(name: Name | str, value: int = 1) -> None:
    """Count into the invocation in progress; a no-op outside one (scripts, tests without metering)."""
    usage = current_usage.get()
    if usage is not None:
        usage.add(str(name), value)


def record_message(kind: MessageKind | str, value: int = 1) -> None:
    usage = current_usage.get()
    if usage is not None:
        usage.message(kind, value)


@contextmanager
def recording(usage: Usage | None = None) -> Iterator[Usage]:
    """``with recording() as usage:`` -- what is recorded inside the block lands in ``usage``."""
    usage = usage if usage is not None else Usage()
    token = current_usage.set(usage)
    try:
        yield usage
    finally:
        current_usage.reset(token)
