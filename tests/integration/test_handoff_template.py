"""template.yaml, the hand-off part: the queue and its dead-letter queue, the alarm, the function wired to
the queue by an event source mapping with partial batch failures (no managed policy on "*"), the CRM
route on the HTTP API, the HandoffTable, least-privilege grants."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from clinicbot.infra.template import load_template, table_definitions

REGION = "eu-central-1"


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    fragment = copy.deepcopy(template)
    for resource in fragment["Resources"].values():
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://artifacts/{props[key].strip('/')}.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_REGION", REGION)
        output = transform(
            fragment, {"PolicyUrl": "https://clinic.example/p", "ClinicName": "Demo"}, NoManagedPolicies()
        )
    return dict(output["Resources"])


def grants(role: dict[str, Any]) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {}
    for policy in role["Properties"].get("Policies", []):
        for statement in policy["PolicyDocument"]["Statement"]:
            branches = statement["Fn::If"][1:] if set(statement) == {"Fn::If"} else [statement]
            for branch in branches:
                if not isinstance(branch, dict) or "Action" not in branch:
                    continue
                actions = branch["Action"] if isinstance(branch["Action"], list) else [branch["Action"]]
                targets = branch["Resource"] if isinstance(branch["Resource"], list) else [branch["Resource"]]
                for action in actions:
                    found.setdefault(action, []).extend(targets)
    return found


def test_queue_and_dead_letter_queue(template: dict[str, Any]) -> None:
    res = template["Resources"]
    queue, dlq = res["HandoffQueue"]["Properties"], res["HandoffDLQ"]["Properties"]
    timeout = res["HandoffFunction"]["Properties"]["Timeout"]
    assert queue["VisibilityTimeout"] >= 6 * timeout
    assert queue["SqsManagedSseEnabled"] is True and dlq["SqsManagedSseEnabled"] is True
    assert queue["RedrivePolicy"] == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["HandoffDLQ", "Arn"]},
        "maxReceiveCount": {"Ref": "HandoffMaxReceiveCount"},
    }
    assert template["Parameters"]["HandoffMaxReceiveCount"]["Default"] == 5
    assert dlq["MessageRetentionPeriod"] == 14 * 86400
    alarm = res["HandoffDLQAlarm"]["Properties"]
    assert alarm["Namespace"] == "AWS/SQS" and alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["HandoffDLQ", "QueueName"]}}
    ]
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["Threshold"] == 0
    assert alarm["TreatMissingData"] == "notBreaching"


def test_globals_tell_every_function_the_table_and_the_queue(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["CLINICBOT_HANDOFF_TABLE"] == {"Ref": "HandoffTable"}
    assert env["CLINICBOT_HANDOFF_QUEUE_URL"] == {"Ref": "HandoffQueue"}
    assert env["CLINICBOT_CRM_SECRET_PARAM"] == {"Ref": "CrmSecretParameterName"}
    assert env["CLINICBOT_STAFF_GROUP_ID"] == {"Ref": "StaffGroupId"}
    for name in ("CrmSecretParameterName", "StaffGroupId", "StaffHours", "StaffAnswerMinutes"):
        assert name in template["Parameters"], name


def test_handoff_table(template: dict[str, Any]) -> None:
    props = template["Resources"]["HandoffTable"]["Properties"]
    assert props["BillingMode"] == "PAY_PER_REQUEST" and props["SSESpecification"] == {
        "Fn::If": ["TablesUseKms", {"SSEEnabled": True, "SSEType": "KMS"}, {"SSEEnabled": False}]
    }
    assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert props["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    [index] = table_definitions(template)["HandoffTable"]["GlobalSecondaryIndexes"]
    assert index["IndexName"] == "owner" and index["KeySchema"] == [
        {"AttributeName": "owner", "KeyType": "HASH"}
    ]


def test_the_function_is_wired_to_the_queue_with_partial_failures(resources: dict[str, Any]) -> None:
    mappings = {k: v for k, v in resources.items() if v["Type"] == "AWS::Lambda::EventSourceMapping"}
    [mapping] = [m["Properties"] for m in mappings.values() if "HandoffQueue" in json.dumps(m)]
    assert mapping["FunctionName"] == {"Ref": "HandoffFunction"}
    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["HandoffQueue", "Arn"]}
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert 1 <= mapping["BatchSize"] <= 10 and mapping["MaximumBatchingWindowInSeconds"] <= 5
    role = resources["HandoffFunctionRole"]["Properties"]
    managed = json.dumps(role.get("ManagedPolicyArns", []))
    assert "SQSQueueExecutionRole" not in managed  # the managed policy SAM's SQS event would add is on "*"
    granted = grants(resources["HandoffFunctionRole"])
    for action in ("sqs:ReceiveMessage", "sqs:DeleteMessage", "sqs:GetQueueAttributes"):
        assert granted[action] == [{"Fn::GetAtt": ["HandoffQueue", "Arn"]}], action
    assert all(r != "*" for targets in granted.values() for r in targets)
    assert "dynamodb:Scan" not in granted


def test_the_crm_route_goes_to_the_handoff_function(resources: dict[str, Any]) -> None:
    paths = resources["HttpApi"]["Properties"]["Body"]["paths"]
    route = paths["/crm/inbound"]
    assert set(route) == {"post"}
    integration = route["post"]["x-amazon-apigateway-integration"]
    assert "HandoffFunction.Arn" in json.dumps(integration) and integration["payloadFormatVersion"] == "2.0"


def test_the_webhook_may_queue_and_number_but_not_consume(resources: dict[str, Any]) -> None:
    granted = grants(resources["WebhookFunctionRole"])
    assert granted["sqs:SendMessage"] == [{"Fn::GetAtt": ["HandoffQueue", "Arn"]}]
    assert "sqs:ReceiveMessage" not in granted and "sqs:DeleteMessage" not in granted
    assert {"Fn::GetAtt": ["HandoffTable", "Arn"]} in granted["dynamodb:UpdateItem"]
    ssm = json.dumps(grants(resources["HandoffFunctionRole"])["ssm:GetParameter"])
    assert (
        "${CrmSecretParameterName}" in ssm
        and "${CrmUrlParameterName}" in ssm
        and "${BotTokenParameterName}" in ssm
    )
    assert "${WebhookSecretParameterName}" not in ssm  # the hand-off function does not need it
