"""The local AWS: an in-process moto server with the tables of template.yaml, or an endpoint given by the
standard ``AWS_ENDPOINT_URL`` variable (a moto server started elsewhere, DynamoDB Local, ...)."""

from __future__ import annotations

import logging
import os
import secrets
from dataclasses import dataclass, field
from typing import Any

log = logging.getLogger(__name__)

LOCAL_REGION = "eu-central-1"
LOCAL_TOKEN = "123456789:LOCAL-stand-in-token"


@dataclass
class LocalStack:
    endpoint: str
    env: dict[str, str] = field(default_factory=dict)
    _server: Any = None

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
            self._server = None


def start_aws(*, reuse_endpoint: bool = True) -> LocalStack:
    """Start (or reuse) a local AWS endpoint, create the template's tables there, export the env vars."""
    import boto3

    from clinicbot.infra.template import create_tables, default_table_names, table_environment

    for name, value in {
        "AWS_DEFAULT_REGION": os.environ.get("AWS_DEFAULT_REGION", LOCAL_REGION),
        "AWS_ACCESS_KEY_ID": os.environ.get("AWS_ACCESS_KEY_ID", "local"),
        "AWS_SECRET_ACCESS_KEY": os.environ.get("AWS_SECRET_ACCESS_KEY", "local"),
    }.items():
        os.environ[name] = value
    os.environ.setdefault("AWS_REGION", os.environ["AWS_DEFAULT_REGION"])
    server = None
    endpoint = os.environ.get("AWS_ENDPOINT_URL") if reuse_endpoint else None
    if not endpoint:
        from moto.server import ThreadedMotoServer

        server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        server.start()
        host, port = server.get_host_and_port()
        endpoint = f"http://{host}:{port}"
        os.environ["AWS_ENDPOINT_URL"] = endpoint
    client = boto3.client("dynamodb", endpoint_url=endpoint, region_name=os.environ["AWS_DEFAULT_REGION"])
    names = default_table_names()
    create_tables(client, names)
    env = table_environment(names)
    os.environ.update(env)
    return LocalStack(endpoint=endpoint, env=env, _server=server)


def local_function_env(*, api_base: str, token: str | None = None) -> dict[str, str]:
    """Environment a function gets in the local run (secrets are local, never from the repo)."""
    env = {
        "CLINICBOT_STAGE": "local",
        "CLINICBOT_TELEGRAM_API_BASE": api_base,
        "CLINICBOT_BOT_TOKEN": token or LOCAL_TOKEN,
        "CLINICBOT_WEBHOOK_SECRET": os.environ.get("CLINICBOT_WEBHOOK_SECRET") or secrets.token_urlsafe(24),
        "POWERTOOLS_SERVICE_NAME": "clinicbot",
        "POWERTOOLS_METRICS_NAMESPACE": "ClinicBot",
        "POWERTOOLS_TRACE_DISABLED": "true",
    }
    os.environ.update(env)
    return env
