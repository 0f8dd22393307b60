"""Read the SAM template and create its DynamoDB tables outside CloudFormation.

``template.yaml`` is the single source of truth for the tables: the local run and the tests
create them under moto (or any DynamoDB-compatible endpoint) from the template itself, so a
table, index or TTL added to the template flows into local runs with no second copy.

Pure Python + PyYAML; the boto3 client is passed in by the caller.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "CfnLoader",
    "TemplateError",
    "create_tables",
    "default_table_names",
    "default_template_path",
    "load_template",
    "table_definitions",
    "table_env_vars",
    "table_environment",
]

TABLE_TYPES = ("AWS::DynamoDB::Table", "AWS::Serverless::SimpleTable")
#: Key of :func:`table_definitions` entries that is not a ``create_table`` argument.
TTL_KEY = "TimeToLiveAttribute"


class TemplateError(ValueError):
    """The template (or the names given for it) cannot be used as asked."""


# --------------------------------------------------------------------------- YAML loading

# Short form -> long form. !GetAtt and !Ref are special-cased below.
_FN_TAGS = (
    "And",
    "Base64",
    "Cidr",
    "Equals",
    "FindInMap",
    "GetAZs",
    "If",
    "ImportValue",
    "Join",
    "Length",
    "Not",
    "Or",
    "Select",
    "Split",
    "Sub",
    "ToJsonString",
    "Transform",
)


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation short tags (``!Ref``, ``!Sub``, ``!If``, ...).

    Tags become the JSON long form: ``!Ref X`` -> ``{"Ref": "X"}``, ``!Sub s`` ->
    ``{"Fn::Sub": s}``, ``!GetAtt A.B`` -> ``{"Fn::GetAtt": ["A", "B"]}``,
    ``!Condition C`` -> ``{"Condition": "C"}``. Dates stay strings
    (``AWSTemplateFormatVersion: 2010-09-09`` unquoted is still "2010-09-09").
    """


def _node_value(loader: yaml.SafeLoader, node: yaml.Node) -> Any:
    if isinstance(node, yaml.ScalarNode):
        return loader.construct_scalar(node)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_mapping(node, deep=True)


