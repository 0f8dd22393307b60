"""Memo texts per service from the clinic's configuration (``clinicbot/data/memos.json``), ru / en."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import cache
from importlib import resources
from typing import Any, Literal

__all__ = ["Memos", "load_memos"]

Which = Literal["before", "after"]


@dataclass(frozen=True)
class Memos:
    default: dict[str, dict[str, str] | None] = field(default_factory=dict)
    services: dict[str, dict[str, dict[str, str] | None]] = field(default_factory=dict)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Memos:
        return cls(default=dict(data.get("default") or {}), services=dict(data.get("services") or {}))

    def _texts(self, which: Which, service_id: str | None) -> dict[str, str] | None:
        own = self.services.get(service_id or "")
        if own is not None and which in own:
            return own[which]
        return self.default.get(which)

    def has(self, which: Which, service_id: str | None) -> bool:
        return bool(self._texts(which, service_id))

    def text(self, which: Which, service_id: str | None, language: str) -> str | None:
        texts = self._texts(which, service_id)
        if not texts:
            return None
        return texts.get(language) or texts.get("ru") or next(iter(texts.values()), None)


@cache
def load_memos() -> Memos:
    text = resources.files("clinicbot.data").joinpath("memos.json").read_text(encoding="utf-8")
    return Memos.from_json(json.loads(text))
