"""The FAQ search: the clinic's questions found from free text in Russian and English."""

from __future__ import annotations

import json

import pytest

from clinicbot.engagement.faq import Faq, _parse, load_faq, words_of


@pytest.mark.parametrize(
    ("text", "language", "expected"),
    [
        ("how do I prepare for a blood test", "en", "blood-test"),
        ("Blood test tomorrow — can I eat before?", "en", "blood-test"),
        ("where can I park", "en", "parking"),
        ("Is there parking for my car?", "en", "parking"),
        ("Как подготовиться к анализу крови?", "ru", "blood-test"),
        ("сдаю кровь натощак?", "ru", "blood-test"),
        ("где можно припарковаться", "ru", "parking"),
        ("Есть ли у вас парковка?", "ru", "parking"),
        ("какие документы взять с собой", "ru", "documents"),
        ("можно оплатить картой?", "ru", "payment"),
        ("нужна справка для налогового вычета", "ru", "tax-deduction"),
        ("принимаете детей?", "ru", "children"),
        ("I am running late", "en", "late"),
        ("где парковка", "en", "parking"),  # a Russian question from an English-speaking patient
    ],
)
def test_questions_are_found(text: str, language: str, expected: str) -> None:
    entry = load_faq().search(text, language)
    assert entry is not None and entry.id == expected


@pytest.mark.parametrize("text", ["hello", "привет", "спасибо!", "test", "анализ", "", "   ", "???"])
def test_chit_chat_and_single_vague_words_find_nothing(text: str) -> None:
    assert load_faq().search(text, "ru") is None


def test_words_are_lowercased_and_yo_is_e() -> None:
    assert words_of("Ещё РЕБЁНОК, 5 лет!") == ["еще", "ребенок", "5", "лет"]


def test_every_entry_has_both_languages() -> None:
    for entry in load_faq().entries:
        for field in (entry.question, entry.answer):
            assert field.get("ru", "").strip() and field.get("en", "").strip(), entry.id
        assert entry.keywords.get("ru") and entry.keywords.get("en"), entry.id
        assert entry.text(entry.answer, "en") == entry.answer["en"]


def test_duplicate_ids_are_refused() -> None:
    entry = {"id": "x", "question": {"ru": "?"}, "answer": {"ru": "!"}, "keywords": {"ru": ["x"]}}
    with pytest.raises(ValueError):
        _parse({"entries": [entry, entry]})


def test_a_clinic_may_bring_its_own_faq(tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "faq.json"
    path.write_text(
        json.dumps(
            {
                "entries": [
                    {
                        "id": "wifi",
                        "question": {"ru": "Есть ли Wi-Fi?", "en": "Is there Wi-Fi?"},
                        "answer": {"ru": "Да, сеть Clinic.", "en": "Yes, network Clinic."},
                        "keywords": {"ru": ["wifi", "вайфа"], "en": ["wifi", "wi fi", "internet"]},
                    }
                ]
            }
        ),
        encoding="utf-8",
    )
    faq: Faq = load_faq(str(path))
    entry = faq.search("есть вайфай?", "ru")
    assert entry is not None and entry.text(entry.answer, "en") == "Yes, network Clinic."
