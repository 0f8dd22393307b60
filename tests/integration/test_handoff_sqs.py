"""The hand-off queue under moto, wired as template.yaml wires it (redrive to the dead-letter queue after
HandoffMaxReceiveCount receives), with an in-process stand-in for Lambda's SQS poller: partial batch
failures, a CRM that stays down ends in the DLQ (with no personal data in it) and is redriven after the
fix, a redelivered message has its effect once, and the sample batch through functions/handoff/app.py."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from clinicbot.config import Settings
from clinicbot.handoff.crm_webhook import WebhookCrm
from clinicbot.handoff.desk import HandoffDesk
from clinicbot.handoff.outbox import SqsOutbox
from clinicbot.handoff.retry import RetryPolicy
from clinicbot.handoff.runtime import HandoffApp, build_handoff
from clinicbot.handoff.store import DynamoHandoffStore
from clinicbot.local.fake_crm import TEST_CRM_SECRET, FakeCrm
from clinicbot.local.handoff_runner import QueuePair, create_queues, poll_once
from tests.harness import load_event

FAST = RetryPolicy(attempts=2, base=0.01, cap=0.02, max_wait=1.0)


@pytest.fixture(scope="module")
def crm_server() -> Iterator[FakeCrm]:
    with FakeCrm() as server:
        yield server


@pytest.fixture
def crm(crm_server: FakeCrm) -> FakeCrm:
    crm_server.reset()
    return crm_server


@pytest.fixture
def queues(aws: object) -> tuple[Any, QueuePair]:
    sqs = boto3.client("sqs", region_name="eu-central-1")
    return sqs, create_queues(sqs, visibility_timeout=0)  # redelivery at once instead of in 180 s


@pytest.fixture
def app(aws: object, botapi: Any, mis: Any, crm: FakeCrm) -> Iterator[HandoffApp]:
    store = DynamoHandoffStore()
    settings = Settings(telegram_api_base=botapi.base_url, crm_provider="webhook", crm_url=crm.webhook_url,  # type: ignore[call-arg]
                        crm_secret=TEST_CRM_SECRET)  # fmt: skip
    handoff = build_handoff(settings, store=store, mis=mis,
                            crm=WebhookCrm(crm.webhook_url, TEST_CRM_SECRET, store, policy=FAST))  # fmt: skip
    yield handoff
    handoff.close()


def invoker(app: HandoffApp) -> Any:
    """What functions/handoff/app.py does with an SQS event."""
    processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)

    def invoke(event: dict[str, Any]) -> dict[str, Any]:
        app.begin_batch()
        return process_partial_response(event=event, record_handler=app.handle_record, processor=processor)

    return invoke


def count(sqs: Any, url: str) -> int:
    attributes = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return int(attributes["ApproximateNumberOfMessages"]) + int(
        attributes["ApproximateNumberOfMessagesNotVisible"]
    )


def test_the_queues_follow_the_template(queues: tuple[Any, QueuePair]) -> None:
    sqs, pair = queues
    attributes = sqs.get_queue_attributes(QueueUrl=pair.url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attributes["RedrivePolicy"])
    assert (
        redrive == {"deadLetterTargetArn": pair.dlq_arn, "maxReceiveCount": 5} and pair.max_receive_count == 5
    )
    dlq = sqs.get_queue_attributes(QueueUrl=pair.dlq_url, AttributeNames=["MessageRetentionPeriod"])[
        "Attributes"
    ]
    assert dlq["MessageRetentionPeriod"] == str(14 * 86400)


def test_a_crm_that_stays_down_ends_in_the_dead_letter_queue_and_is_redriven(
    queues: tuple[Any, QueuePair], app: HandoffApp, crm: FakeCrm
) -> None:
    sqs, pair = queues
    desk = HandoffDesk(app.consumer.store, SqsOutbox(pair.url, client=sqs))
    key = "callback:8101:1"
    number = desk.submit("callback_request", {"patient_id": "p-001", "phone": "+7 916 555-44-33", "window": "asap"},
                         user_id=8101, key=key)  # fmt: skip
    crm.fail_next(503, times=1000)
    invoke = invoker(app)
    for attempt in range(pair.max_receive_count):
        answer = poll_once(sqs, pair.url, pair.arn, invoke)
        assert answer is not None and len(answer["batchItemFailures"]) == 1, attempt
    assert poll_once(sqs, pair.url, pair.arn, invoke) is None  # the next receive moved it to the DLQ
    assert count(sqs, pair.url) == 0 and crm.events == []
    [dead] = sqs.receive_message(QueueUrl=pair.dlq_url, MessageAttributeNames=["All"])["Messages"]
    assert "79165554433" not in dead["Body"] and "phone" not in json.loads(dead["Body"])["payload"]
    assert app.consumer.store.sealed(8101, key) is not None  # kept for the redrive (TTL 21 days)

    # The CRM is fixed; DevOps redrive the DLQ (what SQS StartMessageMoveTask does).
    crm.reset()
    sqs.send_message(QueueUrl=pair.url, MessageBody=dead["Body"], MessageAttributes={
        k: {"DataType": v["DataType"], "StringValue": v["StringValue"]} for k, v in dead["MessageAttributes"].items()
    })  # fmt: skip
    sqs.delete_message(QueueUrl=pair.dlq_url, ReceiptHandle=dead["ReceiptHandle"])
    assert poll_once(sqs, pair.url, pair.arn, invoke) == {"batchItemFailures": []}
    [event] = crm.events
    assert event.data["request_number"] == number and event.data["phone"] == "79165554433"
    assert app.consumer.store.sealed(8101, key) is None


def test_a_redelivered_message_has_its_effect_once(
    queues: tuple[Any, QueuePair], app: HandoffApp, crm: FakeCrm
) -> None:
    sqs, pair = queues
    outbox = SqsOutbox(pair.url, client=sqs)
    booking = {
        "event": "booked",
        "patient_id": "p-001",
        "appointment_id": "a-7",
        "start": "2026-11-25T07:00:00+00:00",
    }
    outbox.publish("booking", booking, "booking:a-7:booked")
    SqsOutbox(pair.url, client=sqs).publish("booking", booking, "booking:a-7:booked")  # another container
    invoke = invoker(app)
    crashed = sqs.receive_message(QueueUrl=pair.url, MaxNumberOfMessages=1, AttributeNames=["All"])[
        "Messages"
    ]
    from clinicbot.local.handoff_runner import sqs_event

    invoke(sqs_event(crashed, pair.arn))  # processed, then the Lambda died before SQS deleted the message
    while poll_once(sqs, pair.url, pair.arn, invoke) is not None:
        pass
    assert count(sqs, pair.url) == 0
    assert len(crm.of_type("booking.booked")) == 1 and crm.duplicates == 0  # once, not even a repeat POST


def test_one_poison_message_does_not_hold_up_the_batch(
    queues: tuple[Any, QueuePair], app: HandoffApp, crm: FakeCrm
) -> None:
    sqs, pair = queues
    SqsOutbox(pair.url, client=sqs).publish(
        "booking", {"event": "cancelled", "patient_id": "p-001", "appointment_id": "a-8", "start": "2026-11-25T07:00:00+00:00"},
        "booking:a-8:cancelled",
    )  # fmt: skip
    sqs.send_message(QueueUrl=pair.url, MessageBody="{broken")
    answer = poll_once(sqs, pair.url, pair.arn, invoker(app))
    assert answer is not None and len(answer["batchItemFailures"]) == 1
    assert len(crm.of_type("booking.cancelled")) == 1 and count(sqs, pair.url) == 1  # only the poison is left


def test_the_sample_batch_through_the_function(
    aws: object, botapi: Any, crm: FakeCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """events/handoff/sqs-batch.json: a visit call-back, a booking copy delivered twice, a poison message."""
    for name, value in {
        "CLINICBOT_TELEGRAM_API_BASE": botapi.base_url,
        "CLINICBOT_CRM_PROVIDER": "webhook",
        "CLINICBOT_CRM_URL": crm.webhook_url,
        "CLINICBOT_CRM_SECRET": TEST_CRM_SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    from clinicbot.local.lambda_runner import invoke

    try:
        response = invoke("handoff", load_event("handoff/sqs-batch"))
        assert response == {"batchItemFailures": [{"itemIdentifier": "0c6a7b2e-0000-4000-8000-000000000004"}]}
        [callback] = crm.of_type("callback.requested")
        assert callback.data["phone"] == "79991000001"  # looked up in the MIS: the queue never had it
        assert callback.data["appointment"]["id"] == "a-demo-1" and "doctor_id" not in json.dumps(
            callback.data
        )
        assert len(crm.of_type("booking.booked")) == 1  # the twice-delivered copy: once
        again = invoke("handoff", load_event("handoff/sqs-batch"))  # the whole batch redelivered
        assert again == response and len(crm.events) == 2
    finally:
        module = sys.modules.pop("clinicbot_fn_handoff", None)
        if module is not None:
            module.APP.close()
        os.environ.pop("CLINICBOT_CRM_URL", None)
