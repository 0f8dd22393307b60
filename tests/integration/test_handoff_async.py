"""The hand-off function invoked asynchronously, wired as template.yaml wires it (HandoffRetryAttempts
retries, then Lambda's on-failure record in the dead-letter queue under moto), with an in-process stand-in
for Lambda's async invocation: a CRM that stays down ends in the DLQ after 3 attempts (no personal data in
the record) and ``clinicbot handoff-redrive`` brings it back once the CRM is up; a message invoked twice
has its effect once; a poison message is dropped without a retry; the sample event through
functions/handoff/app.py."""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Iterator
from typing import Any

import boto3
import pytest

from clinicbot.config import Settings
from clinicbot.handoff.crm_webhook import WebhookCrm
from clinicbot.handoff.desk import HandoffDesk
from clinicbot.handoff.outbox import LambdaOutbox
from clinicbot.handoff.redrive import Outcome, redrive
from clinicbot.handoff.retry import RetryPolicy
from clinicbot.handoff.runtime import HandoffApp, build_handoff
from clinicbot.handoff.store import DynamoHandoffStore
from clinicbot.local.fake_crm import TEST_CRM_SECRET, FakeCrm
from clinicbot.local.handoff_runner import (
    AsyncLambda,
    DeadLetterQueue,
    LambdaEndpoint,
    create_dead_letter_queue,
    invoke_config,
)
from tests.harness import load_event

FAST = RetryPolicy(attempts=2, base=0.01, cap=0.02, max_wait=1.0)
FUNCTION = "clinicbot-handoff"


@pytest.fixture
def dlq(aws: object) -> DeadLetterQueue:
    return create_dead_letter_queue(boto3.client("sqs", region_name="eu-central-1"))


@pytest.fixture
def app(aws: object, botapi: Any, mis: Any, crm: FakeCrm) -> Iterator[HandoffApp]:
    store = DynamoHandoffStore()
    settings = Settings(telegram_api_base=botapi.base_url, crm_provider="webhook", crm_url=crm.webhook_url,  # type: ignore[call-arg]
                        crm_secret=TEST_CRM_SECRET)  # fmt: skip
    handoff = build_handoff(settings, store=store, mis=mis,
                            crm=WebhookCrm(crm.webhook_url, TEST_CRM_SECRET, store, policy=FAST))  # fmt: skip
    yield handoff
    handoff.close()


@pytest.fixture
def lambda_(app: HandoffApp, dlq: DeadLetterQueue) -> AsyncLambda:
    """Lambda running the hand-off function's dispatch (what functions/handoff/app.py's handler does)."""
    return AsyncLambda(lambda event: app.handle_event(event), function_name=FUNCTION, dead_letters=dlq)


