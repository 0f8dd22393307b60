"""The hand-off function in the local run and in tests: SQS queues in moto made from ``template.yaml``, and
an in-process stand-in for the SQS event source mapping (moto never invokes Lambdas).

:func:`poll_once` does what Lambda's SQS poller does with ``ReportBatchItemFailures``: receive up to 10
messages, invoke the function with the SQS event, delete the messages not reported as failed (all of them
stay when the invocation fails). A message that keeps failing is received again and again until SQS --
here moto, which implements the redrive policy -- moves it to the dead-letter queue.

:class:`LocalHandoff` is what ``python -m clinicbot local`` runs: a fake CRM on loopback that prints what
arrives (signature checked), the queues, and after each update the queue drained through
``functions/handoff/app.py``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from clinicbot.local.fake_crm import TEST_CRM_SECRET, FakeCrm, describe_event

__all__ = ["LocalHandoff", "QueuePair", "create_queues", "poll_once", "sqs_event"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QueuePair:
    url: str
    arn: str
    dlq_url: str
    dlq_arn: str
    max_receive_count: int


def _template_queue(name: str) -> dict[str, Any]:
    from clinicbot.infra.template import load_template

    template = load_template()
    props = dict(template["Resources"][name]["Properties"])
    defaults = {k: v.get("Default") for k, v in (template.get("Parameters") or {}).items()}
    redrive = props.get("RedrivePolicy")
    if isinstance(redrive, dict):
        count: Any = redrive.get("maxReceiveCount")
        if isinstance(count, dict) and "Ref" in count:
            count = defaults[count["Ref"]]
        props["RedrivePolicy"] = {**redrive, "maxReceiveCount": int(count)}
    return props


def create_queues(sqs: Any, *, prefix: str = "clinicbot", visibility_timeout: int | None = None) -> QueuePair:
    """``HandoffQueue`` and ``HandoffDLQ`` as the template defines them (retention, visibility, redrive with
    the parameter's default ``maxReceiveCount``); ``visibility_timeout`` overrides it (tests: 0)."""
    main, dead = _template_queue("HandoffQueue"), _template_queue("HandoffDLQ")
    dlq_url = sqs.create_queue(
        QueueName=f"{prefix}-handoff-dlq",
        Attributes={
            "MessageRetentionPeriod": str(dead["MessageRetentionPeriod"]),
            "SqsManagedSseEnabled": "true",
        },
    )["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    count = int(main["RedrivePolicy"]["maxReceiveCount"])
    url = sqs.create_queue(
        QueueName=f"{prefix}-handoff",
        Attributes={
            "VisibilityTimeout": str(
                main["VisibilityTimeout"] if visibility_timeout is None else visibility_timeout
            ),
            "MessageRetentionPeriod": str(main["MessageRetentionPeriod"]),
            "SqsManagedSseEnabled": "true",
            "RedrivePolicy": json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": count}),
        },
    )["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return QueuePair(url, arn, dlq_url, dlq_arn, count)


def sqs_event(messages: list[dict[str, Any]], queue_arn: str, region: str = "eu-central-1") -> dict[str, Any]:
    """Messages from ``ReceiveMessage`` as the SQS event a Lambda function receives."""
    records = []
    for m in messages:
        attributes = {
            name: {"stringValue": a.get("StringValue"), "stringListValues": [], "binaryListValues": [], "dataType": a["DataType"]}
            for name, a in (m.get("MessageAttributes") or {}).items()
        }  # fmt: skip
        records.append(
            {
                "messageId": m["MessageId"],
                "receiptHandle": m["ReceiptHandle"],
                "body": m["Body"],
                "attributes": dict(m.get("Attributes") or {}),
                "messageAttributes": attributes,
                "md5OfBody": m.get("MD5OfBody", ""),
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": region,
            }
        )
    return {"Records": records}


def poll_once(
    sqs: Any, queue_url: str, queue_arn: str, invoke: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any] | None:
    """One batch: receive, invoke, delete what succeeded. Returns the function's answer (None: the queue
    was empty; ``{"error": …}``: the invocation failed, every message stays)."""
    received = sqs.receive_message(
        QueueUrl=queue_url, MaxNumberOfMessages=10, AttributeNames=["All"], MessageAttributeNames=["All"]
    )
    messages = received.get("Messages") or []
    if not messages:
        return None
    try:
        answer = invoke(sqs_event(messages, queue_arn))
    except Exception as exc:  # the whole invocation failed (e.g. every record failed): nothing is deleted
        log.info("hand-off invocation failed: the batch stays on the queue (%s)", type(exc).__name__)
        return {
            "error": type(exc).__name__,
            "batchItemFailures": [{"itemIdentifier": m["MessageId"]} for m in messages],
        }
    failed = {f["itemIdentifier"] for f in answer.get("batchItemFailures") or []}
    for m in messages:
        if m["MessageId"] not in failed:
            sqs.delete_message(QueueUrl=queue_url, ReceiptHandle=m["ReceiptHandle"])
    return answer


@dataclass
class LocalHandoff:
    crm: FakeCrm
    queues: QueuePair
    sqs: Any
    out: Callable[[str], None] = print
    _handler: Callable[..., Any] | None = field(default=None, repr=False)

    @classmethod
    def start(cls, provider: str = "webhook", out: Callable[[str], None] = print) -> LocalHandoff:
        """Needs the local AWS (``start_aws``) running: creates the queues there and sets the environment
        the webhook and the hand-off function read (queue URL, CRM provider, URL and secret)."""
        import boto3

        crm = FakeCrm(on_event=lambda kind, data: out("   " + describe_event(kind, data))).start()
        sqs = boto3.client("sqs", endpoint_url=os.environ.get("AWS_ENDPOINT_URL"))
        queues = create_queues(sqs)
        os.environ.update(
            {
                "CLINICBOT_HANDOFF_QUEUE_URL": queues.url,
                "CLINICBOT_CRM_PROVIDER": provider,
                "CLINICBOT_CRM_URL": crm.bitrix_url if provider == "bitrix24" else crm.webhook_url,
                "CLINICBOT_CRM_SECRET": TEST_CRM_SECRET,
            }
        )
        return cls(crm=crm, queues=queues, sqs=sqs, out=out)

    def _invoke(self, event: dict[str, Any]) -> dict[str, Any]:
        from clinicbot.local.lambda_runner import LambdaContext, load_function

        if self._handler is None:
            self._handler = load_function("handoff").handler
        answer: dict[str, Any] = self._handler(event, LambdaContext(function_name="clinicbot-handoff"))
        return answer

    def drain(self, max_batches: int = 20) -> int:
        """Run the hand-off function until the queue is empty (or only failing messages are left)."""
        batches = 0
        while batches < max_batches:
            answer = poll_once(self.sqs, self.queues.url, self.queues.arn, self._invoke)
            if answer is None or answer.get("batchItemFailures"):
                break
            batches += 1
        return batches

    def wrap(self, handler: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
        """The webhook handler, followed by a drain of what it queued (the local run has no SQS poller)."""

        def handle(event: dict[str, Any], context: Any) -> dict[str, Any]:
            response = handler(event, context)
            try:
                self.drain()
            except Exception:
                log.exception("the local hand-off run failed")
            return response

        return handle

    def stop(self) -> None:
        import sys

        module = sys.modules.get("clinicbot_fn_handoff")
        if module is not None:
            module.APP.close()  # its HTTP sessions, on its own event loop
        self.crm.stop()
