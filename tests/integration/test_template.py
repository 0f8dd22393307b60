"""template.yaml: lint, the SAM transform (offline) and its tables under moto."""

from __future__ import annotations

import copy
import json
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from clinicbot.infra.template import (
    create_tables,
    default_table_names,
    default_template_path,
    load_template,
    table_definitions,
    table_environment,
)

REGION = "eu-central-1"
REQUIRED_PARAMETERS = {"PolicyUrl": "https://clinic.example/privacy", "ClinicName": "Demo clinic"}
# Managed policies SAM attaches by itself: CloudWatch Logs for every function and X-Ray
# write access for Tracing: Active (both AWS-managed, Resource "*" by nature).
SAM_MANAGED_POLICIES = {
    "service-role/AWSLambdaBasicExecutionRole",
    "AWSXrayWriteOnlyAccess",
}
# Resource types that cost money while nobody writes to the bot.
IDLE_COST_TYPES = re.compile(
    r"^AWS::(EC2::(NatGateway|Instance|VPCEndpoint)|RDS::|ElastiCache::|OpenSearchService::|"
    r"Elasticsearch::|KMS::Key$|Redshift::|MSK::|DocDB::|Neptune::|ApplicationAutoScaling::)"
)


# ---------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template()


@pytest.fixture(scope="module")
def resources(template: dict[str, Any]) -> dict[str, Any]:
    """The template after the SAM transform, done offline as CloudFormation would."""
    from samtranslator.translator.transform import transform

    class NoManagedPolicies:  # the real loader asks IAM; the template names none
        def load(self) -> dict[str, str]:
            return {}

    fragment = copy.deepcopy(template)
    for resource in fragment["Resources"].values():  # local paths -> what `sam package` makes
        props = resource.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str) and not props[key].startswith("s3://"):
                props[key] = f"s3://artifacts/{props[key].strip('/')}.zip"
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("AWS_DEFAULT_REGION", REGION)
        mp.setenv("AWS_REGION", REGION)
        output = transform(fragment, dict(REQUIRED_PARAMETERS), NoManagedPolicies())
    return output["Resources"]


def of_type(resources: dict[str, Any], type_: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in resources.items() if v["Type"] == type_}


def walk(value: Any) -> Iterator[Any]:
    yield value
    if isinstance(value, dict):
        for v in value.values():
            yield from walk(v)
    elif isinstance(value, list):
        for v in value:
            yield from walk(v)