def _fn_constructor(key: str):
    def construct(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
        return {key: _node_value(loader, node)}

    return construct


def _get_att(loader: yaml.SafeLoader, node: yaml.Node) -> dict[str, Any]:
    value = _node_value(loader, node)
    if isinstance(value, str):
        resource, sep, attribute = value.partition(".")
        if not sep:
            raise yaml.constructor.ConstructorError(
                None, None, f"!GetAtt needs Resource.Attribute, got {value!r}", node.start_mark
            )
        value = [resource, attribute]
    return {"Fn::GetAtt": value}


def _timestamp_as_string(loader: yaml.SafeLoader, node: yaml.Node) -> str:
    return str(loader.construct_scalar(node))


for _name in _FN_TAGS:
    CfnLoader.add_constructor(f"!{_name}", _fn_constructor(f"Fn::{_name}"))
CfnLoader.add_constructor("!Ref", _fn_constructor("Ref"))
CfnLoader.add_constructor("!Condition", _fn_constructor("Condition"))
CfnLoader.add_constructor("!GetAtt", _get_att)
CfnLoader.add_constructor("tag:yaml.org,2002:timestamp", _timestamp_as_string)


def default_template_path() -> Path:
    """``$CLINICBOT_TEMPLATE`` if set, else ``template.yaml`` at the repository root."""
    env = os.environ.get("CLINICBOT_TEMPLATE")
    if env:
        return Path(env)
    # layers/clinicbot/clinicbot/infra/template.py -> repository root
    in_repo = Path(__file__).resolve().parents[4] / "template.yaml"
    in_cwd = Path.cwd() / "template.yaml"
    return in_repo if in_repo.is_file() or not in_cwd.is_file() else in_cwd


def load_template(path: Path | str | None = None) -> dict[str, Any]:
    """Parse a CloudFormation/SAM template (YAML or JSON) into plain dicts and lists."""
    template_path = Path(path) if path is not None else default_template_path()
    try:
        text = template_path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise TemplateError(
            f"template not found: {template_path} (set CLINICBOT_TEMPLATE to its path)"
        ) from None
    data = yaml.load(text, Loader=CfnLoader)  # CfnLoader is a SafeLoader
    if not isinstance(data, dict) or not isinstance(data.get("Resources"), dict):
        raise TemplateError(f"{template_path} is not a CloudFormation template (no Resources)")
    return data


# ------------------------------------------------------------------- intrinsic resolution

_NO_VALUE = object()


class _Resolver:
    """Resolve the few intrinsics a table definition may use, from parameter values.

    ``Ref`` to a parameter (override, else its Default) or a pseudo parameter, ``Fn::If`` /
    ``Fn::Equals`` / ``Fn::Not`` / ``Fn::And`` / ``Fn::Or`` / ``Condition`` and
    ``AWS::NoValue``. Anything else (e.g. ``Ref`` to another resource) raises TemplateError.
    """

    def __init__(self, template: Mapping[str, Any], parameters: Mapping[str, Any] | None) -> None:
        self.template = template
        self.values: dict[str, Any] = {}
        for name, spec in (template.get("Parameters") or {}).items():
            if isinstance(spec, Mapping) and "Default" in spec:
                self.values[name] = spec["Default"]
        self.values.update(parameters or {})
        region = os.environ.get("AWS_REGION") or os.environ.get("AWS_DEFAULT_REGION") or "us-east-1"
        self.pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": "123456789012",
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": "clinicbot-local",
        }
        self._conditions: dict[str, bool] = {}

    def condition(self, name: str, where: str) -> bool:
        if name not in self._conditions:
            conditions = self.template.get("Conditions") or {}
            if name not in conditions:
                raise TemplateError(f"{where}: unknown condition {name!r}")
            self._conditions[name] = bool(self.resolve(conditions[name], f"Conditions.{name}"))
        return self._conditions[name]

    def resolve(self, value: Any, where: str) -> Any:
        if isinstance(value, list):
            items = (self.resolve(v, f"{where}[{i}]") for i, v in enumerate(value))
            return [v for v in items if v is not _NO_VALUE]
        if not isinstance(value, Mapping):
            return value
        if len(value) == 1:
            ((key, arg),) = value.items()
            if key == "Ref":
                if arg == "AWS::NoValue":
                    return _NO_VALUE
                if arg in self.pseudo:
                    return self.pseudo[arg]
                if arg in self.values:
                    return self.values[arg]
                raise TemplateError(f"{where}: cannot resolve {{'Ref': {arg!r}}} outside CloudFormation")
            if key == "Condition":
                return self.condition(arg, where)
            if key == "Fn::If":
                name, when_true, when_false = arg
                chosen = when_true if self.condition(name, where) else when_false
                return self.resolve(chosen, where)
            if key == "Fn::Equals":
                left, right = (_scalar(self.resolve(v, where)) for v in arg)
                return left == right
            if key == "Fn::Not":
                return not self.resolve(arg[0], where)
            if key == "Fn::And":
                return all(self.resolve(v, where) for v in arg)
            if key == "Fn::Or":
                return any(self.resolve(v, where) for v in arg)
            if key.startswith("Fn::"):
                raise TemplateError(f"{where}: {key} is not supported in a table definition")
        out = {}
        for k, v in value.items():
            resolved = self.resolve(v, f"{where}.{k}")
            if resolved is not _NO_VALUE:
                out[k] = resolved
        return out


