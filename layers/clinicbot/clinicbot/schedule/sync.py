"""The schedule sync's logic: fetch everything from the MIS (all or nothing), encode it as cache records,
and plan the writes that make the cache match -- by content hash, so an unchanged schedule costs no write.

Pure: no boto3, pynamodb or aiogram here. The MIS comes in as the port, the cache as plain records; the
DynamoDB side is ``clinicbot.schedule.cache_dynamo``.

**Doctor-day records.** A doctor's free slots on one branch-local day are one record (``pk =
SLOTS#<doctor>``, ``sk = <date>``): the bot's month calendar is one Query of ~30 small items, and a booked
slot rewrites one item of ~1 KB (one write unit). The slots are compact JSON, ordered by (start, id)::

    [[slot id, start - t0 (s), duration (s)], ...]       t0 = the first slot's start, Unix seconds
    [id, offset, duration, service id | null, branch id]  when the slot has a service or another branch

**The moving "now".** The MIS lists only future slots, so the day in progress loses slots as time passes
even when nothing was booked. Both sides are therefore compared from the same cut-off (an instant taken
after the MIS answered): the MIS's slots after it, and the cached day's slots after it. A day whose
future part is unchanged is not rewritten; a cached day left with no future slots is left to TTL.

**What the cache holds** comes from the day index (``clinicbot.schedule.index``: per doctor, a fingerprint
of every cached day and, for days near "now", of what is left of it after each slot), so an unchanged run
reads no day item; ``plan_indexed`` compares fingerprints of the future parts. The day items are read
(``record_entry``) for a doctor whose index cannot be trusted.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol, TypeVar, cast
from zoneinfo import ZoneInfo

from clinicbot.mis.errors import MisError, MisUnavailable
from clinicbot.mis.models import Branch, Doctor, Service, Slot, Specialty
from clinicbot.mis.port import MisPort
from clinicbot.schedule.index import DoctorIndex, IndexEntry, Row, chain, needs_cuts

__all__ = [
    "DEFAULT_TZ",
    "DayKey",
    "DayRecord",
    "DesiredDay",
    "IndexedScheduleCache",
    "Plan",
    "RefRecord",
    "ReferenceData",
    "ScheduleCache",
    "Snapshot",
    "SyncFailure",
    "SyncRead",
    "SyncState",
    "Window",
    "content_hash",
    "day_records",
    "decode_slots",
    "desired_days",
    "effective_hash",
    "encode_day",
    "fetch_snapshot",
    "parse_reference",
    "plan",
    "plan_days",
    "plan_indexed",
    "plan_reference",
    "record_entry",
    "record_rows",
    "ref_hash",
    "reference_records",
]

T = TypeVar("T")

DEFAULT_TZ = ZoneInfo("Europe/Moscow")
"""Time zone of a slot whose branch the MIS does not list (the clinics we serve are in Russia)."""
DAY_TTL = timedelta(days=1)
"""A day record expires this long after its last slot ends (DynamoDB deletes it later still)."""
KINDS: tuple[tuple[str, type[Any]], ...] = (
    ("BRANCH", Branch),
    ("SPECIALTY", Specialty),
    ("DOCTOR", Doctor),
    ("SERVICE", Service),
)
ORDER_SK = "ORDER"


def content_hash(text: str) -> str:
    """16 hex characters of BLAKE2b: enough to tell versions of one item apart."""
    return hashlib.blake2b(text.encode(), digest_size=8).hexdigest()


# =========================================================================== records
@dataclass(frozen=True, order=True)
class DayKey:
    doctor_id: str
    day: date


@dataclass(frozen=True)
class DayRecord:
    """One doctor-day of free slots, encoded (what is stored, or what is to be stored)."""

    doctor_id: str
    day: date
    branch_id: str
    first_start: int
    slots: str
    hash: str
    count: int
    expires_at: datetime

    @property
    def key(self) -> DayKey:
        return DayKey(self.doctor_id, self.day)


@dataclass(frozen=True)
class RefRecord:
    sk: str
    data: str
    hash: str


@dataclass(frozen=True)
class SyncState:
    last_success_at: datetime
    covers_until: datetime
    ref_hash: str
    days: int
    counts: Mapping[str, int] = field(default_factory=dict)
    index: int | None = None
    """The day index version the sync keeps (None: written by a sync that keeps none -- not trusted)."""
    dirty: bool = False
    """Set before a run writes day or reference items, cleared by its final state write: a run that died
    in between leaves it set, and the next run trusts neither the day index nor ``ref_hash``."""

    def fresh(self, now: datetime, max_age: timedelta) -> bool:
        return now - self.last_success_at <= max_age


@dataclass(frozen=True)
class ReferenceData:
    """Reference data as the cache holds it, in the MIS's order."""

    branches: tuple[Branch, ...] = ()
    specialties: tuple[Specialty, ...] = ()
    doctors: tuple[Doctor, ...] = ()
    services: tuple[Service, ...] = ()


