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
    clinic_id: str = Field(default="demo", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    """The clinic in usage metering (clinicbot.metering): the ``clinic`` dimension and the rollup's key."""
    usage_metrics: Literal["off", "on"] = "off"
    """``on``: per-clinic usage as CloudWatch custom metrics (EMF), ~$0.30 per metric-month; ``off``: a log line."""
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

    # hand-off (clinicbot.handoff): CRM secrets, the staff group, when the staff answer
    handoff_table: str = "clinicbot-handoff"
    crm_url: SecretStr | None = None
    """The CRM webhook / Bitrix24 URL itself (local run, tests); in AWS ``crm_url_param`` names it in SSM."""
    crm_secret: SecretStr | None = None
    crm_secret_param: str = ""
    """SSM name of the Standard Webhooks secret shared with the CRM (``whsec_…``), both directions."""
    crm_timeout_seconds: float = Field(default=5.0, gt=0, le=20)
    staff_group_id: int | None = None
    """The staff supergroup (forum topics on) for ``crm_provider=telegram_group``; e.g. -1001234567890."""
    staff_hours: str = "Mo-Fr 09:00-20:00; Sa 10:00-16:00"
    """When the staff answer patients' messages (``clinicbot.handoff.hours`` syntax)."""
    staff_answer_minutes: int = Field(default=30, ge=1, le=24 * 60)
    clinic_timezone: str = "Europe/Moscow"

    @field_validator("staff_group_id", mode="before")
    @classmethod
    def _empty_group(cls, value: object) -> object:
        return None if value in ("", None) else value

    @field_validator("staff_hours")
    @classmethod
    def _check_staff_hours(cls, value: str) -> str:
        from clinicbot.handoff.hours import WorkingHours

        WorkingHours.parse(value)
        return value

    policy_url: str = "https://example.org/privacy-policy"
    policy_version: str = "1"
    default_language: Literal["ru", "en"] = "ru"
    dialogue_ttl_hours: int = Field(default=72, ge=1, le=24 * 90)

    ddb_connect_timeout_seconds: float = Field(default=1.0, gt=0, le=10)
    ddb_read_timeout_seconds: float = Field(default=2.0, gt=0, le=30)
    ddb_max_retries: int = Field(default=2, ge=0, le=5)

    # reminders (clinicbot.reminders)
    reminder_table: str = "clinicbot-reminder"
    reminder_lead_hours: str = "24,2"
    """Default lead times of visit reminders, whole hours, e.g. ``24,2``; a patient may choose others."""
    quiet_hours: str = "21:00-09:00"
    """No reminders in this window of the branch's local time; ``00:00-00:00`` turns it off."""
    reminders_reveal_service: bool = False
    """Name the service and specialty in reminders: only if the clinic opts in (medical secrecy)."""

    # engagement (clinicbot.engagement): feedback, NPS, broadcasts
    feedback_table: str = "clinicbot-feedback"
    nps_interval_months: int = Field(default=6, ge=1, le=36)
    """Ask a patient the NPS question at most once in this many months."""
    low_rating_max: int = Field(default=3, ge=1, le=5)
    """Ratings up to this one go to the staff as a hand-off (outbox kind ``low_rating``)."""

    @field_validator("reminder_lead_hours")
    @classmethod
    def _check_leads(cls, value: str) -> str:
        from clinicbot.reminders.config import parse_lead_hours

        parse_lead_hours(value)
        return value

    @field_validator("quiet_hours")
    @classmethod
    def _check_quiet(cls, value: str) -> str:
        from clinicbot.reminders.config import parse_quiet_hours

        parse_quiet_hours(value)
        return value

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

    def resolved_crm_url(self) -> str:
        if self.crm_url is None and not self.crm_url_param:
            raise ConfigError(
                f"CLINICBOT_CRM_PROVIDER={self.crm_provider} needs CLINICBOT_CRM_URL_PARAM (or CLINICBOT_CRM_URL)"
            )
        return self._secret(self.crm_url, self.crm_url_param or None)

    def resolved_crm_secret(self) -> str:
        if self.crm_secret is None and not self.crm_secret_param:
            raise ConfigError(
                "the CRM secret is not set: CLINICBOT_CRM_SECRET_PARAM (or CLINICBOT_CRM_SECRET)"
            )
        return self._secret(self.crm_secret, self.crm_secret_param or None)

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
