"""Partition planning for database tables, as pure functions of what the catalog says.

A table is read in one query when it is small, else as ranges read in parallel: ranges of
heap pages (PostgreSQL's ``ctid``; each partition reads only its own pages) or ranges of an
integer key. A table this large on disk is staged range by range (``streams``), in bounded
memory. Nothing here touches a database; the connector renders the ranges in its dialect.
"""

from __future__ import annotations

from collections.abc import Sequence

from kalla.connectors.sql.catalog import Catalog, Column
from kalla.connectors.sql.decimals import decimal_transport
from kalla.errors import SourceError
from kalla.suggest import did_you_mean

# Tables smaller than this are read in one query: partitioning costs more than it saves.
PARTITION_MIN_ROWS = 100_000
MAX_PARTITIONS = 16

# Tables this large on disk (~5M invoices rows) are staged range by range, in bounded memory:
# at 10M invoices rows a whole read peaks at 1.3 GB, ranges of ~500k rows at 0.5 GB, in
# about the same time, and the peak stays there however large the table.
STREAM_MIN_BYTES = 512 << 20
STREAM_PART_BLOCKS = 6_400
BLOCK_BYTES = 8192
# A page range shorter than this per partition is not worth a query of its own.
MIN_BLOCKS_PER_PARTITION = 8

PageRange = tuple[int | None, int | None]
"""``[start, end)`` in heap pages; None is open-ended."""


def partition_count(option: str, *, estimated_rows: int, cpus: int | None, label: str) -> int:
    """How many partitions to read: ``?partitions=`` if given (1..16), one for a small
    table, else one per core, at least 2 and at most 8."""
    if option:
        try:
            count = int(option)
        except ValueError:
            count = 0
        if not 1 <= count <= MAX_PARTITIONS:
            raise SourceError(
                f"{label}: partitions must be a whole number from 1 to {MAX_PARTITIONS}, "
                f"not '{option}'"
            )
        return count
    if estimated_rows < PARTITION_MIN_ROWS:
        return 1
    return max(2, min(cpus or 2, MAX_PARTITIONS // 2))


def range_column(catalog: Catalog, partition_on: str | None, *, label: str) -> Column | None:
    """The integer column to split by key ranges: ``?partition_on=`` or an integer primary
    key; None when there is none."""
    by_name = {column.name: column for column in catalog.columns}
    if partition_on is not None:
        column = by_name.get(partition_on)
        if column is None or column.kind != "int":
            hint = did_you_mean(partition_on, by_name) if column is None else ""
            raise SourceError(
                f"{label}: partition_on must name an integer column of the table; "
                f"'{partition_on}' is {'not a column' if column is None else 'not'}"
                f"{' an integer column' if column is not None else ''}{hint}"
            )
        return column
    if len(catalog.primary_key) == 1:
        column = by_name.get(catalog.primary_key[0])
        if column is not None and column.kind == "int":
            return column
    return None


def key_bounds(low: int, high: int, count: int) -> list[int]:
    """Where ``count`` equal key ranges over ``low..high`` start, after the first."""
    step = max((high - low + 1 + count - 1) // count, 1)
    return [low + step * i for i in range(1, count) if low + step * i <= high]


def key_predicates(key: str, bounds: Sequence[int]) -> list[str]:
    """One predicate per key range (``key`` already quoted); the first also takes NULL keys.
    ``[""]`` (the whole table) without bounds."""
    if not bounds:
        return [""]
    ranges = [f"({key} < {bounds[0]} OR {key} IS NULL)"]
    for start, end in zip(bounds, [*bounds[1:], None], strict=True):
        ranges.append(f"{key} >= {start}" + (f" AND {key} < {end}" if end is not None else ""))
    return ranges


def page_ranges(blocks: int, count: int) -> list[PageRange] | None:
    """``count`` ranges of heap pages covering ``blocks`` pages (open at both ends, so pages
    added since the catalog was read are read too); None when too few pages to split."""
    if blocks < count * MIN_BLOCKS_PER_PARTITION:
        return None
    step = (blocks + count - 1) // count
    edges = [step * i for i in range(1, count) if step * i < blocks]
    return list(zip([None, *edges], [*edges, None], strict=True))


def streams(catalog: Catalog, *, native_decimals: bool) -> bool:
    """Whether to stage the table range by range: large on disk, and every column's type
    known before its values are read (a decimal read as text is typed off its values, and
    every range must type alike). The choice rests on the size on disk, not on a row
    estimate, so the same table is always read the same way (its fingerprint stays)."""
    if catalog.physical_blocks * BLOCK_BYTES < STREAM_MIN_BYTES:
        return False
    return not any(
        column.kind == "decimal" and decimal_transport(column, native=native_decimals) == "text"
        for column in catalog.columns
    )


def stream_range_count(catalog: Catalog) -> int:
    """How many ranges of ``STREAM_PART_BLOCKS`` pages (~500k rows) the table is read in."""
    return -(-catalog.physical_blocks // STREAM_PART_BLOCKS)