# =========================================================================== encoding
def _epoch(instant: datetime) -> int:
    return int(instant.timestamp())


def encode_day(doctor_id: str, day: date, slots: Sequence[Slot], *, default_branch: str) -> DayRecord:
    """Encode a doctor's free slots on one day (``slots`` non-empty; any order)."""
    ordered = sorted(slots, key=lambda s: (s.start, s.id))
    branches = Counter(s.branch_id for s in ordered)
    branch_id = branches.most_common(1)[0][0] if branches else default_branch
    t0 = _epoch(ordered[0].start)
    rows: list[list[Any]] = []
    for s in ordered:
        start = _epoch(s.start)
        row: list[Any] = [s.id, start - t0, _epoch(s.end) - start]
        if s.branch_id != branch_id:
            row += [s.service_id, s.branch_id]
        elif s.service_id is not None:
            row.append(s.service_id)
        rows.append(row)
    text = json.dumps(rows, separators=(",", ":"), ensure_ascii=False)
    return DayRecord(
        doctor_id=doctor_id,
        day=day,
        branch_id=branch_id,
        first_start=t0,
        slots=text,
        hash=content_hash(f"{t0}|{branch_id}|{text}"),
        count=len(rows),
        expires_at=ordered[-1].end + DAY_TTL,
    )


def decode_slots(doctor_id: str, branch_id: str, first_start: int, slots: str) -> list[Slot]:
    """The slots of a day record (trusted data written by ``encode_day``: no validation)."""
    out = []
    for row in json.loads(slots):
        start = first_start + int(row[1])
        out.append(
            Slot.model_construct(
                id=row[0],
                doctor_id=doctor_id,
                branch_id=row[4] if len(row) > 4 else branch_id,
                start=datetime.fromtimestamp(start, UTC),
                end=datetime.fromtimestamp(start + int(row[2]), UTC),
                service_id=row[3] if len(row) > 3 else None,
            )
        )
    return out


def effective_hash(record: DayRecord, cutoff: datetime) -> str | None:
    """The hash the record would have with only its slots after ``cutoff``; None when none is left."""
    if record.first_start > cutoff.timestamp():
        return record.hash
    slots = [
        s for s in decode_slots(record.doctor_id, record.branch_id, record.first_start, record.slots)
        if s.start > cutoff
    ]  # fmt: skip
    if not slots:
        return None
    return encode_day(record.doctor_id, record.day, slots, default_branch=record.branch_id).hash


def record_rows(record: DayRecord) -> list[Row]:
    """The slots of a day record as fingerprint rows, in the record's (start, id) order: no models."""
    out: list[Row] = []
    t0, branch_id = record.first_start, record.branch_id
    for row in json.loads(record.slots):
        start = t0 + int(row[1])
        out.append(
            (
                row[0],
                start,
                start + int(row[2]),
                row[3] if len(row) > 3 else None,
                row[4] if len(row) > 4 else branch_id,
            )
        )
    return out


def record_entry(record: DayRecord) -> IndexEntry:
    """The index entry of a cached day item, cuts included (trimmed when the index is written)."""
    rows = record_rows(record)
    return IndexEntry.of(record.day, rows, chain(rows), with_cuts=True)


