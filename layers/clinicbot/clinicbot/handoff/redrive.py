"""Bring dead-lettered hand-off messages back: ``python -m clinicbot handoff-redrive``.

A hand-off message that still failed after Lambda's retries (``HandoffRetryAttempts``) is sent by Lambda
to the function's on-failure destination, the ``HandoffDLQ`` queue, as a record::

    {"version": "1.0", "timestamp": "...",
     "requestContext": {"requestId": "...", "functionArn": "...", "condition": "RetriesExhausted",
                        "approximateInvokeCount": 3},
     "requestPayload": <the original event: the outbox message>,
     "responseContext": {"statusCode": 200, "executedVersion": "$LATEST", "functionError": "Unhandled"},
     "responsePayload": {"errorType": "RetryLater", "errorMessage": "CrmUnavailable: retried by Lambda", ...}}

SQS's own "DLQ redrive" cannot move these back (there is no source queue any more, and the function wants
the event, not the record): :func:`redrive` invokes the hand-off function asynchronously with each
``requestPayload`` and deletes the record only once Lambda accepted the invocation (202). A message that
fails again comes back to the queue the same way. Messages dead-lettered before the switch to
asynchronous invocation (a bare outbox message as the SQS body) are redriven too.

Safe to repeat: the consumer's idempotency claim makes a message that did reach the CRM a no-op; and a
redriven message is old, so the CRM adapters look for what they may have created before creating it.

No boto3 here: ``sqs`` and ``lambda_client`` are boto3 clients (or anything with the same methods) that
the caller builds. Output names the kind, ids and the error type only: no personal data is in the events.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from clinicbot.handoff.outbox import MAX_EVENT_BYTES, is_outbox_message

__all__ = ["DeadLetter", "Outcome", "RedriveReport", "parse_dead_letter", "redrive"]

log = logging.getLogger(__name__)


class Outcome(StrEnum):
    LISTED = "listed"  # --dry-run
    REDRIVEN = "redriven"  # invoked again, deleted from the dead-letter queue
    FAILED = "failed"  # the invocation was refused: left in the queue
    UNREADABLE = "unreadable"  # not a hand-off message: left in the queue for a human


@dataclass(frozen=True)
class DeadLetter:
    """One message of the dead-letter queue, as far as a redrive needs to know."""

    message_id: str
    receipt_handle: str
    event: dict[str, Any] | None
    """The event to invoke the function with (None: unreadable)."""
    source: str = "destination"
    """``destination`` (Lambda's on-failure record) or ``queue`` (a bare message from the SQS era)."""
    condition: str | None = None
    attempts: int | None = None
    error: str | None = None

    @property
    def kind(self) -> str | None:
        return str(self.event.get("kind")) if self.event is not None else None

    def describe(self) -> str:
        parts = [self.message_id, self.kind or "?"]
        if self.event is not None and self.event.get("created_at"):
            parts.append(f"created {self.event['created_at']}")
        if self.condition:
            parts.append(f"{self.condition} after {self.attempts or '?'} attempt(s)")
        if self.error:
            parts.append(self.error)
        return " · ".join(parts)


def parse_dead_letter(message: Mapping[str, Any]) -> DeadLetter:
    """An SQS ``ReceiveMessage`` message of the dead-letter queue."""
    message_id = str(message.get("MessageId") or "")
    receipt = str(message.get("ReceiptHandle") or "")
    try:
        body = json.loads(message.get("Body") or "")
    except ValueError:
        return DeadLetter(message_id, receipt, None, source="unknown")
    if isinstance(body, dict) and isinstance(body.get("requestPayload"), dict):
        event = body["requestPayload"]
        context = body.get("requestContext") or {}
        response = body.get("responsePayload")
        error = None
        if isinstance(response, dict) and (response.get("errorType") or response.get("errorMessage")):
            error = f"{response.get('errorType') or 'Error'}: {str(response.get('errorMessage') or '')[:200]}"
        attempts = context.get("approximateInvokeCount")
        return DeadLetter(
            message_id,
            receipt,
            dict(event) if is_outbox_message(event) else None,
            source="destination",
            condition=str(context.get("condition")) if context.get("condition") else None,
            attempts=int(attempts) if isinstance(attempts, int) else None,
            error=error,
        )
    if isinstance(body, dict) and is_outbox_message(body):  # dead-lettered by the SQS queue's redrive policy
        return DeadLetter(message_id, receipt, {**body, "message_id": body.get("message_id") or message_id},
                          source="queue")  # fmt: skip
    return DeadLetter(message_id, receipt, None, source="unknown")


@dataclass
class RedriveReport:
    results: list[tuple[DeadLetter, Outcome]] = field(default_factory=list)

    def count(self, outcome: Outcome) -> int:
        return sum(1 for _, o in self.results if o is outcome)

    def summary(self) -> str:
        counts = {o.value: self.count(o) for o in Outcome if self.count(o)}
        return ", ".join(f"{n} {name}" for name, n in counts.items()) or "the dead-letter queue is empty"


def redrive(
    sqs: Any,
    lambda_client: Any,
    *,
    queue_url: str,
    function_name: str,
    dry_run: bool = False,
    limit: int | None = None,
    visibility_timeout: int = 120,
    on_result: Callable[[DeadLetter, Outcome], None] | None = None,
) -> RedriveReport:
    """Invoke ``function_name`` asynchronously with each dead-lettered event, deleting each message only
    after Lambda accepted it; ``dry_run`` lists them and leaves the queue as it was. Messages stay hidden
    from other readers for ``visibility_timeout`` seconds while this runs; those not deleted are made
    visible again at the end."""
    report = RedriveReport()
    seen: set[str] = set()
    kept: list[DeadLetter] = []  # received, not deleted: visible again at the end
    try:
        while limit is None or len(seen) < limit:
            want = 10 if limit is None else max(1, min(10, limit - len(seen)))
            received = sqs.receive_message(
                QueueUrl=queue_url,
                MaxNumberOfMessages=want,
                VisibilityTimeout=visibility_timeout,
                WaitTimeSeconds=1,  # asks every SQS server: a short poll may miss a few messages
            )
            messages = [m for m in received.get("Messages") or [] if m.get("MessageId") not in seen]
            if not messages:
                break
            for message in messages:
                seen.add(str(message.get("MessageId")))
                letter = parse_dead_letter(message)
                outcome = _redrive_one(sqs, lambda_client, letter, queue_url, function_name, dry_run)
                if outcome is not Outcome.REDRIVEN:
                    kept.append(letter)
                report.results.append((letter, outcome))
                if on_result is not None:
                    on_result(letter, outcome)
    finally:
        for letter in kept:
            try:
                sqs.change_message_visibility(
                    QueueUrl=queue_url, ReceiptHandle=letter.receipt_handle, VisibilityTimeout=0
                )
            except Exception:  # it becomes visible when the timeout ends anyway
                log.warning("could not make a dead letter visible again", extra={"id": letter.message_id})
    return report


def _redrive_one(
    sqs: Any, lambda_client: Any, letter: DeadLetter, queue_url: str, function_name: str, dry_run: bool
) -> Outcome:
    if letter.event is None:
        return Outcome.UNREADABLE
    if dry_run:
        return Outcome.LISTED
    payload = json.dumps(letter.event, ensure_ascii=False, separators=(",", ":")).encode()
    if len(payload) > MAX_EVENT_BYTES:
        return Outcome.UNREADABLE
    try:
        answer = lambda_client.invoke(FunctionName=function_name, InvocationType="Event", Payload=payload)
    except Exception as exc:
        log.warning(
            "redrive invocation refused", extra={"id": letter.message_id, "error": type(exc).__name__}
        )
        return Outcome.FAILED
    if int(answer.get("StatusCode") or 0) != 202:
        return Outcome.FAILED
    sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=letter.receipt_handle)
    return Outcome.REDRIVEN
