"""The personal-data registry: one place that knows every store of personal data.

Each store (a table, or a part of one) registers an exporter and an eraser::

    export(telegram_user_id, patient_id) -> dict      # what it holds about the patient, as plain JSON
    erase(telegram_user_id, patient_id) -> int        # delete it all; the number of items deleted

and says which tables of ``template.yaml`` it covers (their logical ids). ``/mydata`` is the union of the
exports, ``/forget`` (and a withdrawn consent) runs every eraser. A table that no registered store covers
is a bug: :meth:`Registry.uncovered` names it, and the erasure test fails on it, so a table added to the
template later cannot silently keep a patient's data after an erasure. A table with nothing personal in it
is registered too, with :class:`NoPersonalData` and a reason, so that the claim is written down.

A store may also tell the keys it files a patient under (``derived_keys``: ``USER#<id>``, a referral code,
a hash...), so that tests and audits can search every table for them.

No I/O here: the stores live in ``clinicbot.privacy.stores``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol, runtime_checkable

__all__ = [
    "ErasureFailed",
    "ErasureReport",
    "NoPersonalData",
    "PersonalDataStore",
    "Registry",
]

log = logging.getLogger(__name__)

EXPORT_FORMAT = "clinicbot-personal-data/1"


@runtime_checkable
class PersonalDataStore(Protocol):
    @property
    def name(self) -> str:
        """Short and stable: the section of the export ("state", "feedback", ...)."""
        ...

    @property
    def tables(self) -> tuple[str, ...]:
        """Logical ids of the template's tables this store covers (``"StateTable"``)."""
        ...

    def export(self, telegram_user_id: int, patient_id: str | None) -> dict[str, Any]: ...

    def erase(self, telegram_user_id: int, patient_id: str | None) -> int: ...


@dataclass(frozen=True)
class NoPersonalData:
    """A table that holds nothing about patients (reference data, caches), said out loud."""

    name: str
    tables: tuple[str, ...]
    reason: str

    def export(self, telegram_user_id: int, patient_id: str | None) -> dict[str, Any]:
        return {}

    def erase(self, telegram_user_id: int, patient_id: str | None) -> int:
        return 0


@dataclass
class ErasureReport:
    erased: dict[str, int] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed

    @property
    def total(self) -> int:
        return sum(self.erased.values())


class ErasureFailed(RuntimeError):
    """Some eraser failed; the others ran. Erasing again is safe (every eraser is idempotent)."""

    def __init__(self, report: ErasureReport) -> None:
        super().__init__(f"erasure incomplete: {sorted(report.failed)}")
        self.report = report


class Registry:
    def __init__(self, stores: Iterable[PersonalDataStore] = ()) -> None:
        self._stores: dict[str, PersonalDataStore] = {}
        for store in stores:
            self.register(store)

    def register(self, store: PersonalDataStore) -> PersonalDataStore:
        if store.name in self._stores:
            raise ValueError(f"a store named {store.name!r} is registered already")
        if not store.tables:
            raise ValueError(f"store {store.name!r} covers no table")
        self._stores[store.name] = store
        return store

    @property
    def stores(self) -> list[PersonalDataStore]:
        return list(self._stores.values())

    def covered_tables(self) -> set[str]:
        return {table for store in self._stores.values() for table in store.tables}

    def uncovered(self, table_ids: Iterable[str]) -> set[str]:
        """The tables (logical ids) no registered store covers: each one a gap in the erasure."""
        return set(table_ids) - self.covered_tables()

    def derived_keys(self, telegram_user_id: int, patient_id: str | None) -> set[str]:
        """Every key the stores file this patient under (for tests and audits)."""
        keys = {str(telegram_user_id)}
        if patient_id:
            keys.add(patient_id)
        for store in self._stores.values():
            derive = getattr(store, "derived_keys", None)
            if callable(derive):
                keys |= {k for k in derive(telegram_user_id, patient_id) if k}
        return keys

    def export(self, telegram_user_id: int, patient_id: str | None) -> dict[str, Any]:
        """Everything the stores hold about the patient, one section per store (plain JSON values)."""
        sections: dict[str, Any] = {}
        for store in self._stores.values():
            data = store.export(telegram_user_id, patient_id)
            if data:
                sections[store.name] = data
        return {
            "format": EXPORT_FORMAT,
            "generated_at": datetime.now(UTC).isoformat(),
            "telegram_user_id": telegram_user_id,
            "patient_id": patient_id,
            "stores": sections,
        }

    def erase(self, telegram_user_id: int, patient_id: str | None) -> ErasureReport:
        """Run every eraser, even after one fails; raise :class:`ErasureFailed` at the end if any did."""
        report = ErasureReport()
        for store in self._stores.values():
            try:
                report.erased[store.name] = store.erase(telegram_user_id, patient_id)
            except Exception as exc:  # the others must still run
                log.exception("an eraser failed", extra={"store": store.name})
                report.failed[store.name] = type(exc).__name__
        log.info(
            "patient erased",
            extra={"stores": report.erased, "failed": sorted(report.failed), "items": report.total},
        )
        if report.failed:
            raise ErasureFailed(report)
        return report