# =========================================================================== reference data
def reference_records(
    branches: Iterable[Branch],
    specialties: Iterable[Specialty],
    doctors: Iterable[Doctor],
    services: Iterable[Service],
) -> dict[str, RefRecord]:
    """One record per entity (``DOCTOR#<id>`` …) plus ``ORDER``, the ids of each kind in the MIS's order."""
    records: dict[str, RefRecord] = {}
    order: dict[str, list[str]] = {}
    groups: tuple[Iterable[Any], ...] = (branches, specialties, doctors, services)
    for (prefix, _), models in zip(KINDS, groups, strict=True):
        ids = order.setdefault(prefix, [])
        for model in models:
            data = model.model_dump_json()
            sk = f"{prefix}#{model.id}"
            if sk not in records:
                ids.append(model.id)
            records[sk] = RefRecord(sk, data, content_hash(data))
    data = json.dumps(order, separators=(",", ":"), ensure_ascii=False)
    records[ORDER_SK] = RefRecord(ORDER_SK, data, content_hash(data))
    return records


def ref_hash(hashes: Mapping[str, str]) -> str:
    """One hash over all reference items (sk -> item hash): changes whenever any of them does."""
    return content_hash("\n".join(f"{sk}={h}" for sk, h in sorted(hashes.items())))


def parse_reference(records: Mapping[str, str]) -> ReferenceData:
    """Reference data from cached items (sk -> data), in the order the ``ORDER`` item gives."""
    order: dict[str, list[str]] = json.loads(records[ORDER_SK]) if ORDER_SK in records else {}
    parsed: list[tuple[Any, ...]] = []
    for prefix, model in KINDS:
        ids = order.get(prefix) or sorted(
            sk.split("#", 1)[1] for sk in records if sk.startswith(prefix + "#")
        )
        parsed.append(
            tuple(
                model.model_validate_json(records[f"{prefix}#{i}"]) for i in ids if f"{prefix}#{i}" in records
            )
        )
    return ReferenceData(*parsed)


# =========================================================================== the MIS snapshot
@dataclass(frozen=True)
class Window:
    """The branch-local days [first, last] synced for a doctor, and the UTC interval they span."""

    first: date
    last: date
    start: datetime
    end: datetime


def window_for(tz: ZoneInfo, now: datetime, days: int) -> Window:
    """Today and the next ``days`` days, whole days of the branch's wall clock: the window moves only at
    local midnight, so the sync does not rewrite the last day every run as new slots enter it."""
    first = now.astimezone(tz).date()
    last = first + timedelta(days=days)
    start = datetime.combine(first, datetime.min.time(), tz).astimezone(UTC)
    end = datetime.combine(last + timedelta(days=1), datetime.min.time(), tz).astimezone(UTC)
    return Window(first, last, start, end)


@dataclass(frozen=True)
class Snapshot:
    """Everything the MIS said in one sync, complete (``fetch_snapshot`` raises rather than return less)."""

    branches: tuple[Branch, ...]
    specialties: tuple[Specialty, ...]
    doctors: tuple[Doctor, ...]
    services: tuple[Service, ...]
    windows: Mapping[str, Window]
    slots: Mapping[str, tuple[Slot, ...]]
    cutoff: datetime
    """An instant after every MIS answer: slots are compared from here on (see the module's doc)."""

    @property
    def covers_until(self) -> datetime:
        ends = [w.end for w in self.windows.values()]
        return min(ends) if ends else self.cutoff

    def tz_of(self, branch_id: str) -> ZoneInfo:
        for branch in self.branches:
            if branch.id == branch_id:
                return branch.tz
        return DEFAULT_TZ


class SyncFailure(Exception):
    """The MIS answer cannot be trusted as a whole; nothing is written. ``kind``: ``outage`` (the MIS is
    down or timed out), ``partial`` (some calls failed or the answer contradicts itself), ``budget`` (out of
    time). The message carries ids and error class names only."""

    def __init__(self, kind: str, message: str) -> None:
        super().__init__(message)
        self.kind = kind


