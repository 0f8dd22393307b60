"""The day index: what the schedule cache holds, per doctor, in one small item -- so an unchanged sync run
diffs against it instead of reading every cached doctor-day (one Query of the ``SYNC`` partition instead
of one Query of ~30 items per doctor).

Pure: no boto3 or pynamodb here (``cache_dynamo`` stores a ``DoctorIndex`` as one item).

**Fingerprints.** A day's slots, ordered by (start, id), are fingerprinted by a chain hash from the last
slot back: ``f[i] = H(f[i+1] + slot i)``. ``f[0]`` covers the whole day, and ``f[i]`` exactly the slots
from the i-th on -- what is left of the cached day once the moving "now" (``clinicbot.schedule.sync``) has
passed its first i slots. The MIS side fingerprints its future slots of that day the same way, so "is the
future part of the cached day unchanged?" is one comparison, with no slot of the cached day at hand.

**Cuts.** The suffix fingerprints of a day (with each suffix's start) are kept only for days that start
within ``CUT_HORIZON`` of when the index was written: the only ones the cut-off can reach before the next
rewrite. A day the cut-off reached without its cuts is read from the cache again (``needs_read``).

**Encoding** (one string, ~12 characters a day; a day with cuts adds ~10 per slot)::

    <day offset from base>~<fp>                                       a day kept without cuts
    <day offset>~<fp>~<t0 base36>~<last start - t0>~<o1>.<f1>,<o2>.<f2>...   with cuts (offsets base36)

separated by spaces; ``fp`` is 8 characters of URL-safe base64 (48 bits).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone

__all__ = [
    "CUT_HORIZON",
    "INDEX_VERSION",
    "DoctorIndex",
    "IndexEntry",
    "Row",
    "chain",
    "earliest_start",
]

INDEX_VERSION = 1
"""Bump when the encoding or the fingerprint changes: an index of another version is not trusted."""
CUT_HORIZON = timedelta(hours=36)
"""Cuts are kept for days whose first slot starts within this of the index's writing."""

Row = tuple[str, int, int, str | None, str]
"""A slot as the fingerprint sees it: (id, start, end (Unix seconds), service id, branch id)."""

_EARLIEST_ZONE = timezone(timedelta(hours=14))


def earliest_start(day: date) -> float:
    """No slot of this branch-local date starts before this instant (midnight at UTC+14), Unix seconds."""
    return datetime.combine(day, time.min, _EARLIEST_ZONE).timestamp()


def chain(rows: Sequence[Row], *, suffixes: bool = True) -> list[str]:
    """Suffix fingerprints of rows ordered by (start, id): ``out[i]`` covers ``rows[i:]``. Without
    ``suffixes``, only ``out[0]`` (the whole day) is given."""
    out: list[str] = []
    h = b""
    blake = hashlib.blake2b
    encode = base64.urlsafe_b64encode
    for slot_id, start, end, service, branch in reversed(rows):
        h = blake(
            b"%s\x1f%s\x1f%d\x1f%d\x1f%s\x1f%s"
            % (
                h,
                slot_id.encode(),
                start,
                end,
                b"\x00" if service is None else service.encode(),
                branch.encode(),
            ),
            digest_size=6,
        ).digest()
        if suffixes:
            out.append(encode(h).decode())
    if not suffixes:
        return [encode(h).decode()] if rows else []
    out.reverse()
    return out


def _b36(n: int) -> str:
    if n < 0:
        raise ValueError("negative")
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while True:
        n, r = divmod(n, 36)
        out = digits[r] + out
        if n == 0:
            return out


@dataclass(frozen=True)
class IndexEntry:
    """One cached doctor-day as the index knows it."""

    day: date
    fp: str
    """Fingerprint of every slot of the cached day item."""
    first_start: int | None = None
    """With cuts only: the first slot's start (Unix seconds)."""
    cuts: tuple[tuple[int, str], ...] | None = None
    """(start, fingerprint of the slots from this one on) for every slot but the first; None: not kept."""
    last_start: int | None = None

    @classmethod
    def of(cls, day: date, rows: Sequence[Row], fps: Sequence[str], *, with_cuts: bool) -> IndexEntry:
        if not with_cuts:
            return cls(day, fps[0])
        return cls(
            day,
            fps[0],
            first_start=rows[0][1],
            cuts=tuple((rows[i][1], fps[i]) for i in range(1, len(rows))),
            last_start=rows[-1][1],
        )

    def effective(self, cutoff: float) -> tuple[bool, str | None]:
        """(known, fingerprint of the slots after ``cutoff``; None when none is left). ``known`` is False
        when the cut-off falls inside the day and its cuts were not kept: read the day item."""
        if self.first_start is None:
            if cutoff < earliest_start(self.day):
                return True, self.fp
            return False, None
        if self.first_start > cutoff:
            return True, self.fp
        assert self.cuts is not None and self.last_start is not None
        if self.last_start <= cutoff:
            return True, None
        for start, fp in self.cuts:
            if start > cutoff:
                return True, fp
        return True, None  # unreachable: last_start > cutoff

    def encode(self, base: date) -> str:
        head = f"{_b36((self.day - base).days)}~{self.fp}"
        if self.first_start is None or self.cuts is None or self.last_start is None:
            return head
        t0 = self.first_start
        cuts = ",".join(f"{_b36(s - t0)}.{f}" for s, f in self.cuts)
        return f"{head}~{_b36(t0)}~{_b36(self.last_start - t0)}~{cuts}"

    @classmethod
    def decode(cls, text: str, base: date) -> IndexEntry:
        parts = text.split("~")
        day = base + timedelta(days=int(parts[0], 36))
        if len(parts) == 2:
            return cls(day, parts[1])
        _, fp, t0_text, last_text, cuts_text = parts
        t0 = int(t0_text, 36)
        cuts = tuple((t0 + int(o, 36), f) for o, f in (c.split(".", 1) for c in cuts_text.split(",") if c))
        return cls(day, fp, first_start=t0, cuts=cuts, last_start=t0 + int(last_text, 36))


@dataclass(frozen=True)
class DoctorIndex:
    """Every cached day of one doctor (from the window's start on) as of ``written_at``."""

    doctor_id: str
    days_setting: int
    written_at: datetime
    entries: dict[date, IndexEntry] = field(default_factory=dict)
    version: int = INDEX_VERSION

    def encode(self) -> tuple[str, str]:
        """(base date ISO, entries)."""
        if not self.entries:
            return "", ""
        base = min(self.entries)
        return base.isoformat(), " ".join(self.entries[d].encode(base) for d in sorted(self.entries))

    @classmethod
    def decode(
        cls, doctor_id: str, *, base: str, text: str, days_setting: int, written_at: datetime, version: int
    ) -> DoctorIndex:
        entries: dict[date, IndexEntry] = {}
        if text:
            start = date.fromisoformat(base)
            for part in text.split(" "):
                entry = IndexEntry.decode(part, start)
                entries[entry.day] = entry
        return cls(doctor_id, days_setting, written_at.astimezone(UTC), entries, version)


def needs_cuts(first_start: int, now: datetime) -> bool:
    return first_start < (now + CUT_HORIZON).timestamp()


def rows_after(rows: Iterable[Row], cutoff: float) -> list[Row]:
    return [r for r in rows if r[1] > cutoff]
