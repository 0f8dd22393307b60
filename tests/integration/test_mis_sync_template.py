"""template.yaml for the MIS sync: the schedule cache table, the function, its schedule, permissions and alarm."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from clinicbot.infra.template import load_template
from clinicbot.storage.patients import PATIENT_INDEX
from tests.integration.test_template import REGION, REQUIRED_PARAMETERS, as_list, of_type, statements


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    """After the SAM transform, offline (as tests/integration/test_template.py does it)."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    fragment = copy.deepcopy(template)
    for resource in fragment["Resources"].values():
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://artifacts/{props[key].strip('/')}.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_REGION", REGION)
        output: dict[str, Any] = transform(fragment, dict(REQUIRED_PARAMETERS), NoManagedPolicies())
    return dict(output["Resources"])


def granted(resources: dict[str, Any], role: str) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for policy in resources[role]["Properties"]["Policies"]:
        for statement in statements(policy["PolicyDocument"]):
            for action in as_list(statement["Action"]):
                out.setdefault(action, []).extend(as_list(statement["Resource"]))
    return out


def test_schedule_table(template: dict[str, Any]) -> None:
    table = template["Resources"]["ScheduleTable"]["Properties"]
    assert table["BillingMode"] == "PAY_PER_REQUEST"
    assert table["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    assert table["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert table["SSESpecification"] == {
        "Fn::If": ["TablesUseKms", {"SSEEnabled": True, "SSEType": "KMS"}, {"SSEEnabled": False}]
    }
    assert table["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert env["CLINICBOT_SCHEDULE_TABLE"] == {"Ref": "ScheduleTable"}
    assert env["CLINICBOT_SCHEDULE_MAX_AGE_MINUTES"] == {
        "Fn::FindInMap": ["SyncRates", {"Ref": "SyncRate"}, "MaxAgeMinutes"]
    }


def test_the_state_table_has_the_sparse_patient_index_the_sync_pages_through(
    template: dict[str, Any],
) -> None:
    state = template["Resources"]["StateTable"]["Properties"]
    (index,) = [i for i in state["GlobalSecondaryIndexes"] if i["IndexName"] == PATIENT_INDEX]
    assert index["KeySchema"] == [{"AttributeName": "patient_id", "KeyType": "HASH"}]
    assert {"AttributeName": "patient_id", "AttributeType": "S"} in state["AttributeDefinitions"]


def test_sync_parameters_and_their_mapping(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    assert params["SyncRate"]["Default"] == 15
    assert params["SyncDays"]["Default"] == 30
    assert params["AlarmTopicArn"]["Default"] == ""
    rates = template["Mappings"]["SyncRates"]
    assert {str(v) for v in params["SyncRate"]["AllowedValues"]} == set(rates)
    for rate, row in rates.items():
        assert row["PeriodSeconds"] == int(rate) * 60
        assert row["MaxAgeMinutes"] > 2 * int(rate)  # a missed run does not send the bot to the MIS


def test_the_function_runs_on_a_schedule_without_retries(resources: dict[str, Any]) -> None:
    fn = resources["MisSyncFunction"]["Properties"]
    assert (
        fn["Handler"] == "app.handler" and fn["Runtime"] == "python3.12" and fn["Architectures"] == ["arm64"]
    )
    assert fn["Environment"]["Variables"]["CLINICBOT_SYNC_DAYS"] == {"Ref": "SyncDays"}
    assert fn["Environment"]["Variables"]["CLINICBOT_STACK_NAME"] == {"Ref": "AWS::StackName"}
    assert fn["Timeout"] <= 300
    rules = of_type(resources, "AWS::Events::Rule")  # a rule's scheduled events are free; Scheduler is not
    assert not of_type(resources, "AWS::Scheduler::Schedule")
    (rule,) = [r for r in rules.values() if "MisSyncFunction" in json.dumps(r["Properties"]["Targets"])]
    props = rule["Properties"]
    assert props["ScheduleExpression"] == {"Fn::Sub": "rate(${SyncRate} minutes)"}
    ((target,),) = [props["Targets"]]
    assert target["RetryPolicy"]["MaximumRetryAttempts"] == 0
    assert (
        "Input" not in target
    )  # the standard "Scheduled Event" of aws.events (events/mis_sync/scheduled.json)
    configs = [
        c for c in of_type(resources, "AWS::Lambda::EventInvokeConfig").values()
        if c["Properties"]["FunctionName"] == {"Ref": "MisSyncFunction"}
    ]  # fmt: skip
    assert [c["Properties"]["MaximumRetryAttempts"] for c in configs] == [0]
    groups = of_type(resources, "AWS::Logs::LogGroup")
    assert groups[fn["LoggingConfig"]["LogGroup"]["Ref"]]["Properties"]["RetentionInDays"] == 30


def test_the_function_gets_exactly_what_it_uses(resources: dict[str, Any]) -> None:
    actions = granted(resources, "MisSyncFunctionRole")
    schedule = {"Fn::GetAtt": ["ScheduleTable", "Arn"]}
    for action in ("dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:BatchWriteItem"):
        assert schedule in actions[action], action
    assert actions["dynamodb:Scan"] == [
        {"Fn::Sub": "${StateTable.Arn}/index/" + PATIENT_INDEX}
    ]  # never the table
    state = {"Fn::GetAtt": ["StateTable", "Arn"]}
    assert [a for a, arns in actions.items() if state in arns] == ["dynamodb:GetItem"]  # the card, read-only
    reminders = {"Fn::GetAtt": ["ReminderTable", "Arn"]}
    assert sorted(a for a, arns in actions.items() if reminders in arns) == [
        "dynamodb:DeleteItem", "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:Query", "dynamodb:UpdateItem",
    ]  # fmt: skip
    assert not [a for a in actions if not a.startswith("dynamodb:")]  # no SSM, no KMS: the MIS needs none yet


def test_the_webhook_may_read_the_schedule_cache(resources: dict[str, Any]) -> None:
    schedule = {"Fn::GetAtt": ["ScheduleTable", "Arn"]}
    free, conditioned = set(), set()
    for policy in resources["WebhookFunctionRole"]["Properties"]["Policies"]:
        for statement in statements(policy["PolicyDocument"]):
            if schedule in as_list(statement["Resource"]):
                (conditioned if "Condition" in statement else free).update(as_list(statement["Action"]))
    assert free == {"dynamodb:GetItem", "dynamodb:Query"}  # the reader; writes only on conditions (erasure)
    assert not conditioned & {"dynamodb:PutItem", "dynamodb:BatchWriteItem", "dynamodb:Scan"}


def test_the_alarm_watches_the_metric_the_handler_emits(template: dict[str, Any]) -> None:
    assert template["Resources"]["MisSyncFailedAlarm"]["Condition"] == "AlarmsOn"  # $0.10 a month: opt-in
    assert template["Parameters"]["Alarms"]["Default"] == "off"
    alarm = template["Resources"]["MisSyncFailedAlarm"]["Properties"]
    env = template["Globals"]["Function"]["Environment"]["Variables"]
    assert alarm["Namespace"] == env["POWERTOOLS_METRICS_NAMESPACE"]
    assert alarm["MetricName"] == "SyncFailed"
    assert alarm["Dimensions"] == [
        {"Name": "service", "Value": env["POWERTOOLS_SERVICE_NAME"]},
        {"Name": "stack", "Value": {"Ref": "AWS::StackName"}},  # = CLINICBOT_STACK_NAME of the function
    ]
    assert alarm["Statistic"] == "Sum" and alarm["Threshold"] == 1
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["EvaluationPeriods"] == alarm["DatapointsToAlarm"] == 2
    assert alarm["TreatMissingData"] == "notBreaching"
    assert alarm["Period"] == {"Fn::FindInMap": ["SyncRates", {"Ref": "SyncRate"}, "PeriodSeconds"]}
    topic = {"Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]}
    assert alarm["AlarmActions"] == alarm["OKActions"] == topic


def test_sample_event_is_what_the_schedule_sends() -> None:
    from tests.harness import load_event

    event = load_event("mis_sync/scheduled")
    assert event["detail-type"] == "Scheduled Event" and event["source"] == "aws.events"
    assert {"id", "time", "resources", "detail"} <= set(event)
