"""Configuration from the environment, validated once per cold start.

Secrets (bot token, webhook secret) come either straight from the environment (local run, tests) or,
in AWS, from SSM Parameter Store through powertools Parameters (cached). Parameters is imported lazily:
its import alone costs ~0.4 s of cold start and the local run never needs it.
"""

from __future__ import annotations

import re
from functools import cached_property
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

_SECRET_TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")


class ConfigError(RuntimeError):
    """The environment does not describe a runnable ClinicBot; the message says what to fix."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CLINICBOT_", extra="ignore", frozen=True)

    stage: str = "local"
    clinic_name: str = "Demo Clinic"
    state_table: str = "clinicbot-state"

    bot_token: SecretStr | None = None
    bot_token_param: str | None = None
    webhook_secret: SecretStr | None = None
    webhook_secret_param: str | None = None
    secrets_max_age_seconds: int = Field(default=300, ge=0)

    telegram_api_base: str = "https://api.telegram.org"
    telegram_timeout_seconds: float = Field(default=8.0, gt=0, le=60)

    mis_provider: Literal["demo", "fhir"] = "demo"
    mis_base_url: str = ""
    crm_provider: Literal["none", "webhook", "bitrix24", "telegram_group"] = "none"
    crm_url_param: str = ""

    policy_url: str = "https://example.org/privacy-policy"
    policy_version: str = "1"
    default_language: Literal["ru", "en"] = "ru"
    dialogue_ttl_hours: int = Field(default=72, ge=1, le=24 * 90)

    ddb_connect_timeout_seconds: float = Field(default=1.0, gt=0, le=10)
    ddb_read_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    ddb_max_retries: int = Field(default=2, ge=0, le=5)

    @field_validator("telegram_api_base", "mis_base_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @model_validator(mode="after")
    def _check(self) -> Settings:
        if not (self.bot_token or self.bot_token_param):
            raise ValueError("set CLINICBOT_BOT_TOKEN (local) or CLINICBOT_BOT_TOKEN_PARAM (SSM name)")
        if not (self.webhook_secret or self.webhook_secret_param):
            raise ValueError(
                "set CLINICBOT_WEBHOOK_SECRET (local) or CLINICBOT_WEBHOOK_SECRET_PARAM (SSM name)"
            )
        if self.mis_provider == "fhir" and not self.mis_base_url:
            raise ValueError("CLINICBOT_MIS_PROVIDER=fhir needs CLINICBOT_MIS_BASE_URL")
        return self

    @cached_property
    def dialogue_ttl_seconds(self) -> int:
        return self.dialogue_ttl_hours * 3600

    def resolved_bot_token(self) -> str:
        return self._secret(self.bot_token, self.bot_token_param)

    def resolved_webhook_secret(self) -> str:
        secret = self._secret(self.webhook_secret, self.webhook_secret_param)
        if not _SECRET_TOKEN_RE.match(secret):
            raise ConfigError("the webhook secret must be 1-256 characters of A-Z, a-z, 0-9, _ and -")
        return secret

    def _secret(self, direct: SecretStr | None, param: str | None) -> str:
        if direct is not None:
            return direct.get_secret_value()
        assert param is not None  # guaranteed by _check
        from aws_lambda_powertools.utilities import parameters  # lazy: ~0.4 s import

        value = parameters.get_parameter(param, decrypt=True, max_age=self.secrets_max_age_seconds)
        if not isinstance(value, str) or not value:
            raise ConfigError(f"SSM parameter {param} is empty")
        return value


def load_settings() -> Settings:
    """Read and validate the environment; raise ConfigError with every problem listed."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in exc.errors()
        )
        raise ConfigError(f"invalid ClinicBot configuration: {problems}") from exc