def test_retries_and_the_dead_letter_queue_follow_the_template(dlq: DeadLetterQueue) -> None:
    config = invoke_config()
    assert config["MaximumRetryAttempts"] == 2 and config["MaximumEventAgeInSeconds"] == 21600
    assert config["OnFailure"] == {"Type": "SQS", "Destination": {"Fn::GetAtt": ["HandoffDLQ", "Arn"]}}
    attributes = dlq.sqs.get_queue_attributes(QueueUrl=dlq.url, AttributeNames=["All"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == str(14 * 86400)
    assert "RedrivePolicy" not in attributes


def test_a_crm_that_stays_down_ends_in_the_dead_letter_queue_and_is_redriven(
    app: HandoffApp, lambda_: AsyncLambda, dlq: DeadLetterQueue, crm: FakeCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    desk = HandoffDesk(app.consumer.store, LambdaOutbox(FUNCTION, client=lambda_))
    key = "callback:8101:1"
    number = desk.submit("callback_request", {"patient_id": "p-001", "phone": "+7 916 555-44-33", "window": "asap"},
                         user_id=8101, key=key)  # fmt: skip
    crm.fail_next(503, times=1000)
    [invocation] = lambda_.run_pending()
    assert invocation.attempts == 3 and invocation.dead_lettered and not invocation.succeeded  # 1 + 2 retries
    assert crm.events == [] and dlq.count() == 1
    [record] = dlq.records()
    assert record["requestContext"]["condition"] == "RetriesExhausted"
    assert record["requestContext"]["approximateInvokeCount"] == 3
    assert record["requestPayload"]["idempotency_key"] == key and record["requestPayload"]["message_id"]
    assert record["responsePayload"]["errorType"] == "RetryLater"
    assert record["responsePayload"]["errorMessage"].startswith("CrmUnavailable")
    assert "79165554433" not in json.dumps(record) and "phone" not in record["requestPayload"]["payload"]
    assert app.consumer.store.sealed(8101, key) is not None  # kept for the redrive (TTL 21 days)

    # A dry run lists it and changes nothing.
    listed = redrive(dlq.sqs, lambda_, queue_url=dlq.url, function_name=FUNCTION, dry_run=True)
    assert [o for _, o in listed.results] == [Outcome.LISTED] and dlq.count() == 1 and not lambda_.pending
    [(letter, _)] = listed.results
    assert letter.kind == "callback_request" and letter.error and "RetryLater" in letter.describe()

    # The CRM is fixed; DevOps run `clinicbot handoff-redrive` (boto3 reaches the stand-in for Lambda).
    crm.reset()
    endpoint = LambdaEndpoint(lambda_).start()
    try:
        monkeypatch.setenv("AWS_ENDPOINT_URL_LAMBDA", endpoint.url)
        from clinicbot.cli import main

        assert main(["handoff-redrive", "--dlq-url", dlq.url, "--function", FUNCTION]) == 0
    finally:
        endpoint.stop()
    assert dlq.count() == 0  # deleted once Lambda accepted the invocation
    [again] = lambda_.run_pending()
    assert again.succeeded and again.attempts == 1 and again.answer["result"] == "processed"
    [event] = crm.events
    assert event.data["request_number"] == number and event.data["phone"] == "79165554433"
    assert app.consumer.store.sealed(8101, key) is None
    assert redrive(dlq.sqs, lambda_, queue_url=dlq.url, function_name=FUNCTION).results == []


def test_a_redrive_keeps_what_lambda_refused_and_what_is_not_a_hand_off(
    lambda_: AsyncLambda, dlq: DeadLetterQueue
) -> None:
    record = {"requestContext": {"condition": "EventAgeExceeded", "approximateInvokeCount": 1},
              "requestPayload": {"kind": "booking", "idempotency_key": "booking:a-1:booked", "payload": {}},
              "responsePayload": None}  # fmt: skip
    dlq.sqs.send_message(QueueUrl=dlq.url, MessageBody=json.dumps(record))
    dlq.sqs.send_message(QueueUrl=dlq.url, MessageBody="not json")
    # dead-lettered by the SQS queue before the switch: the bare message is redriven as well
    old = {"kind": "booking", "idempotency_key": "booking:a-2:booked", "payload": {"appointment_id": "a-2"}}
    dlq.sqs.send_message(QueueUrl=dlq.url, MessageBody=json.dumps(old))
    refused = redrive(dlq.sqs, lambda_, queue_url=dlq.url, function_name="another-function")
    assert sorted(o.value for _, o in refused.results) == ["failed", "failed", "unreadable"]
    assert dlq.count() == 3 and not lambda_.pending  # all still there, visible again
    report = redrive(dlq.sqs, lambda_, queue_url=dlq.url, function_name=FUNCTION)
    assert sorted(o.value for _, o in report.results) == ["redriven", "redriven", "unreadable"]
    assert dlq.count() == 1
    events = {i.event["idempotency_key"]: i.event for i in lambda_.pending}
    assert sorted(events) == ["booking:a-1:booked", "booking:a-2:booked"]
    assert events["booking:a-2:booked"]["message_id"]  # the SQS message id stands in for it


def test_a_message_invoked_twice_has_its_effect_once(
    app: HandoffApp, lambda_: AsyncLambda, dlq: DeadLetterQueue, crm: FakeCrm
) -> None:
    booking = {
        "event": "booked",
        "patient_id": "p-001",
        "appointment_id": "a-7",
        "start": "2026-11-25T07:00:00+00:00",
    }
    LambdaOutbox(FUNCTION, client=lambda_).publish("booking", booking, "booking:a-7:booked")
    other_container = LambdaOutbox(FUNCTION, client=lambda_)
    other_container.publish("booking", booking, "booking:a-7:booked")
    first = json.dumps(lambda_.pending[0].event)
    lambda_.invoke(FunctionName=FUNCTION, InvocationType="Event", Payload=first)
    done = lambda_.run_pending()  # Lambda delivers at least once: the same event twice, too
    assert [i.answer["result"] for i in done] == ["processed", "duplicate", "duplicate"]
    assert all(i.attempts == 1 for i in done) and dlq.count() == 0
    assert len(crm.of_type("booking.booked")) == 1 and crm.duplicates == 0  # once, not even a repeat POST


def test_a_poison_message_is_dropped_without_a_retry(
    app: HandoffApp, lambda_: AsyncLambda, dlq: DeadLetterQueue, crm: FakeCrm
) -> None:
    outbox = LambdaOutbox(FUNCTION, client=lambda_)
    outbox.publish(
        "booking", {"event": "cancelled", "patient_id": "p-001", "appointment_id": "a-8", "start": "2026-11-25T07:00:00+00:00"},
        "booking:a-8:cancelled",
    )  # fmt: skip
    outbox.publish("booking", {"event": "no-such-event", "appointment_id": "a-9"}, "booking:a-9:x")
    lambda_.invoke(FunctionName=FUNCTION, InvocationType="Event", Payload=b'{"kind": "", "payload": 1}')
    done = lambda_.run_pending()
    assert [i.answer for i in done[1:]] == [{"result": "poison"}] * 2
    assert all(i.attempts == 1 and not i.errors for i in done) and dlq.count() == 0
    assert len(crm.of_type("booking.cancelled")) == 1
    assert app.handle_event({"Records": []}) == {"statusCode": 400, "body": '{"error": "unknown event"}'}


def test_a_message_too_big_for_an_asynchronous_invocation_is_refused(lambda_: AsyncLambda) -> None:
    with pytest.raises(ValueError, match="RequestEntityTooLarge"):
        lambda_.invoke(FunctionName=FUNCTION, InvocationType="Event", Payload=b"x" * (256 * 1024 + 1))


def test_the_sample_event_through_the_function(
    aws: object, botapi: Any, crm: FakeCrm, monkeypatch: pytest.MonkeyPatch
) -> None:
    """events/handoff/async-message.json: a visit call-back, as the webhook invokes the function with it."""
    for name, value in {
        "CLINICBOT_TELEGRAM_API_BASE": botapi.base_url,
        "CLINICBOT_CRM_PROVIDER": "webhook",
        "CLINICBOT_CRM_URL": crm.webhook_url,
        "CLINICBOT_CRM_SECRET": TEST_CRM_SECRET,
    }.items():
        monkeypatch.setenv(name, value)
    from clinicbot.local.lambda_runner import invoke

    try:
        response = invoke("handoff", load_event("handoff/async-message"))
        assert response == {"result": "processed", "kind": "callback_request"}
        [callback] = crm.of_type("callback.requested")
        assert callback.data["phone"] == "79991000001"  # looked up in the MIS: the event never had it
        assert callback.data["appointment"]["id"] == "a-demo-1" and "doctor_id" not in json.dumps(
            callback.data
        )
        again = invoke("handoff", load_event("handoff/async-message"))  # Lambda invoked it once more
        assert again == {"result": "duplicate", "kind": "callback_request"} and len(crm.events) == 1
        crm.fail_next(503, times=1000)
        event = {**load_event("handoff/async-message"), "idempotency_key": "callback:a-demo-1:again"}
        from clinicbot.handoff.runtime import RetryLater

        with pytest.raises(RetryLater):  # the invocation fails: Lambda retries it
            invoke("handoff", event)
    finally:
        module = sys.modules.pop("clinicbot_fn_handoff", None)
        if module is not None:
            module.APP.close()
        os.environ.pop("CLINICBOT_CRM_URL", None)