def _scalar(value: Any) -> Any:
    """CloudFormation compares parameter values as strings: true == "true", 72 == "72"."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    return value


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() == "true"
    return bool(value)


# ------------------------------------------------------------------------ table definitions

_GSI_KEYS = ("IndexName", "KeySchema", "Projection", "ProvisionedThroughput", "OnDemandThroughput")
_LSI_KEYS = ("IndexName", "KeySchema", "Projection")
_SIMPLE_TYPES = {"String": "S", "Number": "N", "Binary": "B"}
_USED_PROPERTIES = frozenset(
    {
        "KeySchema",
        "AttributeDefinitions",
        "BillingMode",
        "ProvisionedThroughput",
        "GlobalSecondaryIndexes",
        "LocalSecondaryIndexes",
        "StreamSpecification",
        "TimeToLiveSpecification",
        "PrimaryKey",
    }
)


def _throughput(spec: Mapping[str, Any]) -> dict[str, int]:
    return {
        "ReadCapacityUnits": int(spec["ReadCapacityUnits"]),
        "WriteCapacityUnits": int(spec["WriteCapacityUnits"]),
    }


def _dynamodb_table(props: Mapping[str, Any], where: str) -> dict[str, Any]:
    for required in ("KeySchema", "AttributeDefinitions"):
        if required not in props:
            raise TemplateError(f"{where}: {required} is missing")
    billing = props.get("BillingMode", "PROVISIONED")
    definition: dict[str, Any] = {
        "KeySchema": [dict(k) for k in props["KeySchema"]],
        "AttributeDefinitions": [dict(a) for a in props["AttributeDefinitions"]],
        "BillingMode": billing,
    }
    if billing == "PROVISIONED":
        if "ProvisionedThroughput" not in props:
            raise TemplateError(f"{where}: PROVISIONED billing without ProvisionedThroughput")
        definition["ProvisionedThroughput"] = _throughput(props["ProvisionedThroughput"])
    gsis = []
    for index in props.get("GlobalSecondaryIndexes") or []:
        gsi = {k: index[k] for k in _GSI_KEYS if k in index}
        if "ProvisionedThroughput" in gsi:
            gsi["ProvisionedThroughput"] = _throughput(gsi["ProvisionedThroughput"])
        gsis.append(gsi)
    if gsis:
        definition["GlobalSecondaryIndexes"] = gsis
    lsis = [
        {k: index[k] for k in _LSI_KEYS if k in index} for index in props.get("LocalSecondaryIndexes") or []
    ]
    if lsis:
        definition["LocalSecondaryIndexes"] = lsis
    stream = props.get("StreamSpecification")
    if stream and stream.get("StreamViewType"):
        definition["StreamSpecification"] = {
            "StreamEnabled": True,
            "StreamViewType": stream["StreamViewType"],
        }
    ttl = props.get("TimeToLiveSpecification") or {}
    enabled = _as_bool(ttl.get("Enabled", False)) and ttl.get("AttributeName")
    definition[TTL_KEY] = ttl["AttributeName"] if enabled else None
    return definition


def _simple_table(props: Mapping[str, Any]) -> dict[str, Any]:
    key = props.get("PrimaryKey") or {"Name": "id", "Type": "String"}
    definition: dict[str, Any] = {
        "KeySchema": [{"AttributeName": key["Name"], "KeyType": "HASH"}],
        "AttributeDefinitions": [{"AttributeName": key["Name"], "AttributeType": _SIMPLE_TYPES[key["Type"]]}],
    }
    if props.get("ProvisionedThroughput"):
        definition["BillingMode"] = "PROVISIONED"
        definition["ProvisionedThroughput"] = _throughput(props["ProvisionedThroughput"])
    else:
        definition["BillingMode"] = "PAY_PER_REQUEST"
    definition[TTL_KEY] = None
    return definition


def table_definitions(
    template: Mapping[str, Any] | None = None, parameters: Mapping[str, Any] | None = None
) -> dict[str, dict[str, Any]]:
    """Logical id -> ``create_table`` keyword arguments for every table of the template.

    Each entry holds ``KeySchema``, ``AttributeDefinitions``, ``BillingMode`` (plus
    ``ProvisionedThroughput`` when provisioned), ``GlobalSecondaryIndexes`` /
    ``LocalSecondaryIndexes`` / ``StreamSpecification`` when the template has them, and the
    extra key ``TimeToLiveAttribute`` (attribute name, or None) that is *not* a
    ``create_table`` argument: pop it and apply it with ``update_time_to_live``.
    ``TableName`` is the caller's choice. Intrinsics (``!If`` on a parameter, say) are
    resolved with ``parameters`` over the template's parameter defaults.
    """
    template = load_template() if template is None else template
    resolver = _Resolver(template, parameters)
    tables: dict[str, dict[str, Any]] = {}
    for logical_id, resource in (template.get("Resources") or {}).items():
        if not isinstance(resource, Mapping) or resource.get("Type") not in TABLE_TYPES:
            continue
        if "Condition" in resource and not resolver.condition(resource["Condition"], logical_id):
            continue
        raw = resource.get("Properties") or {}
        # Only what create_table needs is resolved: SSE keys, tags, names may Ref resources.
        props = resolver.resolve(
            {k: v for k, v in raw.items() if k in _USED_PROPERTIES}, f"{logical_id}.Properties"
        )
        if resource["Type"] == "AWS::DynamoDB::Table":
            tables[logical_id] = _dynamodb_table(props, logical_id)
        else:
            tables[logical_id] = _simple_table(props)
    return tables


# ----------------------------------------------------------------- names and env variables


def _kebab(logical_id: str) -> str:
    stem = (
        logical_id[: -len("Table")] if logical_id.endswith("Table") and logical_id != "Table" else logical_id
    )
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])", "-", stem).lower()


def default_table_names(
    prefix: str = "clinicbot", template: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Logical id -> physical name for local runs: ``StateTable`` -> ``clinicbot-state``."""
    return {logical_id: f"{prefix}-{_kebab(logical_id)}" for logical_id in table_definitions(template)}


