"""Phone numbers: one canonical form for lookups, a readable one for people.

The canonical form is the international number as bare digits with the country code and no
``+``: ``"79161234567"``, ``"442079460958"`` (what Telegram's shared contact usually carries).
Russian conventions win where a number is ambiguous: a national ``8`` trunk prefix with 11 digits
becomes ``7``, and ten digits without a prefix are a Russian number without its ``+7``.
"""

from __future__ import annotations

import re

__all__ = ["format_phone", "mask_phone", "normalize_phone"]

# E.164 allows up to 15 digits; shorter than 10 is not a subscriber number we can book with.
_MIN_DIGITS = 10
_MAX_DIGITS = 15
_ALLOWED = re.compile(r"^\+?[\d\s().\-]+$")


def normalize_phone(raw: str) -> str:
    """Return the phone number as digits with the country code, e.g. ``"79161234567"``.

    Accepts the usual ways people write numbers: ``"+7 (916) 123-45-67"``, ``"89161234567"``,
    ``"8 916 123 45 67"``, ``"9161234567"``, ``"+44 20 7946 0958"``, ``"0044 20 7946 0958"``.
    Raises ``ValueError`` for anything else (letters, extensions, a misplaced ``+``, too few or too
    many digits). The error message never repeats the number.
    """
    text = raw.strip()
    if not text or not _ALLOWED.match(text):
        raise ValueError("not a phone number: only digits, spaces, '+', '-', '.' and brackets are allowed")
    international = text.startswith("+")
    if international:
        text = re.sub(r"\(\s*0\s*\)", "", text)  # "+44 (0) 20 …": the trunk 0 is not dialled from abroad
    digits = re.sub(r"\D", "", text)
    if not international and digits.startswith("00"):
        international, digits = True, digits[2:]
    if not international:
        if len(digits) == 11 and digits[0] == "8":
            digits = "7" + digits[1:]
        elif len(digits) == 10:
            digits = "7" + digits
    if not _MIN_DIGITS <= len(digits) <= _MAX_DIGITS:
        raise ValueError(f"not a phone number: {len(digits)} digits")
    if digits[0] == "0":
        raise ValueError("not a phone number: country codes never start with 0")
    if digits[0] == "7" and len(digits) != 11:
        raise ValueError("not a phone number: numbers with country code 7 have 11 digits")
    return digits


def format_phone(phone: str) -> str:
    """Readable form: ``"+7 916 123-45-67"`` for +7 numbers, ``"+442079460958"`` otherwise."""
    digits = normalize_phone(phone)
    if digits[0] == "7":
        return f"+7 {digits[1:4]} {digits[4:7]}-{digits[7:9]}-{digits[9:11]}"
    return "+" + digits


def mask_phone(phone: str) -> str:
    """Show only the last two digits, e.g. ``"+7 *** ***-**-67"``: enough for a patient to recognise it."""
    digits = normalize_phone(phone)
    if digits[0] == "7":
        return f"+7 *** ***-**-{digits[-2:]}"
    return "+" + "*" * (len(digits) - 2) + digits[-2:]
