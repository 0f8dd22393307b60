"""pynamodb models of the ReminderTable (see template.yaml). An adapter module: only this module and
``clinicbot.reminders.dynamo`` import pynamodb in ``clinicbot.reminders``.

Layout (one partition per Telegram user, so the planner reads a patient's items with ONE Query and an
erasure deletes one partition)::

    pk = U#<telegram user id>   sk = R#<item id>     a due item (DueRecord)
    pk = U#<telegram user id>   sk = S#<series id>   a medication schedule the patient set up (SeriesRecord)
    pk = RUN                    sk = CURSOR          the run lock and the due-index cursor (CursorRecord)

Due-time index ``due`` (GSI, sparse, projection ALL): hash ``due_bucket`` = ``H#<UTC yyyymmddHH>`` of
``due_at``, range ``due_at`` (epoch seconds). Only pending and sending items carry ``due_bucket``; an
item leaves the index when it is sent, cancelled, skipped, failed or blocked (the attribute is removed),
so a run's Query reads what is due and nothing else, however big the table grows.
"""

from __future__ import annotations

import os
from typing import Any

from pynamodb.attributes import (
    JSONAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
)
from pynamodb.indexes import AllProjection, GlobalSecondaryIndex
from pynamodb.models import Model

__all__ = [
    "CURSOR_PK",
    "CURSOR_SK",
    "DUE_INDEX",
    "CursorRecord",
    "DueRecord",
    "SeriesRecord",
    "configure",
    "user_pk",
]

DUE_INDEX = "due"
CURSOR_PK = "RUN"
CURSOR_SK = "CURSOR"


def user_pk(user_id: int) -> str:
    return f"U#{user_id}"


class _Meta:
    table_name = os.environ.get("CLINICBOT_REMINDER_TABLE", "clinicbot-reminder")
    region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-central-1"
    host = os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL") or None
    connect_timeout_seconds = 1
    read_timeout_seconds = 2
    max_retry_attempts = 2
    base_backoff_ms = 25


class DueIndex(GlobalSecondaryIndex["DueRecord"]):
    class Meta:
        index_name = DUE_INDEX
        projection = AllProjection()

    due_bucket = UnicodeAttribute(hash_key=True)
    due_at = NumberAttribute(range_key=True)


class DueRecord(Model):
    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    due_index = DueIndex()

    kind = UnicodeAttribute()
    status = UnicodeAttribute()
    planned_at = UTCDateTimeAttribute()
    due_at = NumberAttribute()  # epoch seconds
    due_bucket = UnicodeAttribute(null=True)  # present while pending / sending only
    patient_id = UnicodeAttribute(null=True)
    tz = UnicodeAttribute()
    appointment_id = UnicodeAttribute(null=True)
    start = UTCDateTimeAttribute(null=True)
    end = UTCDateTimeAttribute(null=True)
    doctor_id = UnicodeAttribute(null=True)
    branch_id = UnicodeAttribute(null=True)
    service_id = UnicodeAttribute(null=True)
    lead_hours = NumberAttribute(null=True)
    series = JSONAttribute(null=True)
    lease_until = NumberAttribute(null=True)  # epoch seconds
    lease_id = UnicodeAttribute(null=True)
    attempts = NumberAttribute(default=0)
    message_id = NumberAttribute(null=True)
    sent_at = UTCDateTimeAttribute(null=True)
    reason = UnicodeAttribute(null=True)
    taken_at = UTCDateTimeAttribute(null=True)
    expires_at = TTLAttribute(null=True)


class SeriesRecord(Model):
    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    series = JSONAttribute()
    expires_at = TTLAttribute(null=True)


class CursorRecord(Model):
    class Meta(_Meta):
        pass

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    cursor = UnicodeAttribute(null=True)
    run_id = UnicodeAttribute(null=True)
    run_until = NumberAttribute(null=True)
    runs = NumberAttribute(null=True)
    """Locks taken so far: a run that read this item before locking sees whether another run went between."""


ALL_MODELS: tuple[type[Model], ...] = (DueRecord, SeriesRecord, CursorRecord)


def configure(
    *,
    table_name: str,
    region: str | None = None,
    host: str | None = None,
    connect_timeout: float = 1.0,
    read_timeout: float = 2.0,
    max_retries: int = 2,
) -> None:
    """Point the models at a table (and drop cached connections); like ``clinicbot.storage.models``."""
    host = host or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL") or None
    for model in ALL_MODELS:
        meta: Any = model.Meta
        meta.table_name = table_name
        if region:
            meta.region = region
        meta.host = host
        meta.connect_timeout_seconds = connect_timeout
        meta.read_timeout_seconds = read_timeout
        meta.max_retry_attempts = max_retries
        model._connection = None
