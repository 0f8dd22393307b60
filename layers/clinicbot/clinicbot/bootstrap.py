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
