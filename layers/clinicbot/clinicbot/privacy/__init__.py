"""Personal data: the registry of stores (export and erasure) and the erasure workflow."""

from clinicbot.privacy.registry import (
    ErasureFailed,
    ErasureReport,
    NoPersonalData,
    PersonalDataStore,
    Registry,
)

__all__ = ["ErasureFailed", "ErasureReport", "NoPersonalData", "PersonalDataStore", "Registry"]
