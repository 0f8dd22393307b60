"""The webhook's side of a hand-off: number the request, seal its personal fields, queue the rest.

No aiogram, boto3 or HTTP here: the HandoffTable and the outbox come in as ports. Per request the
webhook spends one UpdateItem (the counter) and one TransactWriteItems (the sealed request and the
number's pointer) on the HandoffTable, and one SQS SendMessage -- none of it on the StateTable budget.
A Telegram retry of the same update reuses the idempotency key: the sealed request is found and keeps
its number, and the consumer acts once.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from clinicbot.handoff.outbox import Outbox
from clinicbot.handoff.requests import (
    CALLBACK_KIND,
    CERTIFICATE_KIND,
    CHAT_KIND,
    SEALED_FIELDS,
    STAFF_REPLY_KIND,
    CallbackRequest,
    CertificateRequest,
    PatientMessage,
    StaffReply,
)
from clinicbot.handoff.store import HandoffStore

__all__ = ["HandoffDesk"]

log = logging.getLogger(__name__)

_MODELS: dict[str, Any] = {
    CALLBACK_KIND: CallbackRequest,
    CERTIFICATE_KIND: CertificateRequest,
    CHAT_KIND: PatientMessage,
}


def _split(fields: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    payload = {k: v for k, v in fields.items() if k not in SEALED_FIELDS and v is not None}
    sealed = {k: v for k, v in fields.items() if k in SEALED_FIELDS and v is not None}
    return payload, sealed


class HandoffDesk:
    def __init__(self, store: HandoffStore, outbox: Outbox) -> None:
        self.store = store
        self.outbox = outbox

    def _validate(self, kind: str, fields: Mapping[str, Any]) -> dict[str, Any]:
        """Validate with the consumer's own model before anything is written. Raises ValueError naming the
        fields only: pydantic's own message repeats the input (a phone, an INN) and could reach a log."""
        try:
            model = _MODELS[kind].model_validate({"request_number": "0", **fields})
        except ValidationError as exc:
            names = sorted({".".join(str(p) for p in e["loc"]) for e in exc.errors()})
            raise ValueError(f"{kind}: invalid fields {names}") from None
        data: dict[str, Any] = model.model_dump(mode="json", exclude={"number"}, exclude_none=True)
        return data

    def submit(
        self, kind: str, fields: Mapping[str, Any], *, user_id: int, key: str, seal: bool = True
    ) -> str:
        """A call-back or certificate request (or the first message of a conversation): returns its number.
        ``seal=False`` drops the personal fields instead of keeping them (the staff group copies messages)."""
        data = self._validate(kind, {**fields, "user_id": user_id})
        payload, sealed = _split(data)
        if not seal:
            sealed = {}
        number = self.store.open_request(user_id, key, kind, sealed or None)
        self.outbox.publish(kind, {**payload, "request_number": number, "sealed": bool(sealed)}, key)
        log.info("hand-off request queued", extra={"kind": kind, "request": number})
        return number

    def relay(self, fields: Mapping[str, Any], *, user_id: int, key: str, number: str, seal: bool) -> None:
        """A further message of an open conversation. ``seal``: keep its text for a CRM that cannot copy
        Telegram messages (the staff group copies them, so nothing is kept for it)."""
        data = self._validate(CHAT_KIND, {**fields, "user_id": user_id})
        payload, sealed = _split(data)
        if not seal:
            sealed = {}
        if sealed:
            self.store.seal(user_id, key, CHAT_KIND, sealed)
        self.outbox.publish(CHAT_KIND, {**payload, "request_number": number, "sealed": bool(sealed)}, key)

    def staff_reply(self, reply: StaffReply) -> None:
        key = f"staff_reply:{reply.group_id}:{reply.message_id}"
        self.outbox.publish(STAFF_REPLY_KIND, reply.model_dump(mode="json"), key)