def _describe(exc: BaseException) -> str:
    """An error for the log without personal data: MIS errors carry ids only by contract; anything else
    (a validation error quotes the MIS's data, names included) is named by its class alone."""
    if isinstance(exc, MisError):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


async def fetch_snapshot(
    mis: MisPort,
    *,
    clock: Callable[[], datetime],
    days: int,
    concurrency: int = 8,
    call_timeout: float = 20.0,
    deadline: float | None = None,
    monotonic: Callable[[], float] = time.monotonic,
) -> Snapshot:
    """Reference data, then every doctor's free slots in his window (one call per doctor, ``concurrency``
    at a time). Any failure -- an outage, a timeout, one doctor's call failing, slots of another doctor in
    his answer -- raises ``SyncFailure``: a partial answer must never look like "no free slots"."""

    async def call(what: str, coro: Awaitable[T]) -> T:
        timeout = call_timeout
        if deadline is not None:
            timeout = min(timeout, deadline - monotonic())
            if timeout <= 0:
                if asyncio.iscoroutine(coro):
                    coro.close()
                raise SyncFailure("budget", f"no time left for {what}")
        try:
            return await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            raise SyncFailure("outage", f"{what}: no answer in {timeout:.0f} s") from None
        except MisUnavailable as exc:
            raise SyncFailure("outage", f"{what}: {_describe(exc)}") from exc
        except SyncFailure:
            raise
        except Exception as exc:
            raise SyncFailure("partial", f"{what}: {_describe(exc)}") from exc

    now = clock()
    reference = await asyncio.gather(
        call("branches", mis.branches()),
        call("specialties", mis.specialties()),
        call("doctors", mis.doctors()),
        call("services", mis.services()),
        return_exceptions=True,
    )
    for answer in reference:
        if isinstance(answer, BaseException):
            raise answer
    branches, specialties, doctors, services = cast(
        tuple[list[Branch], list[Specialty], list[Doctor], list[Service]], tuple(reference)
    )
    zones = {b.id: b.tz for b in branches}
    windows = {d.id: window_for(zones.get(d.branch_id, DEFAULT_TZ), now, days) for d in doctors}

    gate = asyncio.Semaphore(max(1, concurrency))

    async def doctor_slots(doctor_id: str) -> tuple[Slot, ...]:
        window = windows[doctor_id]
        async with gate:
            slots = await call(
                f"free slots of doctor {doctor_id}",
                mis.free_slots(start=window.start, end=window.end, doctor_id=doctor_id),
            )
        strangers = {s.doctor_id for s in slots} - {doctor_id}
        if strangers:
            raise SyncFailure("partial", f"free slots of doctor {doctor_id} include other doctors' slots")
        return tuple(slots)

    results = await asyncio.gather(*(doctor_slots(d) for d in windows), return_exceptions=True)
    failures = [(d, r) for d, r in zip(windows, results, strict=True) if isinstance(r, BaseException)]
    if failures:
        for _, exc in failures:
            if not isinstance(exc, Exception):
                raise exc  # CancelledError, KeyboardInterrupt: not ours to swallow
        kinds = {exc.kind if isinstance(exc, SyncFailure) else "partial" for _, exc in failures}
        kind = "outage" if kinds == {"outage"} else ("budget" if "budget" in kinds else "partial")
        first = failures[0][1]
        raise SyncFailure(
            kind,
            f"free slots failed for {len(failures)} of {len(windows)} doctor(s) "
            f"({', '.join(d for d, _ in failures[:5])}); first: {first}",
        )
    slots = {d: r for d, r in zip(windows, results, strict=True) if not isinstance(r, BaseException)}
    return Snapshot(
        branches=tuple(branches),
        specialties=tuple(specialties),
        doctors=tuple(doctors),
        services=tuple(services),
        windows=windows,
        slots=slots,
        cutoff=max(clock(), now),
    )