def statements(document: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Policy statements, both branches of an Fn::If included."""
    items = document.get("Statement", [])
    for item in items if isinstance(items, list) else [items]:
        if isinstance(item, dict) and set(item) == {"Fn::If"}:
            for branch in item["Fn::If"][1:]:
                if branch != {"Ref": "AWS::NoValue"}:
                    yield branch
        else:
            yield item


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


# --------------------------------------------------------------------------------------- lint


@pytest.mark.slow
def test_cfn_lint_is_clean() -> None:
    cfn_lint = Path(sys.executable).with_name("cfn-lint")
    command = [str(cfn_lint)] if cfn_lint.exists() else [shutil.which("cfn-lint") or "cfn-lint"]
    result = subprocess.run(
        [*command, str(default_template_path())], capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stdout + result.stderr


# ------------------------------------------------------------------------ template as written


def test_parameters_and_defaults(template: dict[str, Any]) -> None:
    params = template["Parameters"]
    expected_defaults = {
        "Stage": "dev",
        "BotTokenParameterName": "/clinicbot/dev/bot-token",
        "WebhookSecretParameterName": "/clinicbot/dev/webhook-secret",
        "MisProvider": "demo",
        "MisBaseUrl": "",
        "CrmProvider": "none",
        "CrmUrlParameterName": "",
        "PolicyVersion": "1",
        "DialogueTtlHours": 72,
        "LogLevel": "WARN",
        "Tracing": "off",
        "Alarms": "off",
        "TableEncryption": "aws-owned",
    }
    for name, default in expected_defaults.items():
        assert params[name]["Default"] == default, name
    assert set(params["MisProvider"]["AllowedValues"]) == {"demo", "fhir"}
    assert set(params["CrmProvider"]["AllowedValues"]) == {"none", "webhook", "bitrix24", "telegram_group"}
    assert {"PolicyUrl", "ClinicName"} <= set(params)


def test_globals_environment(template: dict[str, Any]) -> None:
    fn = template["Globals"]["Function"]
    env = fn["Environment"]["Variables"]
    assert env["POWERTOOLS_SERVICE_NAME"] == "clinicbot"
    assert env["POWERTOOLS_METRICS_NAMESPACE"] == "ClinicBot"
    assert env["POWERTOOLS_LOG_LEVEL"] == {"Ref": "LogLevel"}
    refs = {
        "CLINICBOT_STAGE": "Stage",
        "CLINICBOT_STATE_TABLE": "StateTable",
        "CLINICBOT_BOT_TOKEN_PARAM": "BotTokenParameterName",
        "CLINICBOT_WEBHOOK_SECRET_PARAM": "WebhookSecretParameterName",
        "CLINICBOT_MIS_PROVIDER": "MisProvider",
        "CLINICBOT_MIS_BASE_URL": "MisBaseUrl",
        "CLINICBOT_CRM_PROVIDER": "CrmProvider",
        "CLINICBOT_CRM_URL_PARAM": "CrmUrlParameterName",
        "CLINICBOT_POLICY_URL": "PolicyUrl",
        "CLINICBOT_POLICY_VERSION": "PolicyVersion",
        "CLINICBOT_CLINIC_NAME": "ClinicName",
        "CLINICBOT_DIALOGUE_TTL_HOURS": "DialogueTtlHours",
    }
    for var, ref in refs.items():
        assert env[var] == {"Ref": ref}, var
    assert fn["LoggingConfig"]["LogFormat"] == "JSON"


def test_outputs(template: dict[str, Any]) -> None:
    outputs = template["Outputs"]
    url = outputs["WebhookUrl"]["Value"]["Fn::Sub"]
    assert url == "${WebhookFunctionUrl.FunctionUrl}telegram/webhook"
    command = outputs["SetWebhookCommand"]["Value"]["Fn::Sub"]
    assert f"url={url}" in command
    assert "/setWebhook" in command
    assert "secret_token=" in command and "${WebhookSecretParameterName}" in command
    assert "allowed_updates=" in command
    assert outputs["StateTableName"]["Value"] == {"Ref": "StateTable"}


# ----------------------------------------------------------------------- after the transform


def test_functions(resources: dict[str, Any]) -> None:
    functions = of_type(resources, "AWS::Lambda::Function")
    layers = of_type(resources, "AWS::Lambda::LayerVersion")
    assert "WebhookFunction" in functions
    assert len(layers) == 1
    ((layer_id, layer),) = layers.items()
    assert layer_id.startswith("ClinicBotLayer")
    assert layer["Properties"]["CompatibleRuntimes"] == ["python3.12"]
    assert layer["Properties"]["CompatibleArchitectures"] == ["arm64"]
    log_groups = of_type(resources, "AWS::Logs::LogGroup")
    for name, fn in functions.items():
        props = fn["Properties"]
        runtime = re.fullmatch(r"python3\.(\d+)", props["Runtime"])
        assert runtime and int(runtime[1]) >= 12, (name, props["Runtime"])
        assert props["Architectures"] == ["arm64"], name
        assert props["TracingConfig"] == {"Mode": {"Fn::If": ["TracingOn", "Active", "PassThrough"]}}, name
        assert {"Ref": layer_id} in props["Layers"], name
        assert props["LoggingConfig"]["LogFormat"] == "JSON", name
        assert "VpcConfig" not in props, name
        # Every function logs into a log group of this stack that expires.
        log_group = props["LoggingConfig"]["LogGroup"]["Ref"]
        assert log_groups[log_group]["Properties"]["RetentionInDays"] <= 365, name
    assert functions["WebhookFunction"]["Properties"]["Handler"] == "app.handler"
    # HTTP APIs give up on an integration after 30 s.
    assert functions["WebhookFunction"]["Properties"]["Timeout"] < 30


def test_every_log_group_expires(resources: dict[str, Any]) -> None:
    for name, group in of_type(resources, "AWS::Logs::LogGroup").items():
        assert group["Properties"].get("RetentionInDays"), name


def test_telegram_reaches_the_webhook_through_its_function_url(resources: dict[str, Any]) -> None:
    """A function URL (free) rather than an API Gateway HTTP API ($1.20 per million requests): the same
    payload 2.0 event; the secret token header is the authentication (checked by the function)."""
    assert not of_type(resources, "AWS::ApiGatewayV2::Api")
    urls = of_type(resources, "AWS::Lambda::Url")
    assert urls["WebhookFunctionUrl"]["Properties"] == {
        "TargetFunctionArn": {"Ref": "WebhookFunction"},
        "AuthType": "NONE",
    }
    public = {
        p["Properties"]["Action"]: p["Properties"]
        for p in of_type(resources, "AWS::Lambda::Permission").values()
        if p["Properties"]["FunctionName"] == {"Ref": "WebhookFunction"}
    }
    # since October 2025 a public URL needs both: InvokeFunctionUrl, and InvokeFunction via the URL only
    assert public["lambda:InvokeFunctionUrl"]["FunctionUrlAuthType"] == "NONE"
    assert public["lambda:InvokeFunction"]["InvokedViaFunctionUrl"] is True
    assert all(p["Principal"] == "*" for p in public.values())


def test_iam_is_least_privilege(resources: dict[str, Any]) -> None:
    roles = of_type(resources, "AWS::IAM::Role")
    assert roles
    policy_resources = [
        *of_type(resources, "AWS::IAM::Policy").values(),
        *of_type(resources, "AWS::IAM::ManagedPolicy").values(),
    ]
    documents = [p["Properties"]["PolicyDocument"] for p in policy_resources]
    for name, role in roles.items():
        documents += [p["PolicyDocument"] for p in role["Properties"].get("Policies", [])]
        for arn in role["Properties"].get("ManagedPolicyArns", []):
            text = json.dumps(arn)
            # SAM's SQS/Kinesis/DynamoDB event sources attach AWS-managed policies on "*": wire
            # such sources with AWS::Lambda::EventSourceMapping + an inline policy on the ARN.
            assert any(text.endswith(f':policy/{m}"') for m in SAM_MANAGED_POLICIES), (
                f"{name}: managed policy {arn} is not least privilege"
            )
    assert documents
    for document in documents:
        for statement in statements(document):
            assert statement["Effect"] == "Allow", statement
            assert "NotAction" not in statement and "NotResource" not in statement, statement
            for action in as_list(statement["Action"]):
                assert "*" not in action, statement
            for resource in as_list(statement["Resource"]):
                assert resource != "*", statement


def test_webhook_permissions(resources: dict[str, Any]) -> None:
    role = resources["WebhookFunctionRole"]["Properties"]
    granted: dict[str, list[Any]] = {}
    for policy in role["Policies"]:
        for statement in statements(policy["PolicyDocument"]):
            for action in as_list(statement["Action"]):
                granted.setdefault(action, []).extend(as_list(statement["Resource"]))
    table_actions = {
        "dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem",
        "dynamodb:Query", "dynamodb:BatchGetItem", "dynamodb:BatchWriteItem",
        "dynamodb:TransactWriteItems", "dynamodb:ConditionCheckItem",
    }  # fmt: skip
    for action in table_actions:
        assert {"Fn::GetAtt": ["StateTable", "Arn"]} in granted[action], action
    assert not {a for a in granted if a.startswith("dynamodb:")} - table_actions  # no Scan, no admin
    ssm = json.dumps(granted["ssm:GetParameter"])
    assert ":parameter${BotTokenParameterName}" in ssm
    assert ":parameter${WebhookSecretParameterName}" in ssm
    decrypt = granted.get("kms:Decrypt", [])
    assert decrypt in ([], [{"Ref": "ParametersKmsKeyArn"}])


def test_tables_are_on_demand_encrypted_and_recoverable(resources: dict[str, Any]) -> None:
    tables = of_type(resources, "AWS::DynamoDB::Table")
    assert "StateTable" in tables
    for name, table in tables.items():
        props = table["Properties"]
        assert props["BillingMode"] == "PAY_PER_REQUEST", name
        # encrypted at rest either way: DynamoDB's own key (free) or aws/dynamodb (billed per KMS request)
        assert props["SSESpecification"] == {
            "Fn::If": ["TablesUseKms", {"SSEEnabled": True, "SSEType": "KMS"}, {"SSEEnabled": False}]
        }, name
        assert props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True, name
        assert "ProvisionedThroughput" not in props, name
        for index in props.get("GlobalSecondaryIndexes", []):
            assert "ProvisionedThroughput" not in index, (name, index["IndexName"])
    state = tables["StateTable"]["Properties"]
    assert state["TimeToLiveSpecification"] == {"AttributeName": "expires_at", "Enabled": True}
    assert state["DeletionProtectionEnabled"] == {"Fn::If": ["IsProd", True, False]}


def test_nothing_costs_money_while_idle(resources: dict[str, Any]) -> None:
    for name, resource in resources.items():
        assert not IDLE_COST_TYPES.match(resource["Type"]), (name, resource["Type"])
    for value in walk(resources):
        if isinstance(value, dict):
            assert "ProvisionedConcurrencyConfig" not in value
            assert "ReservedConcurrentExecutions" not in value  # caps, and steals account concurrency
            assert value.get("BillingMode") != "PROVISIONED"


# ------------------------------------------------------------------------------------ moto


@pytest.fixture
def dynamodb(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    from moto import mock_aws

    for var in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.setenv("AWS_DEFAULT_REGION", REGION)
    with mock_aws():
        yield boto3.client("dynamodb", region_name=REGION)


def test_create_tables_under_moto(dynamodb: Any) -> None:
    names = default_table_names("t")
    create_tables(dynamodb, names)
    create_tables(dynamodb, names)  # idempotent
    assert sorted(dynamodb.list_tables()["TableNames"]) == sorted(names.values())

    definitions = table_definitions()
    for logical_id, name in names.items():
        description = dynamodb.describe_table(TableName=name)["Table"]
        assert description["KeySchema"] == definitions[logical_id]["KeySchema"]
        assert description["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        if definitions[logical_id]["TimeToLiveAttribute"]:
            assert ttl["TimeToLiveStatus"] == "ENABLED"
            assert ttl["AttributeName"] == definitions[logical_id]["TimeToLiveAttribute"]

    state = table_environment(names)["CLINICBOT_STATE_TABLE"]
    assert state == "t-state"
    item = {
        "pk": {"S": "USER#42"},
        "sk": {"S": "PROFILE"},
        "consent_version": {"S": "1"},
        "expires_at": {"N": "1900000000"},
    }
    dynamodb.put_item(TableName=state, Item=item)
    got = dynamodb.get_item(TableName=state, Key={"pk": item["pk"], "sk": item["sk"]})
    assert got["Item"] == item
    dialog = dynamodb.query(
        TableName=state,
        KeyConditionExpression="pk = :pk AND begins_with(sk, :dialog)",
        ExpressionAttributeValues={":pk": {"S": "USER#42"}, ":dialog": {"S": "DIALOG#"}},
    )
    assert dialog["Items"] == []
