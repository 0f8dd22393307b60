"""Shared fixtures. The environment is set before anything from `clinicbot` is imported: pynamodb reads
its Meta when a model class is defined."""

from __future__ import annotations

import os

TEST_ENV = {
    "AWS_DEFAULT_REGION": "eu-central-1",
    "AWS_REGION": "eu-central-1",
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SECURITY_TOKEN": "testing",
    "AWS_SESSION_TOKEN": "testing",
    "CLINICBOT_BOT_TOKEN": "123456789:TEST-dummy-token",
    "CLINICBOT_WEBHOOK_SECRET": "test-secret_0123456789",
    "CLINICBOT_STATE_TABLE": "clinicbot-state",
    "CLINICBOT_CLINIC_NAME": "Клиника Демо",
    "POWERTOOLS_SERVICE_NAME": "clinicbot",
    "POWERTOOLS_METRICS_NAMESPACE": "ClinicBot",
    "POWERTOOLS_TRACE_DISABLED": "true",
}
for _name in ("AWS_ENDPOINT_URL", "AWS_ENDPOINT_URL_DYNAMODB", "AWS_PROFILE", "TELEGRAM_BOT_TOKEN"):
    os.environ.pop(_name, None)
os.environ.update(TEST_ENV)

from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

import pytest  # noqa: E402

from tests.harness import (  # noqa: E402
    TABLE_NAMES,
    DdbCounter,
    WebhookHarness,
    aws_tables,
    demo_mis,
)


@pytest.fixture
def aws() -> Iterator[object]:
    """moto with every table of template.yaml, created from the template's own definitions."""
    with aws_tables() as client:
        yield client


@pytest.fixture(scope="session")
def botapi_server() -> Iterator[object]:
    from clinicbot.local.fake_botapi import FakeBotAPI

    api = FakeBotAPI(token=TEST_ENV["CLINICBOT_BOT_TOKEN"])
    api.start()
    yield api
    api.stop()


@pytest.fixture
def botapi(botapi_server: object) -> Iterator[object]:
    botapi_server.reset_faults()  # type: ignore[attr-defined]
    botapi_server.clear()  # type: ignore[attr-defined]
    yield botapi_server


@pytest.fixture
def mis() -> object:
    return demo_mis()


@pytest.fixture(scope="module")
def crm_server() -> Iterator[Any]:
    """A signed fake CRM on loopback (clinicbot.local.fake_crm), one per test module."""
    from clinicbot.local.fake_crm import FakeCrm

    with FakeCrm() as server:
        yield server


@pytest.fixture
def crm(crm_server: Any) -> Any:
    """The module's fake CRM, emptied for this test."""
    crm_server.reset()
    return crm_server


@pytest.fixture
def ddb() -> Iterator[DdbCounter]:
    with DdbCounter.installed() as counter:
        yield counter


@pytest.fixture
def webhook(aws: object, botapi: object, mis: object) -> Iterator[WebhookHarness]:
    harness = WebhookHarness.create(botapi=botapi, mis=mis)
    yield harness
    harness.close()


__all__ = ["TABLE_NAMES"]
