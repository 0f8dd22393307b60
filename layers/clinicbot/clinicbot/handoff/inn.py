"""Russian taxpayer numbers (INN): format and checksum, in pure code.

A person's INN has 12 digits with two check digits; an organisation's has 10 digits with one. A tax
deduction certificate is issued to a person, so :func:`validate_personal_inn` accepts 12 digits only and
says so when it is given an organisation's number. Error messages never repeat the number.
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["InnError", "InnProblem", "inn_checksum_ok", "validate_personal_inn"]

_W10 = (2, 4, 10, 3, 5, 9, 4, 6, 8)
_W11 = (7, 2, 4, 10, 3, 5, 9, 4, 6, 8)
_W12 = (3, 7, 2, 4, 10, 3, 5, 9, 4, 6, 8)


class InnProblem(StrEnum):
    FORMAT = "format"  # not 10 or 12 digits
    ORGANISATION = "organisation"  # a valid 10-digit number: an organisation's, not a person's
    CHECKSUM = "checksum"  # 12 digits, but a check digit does not match (a typo)


class InnError(ValueError):
    def __init__(self, problem: InnProblem) -> None:
        super().__init__(f"not a personal INN: {problem.value}")
        self.problem = problem


def _check(digits: list[int], weights: tuple[int, ...]) -> int:
    return sum(d * w for d, w in zip(digits, weights, strict=False)) % 11 % 10


def inn_checksum_ok(inn: str) -> bool:
    """True for a 10- or 12-digit INN whose check digits match (region code ``00`` never exists)."""
    if not inn.isascii() or not inn.isdigit() or len(inn) not in (10, 12) or inn.startswith("00"):
        return False
    d = [int(c) for c in inn]
    if len(inn) == 10:
        return _check(d, _W10) == d[9]
    return _check(d, _W11) == d[10] and _check(d, _W12) == d[11]


def validate_personal_inn(raw: str) -> str:
    """The 12 digits of a person's INN (spaces and dashes people type are dropped), or :class:`InnError`."""
    inn = "".join(ch for ch in raw.strip() if ch not in " -")
    if not inn.isascii() or not inn.isdigit() or len(inn) not in (10, 12):
        raise InnError(InnProblem.FORMAT)
    if len(inn) == 10:
        raise InnError(InnProblem.ORGANISATION if inn_checksum_ok(inn) else InnProblem.FORMAT)
    if not inn_checksum_ok(inn):
        raise InnError(InnProblem.CHECKSUM)
    return inn