# =========================================================================== planning
def day_records(snapshot: Snapshot) -> dict[DayKey, DayRecord]:
    """The desired day records: every doctor's free slots after the cut-off, by branch-local day."""
    doctors = {d.id: d for d in snapshot.doctors}
    out: dict[DayKey, DayRecord] = {}
    for doctor_id, slots in snapshot.slots.items():
        by_day: dict[date, list[Slot]] = {}
        for slot in slots:
            if slot.start > snapshot.cutoff:
                day = slot.start.astimezone(snapshot.tz_of(slot.branch_id)).date()
                by_day.setdefault(day, []).append(slot)
        for day, day_slots in by_day.items():
            record = encode_day(doctor_id, day, day_slots, default_branch=doctors[doctor_id].branch_id)
            out[record.key] = record
    return out


@dataclass
class DesiredDay:
    """One doctor-day of the MIS's free slots after the cut-off, fingerprinted; encoded only if written."""

    doctor_id: str
    day: date
    slots: list[Slot]
    """Ordered by (start, id), as ``encode_day`` orders them."""
    rows: list[Row]
    fps: list[str]
    default_branch: str

    @property
    def key(self) -> DayKey:
        return DayKey(self.doctor_id, self.day)

    @property
    def fp(self) -> str:
        return self.fps[0]

    def record(self) -> DayRecord:
        return encode_day(self.doctor_id, self.day, self.slots, default_branch=self.default_branch)

    def entry(self, now: datetime) -> IndexEntry:
        with_cuts = needs_cuts(self.rows[0][1], now)
        if with_cuts and len(self.fps) != len(self.rows):
            self.fps = chain(self.rows)
        return IndexEntry.of(self.day, self.rows, self.fps, with_cuts=with_cuts)


def desired_days(snapshot: Snapshot) -> dict[DayKey, DesiredDay]:
    """``day_records`` without the encoding: every doctor's free slots after the cut-off by branch-local
    day, ordered and fingerprinted."""
    doctors = {d.id: d for d in snapshot.doctors}
    zones = {b.id: b.tz for b in snapshot.branches}
    cutoff = snapshot.cutoff
    out: dict[DayKey, DesiredDay] = {}
    for doctor_id, slots in snapshot.slots.items():
        by_day: dict[date, list[Slot]] = {}
        for slot in slots:
            if slot.start > cutoff:
                day = slot.start.astimezone(zones.get(slot.branch_id, DEFAULT_TZ)).date()
                by_day.setdefault(day, []).append(slot)
        for day, day_slots in by_day.items():
            day_slots.sort(key=lambda s: (s.start, s.id))
            rows: list[Row] = [
                (s.id, int(s.start.timestamp()), int(s.end.timestamp()), s.service_id, s.branch_id)
                for s in day_slots
            ]
            fps = chain(rows, suffixes=needs_cuts(rows[0][1], cutoff))
            want = DesiredDay(doctor_id, day, day_slots, rows, fps, doctors[doctor_id].branch_id)
            out[want.key] = want
    return out


@dataclass
class Plan:
    """Writes that make the cache match the MIS. Slots are written before reference data and the state,
    so an interrupted run leaves the old reference (and its doctors) for the next run's diff to find."""

    put_days: list[DayRecord] = field(default_factory=list)
    delete_days: list[DayKey] = field(default_factory=list)
    put_refs: list[RefRecord] = field(default_factory=list)
    delete_refs: list[str] = field(default_factory=list)
    unchanged_days: int = 0
    unchanged_refs: int = 0
    put_index: list[DoctorIndex] = field(default_factory=list)
    """Day indexes to write after the days and the reference data (``clinicbot.schedule.index``)."""
    delete_index: list[str] = field(default_factory=list)
    """Doctors whose day index goes (they left the MIS and the cache)."""

    @property
    def writes(self) -> int:
        """Day and reference items (what the state's ``dirty`` mark protects; the index is not counted)."""
        return len(self.put_days) + len(self.delete_days) + len(self.put_refs) + len(self.delete_refs)


