"""Standard Webhooks (https://www.standardwebhooks.com): sign and verify, standard library only.

Headers: ``webhook-id`` (the same on every retry of one message: receivers de-duplicate on it),
``webhook-timestamp`` (Unix seconds), ``webhook-signature`` (space-separated ``v1,<base64>``, where
``<base64>`` is HMAC-SHA256 over ``"{id}.{timestamp}.{body}"``). A secret is ``whsec_<base64 key>``; any
other string is used as the key's UTF-8 bytes. Verification refuses a timestamp more than 5 minutes off.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import time
from collections.abc import Mapping
from enum import StrEnum

__all__ = [
    "SIGNATURE_HEADER",
    "TIMESTAMP_HEADER",
    "TOLERANCE_SECONDS",
    "WEBHOOK_ID_HEADER",
    "SignatureProblem",
    "WebhookVerificationError",
    "secret_key",
    "sign",
    "signed_headers",
    "verify",
    "webhook_id_for",
]

WEBHOOK_ID_HEADER = "webhook-id"
TIMESTAMP_HEADER = "webhook-timestamp"
SIGNATURE_HEADER = "webhook-signature"
TOLERANCE_SECONDS = 5 * 60
_PREFIX = "whsec_"


class SignatureProblem(StrEnum):
    MISSING = "missing-headers"
    BAD_TIMESTAMP = "bad-timestamp"
    STALE = "stale-timestamp"
    BAD_SIGNATURE = "bad-signature"


class WebhookVerificationError(Exception):
    def __init__(self, problem: SignatureProblem) -> None:
        super().__init__(problem.value)
        self.problem = problem


def secret_key(secret: str) -> bytes:
    if secret.startswith(_PREFIX):
        try:
            return base64.b64decode(secret[len(_PREFIX) :], validate=True)
        except binascii.Error as exc:
            raise ValueError("the whsec_ secret is not valid base64") from exc
    if not secret:
        raise ValueError("an empty webhook secret")
    return secret.encode()


def sign(secret: str, msg_id: str, timestamp: int, body: str | bytes) -> str:
    """``v1,<base64 HMAC-SHA256>`` of ``"{msg_id}.{timestamp}.{body}"``."""
    payload = body if isinstance(body, bytes) else body.encode()
    signed = f"{msg_id}.{timestamp}.".encode() + payload
    digest = hmac.new(secret_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def webhook_id_for(idempotency_key: str) -> str:
    """A stable ``webhook-id`` for a message: the same key gives the same id on every retry."""
    return "msg_" + hashlib.sha256(idempotency_key.encode()).hexdigest()[:32]


def signed_headers(
    secret: str, msg_id: str, body: str | bytes, *, now: float | None = None
) -> dict[str, str]:
    timestamp = int(time.time() if now is None else now)
    return {
        WEBHOOK_ID_HEADER: msg_id,
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: sign(secret, msg_id, timestamp, body),
    }


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: str | bytes,
    *,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> tuple[str, int]:
    """Check the signature and the timestamp; return ``(webhook-id, timestamp)`` or raise
    :class:`WebhookVerificationError`. Header names are matched case-insensitively."""
    lowered = {k.lower(): v for k, v in headers.items()}
    msg_id = lowered.get(WEBHOOK_ID_HEADER, "").strip()
    raw_ts = lowered.get(TIMESTAMP_HEADER, "").strip()
    given = lowered.get(SIGNATURE_HEADER, "").strip()
    if not (msg_id and raw_ts and given):
        raise WebhookVerificationError(SignatureProblem.MISSING)
    try:
        timestamp = int(raw_ts)
    except ValueError:
        raise WebhookVerificationError(SignatureProblem.BAD_TIMESTAMP) from None
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance:
        raise WebhookVerificationError(SignatureProblem.STALE)
    expected = sign(secret, msg_id, timestamp, body).split(",", 1)[1].encode()
    for candidate in given.split():
        version, _, value = candidate.partition(",")
        if version == "v1" and hmac.compare_digest(value.encode(), expected):
            return msg_id, timestamp
    raise WebhookVerificationError(SignatureProblem.BAD_SIGNATURE)
