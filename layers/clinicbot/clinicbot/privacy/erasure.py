"""Erasing a patient ("/forget", a withdrawn consent): in the webhook, then once more in the background.

1. The CRM is told first: an ``erasure`` message on the hand-off outbox (ids only: the Telegram user id
   and the MIS patient id). If that fails nothing is erased yet, and the patient can simply try again; if
   it succeeds and something below fails, trying again erases the rest (every step is idempotent, and the
   message's idempotency key is the confirmation's, so the CRM hears it once).
2. Every registered store erases what it holds (:meth:`Registry.erase`), by key.
3. The webhook's own unit of work forgets the user (``StateUnit.erase_user``), so that nothing of this
   update is written back.

The hand-off function, consuming the ``erasure`` message, calls :func:`complete_erasure`: the erasers run
again (catching anything another function wrote in between, e.g. a reminder planned by the MIS sync at
that very minute), then the sweeps the webhook cannot do: what only a Scan finds (slot claims, which carry
the MIS patient id for two minutes) and what the webhook may not write (the MIS sync's cursor in the
read-only schedule cache, when it points at the patient). That function's role needs, besides what its
stores need, ``dynamodb:Scan`` on the StateTable and ``dynamodb:UpdateItem`` on the ScheduleTable.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from clinicbot.handoff.outbox import Outbox
from clinicbot.privacy.registry import ErasureFailed, ErasureReport, Registry

__all__ = ["ERASURE_KIND", "REASONS", "complete_erasure", "erasure_payload", "forget_patient"]

log = logging.getLogger(__name__)

ERASURE_KIND = "erasure"
REASONS = frozenset({"forget", "consent_withdrawn"})


def erasure_payload(telegram_user_id: int, patient_id: str | None, reason: str) -> dict[str, Any]:
    if reason not in REASONS:
        raise ValueError(f"unknown erasure reason {reason!r}")
    return {
        "telegram_user_id": telegram_user_id,
        "patient_id": patient_id,
        "reason": reason,
        "requested_at": datetime.now(UTC).isoformat(),
    }


def forget_patient(
    registry: Registry,
    outbox: Outbox,
    telegram_user_id: int,
    patient_id: str | None,
    *,
    reason: str,
    idempotency_key: str,
) -> ErasureReport:
    """Tell the CRM, then erase everywhere. Raises if the CRM could not be told (nothing erased then) or
    if an eraser failed (the others ran; see :class:`ErasureFailed`)."""
    outbox.publish(ERASURE_KIND, erasure_payload(telegram_user_id, patient_id, reason), idempotency_key)
    return registry.erase(telegram_user_id, patient_id)


def complete_erasure(payload: Mapping[str, Any], registry: Registry | None = None) -> ErasureReport:
    """The background pass for an ``erasure`` message (hand-off function): erasers again, then sweeps."""
    if registry is None:
        from clinicbot.privacy.stores import default_registry

        registry = default_registry()
    telegram_user_id = int(payload["telegram_user_id"])
    raw_patient = payload.get("patient_id")
    patient_id = str(raw_patient) if raw_patient else None
    report = ErasureReport()
    try:
        report = registry.erase(telegram_user_id, patient_id)
    except ErasureFailed as exc:
        report = exc.report
    for store in registry.stores:
        sweep = getattr(store, "sweep", None)
        if not callable(sweep):
            continue
        try:
            report.erased[f"{store.name}:sweep"] = int(sweep(telegram_user_id, patient_id))
        except Exception as exc:
            log.exception("an erasure sweep failed", extra={"store": store.name})
            report.failed[f"{store.name}:sweep"] = type(exc).__name__
    if report.failed:
        raise ErasureFailed(report)
    return report
