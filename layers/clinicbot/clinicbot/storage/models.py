"""pynamodb models of the StateTable (see template.yaml).

One partition per Telegram user (``pk = USER#<id>``) holds the patient card (``sk = PROFILE``) and the
user's dialogue (FSM) items (``sk = DIALOG#...``), so one Query loads everything an update needs and a
patient is erased by deleting one partition.
"""

from __future__ import annotations

import os
from typing import Any

from pynamodb.attributes import (
    DiscriminatorAttribute,
    JSONAttribute,
    ListAttribute,
    NumberAttribute,
    TTLAttribute,
    UnicodeAttribute,
    UTCDateTimeAttribute,
    VersionAttribute,
)
from pynamodb.models import Model

PROFILE_SK = "PROFILE"
DIALOG_PREFIX = "DIALOG#"


def user_pk(user_id: int) -> str:
    return f"USER#{user_id}"


class StateItem(Model):
    class Meta:
        table_name = os.environ.get("CLINICBOT_STATE_TABLE", "clinicbot-state")
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "eu-central-1"
        # pynamodb's defaults (15 s connect, 30 s read, 3 retries) are far too long for a webhook.
        connect_timeout_seconds = 1
        read_timeout_seconds = 2
        max_retry_attempts = 2
        base_backoff_ms = 25

    pk = UnicodeAttribute(hash_key=True)
    sk = UnicodeAttribute(range_key=True)
    kind = DiscriminatorAttribute()


class ProfileItem(StateItem, discriminator="profile"):
    """The patient card: the minimum the bot needs. Phone and name stay in the MIS."""

    language = UnicodeAttribute(null=True)
    consent_at = UTCDateTimeAttribute(null=True)
    consent_version = UnicodeAttribute(null=True)
    patient_id = UnicodeAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    version = VersionAttribute()


class DialogueItem(StateItem, discriminator="dialogue"):
    """aiogram FSM state and data of one (chat, user, thread, destiny), plus recent update ids."""

    state = UnicodeAttribute(null=True)
    data = JSONAttribute(null=True)
    recent_updates = ListAttribute(of=NumberAttribute, null=True)
    version = VersionAttribute()
    expires_at = TTLAttribute(null=True)


class SlotClaimItem(StateItem, discriminator="slot_claim"):
    """A short-lived claim on an MIS slot while it is being booked (``pk = SLOT#<slot id>``, ``sk = CLAIM``);
    see ``clinicbot.booking.claims_dynamo``. Ids only: the MIS patient id and the Telegram update id."""

    patient_id = UnicodeAttribute()
    request_id = UnicodeAttribute()
    expires_at = TTLAttribute()


ALL_MODELS: tuple[type[Model], ...] = (StateItem, ProfileItem, DialogueItem, SlotClaimItem)


def configure(
    *,
    table_name: str,
    region: str | None = None,
    host: str | None = None,
    connect_timeout: float = 1.0,
    read_timeout: float = 2.0,
    max_retries: int = 2,
) -> None:
    """Point the models at a table before first use (and drop any cached connection).

    ``host`` defaults to the standard ``AWS_ENDPOINT_URL_DYNAMODB`` / ``AWS_ENDPOINT_URL`` variables.
    """
    host = host or os.environ.get("AWS_ENDPOINT_URL_DYNAMODB") or os.environ.get("AWS_ENDPOINT_URL") or None
    meta: Any = StateItem.Meta
    meta.table_name = table_name
    if region:
        meta.region = region
    meta.host = host
    meta.connect_timeout_seconds = connect_timeout
    meta.read_timeout_seconds = read_timeout
    meta.max_retry_attempts = max_retries
    for model in ALL_MODELS:
        model._connection = None
