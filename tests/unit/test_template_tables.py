"""clinicbot.infra.template: YAML tags, table definitions, names and env variables."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from clinicbot.infra.template import (
    TemplateError,
    create_tables,
    default_table_names,
    default_template_path,
    load_template,
    table_definitions,
    table_env_vars,
    table_environment,
)

TAGS_YAML = textwrap.dedent(
    """\
    AWSTemplateFormatVersion: 2010-09-09
    Conditions:
      IsProd: !Equals [!Ref Stage, prod]
      NotProd: !Not [!Condition IsProd]
      Both: !And [!Condition IsProd, !Or [!Condition NotProd, !Condition IsProd]]
    Resources:
      R:
        Type: Custom::Thing
        Properties:
          Ref: !Ref Stage
          Sub: !Sub "arn:${AWS::Partition}:x"
          SubList: !Sub ["${A}", {A: !Ref Stage}]
          Att: !GetAtt StateTable.Arn
          AttList: !GetAtt [StateTable, StreamArn]
          If: !If [IsProd, 1, !Ref AWS::NoValue]
          Join: !Join ["-", [a, !Select [0, !Split [",", "x,y"]]]]
          Map: !FindInMap [M, !Ref AWS::Region, k]
          Misc: [!Base64 abc, !GetAZs "", !ImportValue other, !Cidr [10.0.0.0/16, 2, 8]]
    """
)


def test_loader_turns_short_tags_into_long_form(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text(TAGS_YAML)
    t = load_template(path)
    assert t["AWSTemplateFormatVersion"] == "2010-09-09"  # a date stays a string
    c = t["Conditions"]
    assert c["IsProd"] == {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}
    assert c["NotProd"] == {"Fn::Not": [{"Condition": "IsProd"}]}
    assert c["Both"]["Fn::And"][1] == {"Fn::Or": [{"Condition": "NotProd"}, {"Condition": "IsProd"}]}
    p = t["Resources"]["R"]["Properties"]
    assert p["Ref"] == {"Ref": "Stage"}
    assert p["Sub"] == {"Fn::Sub": "arn:${AWS::Partition}:x"}
    assert p["SubList"] == {"Fn::Sub": ["${A}", {"A": {"Ref": "Stage"}}]}
    assert p["Att"] == {"Fn::GetAtt": ["StateTable", "Arn"]}
    assert p["AttList"] == {"Fn::GetAtt": ["StateTable", "StreamArn"]}
    assert p["If"] == {"Fn::If": ["IsProd", 1, {"Ref": "AWS::NoValue"}]}
    assert p["Join"] == {"Fn::Join": ["-", ["a", {"Fn::Select": [0, {"Fn::Split": [",", "x,y"]}]}]]}
    assert p["Map"] == {"Fn::FindInMap": ["M", {"Ref": "AWS::Region"}, "k"]}
    assert p["Misc"] == [
        {"Fn::Base64": "abc"},
        {"Fn::GetAZs": ""},
        {"Fn::ImportValue": "other"},
        {"Fn::Cidr": ["10.0.0.0/16", 2, 8]},
    ]


def test_loader_rejects_non_templates(tmp_path: Path) -> None:
    path = tmp_path / "t.yaml"
    path.write_text("just: text\n")
    with pytest.raises(TemplateError, match="no Resources"):
        load_template(path)
    with pytest.raises(TemplateError, match="not found"):
        load_template(tmp_path / "missing.yaml")


def test_template_path_default_and_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CLINICBOT_TEMPLATE", raising=False)
    repo_root = Path(__file__).resolve().parents[2]
    assert default_template_path() == repo_root / "template.yaml"
    assert load_template()["Transform"] == "AWS::Serverless-2016-10-31"
    other = tmp_path / "other.yaml"
    other.write_text("Resources: {}\n")
    monkeypatch.setenv("CLINICBOT_TEMPLATE", str(other))
    assert default_template_path() == other
    assert load_template() == {"Resources": {}}


def test_state_table_definition_from_the_real_template() -> None:
    defs = table_definitions(load_template())
    assert "StateTable" in defs
    state = defs["StateTable"]
    assert state["KeySchema"] == [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ]
    # pk, sk, and the keys of its GSIs (``patient``: patient_id, for the reminders)
    assert {"pk", "sk"} <= {a["AttributeName"] for a in state["AttributeDefinitions"]}
    assert {a["AttributeType"] for a in state["AttributeDefinitions"]} == {"S"}
    assert state["BillingMode"] == "PAY_PER_REQUEST"
    assert state["TimeToLiveAttribute"] == "expires_at"
    assert "TableName" not in state
    # Every key but the TTL one is a create_table argument.
    allowed = {
        "KeySchema",
        "AttributeDefinitions",
        "BillingMode",
        "ProvisionedThroughput",
        "GlobalSecondaryIndexes",
        "LocalSecondaryIndexes",
        "StreamSpecification",
        "TimeToLiveAttribute",
    }
    for definition in defs.values():
        assert set(definition) <= allowed


def test_env_var_mapping_from_globals() -> None:
    t = load_template()
    assert table_env_vars(t)["StateTable"] == "CLINICBOT_STATE_TABLE"
    assert default_table_names()["StateTable"] == "clinicbot-state"
    assert default_table_names("x", t)["StateTable"] == "x-state"
    env = table_environment({"StateTable": "s1"}, t)
    assert env["CLINICBOT_STATE_TABLE"] == "s1"
    assert table_environment(template=t)["CLINICBOT_STATE_TABLE"] == "clinicbot-state"
    # Every table of the template reaches the functions through some env variable.
    assert set(table_env_vars(t)) == set(table_definitions(t))


SYNTHETIC = {
    "Parameters": {"Stage": {"Type": "String", "Default": "dev"}},
    "Conditions": {"IsProd": {"Fn::Equals": [{"Ref": "Stage"}, "prod"]}},
    "Globals": {"Function": {"Environment": {"Variables": {"A_TABLE": {"Ref": "PatientAppointmentsTable"}}}}},
    "Resources": {
        "PatientAppointmentsTable": {
            "Type": "AWS::DynamoDB::Table",
            "Properties": {
                "TableName": {"Fn::Sub": "${AWS::StackName}-x"},  # ignored: the caller names tables
                "BillingMode": {"Fn::If": ["IsProd", "PROVISIONED", "PAY_PER_REQUEST"]},
                "ProvisionedThroughput": {
                    "Fn::If": [
                        "IsProd",
                        {"ReadCapacityUnits": 1, "WriteCapacityUnits": 1},
                        {"Ref": "AWS::NoValue"},
                    ]
                },
                "SSESpecification": {"SSEEnabled": True, "KMSMasterKeyId": {"Ref": "SomeKey"}},
                "AttributeDefinitions": [
                    {"AttributeName": "pk", "AttributeType": "S"},
                    {"AttributeName": "due", "AttributeType": "N"},
                    {"AttributeName": "lsk", "AttributeType": "S"},
                ],
                "KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
                "GlobalSecondaryIndexes": [
                    {
                        "IndexName": "due",
                        "KeySchema": [{"AttributeName": "due", "KeyType": "HASH"}],
                        "Projection": {"ProjectionType": "ALL"},
                        "ContributorInsightsSpecification": {"Enabled": True},
                    }
                ],
                "LocalSecondaryIndexes": [
                    {
                        "IndexName": "by-lsk",
                        "KeySchema": [
                            {"AttributeName": "pk", "KeyType": "HASH"},
                            {"AttributeName": "lsk", "KeyType": "RANGE"},
                        ],
                        "Projection": {"ProjectionType": "KEYS_ONLY"},
                    }
                ],
                "StreamSpecification": {"StreamViewType": "NEW_IMAGE"},
                "TimeToLiveSpecification": {"AttributeName": "ttl", "Enabled": "false"},
            },
        },
        "Simple": {
            "Type": "AWS::Serverless::SimpleTable",
            "Properties": {"PrimaryKey": {"Name": "n", "Type": "Number"}},
        },
        "OnlyInProd": {
            "Type": "AWS::DynamoDB::Table",
            "Condition": "IsProd",
            "Properties": {"BillingMode": "PAY_PER_REQUEST", "KeySchema": [], "AttributeDefinitions": []},
        },
        "Fn": {
            "Type": "AWS::Serverless::Function",
            "Properties": {"Environment": {"Variables": {"SIMPLE": {"Ref": "Simple"}, "OTHER": "x"}}},
        },
    },
}


def test_synthetic_template_indexes_streams_conditions_and_names() -> None:
    defs = table_definitions(SYNTHETIC)
    assert set(defs) == {"PatientAppointmentsTable", "Simple"}  # OnlyInProd: condition false in dev
    d = defs["PatientAppointmentsTable"]
    assert d["BillingMode"] == "PAY_PER_REQUEST"
    assert "ProvisionedThroughput" not in d
    assert d["GlobalSecondaryIndexes"] == [
        {
            "IndexName": "due",
            "KeySchema": [{"AttributeName": "due", "KeyType": "HASH"}],
            "Projection": {"ProjectionType": "ALL"},
        }
    ]
    assert d["LocalSecondaryIndexes"][0]["IndexName"] == "by-lsk"
    assert d["StreamSpecification"] == {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}
    assert d["TimeToLiveAttribute"] is None  # Enabled: "false"
    assert defs["Simple"] == {
        "KeySchema": [{"AttributeName": "n", "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": "n", "AttributeType": "N"}],
        "BillingMode": "PAY_PER_REQUEST",
        "TimeToLiveAttribute": None,
    }

    prod = table_definitions(SYNTHETIC, {"Stage": "prod"})
    assert set(prod) == {"PatientAppointmentsTable", "Simple", "OnlyInProd"}
    assert prod["PatientAppointmentsTable"]["BillingMode"] == "PROVISIONED"
    assert prod["PatientAppointmentsTable"]["ProvisionedThroughput"] == {
        "ReadCapacityUnits": 1,
        "WriteCapacityUnits": 1,
    }

    assert default_table_names("p", SYNTHETIC) == {
        "PatientAppointmentsTable": "p-patient-appointments",
        "Simple": "p-simple",
    }
    assert table_env_vars(SYNTHETIC) == {"PatientAppointmentsTable": "A_TABLE", "Simple": "SIMPLE"}


def test_unresolvable_intrinsic_is_a_clear_error() -> None:
    bad = {
        "Resources": {
            "T": {
                "Type": "AWS::DynamoDB::Table",
                "Properties": {
                    "BillingMode": {"Ref": "SomeResource"},
                    "KeySchema": [],
                    "AttributeDefinitions": [],
                },
            }
        }
    }
    with pytest.raises(TemplateError, match=r"T\.Properties\.BillingMode.*SomeResource"):
        table_definitions(bad)


class _NoCalls:
    def __getattr__(self, name: str):
        raise AssertionError(f"client.{name} must not be called when names are wrong")


def test_create_tables_checks_names_before_touching_the_client() -> None:
    with pytest.raises(TemplateError, match=r"no physical name for table\(s\) \[.*'StateTable'.*\]"):
        create_tables(_NoCalls(), {})
    names = default_table_names() | {"NoSuchTable": "x"}
    with pytest.raises(TemplateError, match="NoSuchTable"):
        create_tables(_NoCalls(), names)


def test_module_does_not_import_boto() -> None:
    code = (
        "import sys, clinicbot.infra.template as t; t.table_definitions(t.load_template()); "
        "sys.exit(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')) or None)"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
