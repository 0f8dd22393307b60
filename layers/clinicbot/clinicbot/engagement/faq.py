"""The clinic's FAQ (``clinicbot/data/faq.json``, Russian and English) and a keyword search over free text.

The search is deliberately simple and predictable: the message is lower-cased (``ё`` -> ``е``) and split
into words; a keyword stem matches a word that starts with it (or, for stems of five letters or more, has
it inside: "припарковаться" has "парков"); a phrase ("empty stomach") matches when each of its words does
and weighs its number of words. An entry's score is the sum over its matched keywords, in the patient's
language and the other one (people mix them); the best entry scoring at least its ``min_score`` wins.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

__all__ = ["Faq", "FaqEntry", "load_faq"]

_WORD = re.compile(r"[0-9a-zа-я]+")


def words_of(text: str) -> list[str]:
    return _WORD.findall(text.lower().replace("ё", "е"))


def _stem_matches(stem: str, word: str) -> bool:
    return word.startswith(stem) or (len(stem) >= 5 and stem in word)


@dataclass(frozen=True)
class FaqEntry:
    id: str
    question: dict[str, str]
    answer: dict[str, str]
    keywords: dict[str, tuple[tuple[str, ...], ...]]
    """Per language: keywords, each a tuple of word stems (a phrase has several)."""
    min_score: int = 1

    def text(self, field: dict[str, str], language: str) -> str:
        return field.get(language) or field.get("ru") or next(iter(field.values()))

    def score(self, words: list[str], language: str) -> int:
        languages = [language, *(other for other in self.keywords if other != language)]
        matched: set[tuple[str, ...]] = set()
        total = 0
        for lang in languages:
            for phrase in self.keywords.get(lang, ()):
                if phrase in matched:
                    continue
                if all(any(_stem_matches(stem, word) for word in words) for stem in phrase):
                    matched.add(phrase)
                    total += len(phrase)
        return total


@dataclass(frozen=True)
class Faq:
    entries: tuple[FaqEntry, ...]

    def get(self, entry_id: str) -> FaqEntry | None:
        return next((e for e in self.entries if e.id == entry_id), None)

    def search(self, text: str, language: str = "ru") -> FaqEntry | None:
        """The entry that answers the message best, or None."""
        words = words_of(text)
        if not words:
            return None
        best: tuple[int, int, FaqEntry] | None = None
        for position, entry in enumerate(self.entries):
            score = entry.score(words, language)
            if score >= entry.min_score and (best is None or score > best[0]):
                best = (score, -position, entry)
        return best[2] if best else None


def _parse(data: dict[str, Any]) -> Faq:
    entries = []
    for raw in data["entries"]:
        keywords = {
            lang: tuple(tuple(words_of(phrase)) for phrase in phrases if words_of(phrase))
            for lang, phrases in raw.get("keywords", {}).items()
        }
        entries.append(
            FaqEntry(
                id=str(raw["id"]),
                question=dict(raw["question"]),
                answer=dict(raw["answer"]),
                keywords=keywords,
                min_score=int(raw.get("min_score", 1)),
            )
        )
    ids = [e.id for e in entries]
    if len(ids) != len(set(ids)):
        raise ValueError("FAQ entry ids must be unique")
    return Faq(tuple(entries))


@cache
def load_faq(path: str | None = None) -> Faq:
    """The FAQ of the clinic's configuration (``clinicbot/data/faq.json`` unless ``path`` is given)."""
    if path is not None:
        text = Path(path).read_text(encoding="utf-8")
    else:
        text = resources.files("clinicbot.data").joinpath("faq.json").read_text(encoding="utf-8")
    return _parse(json.loads(text))
