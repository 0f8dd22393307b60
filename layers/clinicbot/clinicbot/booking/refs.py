"""Short, stable references to MIS ids for Telegram callback data (64 bytes at most, ``:``-separated).

A short id made of safe characters is used as is (the demo clinic's ``d-01@20261124T0600Z``); anything
longer or with other characters (a FHIR UUID, an id with ``:``) becomes ``~`` + 11 characters of a hash.
A reference is only ever *resolved against a list the bot fetched for this patient* (today's free slots,
the patient's own visits), so a forged or stale reference simply matches nothing.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import Callable, Iterable
from typing import TypeVar

__all__ = ["REF_PATTERN", "ref_of", "resolve"]

T = TypeVar("T")

_SAFE = re.compile(r"[A-Za-z0-9_.@-]{1,20}")
REF_PATTERN = r"^[A-Za-z0-9_.@~-]{1,24}$"
"""What a reference looks like (used to validate callback data)."""


def ref_of(identifier: str) -> str:
    if _SAFE.fullmatch(identifier):
        return identifier
    digest = hashlib.blake2b(identifier.encode(), digest_size=8).digest()
    return "~" + base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def resolve(ref: str, candidates: Iterable[T], key: Callable[[T], str]) -> T | None:
    """The candidate whose id has this reference, or None."""
    for candidate in candidates:
        if ref_of(key(candidate)) == ref:
            return candidate
    return None