def plan_days(
    desired: Mapping[DayKey, DayRecord],
    cached: Mapping[DayKey, DayRecord],
    *,
    cutoff: datetime,
    first_day: Mapping[str, date],
    default_first: date,
) -> Plan:
    """Put new and changed days, delete days whose future slots all vanished (or that left the window).

    ``cached`` holds the cached records from around the window's start on; a cached day before its
    doctor's ``first_day`` (``default_first`` for a doctor the MIS no longer lists) is the past: left to TTL.
    """
    result = Plan()
    for key in sorted(set(desired) | set(cached)):
        want, have = desired.get(key), cached.get(key)
        if have is not None and key.day < first_day.get(key.doctor_id, default_first):
            continue
        have_hash = effective_hash(have, cutoff) if have is not None else None
        if want is not None:
            if want.hash == have_hash:
                result.unchanged_days += 1
            else:
                result.put_days.append(want)
        elif have_hash is not None:
            result.delete_days.append(key)
    return result


def plan_reference(desired: Mapping[str, RefRecord], cached: Mapping[str, str]) -> Plan:
    """``cached``: sk -> content hash of the cached reference items."""
    result = Plan()
    for sk, record in sorted(desired.items()):
        if cached.get(sk) == record.hash:
            result.unchanged_refs += 1
        else:
            result.put_refs.append(record)
    result.delete_refs = sorted(set(cached) - set(desired))
    return result


def plan(
    snapshot: Snapshot,
    cached_refs: Mapping[str, str],
    cached_days: Mapping[DayKey, DayRecord],
) -> Plan:
    """The whole diff of one sync. Refuses (``SyncFailure``) an answer with no doctors while the cache has
    some: an MIS that answers ``[]`` on an internal error must not empty the bot's calendar."""
    cached_doctors = {sk.split("#", 1)[1] for sk in cached_refs if sk.startswith("DOCTOR#")}
    if not snapshot.doctors and cached_doctors:
        raise SyncFailure("partial", f"the MIS listed no doctors; the cache has {len(cached_doctors)}")
    first_day = {d: w.first for d, w in snapshot.windows.items()}
    default_first = min(first_day.values(), default=snapshot.cutoff.date()) - timedelta(days=1)
    days = plan_days(
        day_records(snapshot),
        cached_days,
        cutoff=snapshot.cutoff,
        first_day=first_day,
        default_first=default_first,
    )
    return _with_reference(days, snapshot, cached_refs)


def plan_indexed(
    snapshot: Snapshot,
    desired: Mapping[DayKey, DesiredDay],
    cached: Mapping[str, Mapping[date, IndexEntry]],
    *,
    cached_refs: Mapping[str, str],
    stored: Mapping[str, DoctorIndex],
    rewrite: Iterable[str] = (),
    days_setting: int,
) -> Plan:
    """The whole diff of one sync against what the cache holds (``cached``: doctor -> day -> entry, from
    the day index or from day items read), and the day indexes to write.

    Compares fingerprints of the future part (see ``clinicbot.schedule.index``): a cached day whose slots
    after the cut-off are the MIS's is left alone. A doctor's index is written when his days are, when it
    is in ``rewrite`` (it was not trusted, or the cut-off outran it) and differs from ``stored``, and when a
    day comes within the cut horizon (its cuts are added, about once a day)."""
    cached_doctors = {sk.split("#", 1)[1] for sk in cached_refs if sk.startswith("DOCTOR#")}
    if not snapshot.doctors and cached_doctors:
        raise SyncFailure("partial", f"the MIS listed no doctors; the cache has {len(cached_doctors)}")
    now, cutoff = snapshot.cutoff, snapshot.cutoff.timestamp()
    first_day = {d: w.first for d, w in snapshot.windows.items()}
    default_first = min(first_day.values(), default=now.date()) - timedelta(days=1)
    result = Plan()
    listed = {d.id for d in snapshot.doctors}
    by_doctor: dict[str, dict[date, DesiredDay]] = {}
    for key, desired_day in desired.items():
        by_doctor.setdefault(key.doctor_id, {})[key.day] = desired_day
    must_write = set(rewrite)
    entries_of: dict[str, dict[date, IndexEntry]] = {}
    for doctor_id in sorted(set(by_doctor) | set(cached)):
        wants, haves = by_doctor.get(doctor_id, {}), cached.get(doctor_id, {})
        first = first_day.get(doctor_id, default_first)
        old = stored.get(doctor_id)
        entries: dict[date, IndexEntry] = {}
        for day in sorted(set(wants) | set(haves)):
            want, have = wants.get(day), haves.get(day)
            if have is not None and day < first:
                continue  # the past: left to TTL, and out of the index
            have_fp: str | None = None
            whole = True
            if have is not None:
                known, have_fp = have.effective(cutoff)
                assert known, "a cached day without its cuts must be read, not indexed"
                whole = have.first_start is None or have.first_start > cutoff
            if want is not None:
                if want.fp == have_fp:
                    result.unchanged_days += 1
                    entry = want.entry(now) if whole else have
                    assert entry is not None
                    entries[day] = entry
                    previous = old.entries.get(day) if old is not None else None
                    if entry.cuts is not None and previous is not None and previous.cuts is None:
                        must_write.add(doctor_id)  # the day came within the horizon: add its cuts
                else:
                    result.put_days.append(want.record())
                    entries[day] = want.entry(now)
                    must_write.add(doctor_id)
            elif have_fp is not None:
                result.delete_days.append(DayKey(doctor_id, day))
                must_write.add(doctor_id)
        entries_of[doctor_id] = entries
    for doctor_id in sorted(must_write | (set(stored) - set(entries_of))):
        entries = entries_of.get(doctor_id, {})
        old = stored.get(doctor_id)
        if not entries and doctor_id not in listed:
            if old is not None:
                result.delete_index.append(doctor_id)
            continue
        index = DoctorIndex(doctor_id, days_setting, now, entries)
        same = (
            old is not None
            and old.version == index.version
            and old.days_setting == days_setting
            and old.encode() == index.encode()
        )
        if not same:
            result.put_index.append(index)
    return _with_reference(result, snapshot, cached_refs)


