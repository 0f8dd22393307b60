"""The personal-data registry: coverage of tables, export sections, erasure that runs every eraser."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest

from clinicbot.privacy.registry import ErasureFailed, NoPersonalData, Registry
from clinicbot.privacy.stores import plain


@dataclass
class FakeStore:
    name: str
    tables: tuple[str, ...]
    data: dict[int, list[str]] = field(default_factory=dict)
    fail: bool = False

    def export(self, telegram_user_id: int, patient_id: str | None) -> dict[str, Any]:
        items = self.data.get(telegram_user_id)
        return {"items": items} if items else {}

    def erase(self, telegram_user_id: int, patient_id: str | None) -> int:
        if self.fail:
            raise RuntimeError("boom")
        return len(self.data.pop(telegram_user_id, []))

    def derived_keys(self, telegram_user_id: int, patient_id: str | None) -> set[str]:
        return {f"{self.name.upper()}#{telegram_user_id}"}


def test_coverage_and_duplicate_names() -> None:
    registry = Registry([FakeStore("a", ("ATable",)), NoPersonalData("cache", ("CacheTable",), "slots only")])
    assert registry.uncovered({"ATable", "CacheTable", "NewTable"}) == {"NewTable"}
    with pytest.raises(ValueError):
        registry.register(FakeStore("a", ("Other",)))
    with pytest.raises(ValueError):
        registry.register(FakeStore("b", ()))


def test_export_has_a_section_per_store_that_holds_something() -> None:
    registry = Registry([FakeStore("a", ("A",), {1: ["x"]}), FakeStore("b", ("B",), {2: ["y"]})])
    export = registry.export(1, "p-1")
    assert export["stores"] == {"a": {"items": ["x"]}} and export["patient_id"] == "p-1"
    assert registry.derived_keys(1, "p-1") == {"1", "p-1", "A#1", "B#1"}


def test_erasure_runs_every_eraser_even_after_a_failure() -> None:
    broken = FakeStore("a", ("A",), {1: ["x"]}, fail=True)
    fine = FakeStore("b", ("B",), {1: ["y", "z"]})
    registry = Registry([broken, fine])
    with pytest.raises(ErasureFailed) as caught:
        registry.erase(1, None)
    assert caught.value.report.erased == {"b": 2} and caught.value.report.failed == {"a": "RuntimeError"}
    broken.fail = False
    report = registry.erase(1, None)  # again: idempotent
    assert report.ok and report.erased == {"a": 1, "b": 0} and report.total == 1


def test_plain_unwraps_dynamodb_values() -> None:
    item = {
        "pk": {"S": "USER#1"},
        "n": {"N": "3"},
        "f": {"N": "2.5"},
        "b": {"BOOL": True},
        "z": {"NULL": True},
        "l": {"L": [{"S": "a"}, {"N": "1"}]},
        "m": {"M": {"k": {"SS": ["y", "x"]}}},
    }
    assert plain(item) == {
        "pk": "USER#1",
        "n": 3,
        "f": 2.5,
        "b": True,
        "z": None,
        "l": ["a", 1],
        "m": {"k": ["x", "y"]},
    }
