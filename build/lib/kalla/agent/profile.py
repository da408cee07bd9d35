"""A source's profile: per column type, null share, distinct share, range and a few values,
plus the key candidates (columns, or pairs of columns, that identify a row).

Everything is computed with pyarrow over the whole staged table; the result is plain JSON
(``to_dict``) so a tool can return it to the model or the app.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kalla.agent.columns import ColumnInfo, Kind, column_info

SAMPLE_VALUES = 5
MAX_TEXT = 60  # characters of a sample value shown
_ID_NAME = re.compile(
    r"(^|[^a-z])(id|ref|reference|no|nr|num|number|key|code|doc|line|entry|#)([^a-z]|$)"
)
_PAIR_COLUMNS = 8  # columns tried in pairs when no single column is a key


def jsonable(value: Any, limit: int = MAX_TEXT) -> Any:
    """A value as JSON can carry it: decimals as exact text, dates as ISO text, long text cut."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, str) and len(value) > limit:
        return value[:limit] + "…"
    return value


def id_name_score(name: str) -> int:
    """1 when a column's name says it identifies something (``invoice_id``, ``Ref No.``)."""
    spaced = re.sub(r"([a-z])([A-Z])", r"\1 \2", name).lower()
    return 1 if _ID_NAME.search(spaced) else 0


@dataclass(frozen=True)
class ColumnProfile:
    info: ColumnInfo
    rows: int
    nulls: int
    distinct: int
    minimum: Any = None
    maximum: Any = None
    samples: tuple[Any, ...] = ()

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def non_null(self) -> int:
        return self.rows - self.nulls

    @property
    def distinct_share(self) -> float:
        return self.distinct / self.non_null if self.non_null else 0.0

    @property
    def unique(self) -> bool:
        return self.rows > 0 and self.nulls == 0 and self.distinct == self.rows

    def to_dict(self, *, share_rows: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "name": self.name,
            "type": self.info.arrow_type,
            "kind": self.info.kind.value,
            "null_share": round(self.nulls / self.rows, 4) if self.rows else 0.0,
            "distinct_share": round(self.distinct_share, 4),
            "distinct": self.distinct,
        }
        if self.info.date_format:
            data["date_format"] = self.info.date_format
        numeric_range = self.info.kind not in (Kind.TEXT, Kind.OTHER)
        if share_rows or numeric_range:
            data["min"] = jsonable(self.minimum)
            data["max"] = jsonable(self.maximum)
        if share_rows:
            data["samples"] = [jsonable(v) for v in self.samples]
        return data


@dataclass(frozen=True)
class KeyCandidate:
    columns: tuple[str, ...]
    distinct_share: float  # distinct combinations / rows
    unique: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "columns": list(self.columns),
            "distinct_share": round(self.distinct_share, 4),
            "unique": self.unique,
        }


@dataclass(frozen=True)
class SourceProfile:
    alias: str
    rows: int
    columns: tuple[ColumnProfile, ...]
    key_candidates: tuple[KeyCandidate, ...] = field(default_factory=tuple)

    def column(self, name: str) -> ColumnProfile:
        for c in self.columns:
            if c.name == name:
                return c
        raise KeyError(name)

    def to_dict(self, *, share_rows: bool = True) -> dict[str, Any]:
        return {
            "alias": self.alias,
            "rows": self.rows,
            "columns": [c.to_dict(share_rows=share_rows) for c in self.columns],
            "key_candidates": [k.to_dict() for k in self.key_candidates],
        }


def profile_column(name: str, column: pa.ChunkedArray) -> ColumnProfile:
    info = column_info(name, column)
    rows = len(column)
    nulls = column.null_count
    distinct = int(pc.count_distinct(column, mode="only_valid").as_py()) if rows else 0
    minimum = maximum = None
    if rows > nulls and info.kind is not Kind.OTHER and info.kind is not Kind.BOOL:
        bounds = pc.min_max(column)
        minimum, maximum = bounds["min"].as_py(), bounds["max"].as_py()
    samples = tuple(pc.unique(column.drop_null().slice(0, 500)).slice(0, SAMPLE_VALUES).to_pylist())
    return ColumnProfile(info, rows, nulls, distinct, minimum, maximum, samples)


def profile_table(alias: str, table: pa.Table) -> SourceProfile:
    columns = tuple(profile_column(n, table.column(n)) for n in table.column_names)
    return SourceProfile(alias, table.num_rows, columns, key_candidates(table, columns))


def _key_rank(c: ColumnProfile) -> tuple[int, int, int]:
    """Better primary keys first: named like an id, text or integer, then by position."""
    kind_rank = 0 if c.info.kind in (Kind.TEXT, Kind.INTEGER) else 1
    return (kind_rank, -id_name_score(c.name), 0)


def key_candidates(table: pa.Table, columns: tuple[ColumnProfile, ...]) -> tuple[KeyCandidate, ...]:
    """Unique or near-unique columns, best first; pairs of columns when no single one is unique."""
    rows = table.num_rows
    if rows == 0:
        return ()
    usable = [c for c in columns if c.info.kind not in (Kind.FLOAT, Kind.OTHER)]
    singles = sorted(
        (c for c in usable if c.distinct_share >= 0.98 and c.nulls == 0),
        key=lambda c: (not c.unique, *_key_rank(c), columns.index(c)),
    )
    found = [KeyCandidate((c.name,), c.distinct / rows, c.unique) for c in singles]
    if any(k.unique for k in found):
        return tuple(found[:5])
    # No single column identifies a row: try pairs of the most distinct columns.
    pool = sorted(
        (c for c in usable if c.nulls == 0 and c.distinct > 1),
        key=lambda c: (-c.distinct, columns.index(c)),
    )[:_PAIR_COLUMNS]
    pairs = []
    for a, b in itertools.combinations(pool, 2):
        combos = table.select([a.name, b.name]).group_by([a.name, b.name]).aggregate([]).num_rows
        if combos / rows >= 0.98:
            ordered = sorted((a, b), key=lambda c: columns.index(c))
            pairs.append(
                KeyCandidate(tuple(c.name for c in ordered), combos / rows, combos == rows)
            )
    pairs.sort(key=lambda k: (not k.unique, -k.distinct_share))
    return tuple((found + pairs)[:5])
