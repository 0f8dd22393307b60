"""Zero idle cost, checked on the TRANSLATED template (the SAM transform done offline, as CloudFormation does):
an allow-list of resource types that cost nothing while no one writes (or, for alarms, a fixed $0.10 a month
each, which is what a quiet month needs), and no setting that buys capacity ahead of use."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from clinicbot.infra.template import load_template
from tests.integration.test_template import REGION, REQUIRED_PARAMETERS, walk

# Resource types a quiet month may hold, and why they are free while idle.
ALLOWED = {
    "AWS::Lambda::Function": "billed per request and per GB-second of use",
    "AWS::Lambda::LayerVersion": "code storage within the free 75 GB",
    "AWS::Lambda::Permission": "free",
    "AWS::Lambda::EventInvokeConfig": "free",
    "AWS::DynamoDB::Table": "on demand: per request, and per GB stored",
    "AWS::SQS::Queue": "per request",
    "AWS::Lambda::Url": "free: a function URL adds no charge to the invocation",
    "AWS::Events::Rule": "free: the scheduled events of a rule on the default bus are not billed",
    "AWS::Logs::LogGroup": "per GB ingested and stored; retention bounds the storage",
    "AWS::CloudWatch::Alarm": "$0.10 a month each whatever the traffic: only with Alarms=on (see below)",
    "AWS::IAM::Role": "free",
    "AWS::IAM::Policy": "free",
}


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    """template.yaml after the SAM transform, offline (as tests/integration/test_template.py does it)."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    fragment = copy.deepcopy(load_template())
    for resource in fragment["Resources"].values():
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://artifacts/{props[key].strip('/')}.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_REGION", REGION)
        output = transform(fragment, dict(REQUIRED_PARAMETERS), NoManagedPolicies())
    translated: dict[str, Any] = output["Resources"]
    return translated


def test_only_resource_types_that_cost_nothing_while_idle(resources: dict[str, Any]) -> None:
    unexpected = {name: r["Type"] for name, r in resources.items() if r["Type"] not in ALLOWED}
    assert not unexpected, (
        f"new resource types {unexpected}: does each cost nothing while idle? If so, add it to ALLOWED "
        "with the reason; if not (NAT gateway, VPC endpoint, provisioned anything), it does not belong here"
    )
    assert {r["Type"] for r in resources.values()} >= {"AWS::Lambda::Function", "AWS::DynamoDB::Table"}


def test_no_capacity_bought_ahead_of_use(resources: dict[str, Any]) -> None:
    for value in walk(resources):
        if not isinstance(value, dict):
            continue
        for key in (
            "ProvisionedConcurrencyConfig",  # warm environments billed by the hour
            "ProvisionedPollerConfig",  # SQS event pollers billed by the hour
            "ProvisionedThroughput",  # DynamoDB capacity billed by the hour
            "VpcConfig",  # a function in a VPC needs a NAT gateway (hourly) to reach Telegram
            "KinesisStreamSpecification",  # a Kinesis stream is billed by the shard-hour
        ):
            assert key not in value, key
        assert value.get("BillingMode") in (None, "PAY_PER_REQUEST")
        snap = value.get("SnapStart")
        assert snap in (None, {"ApplyOn": "None"}), "SnapStart for Python bills its snapshot cache while idle"


def test_functions_are_on_demand(resources: dict[str, Any]) -> None:
    functions = {n: r for n, r in resources.items() if r["Type"] == "AWS::Lambda::Function"}
    assert len(functions) >= 2
    for name, fn in functions.items():
        props = fn["Properties"]
        assert "VpcConfig" not in props and "FileSystemConfigs" not in props, name
        assert props.get("Architectures") == ["arm64"], name  # 20 % cheaper per GB-second
        storage = (props.get("EphemeralStorage") or {}).get("Size", 512)
        assert storage == 512, name  # more /tmp is billed per GB-second


def test_tables_use_no_customer_key_and_log_groups_expire(resources: dict[str, Any]) -> None:
    for name, resource in resources.items():
        props = resource.get("Properties") or {}
        if resource["Type"] == "AWS::DynamoDB::Table":
            assert props["BillingMode"] == "PAY_PER_REQUEST", name
            assert "KMSMasterKeyId" not in (props.get("SSESpecification") or {}), name  # a key is $1 a month
            assert "Replicas" not in props, name
        if resource["Type"] == "AWS::Logs::LogGroup":
            assert isinstance(props.get("RetentionInDays"), int) and props["RetentionInDays"] <= 30, name


def test_alarms_are_standard_resolution(resources: dict[str, Any]) -> None:
    alarms = {n: r["Properties"] for n, r in resources.items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    for name, props in alarms.items():
        period = props.get("Period")
        assert not isinstance(period, int) or period >= 60, name  # high-resolution alarms cost 3x
        assert "Metrics" not in props or len(props["Metrics"]) <= 1, name  # metric math: billed per metric


def test_what_is_billed_by_the_hour_or_month_is_opt_in() -> None:
    """Alarms ($0.10 a month each), X-Ray tracing and KMS requests cost money whatever the traffic (or more
    than the traffic itself): each sits behind a parameter whose default is off."""
    template = load_template()
    params = template["Parameters"]
    assert params["Alarms"]["Default"] == "off" and params["Tracing"]["Default"] == "off"
    assert params["TableEncryption"]["Default"] == "aws-owned"
    for name, resource in template["Resources"].items():
        if resource["Type"] == "AWS::CloudWatch::Alarm":
            assert resource.get("Condition") == "AlarmsOn", name
    assert template["Globals"]["Function"]["Tracing"] == {"Fn::If": ["TracingOn", "Active", "PassThrough"]}
    assert template["Conditions"]["AlarmsOn"] == {"Fn::Equals": [{"Ref": "Alarms"}, "on"]}
