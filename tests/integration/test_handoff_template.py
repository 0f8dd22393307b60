"""template.yaml, the hand-off part: no queue to poll -- the webhook invokes the hand-off function
asynchronously, Lambda retries a failed message HandoffRetryAttempts times and then sends it to the
dead-letter queue (its on-failure destination, alarmed) -- the CRM route on the HTTP API, the HandoffTable,
least-privilege grants."""

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


def test_no_queue_is_polled_only_the_dead_letter_queue_remains(template: dict[str, Any]) -> None:
    res = template["Resources"]
    assert "HandoffQueue" not in res and "HandoffMaxReceiveCount" not in template["Parameters"]
    assert not [n for n, r in res.items() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    dlq = res["HandoffDLQ"]["Properties"]
    assert dlq["SqsManagedSseEnabled"] is True and dlq["MessageRetentionPeriod"] == 14 * 86400
    retries = template["Parameters"]["HandoffRetryAttempts"]
    assert (retries["Default"], retries["MinValue"], retries["MaxValue"]) == (2, 0, 2)  # Lambda's range
    alarm = res["HandoffDLQAlarm"]["Properties"]
    assert alarm["Namespace"] == "AWS/SQS" and alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["HandoffDLQ", "QueueName"]}}
    ]
    assert alarm["ComparisonOperator"] == "GreaterThanThreshold" and alarm["Threshold"] == 0
    assert alarm["TreatMissingData"] == "notBreaching"


def test_globals_tell_every_function_the_table_and_the_webhook_the_function(template: dict[str, Any]) -> None:
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["CLINICBOT_HANDOFF_TABLE"] == {"Ref": "HandoffTable"}
    assert "CLINICBOT_HANDOFF_QUEUE_URL" not in env
    assert "CLINICBOT_HANDOFF_FUNCTION" not in env  # the hand-off function would name itself: a cycle
    webhook = template["Resources"]["WebhookFunction"]["Properties"]["Environment"]["Variables"]
    assert webhook["CLINICBOT_HANDOFF_FUNCTION"] == {"Ref": "HandoffFunction"}
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


def test_a_failed_message_is_retried_then_dead_lettered(resources: dict[str, Any]) -> None:
    """The translated template (as CloudFormation gets it): retries and the on-failure destination."""
    assert not [n for n, r in resources.items() if r["Type"] == "AWS::Lambda::EventSourceMapping"]
    [config] = [
        r["Properties"]
        for r in resources.values()
        if r["Type"] == "AWS::Lambda::EventInvokeConfig" and r["Properties"]["FunctionName"] == {"Ref": "HandoffFunction"}
    ]  # fmt: skip
    assert config["MaximumRetryAttempts"] == 2  # HandoffRetryAttempts' default, resolved by SAM
    assert 3600 <= config["MaximumEventAgeInSeconds"] <= 21600  # throttled events wait hours, not minutes
    assert config["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": ["HandoffDLQ", "Arn"]}}
    }
    role = resources["HandoffFunctionRole"]["Properties"]
    managed = json.dumps(role.get("ManagedPolicyArns", []))
    assert "SQS" not in managed
    granted = grants(resources["HandoffFunctionRole"])
    assert granted["sqs:SendMessage"] == [{"Fn::GetAtt": ["HandoffDLQ", "Arn"]}]  # the destination only
    assert not [a for a in granted if a.startswith("sqs:") and a != "sqs:SendMessage"]
    assert all(r != "*" for targets in granted.values() for r in targets)
    assert "dynamodb:Scan" not in granted


def test_the_crm_reaches_the_handoff_function_through_its_function_url(
    resources: dict[str, Any], template: dict[str, Any]
) -> None:
    url = resources["HandoffFunctionUrl"]["Properties"]
    assert url == {"TargetFunctionArn": {"Ref": "HandoffFunction"}, "AuthType": "NONE"}  # signed by the CRM
    assert template["Outputs"]["CrmInboundUrl"]["Value"] == {
        "Fn::Sub": "${HandoffFunctionUrl.FunctionUrl}crm/inbound"
    }


def test_the_webhook_may_invoke_the_handoff_function_and_number(resources: dict[str, Any]) -> None:
    granted = grants(resources["WebhookFunctionRole"])
    assert granted["lambda:InvokeFunction"] == [{"Fn::GetAtt": ["HandoffFunction", "Arn"]}]
    assert not [a for a in granted if a.startswith("sqs:")]
    others = [n for n, r in resources.items() if r["Type"] == "AWS::IAM::Role" and n != "WebhookFunctionRole"]
    for name in others:  # nothing else publishes hand-offs (grep: outbox_from_env is the webhook's)
        assert "lambda:InvokeFunction" not in grants(resources[name]), name
    assert {"Fn::GetAtt": ["HandoffTable", "Arn"]} in granted["dynamodb:UpdateItem"]
    ssm = json.dumps(grants(resources["HandoffFunctionRole"])["ssm:GetParameter"])
    assert (
        "${CrmSecretParameterName}" in ssm
        and "${CrmUrlParameterName}" in ssm
        and "${BotTokenParameterName}" in ssm
    )
    assert "${WebhookSecretParameterName}" not in ssm  # the hand-off function does not need it
