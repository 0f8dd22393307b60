from __future__ import annotations

import pytest

from clinicbot.config import ConfigError, Settings, load_settings


def test_missing_secrets_give_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CLINICBOT_BOT_TOKEN")
    monkeypatch.delenv("CLINICBOT_WEBHOOK_SECRET")
    with pytest.raises(ConfigError, match="CLINICBOT_BOT_TOKEN"):
        load_settings()


def test_bad_values_are_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICBOT_MIS_PROVIDER", "paper")
    monkeypatch.setenv("CLINICBOT_DIALOGUE_TTL_HOURS", "0")
    with pytest.raises(ConfigError) as error:
        load_settings()
    assert "mis_provider" in str(error.value) and "dialogue_ttl_hours" in str(error.value)


def test_fhir_needs_a_base_url(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICBOT_MIS_PROVIDER", "fhir")
    with pytest.raises(ConfigError, match="MIS_BASE_URL"):
        load_settings()


def test_webhook_secret_charset_is_checked() -> None:
    settings = Settings(webhook_secret="has spaces!")  # type: ignore[call-arg]
    with pytest.raises(ConfigError, match="A-Z"):
        settings.resolved_webhook_secret()


def test_secrets_come_from_ssm_when_given_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    import boto3
    from moto import mock_aws

    monkeypatch.delenv("CLINICBOT_BOT_TOKEN")
    monkeypatch.delenv("CLINICBOT_WEBHOOK_SECRET")
    monkeypatch.setenv("CLINICBOT_BOT_TOKEN_PARAM", "/clinicbot/test/bot-token")
    monkeypatch.setenv("CLINICBOT_WEBHOOK_SECRET_PARAM", "/clinicbot/test/webhook-secret")
    with mock_aws():
        ssm = boto3.client("ssm", region_name="eu-central-1")
        ssm.put_parameter(Name="/clinicbot/test/bot-token", Value="42:FROM-SSM", Type="SecureString")
        ssm.put_parameter(Name="/clinicbot/test/webhook-secret", Value="ssm_secret-1", Type="SecureString")
        settings = load_settings()
        assert settings.resolved_bot_token() == "42:FROM-SSM"
        assert settings.resolved_webhook_secret() == "ssm_secret-1"
    assert "FROM-SSM" not in repr(settings)


def test_telegram_base_url_is_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CLINICBOT_TELEGRAM_API_BASE", "http://127.0.0.1:8081/")
    assert load_settings().telegram_api_base == "http://127.0.0.1:8081"
