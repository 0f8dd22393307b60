"""The one place that chooses adapters (MIS, CRM) from configuration."""

from __future__ import annotations

from typing import TYPE_CHECKING

from clinicbot.config import ConfigError, Settings

if TYPE_CHECKING:
    from clinicbot.mis.port import MisPort


def build_mis(settings: Settings) -> MisPort:
    if settings.mis_provider == "demo":
        from clinicbot.adapters.mis_demo import DemoClinic

        return DemoClinic.shared()
    raise ConfigError(f"MIS provider {settings.mis_provider!r} is not available in this build")
