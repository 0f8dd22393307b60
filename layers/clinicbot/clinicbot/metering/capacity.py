"""DynamoDB on-demand capacity units, computed from item sizes the way DynamoDB bills them.

Used by ``bench/cost_month.py``: moto answers ``ReturnConsumedCapacity`` with a constant (1.0 or 0.5 per
request, whatever the item), so the bench sizes the items each request touched instead:

* item size: attribute name bytes + value bytes (S: UTF-8 bytes; N: 1 byte per 2 significant digits + 1;
  B: bytes; BOOL/NULL: 1; M/L: 3 + each element + 1 per element; sets: the sum of their elements);
* reads: 4 KB per read request unit, strongly consistent = 1, eventually consistent = 0.5, transactional = 2;
  GetItem / BatchGetItem per item (each rounded up), Query / Scan on the summed size of the items *evaluated*
  (before a filter), at least one unit; a missing item still costs the minimum;
* writes: 1 KB per write request unit on the larger of the item before and after, transactional x 2, at
  least one unit (a failed conditional write too); each global secondary index the change reaches costs
  the index entry's size again (an index key that changes: a delete and a put).

Pure Python: the caller supplies the items (DynamoDB JSON) and the table's index definitions.
"""

from __future__ import annotations

import base64
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

__all__ = [
    "Index",
    "TableSchema",
    "index_write_units",
    "item_size",
    "read_units",
    "read_units_for_items",
    "write_units",
]

READ_UNIT_BYTES = 4096
WRITE_UNIT_BYTES = 1024


def _number_size(text: str) -> int:
    digits = text.strip().lstrip("+-")
    if "e" in digits.lower():
        digits = format(Decimal(text), "f").lstrip("+-")
    digits = digits.replace(".", "").strip("0") or "0"
    return math.ceil(len(digits) / 2) + 1


def _value_size(value: Mapping[str, Any]) -> int:
    ((kind, inner),) = value.items()
    if kind == "S":
        return len(str(inner).encode("utf-8"))
    if kind == "N":
        return _number_size(str(inner))
    if kind == "B":
        raw = inner if isinstance(inner, bytes | bytearray) else base64.b64decode(inner)
        return len(raw)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "SS":
        return sum(len(str(s).encode("utf-8")) for s in inner)
    if kind == "NS":
        return sum(_number_size(str(n)) for n in inner)
    if kind == "BS":
        return sum(len(b if isinstance(b, bytes | bytearray) else base64.b64decode(b)) for b in inner)
    if kind == "M":
        return 3 + sum(len(k.encode("utf-8")) + _value_size(v) + 1 for k, v in inner.items())
    if kind == "L":
        return 3 + sum(_value_size(v) + 1 for v in inner)
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def item_size(item: Mapping[str, Mapping[str, Any]] | None) -> int:
    """Bytes of an item in DynamoDB JSON (``{"pk": {"S": "…"}, …}``); 0 for None."""
    if not item:
        return 0
    return sum(len(name.encode("utf-8")) + _value_size(value) for name, value in item.items())


def read_units(size: int, *, consistent: bool = False, transactional: bool = False) -> float:
    """Read request units of one read of ``size`` bytes (at least one 4 KB step)."""
    steps = max(1, math.ceil(size / READ_UNIT_BYTES))
    if transactional:
        return 2.0 * steps
    return float(steps) if consistent else 0.5 * steps


def read_units_for_items(items: Iterable[Mapping[str, Any]], *, consistent: bool = False) -> float:
    """A Query or Scan page: the summed size of the items evaluated, rounded up once."""
    return read_units(sum(item_size(i) for i in items), consistent=consistent)


def write_units(old_size: int, new_size: int, *, transactional: bool = False) -> float:
    units = max(1, math.ceil(max(old_size, new_size) / WRITE_UNIT_BYTES))
    return 2.0 * units if transactional else float(units)


@dataclass(frozen=True)
class Index:
    name: str
    keys: tuple[str, ...]
    projection: str = "ALL"  # ALL | KEYS_ONLY | INCLUDE
    include: tuple[str, ...] = ()


@dataclass(frozen=True)
class TableSchema:
    name: str
    keys: tuple[str, ...] = ("pk", "sk")
    indexes: tuple[Index, ...] = field(default_factory=tuple)

    @classmethod
    def from_definition(cls, table_name: str, definition: Mapping[str, Any]) -> TableSchema:
        keys = tuple(k["AttributeName"] for k in definition.get("KeySchema") or [])
        indexes = []
        for gsi in definition.get("GlobalSecondaryIndexes") or []:
            projection = gsi.get("Projection") or {}
            indexes.append(
                Index(
                    name=gsi["IndexName"],
                    keys=tuple(k["AttributeName"] for k in gsi["KeySchema"]),
                    projection=str(projection.get("ProjectionType") or "ALL"),
                    include=tuple(projection.get("NonKeyAttributes") or ()),
                )
            )
        return cls(name=table_name, keys=keys, indexes=tuple(indexes))

    def key_of(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in self.keys if k in item}


def _projected(
    item: Mapping[str, Any] | None, index: Index, table_keys: Sequence[str]
) -> dict[str, Any] | None:
    if not item or any(k not in item for k in index.keys):
        return None
    if index.projection == "ALL":
        return dict(item)
    names = (
        set(index.keys) | set(table_keys) | (set(index.include) if index.projection == "INCLUDE" else set())
    )
    return {k: v for k, v in item.items() if k in names}


def index_write_units(
    old: Mapping[str, Any] | None,
    new: Mapping[str, Any] | None,
    schema: TableSchema,
    *,
    transactional: bool = False,
) -> float:
    """Write units the table's global secondary indexes add to a change ``old`` -> ``new`` (None: absent)."""
    units = 0.0
    for index in schema.indexes:
        before = _projected(old, index, schema.keys)
        after = _projected(new, index, schema.keys)
        if (before is None and after is None) or before == after:
            continue
        if before is not None and after is not None:
            same_keys = all(before.get(k) == after.get(k) for k in index.keys)
            if same_keys:
                units += write_units(item_size(before), item_size(after), transactional=transactional)
            else:  # moved within the index: a delete and a put
                units += write_units(item_size(before), 0, transactional=transactional)
                units += write_units(0, item_size(after), transactional=transactional)
        else:
            units += write_units(item_size(before), item_size(after), transactional=transactional)
    return units
