"""pynamodb models of the ScheduleTable (see template.yaml): the schedule cache ``mis_sync`` fills.

Items (attribute names are short on purpose: DynamoDB bills item size, names included)::

    pk = SLOTS#<doctor id>  sk = <branch-local date YYYY-MM-DD>  one doctor-day of free slots (DayItem)
    pk = REF                sk = BRANCH#<id> | SPECIALTY#<id> | DOCTOR#<id> | SERVICE#<id> | ORDER
                                                                 reference data, one entity per item (RefItem)
    pk = SYNC               sk = STATE                           the last successful sync (SyncStateItem)
    pk = SYNC               sk = VISITS                          where the visits pass stopped (VisitsCursorItem)
    pk = SYNC               sk = DAYS#<doctor id>                a doctor's cached days, fingerprinted
                                                                 (DayIndexItem, ``clinicbot.schedule.index``)

The sync reads the whole ``SYNC`` partition in one Query (state, cursor, day indexes: a few KB) and diffs
the MIS against it; it reads a doctor's day items only when his index cannot be trusted.

One Query on ``SLOTS#<doctor>`` with ``sk BETWEEN`` two dates gives a doctor's calendar for a month (about 30
items); one Query on ``REF`` gives all reference data. Day items expire by TTL after their day, so the past
cleans itself up. Every cached item carries a content hash (``h``): the sync compares hashes and writes only
what changed.
"""

from __future__ import annotations

import os
from typing import Any

from pynamodb.attributes import (
    BooleanAttribute,
    DiscriminatorAttribute,
    JSONAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.connection import TableConnection
from pynamodb.models import Model

__all__ = [
    "ALL_MODELS",
    "DAYS_PREFIX",
    "ORDER_SK",
    "REF_PK",
    "STATE_SK",
    "SYNC_PK",
    "VISITS_SK",
    "DayIndexItem",
    "DayItem",
    "RefItem",
    "ScheduleItem",
    "SyncStateItem",
    "VisitsCursorItem",
    "configure",
    "slots_pk",
]

REF_PK = "REF"
ORDER_SK = "ORDER"
SYNC_PK = "SYNC"
STATE_SK = "STATE"
VISITS_SK = "VISITS"
SLOTS_PREFIX = "SLOTS#"
DAYS_PREFIX = "DAYS#"


def slots_pk(doctor_id: str) -> str:
    return f"{SLOTS_PREFIX}{doctor_id}"


class ScheduleItem(Model):
    class Meta:
        table_name = os.environ.get("CLINICBOT_SCHEDULE_TABLE", "clinicbot-schedule")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-central-1"
        # Short, like the StateTable's: the webhook reads this cache while a patient waits.
        # ``configure`` gives the sync function longer ones.
        connect_timeout_seconds = 1
        read_timeout_seconds = 2
        max_retry_attempts = 2
        base_backoff_ms = 25

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = DiscriminatorAttribute(attr_name="k")

    @classmethod
    def _get_connection(cls) -> TableConnection:
        """One connection (one botocore client) for every kind of item: pynamodb would build one per
        subclass, each costing ~0.1-0.3 s on a cold start."""
        if cls is ScheduleItem:
            return super()._get_connection()
        return ScheduleItem._get_connection()


class DayItem(ScheduleItem, discriminator="d"):
    """A doctor's free slots on one branch-local day, as compact JSON (see ``clinicbot.schedule.sync``)."""

    content_hash = UnicodeAttribute(attr_name="h")
    branch_id = UnicodeAttribute(attr_name="b")
    first_start = NumberAttribute(attr_name="t0")
    """Start of the first slot, Unix seconds; slot starts in ``slots`` are offsets from it."""
    slots = UnicodeAttribute(attr_name="s")
    slot_count = NumberAttribute(attr_name="n")
    expires_at = TTLAttribute()


class RefItem(ScheduleItem, discriminator="r"):
    """One branch, specialty, doctor or service as the MIS model's JSON; ``ORDER`` holds the MIS's order."""

    content_hash = UnicodeAttribute(attr_name="h")
    data = UnicodeAttribute(attr_name="d")


class SyncStateItem(ScheduleItem, discriminator="state"):
    """Written once per successful sync: the reader trusts the cache only while this is fresh."""

    last_success_at = UTCDateTimeAttribute()
    covers_until = UTCDateTimeAttribute()
    """The cache holds every free slot that starts before this instant (the end of the synced window)."""
    ref_hash = UnicodeAttribute()
    """Changes whenever any reference item changes: readers reload reference data only then."""
    days = NumberAttribute()
    counts = JSONAttribute()
    index = NumberAttribute(attr_name="ix", null=True)
    """The day index version the sync keeps; absent when written by a sync that keeps none."""
    dirty = BooleanAttribute(null=True)
    """Set while a run writes day or reference items (see ``clinicbot.schedule.sync.SyncState``)."""


class DayIndexItem(ScheduleItem, discriminator="idx"):
    """One doctor's cached days, fingerprinted (``clinicbot.schedule.index.DoctorIndex``)."""

    version = NumberAttribute(attr_name="v")
    days_setting = NumberAttribute(attr_name="w")
    """``SyncDays`` of the run that wrote it: another setting means another window, the index is not used."""
    written_at = UTCDateTimeAttribute(attr_name="at")
    base = UnicodeAttribute(attr_name="b", null=True)
    entries = UnicodeAttribute(attr_name="e", null=True)


class VisitsCursorItem(ScheduleItem, discriminator="cursor"):
    """Where the pass over linked patients' visits stopped (a DynamoDB LastEvaluatedKey), if mid-way, and
    when its cycle started (between cycles: when the last complete cycle started; see
    ``clinicbot.schedule.visits.VisitsCursor``)."""

    cursor = JSONAttribute(null=True)
    updated_at = UTCDateTimeAttribute()
    cycle_started_at = UTCDateTimeAttribute(null=True)


ALL_MODELS: tuple[type[Model], ...] = (
    ScheduleItem,
    DayItem,
    RefItem,
    SyncStateItem,
    VisitsCursorItem,
    DayIndexItem,
)


def configure(
    *,
    table_name: str | None = None,
    region: str | None = None,
    host: str | None = None,
    connect_timeout: float = 1.0,
    read_timeout: float = 2.0,
    max_retries: int = 2,
) -> None:
    """Point the models at the table before first use (and drop any cached connection).

    ``table_name`` defaults to ``CLINICBOT_SCHEDULE_TABLE``; ``host`` to the standard
    ``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL`` variables.
    """
    host = host or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL") or None
    meta: Any = ScheduleItem.Meta
    meta.table_name = table_name or os.environ.get("CLINICBOT_SCHEDULE_TABLE", "clinicbot-schedule")
    if region:
        meta.region = region
    meta.host = host
    meta.connect_timeout_seconds = connect_timeout
    meta.read_timeout_seconds = read_timeout
    meta.max_retry_attempts = max_retries
    ScheduleItem._connection = None
