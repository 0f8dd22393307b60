"""The one place that chooses adapters (MIS, CRM) from configuration."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from clinicbot.config import ConfigError, Settings

if TYPE_CHECKING:
    from clinicbot.mis.port import MisPort


class LazyAdapter:
    """Builds the adapter on first use: an update that never touches the MIS (most of them) does not pay
    for building it at cold start (the demo clinic generates a month of schedule)."""

    def __init__(self, factory: Callable[[], Any]) -> None:
        self._factory = factory
        self._target: Any = None

    def __getattr__(self, name: str) -> Any:
        if self._target is None:
            self._target = self._factory()
        return getattr(self._target, name)


def build_mis(settings: Settings) -> MisPort:
    if settings.mis_provider == "demo":

        def demo() -> Any:
            from clinicbot.adapters.mis_demo import DemoClinic

            return DemoClinic.shared()

        return cast("MisPort", LazyAdapter(demo))
    if settings.mis_provider == "fhir":

        def fhir() -> Any:
            from clinicbot.adapters.mis_fhir import FhirMis

            return FhirMis(settings.mis_base_url)

        return cast("MisPort", LazyAdapter(fhir))
    raise ConfigError(f"MIS provider {settings.mis_provider!r} is not available in this build")


def build_crm(settings: Settings, *, store: Any, bot: Any) -> Any:
    """The CRM adapter of ``CLINICBOT_CRM_PROVIDER`` (``clinicbot.handoff.port.CrmPort``), for the hand-off
    function. ``store`` is the HandoffTable, ``bot`` a ``clinicbot.handoff.bot_api.HandoffBotApi``."""
    provider = settings.crm_provider
    if provider == "none":
        from clinicbot.handoff.port import NoCrm

        return NoCrm()
    if provider == "webhook":
        from clinicbot.handoff.crm_webhook import WebhookCrm

        return WebhookCrm(
            settings.resolved_crm_url(),
            settings.resolved_crm_secret(),
            store,
            timeout=settings.crm_timeout_seconds,
        )
    if provider == "bitrix24":
        from clinicbot.handoff.crm_bitrix import BitrixCrm

        return BitrixCrm(
            settings.resolved_crm_url(),
            store,
            language=settings.default_language,
            timezone=settings.clinic_timezone,
            timeout=settings.crm_timeout_seconds,
        )
    if provider == "telegram_group":
        from clinicbot.handoff.crm_telegram_group import TelegramGroupCrm

        if settings.staff_group_id is None:
            raise ConfigError("CLINICBOT_CRM_PROVIDER=telegram_group needs CLINICBOT_STAFF_GROUP_ID")
        return TelegramGroupCrm(
            bot,
            settings.staff_group_id,
            store,
            language=settings.default_language,
            timezone=settings.clinic_timezone,
        )
    raise ConfigError(f"CRM provider {provider!r} is not available in this build")
