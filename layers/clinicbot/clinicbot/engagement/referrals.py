"""Referral links: ``https://t.me/<bot>?start=<code>``.

The code is a **random token** (``r`` + 16 characters of ``A-Za-z0-9_-``, 96 random bits), created the
first time a patient opens "My links", kept on their card and in one item ``REF#<code>`` of the StateTable
that says whose it is and counts who joined through it. Why random and not an HMAC of the user id: it holds
nothing about the person (not even in a form a leaked secret would reveal), no server secret has to be kept
and rotated, and it dies with its owner -- once the ``REF#`` item is erased, the code leads to nobody, so a
referee's record of the code they came through no longer says anything about the referrer. The price is one
extra write when the link is created and one GetItem to show the count on "My links".

The life of an attribution:

1. a stranger opens the link: ``/start <code>``; onboarding keeps the code in the dialogue data (nothing
   else is stored before consent, and a "no" erases even that);
2. on their consent the ``REF#`` item's counter goes up (one UpdateItem that also returns the owner: no
   read) and the code moves onto the new patient's card (``referred_by``);
3. with their first booking the attribution goes to the CRM on the hand-off outbox (kind ``referral``:
   the new patient's and the referrer's MIS ids, the visit id) and leaves the card.

Self-referral is impossible (a patient with a consent never gets attributed) and an unknown or erased code
is ignored.
"""

from __future__ import annotations

import logging
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pynamodb.exceptions import DeleteError, DoesNotExist, PutError, UpdateError

from clinicbot.storage.models import ReferralItem

__all__ = [
    "CODE_PATTERN",
    "REFERRAL_KIND",
    "ReferralStore",
    "Referrer",
    "deep_link",
    "new_code",
    "parse_code",
    "referral_pk",
]

log = logging.getLogger(__name__)

REFERRAL_KIND = "referral"
"""Outbox kind: a referred patient's first booking, for the CRM."""
CODE_PATTERN = r"^r[A-Za-z0-9_-]{16}$"
_CODE = re.compile(CODE_PATTERN)
REF_SK = "REF"


def new_code() -> str:
    return "r" + secrets.token_urlsafe(12)  # 12 random bytes -> 16 characters of A-Za-z0-9_-


def parse_code(payload: str | None) -> str | None:
    """The referral code in a ``/start`` payload, or None (another deep link, or garbage)."""
    if payload and _CODE.match(payload.strip()):
        return payload.strip()
    return None


def deep_link(bot_username: str, code: str) -> str:
    return f"https://t.me/{bot_username}?start={code}"


def referral_pk(code: str) -> str:
    return f"REF#{code}"


@dataclass(frozen=True)
class Referrer:
    telegram_user_id: int
    patient_id: str | None
    joined: int


class ReferralStore:
    """The ``REF#<code>`` items (pynamodb on the StateTable, configured by ``storage.models.configure``)."""

    def create(self, code: str, *, owner_id: int, owner_patient_id: str | None) -> None:
        item = ReferralItem(
            pk=referral_pk(code),
            sk=REF_SK,
            owner_id=owner_id,
            owner_patient_id=owner_patient_id,
            joined=0,
            created_at=datetime.now(UTC),
        )
        try:
            item.save(condition=ReferralItem.pk.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code != "ConditionalCheckFailedException":
                raise
            # The same code again: a retried update. 96 random bits do not collide otherwise.
            existing = self.referrer(code)
            if existing is None or existing.telegram_user_id != owner_id:
                raise

    def referrer(self, code: str) -> Referrer | None:
        try:
            item = ReferralItem.get(referral_pk(code), REF_SK)
        except DoesNotExist:
            return None
        return _referrer(item)

    def count_join(self, code: str) -> Referrer | None:
        """A new patient consented through the code: count them; the referrer (None: unknown code)."""
        connection = ReferralItem._get_connection()
        try:
            answer = connection.update_item(
                referral_pk(code),
                REF_SK,
                actions=[ReferralItem.joined.add(1)],
                condition=ReferralItem.pk.exists(),
                return_values="ALL_NEW",
            )
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                log.info("referral code unknown or erased")
                return None
            raise
        item = ReferralItem.from_raw_data(answer["Attributes"])
        return _referrer(item)

    def delete(self, code: str) -> int:
        try:
            ReferralItem(pk=referral_pk(code), sk=REF_SK).delete(condition=ReferralItem.pk.exists())
        except DeleteError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return 0
            raise
        return 1


def _referrer(item: Any) -> Referrer:
    return Referrer(
        telegram_user_id=int(item.owner_id),
        patient_id=item.owner_patient_id,
        joined=int(item.joined or 0),
    )