def _with_reference(result: Plan, snapshot: Snapshot, cached_refs: Mapping[str, str]) -> Plan:
    """``result`` with the reference data's writes planned in (branches, specialties, doctors, services)."""
    refs = plan_reference(
        reference_records(snapshot.branches, snapshot.specialties, snapshot.doctors, snapshot.services),
        cached_refs,
    )
    result.put_refs, result.delete_refs, result.unchanged_refs = (
        refs.put_refs,
        refs.delete_refs,
        refs.unchanged_refs,
    )
    return result


# =========================================================================== the cache port
class ScheduleCache(Protocol):
    """What the sync and the reader need from the cache (``cache_dynamo.DynamoScheduleCache``)."""

    def reference_items(self) -> dict[str, RefRecord]:
        """Every reference item (sk -> record): one Query."""
        ...

    def cached_days(self, doctor_ids: Iterable[str], since: date) -> dict[DayKey, DayRecord]:
        """Every cached day on or after ``since`` of these doctors: one Query per doctor."""
        ...

    def days(self, doctor_id: str, first: date, last: date) -> list[DayRecord]:
        """A doctor's cached days in [first, last]: one Query."""
        ...

    def apply(self, plan: Plan) -> int:
        """Carry the plan out in batches; returns the number of write requests made."""
        ...

    def load_state(self) -> SyncState | None: ...

    def save_state(self, state: SyncState) -> None: ...


class IndexedScheduleCache(ScheduleCache, Protocol):
    """A cache that also keeps the day index (``cache_dynamo.DynamoScheduleCache``); ``SyncJob`` diffs
    against a plain ``ScheduleCache`` by reading every cached day."""

    def load_sync(self) -> SyncRead:
        """The sync state, the visits cursor and every doctor's day index: one Query."""
        ...

    def mark_dirty(self, state: SyncState) -> None:
        """Save ``state`` with ``dirty`` set (before writing day or reference items)."""
        ...


@dataclass(frozen=True)
class SyncRead:
    state: SyncState | None
    indexes: Mapping[str, DoctorIndex]
    cursor: Any = None
    """The visits cursor (a ``clinicbot.schedule.visits.VisitsCursor``), when the store keeps it there."""
