"""Patient-facing texts in Russian (the default) and English.

Catalogs are JSON files beside this module (``ru.json``, ``en.json``), one flat key space; placeholders
use ``str.format`` syntax. A test checks both catalogs have the same keys and the same placeholders.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any, Literal

Language = Literal["ru", "en"]
LANGUAGES: tuple[Language, ...] = ("ru", "en")
DEFAULT_LANGUAGE: Language = "ru"
_RUSSIAN_SPEAKING = {"ru", "uk", "be", "kk", "ky", "uz", "tg", "hy", "az", "ka", "tk", "mo"}


@cache
def catalog(language: str) -> dict[str, str]:
    text = resources.files(__package__).joinpath(f"{language}.json").read_text(encoding="utf-8")
    data: dict[str, str] = json.loads(text)
    return data


def pick_language(
    stored: str | None, telegram_code: str | None, default: Language = DEFAULT_LANGUAGE
) -> Language:
    """The patient's choice if made; else from Telegram's ``language_code``; else the clinic default."""
    if stored in LANGUAGES:
        return stored
    if not telegram_code:
        return default
    base = telegram_code.split("-")[0].lower()
    if base == "en":
        return "en"
    if base in _RUSSIAN_SPEAKING:
        return "ru"
    return "en"  # a foreign patient reads English more likely than Russian


class Translator:
    """``t("menu.title")`` in one language, falling back to Russian for a key missing in English."""

    def __init__(self, language: str) -> None:
        self.language: Language = language if language in LANGUAGES else DEFAULT_LANGUAGE

    def __call__(self, key: str, /, **params: Any) -> str:
        text = catalog(self.language).get(key)
        if text is None:
            text = catalog(DEFAULT_LANGUAGE)[key]  # KeyError for unknown keys: a bug, caught by tests
        return text.format(**params) if params else text


def all_languages(key: str, **params: Any) -> dict[Language, str]:
    return {language: Translator(language)(key, **params) for language in LANGUAGES}
