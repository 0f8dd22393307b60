from __future__ import annotations

import string

import pytest

from clinicbot.i18n import LANGUAGES, Translator, catalog, pick_language


def placeholders(text: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(text) if name}


def test_catalogs_have_the_same_keys_and_placeholders() -> None:
    ru, en = catalog("ru"), catalog("en")
    assert set(ru) == set(en), set(ru) ^ set(en)
    for key in ru:
        assert placeholders(ru[key]) == placeholders(en[key]), key
        assert ru[key].strip() and en[key].strip(), key


@pytest.mark.parametrize(
    ("stored", "code", "expected"),
    [
        ("en", "ru", "en"),
        (None, "ru", "ru"),
        (None, "uk", "ru"),
        (None, "en-US", "en"),
        (None, "de", "en"),
        (None, None, "ru"),
        ("xx", None, "ru"),
    ],
)
def test_language_choice(stored: str | None, code: str | None, expected: str) -> None:
    assert pick_language(stored, code) == expected


def test_translator_formats_and_unknown_language_falls_back_to_russian() -> None:
    assert "Клиника" in Translator("ru")("help.text", clinic="Клиника")
    assert Translator("fr").language == "ru"
    with pytest.raises(KeyError):
        Translator("en")("no.such.key")
    assert set(LANGUAGES) == {"ru", "en"}