def table_env_vars(template: Mapping[str, Any] | None = None) -> dict[str, str]:
    """Logical id -> environment variable that carries the table name to the functions.

    Found as ``{"Ref": <logical id>}`` in ``Globals.Function.Environment.Variables`` (then in
    each function's own ``Environment``); tables no function is told about are left out.
    """
    template = load_template() if template is None else template
    tables = table_definitions(template)
    sources: list[Mapping[str, Any]] = []
    globals_env = ((template.get("Globals") or {}).get("Function") or {}).get("Environment") or {}
    sources.append(globals_env.get("Variables") or {})
    for resource in (template.get("Resources") or {}).values():
        if isinstance(resource, Mapping) and resource.get("Type") in (
            "AWS::Serverless::Function",
            "AWS::Lambda::Function",
        ):
            env = (resource.get("Properties") or {}).get("Environment") or {}
            sources.append(env.get("Variables") or {})
    found: dict[str, str] = {}
    for variables in sources:
        for var, value in variables.items():
            if isinstance(value, Mapping) and value.get("Ref") in tables:
                found.setdefault(value["Ref"], var)
    return found


def table_environment(
    names: Mapping[str, str] | None = None, template: Mapping[str, Any] | None = None
) -> dict[str, str]:
    """Environment for a local run: ``{"CLINICBOT_STATE_TABLE": "clinicbot-state", ...}``."""
    template = load_template() if template is None else template
    names = default_table_names(template=template) if names is None else names
    return {
        var: names[logical_id] for logical_id, var in table_env_vars(template).items() if logical_id in names
    }


# ------------------------------------------------------------------------------ creation


def _error_code(exc: Exception) -> str:
    response = getattr(exc, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def _wait_active(client: Any, name: str, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    delay = 0.05
    while True:
        status = client.describe_table(TableName=name)["Table"].get("TableStatus")
        if status == "ACTIVE":
            return
        if time.monotonic() > deadline:
            raise TimeoutError(f"table {name} still {status} after {timeout:.0f} s")
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def create_tables(
    dynamodb_client: Any,
    names: Mapping[str, str],
    *,
    template: Mapping[str, Any] | None = None,
    parameters: Mapping[str, Any] | None = None,
    timeout: float = 60.0,
) -> None:
    """Create every table of the template (logical id -> physical name in ``names``).

    Idempotent: existing tables are left alone (TTL is still switched on if it is off).
    Every table of the template must have a name and every name a table, so a table added
    to the template cannot be forgotten silently.
    """
    definitions = table_definitions(template, parameters)
    missing = sorted(set(definitions) - set(names))
    unknown = sorted(set(names) - set(definitions))
    if missing or unknown:
        problems = []
        if missing:
            problems.append(f"no physical name for table(s) {missing}")
        if unknown:
            problems.append(f"{unknown} are not tables of the template (tables: {sorted(definitions)})")
        raise TemplateError("; ".join(problems) + " - see default_table_names()")

    for logical_id, definition in definitions.items():
        kwargs = dict(definition)
        ttl_attribute = kwargs.pop(TTL_KEY, None)
        name = names[logical_id]
        try:
            dynamodb_client.create_table(TableName=name, **kwargs)
        except Exception as exc:
            if _error_code(exc) != "ResourceInUseException":
                raise
        _wait_active(dynamodb_client, name, timeout)
        if ttl_attribute:
            ttl = dynamodb_client.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {})
            if ttl.get("TimeToLiveStatus") not in ("ENABLED", "ENABLING"):
                dynamodb_client.update_time_to_live(
                    TableName=name,
                    TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl_attribute},
                )
