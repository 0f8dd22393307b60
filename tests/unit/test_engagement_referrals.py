"""Referral codes: random, opaque, within Telegram's deep-link limits; other /start payloads are not codes."""

from __future__ import annotations

import re

import pytest

from clinicbot.engagement.referrals import CODE_PATTERN, deep_link, new_code, parse_code


def test_codes_are_random_opaque_and_fit_a_deep_link() -> None:
    codes = {new_code() for _ in range(500)}
    assert len(codes) == 500
    for code in codes:
        assert re.fullmatch(r"[A-Za-z0-9_-]{1,64}", code) and re.fullmatch(CODE_PATTERN, code)
        assert parse_code(code) == code
    assert deep_link("clinic_bot", "rABC") == "https://t.me/clinic_bot?start=rABC"


@pytest.mark.parametrize(
    "payload", [None, "", "book_d-01", "r123", "r" + "A" * 17, "x" + "A" * 16, "r" + "A" * 15 + "!"]
)
def test_other_payloads_are_not_codes(payload: str | None) -> None:
    assert parse_code(payload) is None
