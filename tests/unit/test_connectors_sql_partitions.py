"""Partition planning for database tables, without a database: how many partitions, which
key or page ranges, when a table streams, and that the ranges cover every row exactly once."""

from __future__ import annotations

import itertools

import pytest

from kalla.connectors.sql import partitions
from kalla.connectors.sql.catalog import Catalog, Column
from kalla.errors import SourceError

LABEL = "source 't' (postgres://u@h/db?table=t)"
INT = Column("id", "bigint", "int")
TEXT = Column("ref", "text", "text")
AMOUNT = Column("amount", "numeric", "decimal", precision=12, scale=2)
RAW = Column("raw", "numeric", "decimal")  # no declared scale: read as text


def catalog(*columns: Column, key: tuple[str, ...] = (), blocks: int = 0) -> Catalog:
    return Catalog("public", "t", columns, 1_000_000, key, blocks)


@pytest.mark.parametrize(
    ("option", "rows", "cpus", "expected"),
    [
        ("", 99_999, 16, 1),  # small: one query
        ("", 100_000, 16, 8),  # one per core, at most 8
        ("", 5_000_000, 1, 2),  # at least 2
        ("", 5_000_000, None, 2),
        ("3", 10, 16, 3),  # the option wins whatever the size
        ("16", 10, 1, 16),
    ],
)
def test_partition_count(option: str, rows: int, cpus: int | None, expected: int) -> None:
    assert (
        partitions.partition_count(option, estimated_rows=rows, cpus=cpus, label=LABEL) == expected
    )


@pytest.mark.parametrize("option", ["0", "17", "two", "-1", "1.5"])
def test_partition_count_option_is_checked(option: str) -> None:
    with pytest.raises(
        SourceError, match=f"partitions must be a whole number from 1 to 16, not '{option}'"
    ):
        partitions.partition_count(option, estimated_rows=0, cpus=4, label=LABEL)


@pytest.mark.parametrize(
    ("low", "high", "count"),
    [(1, 3000, 4), (0, 9, 3), (-50, 50, 7), (5, 5, 4), (1, 3, 8), (10**12, 10**12 + 999, 16)],
)
def test_key_ranges_cover_every_key_once(low: int, high: int, count: int) -> None:
    bounds = partitions.key_bounds(low, high, count)
    assert bounds == sorted(bounds) and len(bounds) < count
    assert all(low < b <= high for b in bounds)
    edges = [None, *bounds, None]
    for key in range(low, min(high, low + 2000) + 1):
        owners = [
            i
            for i, (start, end) in enumerate(itertools.pairwise(edges))
            if (start is None or key >= start) and (end is None or key < end)
        ]
        assert len(owners) == 1, key


def test_key_predicates_take_nulls_in_the_first_range() -> None:
    assert partitions.key_predicates('"id"', [100, 200]) == [
        '("id" < 100 OR "id" IS NULL)',
        '"id" >= 100 AND "id" < 200',
        '"id" >= 200',
    ]
    assert partitions.key_predicates('"id"', []) == [""]


@pytest.mark.parametrize(("blocks", "count"), [(64, 8), (1000, 3), (12_801, 2), (100, 7)])
def test_page_ranges_are_contiguous_and_open_ended(blocks: int, count: int) -> None:
    ranges = partitions.page_ranges(blocks, count)
    assert ranges is not None and len(ranges) == count
    assert ranges[0][0] is None and ranges[-1][1] is None  # pages added later are read too
    for (_, end), (start, _) in itertools.pairwise(ranges):
        assert end == start and end is not None and 0 < end < blocks


def test_too_few_pages_are_not_split() -> None:
    assert partitions.page_ranges(63, 8) is None


@pytest.mark.parametrize(
    ("table", "partition_on", "expected"),
    [
        (catalog(INT, TEXT, key=("id",)), None, "id"),  # an integer primary key
        (catalog(INT, TEXT, key=("ref",)), None, None),  # a text key: no key ranges
        (catalog(INT, TEXT, key=("id", "ref")), None, None),  # a composite key
        (catalog(INT, TEXT), "id", "id"),
    ],
)
def test_range_column(table: Catalog, partition_on: str | None, expected: str | None) -> None:
    column = partitions.range_column(table, partition_on, label=LABEL)
    assert (column.name if column else None) == expected


@pytest.mark.parametrize(
    ("partition_on", "message"),
    [("idd", "'idd' is not a column (did you mean 'id'?)"), ("ref", "'ref' is not an integer")],
)
def test_range_column_option_is_checked(partition_on: str, message: str) -> None:
    with pytest.raises(SourceError, match="partition_on must name an integer column") as info:
        partitions.range_column(catalog(INT, TEXT), partition_on, label=LABEL)
    assert message in str(info.value)


def test_streams_on_size_on_disk_and_known_types(monkeypatch: pytest.MonkeyPatch) -> None:
    big = partitions.STREAM_MIN_BYTES // partitions.BLOCK_BYTES
    assert partitions.streams(catalog(INT, AMOUNT, blocks=big), native_decimals=False)
    assert not partitions.streams(catalog(INT, AMOUNT, blocks=big - 1), native_decimals=False)
    assert not partitions.streams(catalog(INT, RAW, blocks=big), native_decimals=False)
    assert partitions.stream_range_count(catalog(INT, blocks=big)) == -(
        -big // partitions.STREAM_PART_BLOCKS
    )
    monkeypatch.setattr(partitions, "STREAM_MIN_BYTES", 1)  # read at call time (tests lower it)
    assert partitions.streams(catalog(INT, blocks=1), native_decimals=True)
