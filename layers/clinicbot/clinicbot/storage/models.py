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
    # reminders (clinicbot.reminders): kinds switched off, own lead times (hours), 403 from Telegram,
    # when the last reminder went out (a free-text reply soon after goes to the clinic's operators)
    reminders_off = ListAttribute(of=UnicodeAttribute, null=True)
    reminder_leads = ListAttribute(of=NumberAttribute, null=True)
    unreachable_at = UTCDateTimeAttribute(null=True)
    last_reminder_at = UTCDateTimeAttribute(null=True)
    # engagement (clinicbot.engagement): the marketing consent (separate from the personal-data consent, off
    # by default), the patient's own referral code, the code they joined through (kept until it travels
    # to the CRM with their first booking), when they were last asked the NPS question
    marketing_at = UTCDateTimeAttribute(null=True)
    referral_code = UnicodeAttribute(null=True)
    referred_by = UnicodeAttribute(null=True)
    nps_asked_at = UTCDateTimeAttribute(null=True)


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

    # stored as "claimed_by", not "patient_id": claims stay out of the sparse GSI on patient_id
    patient_id = UnicodeAttribute(attr_name="claimed_by")
    request_id = UnicodeAttribute()
    expires_at = TTLAttribute()


class ReferralItem(StateItem, discriminator="referral"):
    """A patient's referral link (``pk = REF#<code>``, ``sk = REF``; see ``clinicbot.engagement.referrals``):
    whose random code it is and how many new patients consented through it. Erased with its owner."""

    owner_id = NumberAttribute()
    owner_patient_id = UnicodeAttribute(null=True)
    joined = NumberAttribute(default=0)
    created_at = UTCDateTimeAttribute()


class BroadcastMarkItem(StateItem, discriminator="broadcast_mark"):
    """``pk = USER#<id>``, ``sk = BCAST#<campaign id>``: this campaign is going / went to this patient. Taken
    before the send, so a campaign reaches a patient at most once; erased with the user's partition."""

    status = UnicodeAttribute()
    at = UTCDateTimeAttribute()
    expires_at = TTLAttribute()


class CampaignItem(StateItem, discriminator="campaign"):
    """A broadcast campaign (``pk = CAMPAIGN``, ``sk = <campaign id>``: one Query lists them; see
    ``clinicbot.engagement.broadcasts``). No personal data: progress is a scan segment number, never a key."""

    texts = JSONAttribute()
    segment = JSONAttribute()
    status = UnicodeAttribute()
    total_segments = NumberAttribute()
    next_segment = NumberAttribute(default=0)
    counts = JSONAttribute(null=True)
    created_at = UTCDateTimeAttribute()
    updated_at = UTCDateTimeAttribute(null=True)
    version = VersionAttribute()


ALL_MODELS: tuple[type[Model], ...] = (
    StateItem,
    ProfileItem,
    DialogueItem,
    SlotClaimItem,
    ReferralItem,
    BroadcastMarkItem,
    CampaignItem,
)


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
