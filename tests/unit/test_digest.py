"""Content digests: the fast path (DataFusion) against the value-by-value reference, and the
properties an auditor relies on.

Equal rows give equal digests whatever the row order, the split into files, the row groups,
the compression or the Arrow width of a type; one changed value, one NULL, one decimal scale
or one duplicated row gives another digest.
"""

from __future__ import annotations

import random
import threading
from concurrent.futures import CancelledError
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kalla.engine.datafusion.digest import digest_parquet, digest_table
from kalla.engine.datafusion.executor import DataFusionExecutor
from kalla.engine.executor import EngineOptions, Written
from kalla.errors import EvidenceError
from kalla.evidence.digest import (
    MODULUS,
    TableDigest,
    canonical_columns,
    digest_batches,
    encode_fixed,
    reference_digest,
    sum_hashes,
)

# ---- every supported Arrow type: its canonical type, and the fast path equals the reference

D = Decimal
TYPES: list[tuple[str, pa.DataType, list[Any], str]] = [
    ("bool", pa.bool_(), [True, False, None], "bool"),
    ("int8", pa.int8(), [-128, 127, None], "int"),
    ("int64", pa.int64(), [-(2**63), 2**63 - 1, 0, None], "int"),
    ("uint32", pa.uint32(), [0, 2**32 - 1, None], "int"),
    ("uint64", pa.uint64(), [0, 2**64 - 1, None], "uint64"),
    ("float32", pa.float32(), [1.5, -0.0, float("inf"), float("nan"), None], "float"),
    ("float64", pa.float64(), [0.1, 1e300, -1e-300, float("nan"), None], "float"),
    ("decimal128", pa.decimal128(12, 2), [D("19.99"), D("-0.05"), D("0.00"), None], "decimal(2)"),
    (
        "decimal128 wide",
        pa.decimal128(38, 10),
        [D("-1234567890123456789012345678.0123456789")],
        "decimal(10)",
    ),
    ("decimal256", pa.decimal256(60, 4), [D("-1" + "0" * 33 + ".5000"), None], "decimal(4)"),
    ("decimal32", pa.decimal32(7, 2), [D("-12345.67"), D("0.01"), None], "decimal(2)"),
    ("decimal64", pa.decimal64(15, 3), [D("-123456789012.345"), None], "decimal(3)"),
    ("decimal neg scale", pa.decimal128(5, -2), [D("1.23E+4"), None], "decimal(-2)"),
    (
        "date32",
        pa.date32(),
        [date(1970, 1, 1), date(1899, 12, 31), date(9999, 12, 31), None],
        "date",
    ),
    ("date64", pa.date64(), [date(2024, 2, 29), date(1900, 1, 1), None], "date"),
    ("timestamp s", pa.timestamp("s"), [datetime(1969, 12, 31, 23, 59, 59), None], "timestamp"),
    (
        "timestamp us tz",
        pa.timestamp("us", tz="Europe/Paris"),
        [datetime(2024, 1, 1, 12, 0, 0, 123456, tzinfo=UTC), None],
        "timestamp_tz",
    ),
    ("timestamp ns", pa.timestamp("ns"), [-1, 1, 10**18, None], "timestamp"),
    ("time32 ms", pa.time32("ms"), [time(23, 59, 59, 999000), None], "time"),
    ("time64 ns", pa.time64("ns"), [1, 86_399_999_999_999, None], "time"),
    (
        "duration ms",
        pa.duration("ms"),
        [timedelta(milliseconds=-1), timedelta(days=3), None],
        "duration",
    ),
    ("string", pa.string(), ["", "ä€😀", "a\x00b", None], "string"),
    ("large_string", pa.large_string(), ["x" * 1000, "", None], "string"),
    (
        "string_view",
        pa.string_view(),
        ["short", "a string longer than twelve bytes", None],
        "string",
    ),
    ("binary", pa.binary(), [b"", b"\x00\xff", None], "binary"),
    ("fixed_size_binary", pa.binary(3), [b"abc", b"\x00\x00\x00", None], "binary"),
    ("null", pa.null(), [None, None], "null"),
]


NOT_IN_PARQUET = {"decimal neg scale"}


@pytest.mark.parametrize(("name", "arrow", "values", "canonical"), TYPES, ids=[t[0] for t in TYPES])
def test_each_type_digests_like_the_reference(
    name: str, arrow: pa.DataType, values: list[Any], canonical: str
) -> None:
    table = pa.table({"v": pa.array(values, arrow), "k": pa.array(range(len(values)), pa.int64())})
    assert [c.type for c in canonical_columns(table.schema)] == [canonical, "int"]
    expected = reference_digest(table)
    assert digest_table(table) == expected
    assert digest_batches(table.to_batches(max_chunksize=2), table.schema) == expected
    if name not in NOT_IN_PARQUET:  # Parquet has no negative decimal scale
        with TemporaryDirectory() as tmp:
            path = Path(tmp) / "t.parquet"
            pq.write_table(table, path)
            assert digest_parquet(path) == expected


# ---- the same rows in another Arrow width or encoding: the same digest (engine-neutral)

SAME_ROWS = [
    ("int32 / int64", pa.array([1, None, -7], pa.int32()), pa.array([1, None, -7], pa.int64())),
    (
        "string / large / view",
        pa.array(["a", None, ""]),
        pa.array(["a", None, ""], pa.large_string()),
    ),
    (
        "string / view",
        pa.array(["a", None, "b" * 20]),
        pa.array(["a", None, "b" * 20], pa.string_view()),
    ),
    (
        "string / dictionary",
        pa.array(["x", "y", "x", None]),
        pa.array(["x", "y", "x", None]).dictionary_encode(),
    ),
    (
        "decimal precision",
        pa.array([D("1.50"), None], pa.decimal128(5, 2)),
        pa.array([D("1.50"), None], pa.decimal128(38, 2)),
    ),
    (
        "decimal128 / 256",
        pa.array([D("-1.50"), D("7.25")], pa.decimal128(10, 2)),
        pa.array([D("-1.50"), D("7.25")], pa.decimal256(40, 2)),
    ),
    (
        "float32 / float64",
        pa.array([1.5, None, 0.25], pa.float32()),
        pa.array([1.5, None, 0.25], pa.float64()),
    ),
    (
        "NaN payloads",
        pa.array([float("nan")], pa.float64()),
        pa.array([-float("nan")], pa.float64()),
    ),
    (
        "timestamp units",
        pa.array([1_500, -1], pa.timestamp("ms")),
        pa.array([1_500_000, -1_000], pa.timestamp("us")),
    ),
    (
        "time zones",
        pa.array([0], pa.timestamp("us", tz="UTC")),
        pa.array([0], pa.timestamp("us", tz="America/New_York")),
    ),
    (
        "date32 / date64",
        pa.array([date(2001, 2, 3), None], pa.date32()),
        pa.array([date(2001, 2, 3), None], pa.date64()),
    ),
    ("binary / fixed", pa.array([b"ab", None], pa.binary()), pa.array([b"ab", None], pa.binary(2))),
]


@pytest.mark.parametrize(("a", "b"), [s[1:] for s in SAME_ROWS], ids=[s[0] for s in SAME_ROWS])
def test_the_same_values_in_another_arrow_type_digest_alike(a: pa.Array, b: pa.Array) -> None:
    assert digest_table(pa.table({"v": a})) == digest_table(pa.table({"v": b}))


# ---- what must change the digest

DIFFERENT = [
    (
        "NULL vs empty string",
        pa.table({"v": pa.array([None], pa.string())}),
        pa.table({"v": pa.array([""])}),
    ),
    ("NULL vs zero", pa.table({"v": pa.array([None], pa.int64())}), pa.table({"v": pa.array([0])})),
    (
        "decimal scale",
        pa.table({"v": pa.array([D("1.5")], pa.decimal128(5, 1))}),
        pa.table({"v": pa.array([D("1.50")], pa.decimal128(5, 2))}),
    ),
    ("int vs float", pa.table({"v": pa.array([1])}), pa.table({"v": pa.array([1.0])})),
    ("-0.0 vs 0.0", pa.table({"v": pa.array([-0.0])}), pa.table({"v": pa.array([0.0])})),
    ("string boundary", pa.table({"a": ["ab"], "b": ["c"]}), pa.table({"a": ["a"], "b": ["bc"]})),
    ("string vs binary", pa.table({"v": ["a"]}), pa.table({"v": pa.array([b"a"])})),
    ("column name", pa.table({"v": [1]}), pa.table({"w": [1]})),
    ("column order", pa.table({"a": [1], "b": [2]}), pa.table({"b": [2], "a": [1]})),
    (
        "values across rows",
        pa.table({"a": [1, 2], "b": [1, 2]}),
        pa.table({"a": [1, 2], "b": [2, 1]}),
    ),
    (
        "naive vs zoned timestamp",
        pa.table({"v": pa.array([0], pa.timestamp("s"))}),
        pa.table({"v": pa.array([0], pa.timestamp("s", tz="UTC"))}),
    ),
    (
        "no rows vs one NULL row",
        pa.table({"v": pa.array([], pa.int64())}),
        pa.table({"v": pa.array([None], pa.int64())}),
    ),
]


@pytest.mark.parametrize(("a", "b"), [d[1:] for d in DIFFERENT], ids=[d[0] for d in DIFFERENT])
def test_different_tables_digest_differently(a: pa.Table, b: pa.Table) -> None:
    assert digest_table(a).hexdigest != digest_table(b).hexdigest
    assert reference_digest(a).hexdigest != reference_digest(b).hexdigest


def test_a_float_column_with_nan_beside_one_value_is_read_as_it_is(tmp_path: Path) -> None:
    """Parquet's min/max leave NaN out (here min = max = 1.0); read trusting them, the NaN
    comes back as 1.0 (found by the property test below)."""
    table = pa.table({"v": [1.0, float("nan")]})
    pq.write_table(table, tmp_path / "t.parquet")
    assert digest_parquet(tmp_path / "t.parquet") == reference_digest(table)
    assert reference_digest(table) != reference_digest(pa.table({"v": [1.0, 1.0]}))


def test_types_without_a_canonical_encoding_are_named() -> None:
    table = pa.table({"ok": [1], "tags": pa.array([[1, 2]]), "pair": pa.array([{"x": 1}])})
    with pytest.raises(EvidenceError) as caught:
        digest_table(table)
    assert "'tags' has type list<item: int64>" in caught.value.message
    assert "'pair' has type struct<x: int64>" in caught.value.message


def test_a_decimal_beyond_128_bits_is_named() -> None:
    table = pa.table({"big": pa.array([D("1" + "0" * 40), None], pa.decimal256(60, 0))})
    for digest in (digest_table, reference_digest):
        with pytest.raises(EvidenceError, match="'big' holds a decimal beyond 128 bits"):
            digest(table)


def test_sums_wrap_modulo_2_256_and_combine_by_addition() -> None:
    columns = (("v", "int"),)
    a = TableDigest(columns, 1, MODULUS - 1)
    assert (a + TableDigest(columns, 2, 5)) == TableDigest(columns, 3, 4)
    with pytest.raises(EvidenceError, match="different columns"):
        a + TableDigest((("w", "int"),), 1, 1)


def test_sum_of_hashes_reads_a_sliced_array_from_its_offset() -> None:
    hashes = pa.array([bytes([i]) * 32 for i in range(1, 6)], pa.binary())
    expected = sum(int.from_bytes(bytes([i]) * 32, "little") for i in (2, 3, 4))
    assert sum_hashes(hashes.slice(1, 3)) == expected


# ---- properties on random tables

CELLS = {
    "id": (pa.int64(), st.integers(-(2**63), 2**63 - 1)),
    "ref": (pa.string(), st.text(max_size=12)),
    "amount": (pa.decimal128(12, 2), st.decimals(-(10**9), 10**9, places=2, allow_nan=False)),
    "ratio": (pa.float64(), st.floats(allow_nan=True, allow_infinity=True)),
    "day": (pa.date32(), st.dates()),
    "at": (pa.timestamp("us", tz="UTC"), st.datetimes(timezones=st.just(UTC))),
    "paid": (pa.bool_(), st.booleans()),
    "blob": (pa.binary(), st.binary(max_size=8)),
}
SCHEMA = pa.schema([(name, t) for name, (t, _) in CELLS.items()])
row = st.fixed_dictionaries({name: st.none() | cell for name, (_, cell) in CELLS.items()})
tables = st.lists(row, min_size=1, max_size=25).map(lambda rows: pa.Table.from_pylist(rows, SCHEMA))
CODECS = ["none", "snappy", "zstd", "gzip", "lz4"]
PROPERTY = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(tables, st.randoms(use_true_random=False))
def test_fast_digest_is_the_reference_and_ignores_order_files_and_compression(
    table: pa.Table, rnd: random.Random
) -> None:
    expected = reference_digest(table)
    assert digest_table(table) == expected
    order = list(range(table.num_rows))
    rnd.shuffle(order)
    shuffled = table.take(order)
    cuts = sorted(rnd.sample(range(table.num_rows + 1), k=min(3, table.num_rows + 1)))
    parts = [
        shuffled.slice(a, b - a) for a, b in zip([0, *cuts], [*cuts, table.num_rows], strict=True)
    ]
    with TemporaryDirectory() as tmp:
        paths = []
        for i, part in enumerate(parts):
            path = Path(tmp) / f"part-{i}.parquet"
            pq.write_table(
                part, path, compression=rnd.choice(CODECS), row_group_size=rnd.randint(1, 8)
            )
            paths.append(path)
        assert digest_parquet(paths) == expected


@PROPERTY
@given(tables, st.data())
def test_one_changed_value_null_or_duplicate_row_changes_the_digest(
    table: pa.Table, data: st.DataObject
) -> None:
    before = digest_table(table).hexdigest
    rows = table.to_pylist()
    i = data.draw(st.integers(0, len(rows) - 1), label="row")
    name = data.draw(st.sampled_from(list(CELLS)), label="column")

    duplicated = pa.Table.from_pylist([*rows, rows[i]], SCHEMA)
    assert digest_table(duplicated).hexdigest != before

    changed = [dict(r) for r in rows]
    value = data.draw(st.none() | CELLS[name][1], label="new value")
    if _same(value, changed[i][name]):
        return
    changed[i][name] = value
    assert digest_table(pa.Table.from_pylist(changed, SCHEMA)).hexdigest != before


def _same(a: Any, b: Any) -> bool:
    """Whether two cells are the same value as the digest sees it (NaN is NaN)."""
    if isinstance(a, float) and isinstance(b, float):
        return repr(a) == repr(b) or (a != a and b != b)
    return type(a) is type(b) and a == b


@PROPERTY
@given(
    st.lists(
        st.decimals(-(10**6), 10**6, places=2, allow_nan=False) | st.none(), min_size=1, max_size=10
    )
)
def test_a_decimal_scale_changes_the_digest_and_precision_does_not(
    values: list[Decimal | None],
) -> None:
    column = pa.array(values, pa.decimal128(12, 2))
    base = digest_table(pa.table({"v": column}))
    assert digest_table(pa.table({"v": column.cast(pa.decimal128(20, 2))})) == base
    rescaled = digest_table(pa.table({"v": column.cast(pa.decimal128(13, 3))}))
    assert rescaled.hexdigest != base.hexdigest


def test_a_stopped_digest_ends_with_cancelled_error(tmp_path: Path) -> None:
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"v": list(range(1000))}), path)
    stop = threading.Event()
    assert digest_parquet(path, stop=stop).rows == 1000
    stop.set()
    with pytest.raises(CancelledError):
        digest_parquet(path, stop=stop)


# ---- digests summed while the engine writes (the same pass as the write)

WRITABLE = [t for t in TYPES if t[0] not in NOT_IN_PARQUET]


def _executor() -> DataFusionExecutor:
    return DataFusionExecutor(EngineOptions(memory_limit=256 * 1024**2, target_partitions=4))


@pytest.mark.parametrize(
    ("name", "arrow", "values", "canonical"), WRITABLE, ids=[t[0] for t in WRITABLE]
)
def test_a_table_written_is_digested_as_it_is_written(
    name: str, arrow: pa.DataType, values: list[Any], canonical: str, tmp_path: Path
) -> None:
    table = pa.table({"k": pa.array(range(len(values)), pa.int64()), "v": pa.array(values, arrow)})
    with _executor() as executor:
        written = executor.write_table(table, tmp_path / "t.parquet", digest=True)
        executor.write_table(table, tmp_path / "plain.parquet")
        assert written.rows == len(values) and written.digest is not None
        found = written.digest.result()  # before close(), which stops digests still running
    assert found == reference_digest(table) == digest_parquet(tmp_path / "t.parquet")
    # the same file as without a digest (DataFusion 55 writes timestamp[s] as int64)
    assert pq.read_schema(tmp_path / "t.parquet") == pq.read_schema(tmp_path / "plain.parquet")


@PROPERTY
@given(tables, st.integers(1, 40))
def test_a_query_written_is_digested_as_it_is_written(table: pa.Table, limit: int) -> None:
    """Over several partitions, with and without a LIMIT (hashed under it; one that drops
    rows makes the counts differ and the file is read back instead): always the digest of
    what the file holds, and the file is the one written without a digest."""
    with TemporaryDirectory() as tmp, _executor() as executor:
        source = Path(tmp) / "source.parquet"
        pq.write_table(table, source, row_group_size=3)
        executor.register_parquet("t", source, what="t")
        for query in (
            "SELECT * FROM t WHERE id IS NULL OR id > 0",
            f"SELECT * FROM t LIMIT {limit}",
        ):
            out = Path(tmp) / "out.parquet"
            written = executor.write(sqlglot.parse_one(query), out, what="w", digest=True)
            assert written.digest is not None
            assert written.digest.result() == digest_parquet(out)
            assert written.rows == pq.ParquetFile(out).metadata.num_rows
            assert pq.read_schema(out) == table.schema


def test_without_a_canonical_encoding_the_file_is_written_and_the_digest_says_why(
    tmp_path: Path,
) -> None:
    cases = {
        "list": (pa.table({"tags": pa.array([[1], [2, 3]])}), "'tags' has type list<item: int64>"),
        "decimal256": (
            pa.table({"big": pa.array([D("1" + "0" * 40), None], pa.decimal256(60, 0))}),
            "'big' holds a decimal beyond 128 bits",
        ),
    }
    with _executor() as executor:
        for name, (table, why) in cases.items():
            written = executor.write_table(table, tmp_path / f"{name}.parquet", digest=True)
            assert pq.read_table(tmp_path / f"{name}.parquet").equals(table)
            assert written.digest is not None
            with pytest.raises(EvidenceError, match=why):
                written.digest.result()


def test_writes_are_not_digested_when_digests_are_off(tmp_path: Path) -> None:
    options = EngineOptions(memory_limit=256 * 1024**2, content_digests=False)
    with DataFusionExecutor(options) as executor:
        written = executor.write_table(pa.table({"v": [1]}), tmp_path / "t.parquet", digest=True)
    assert written == Written(rows=1)


def test_an_empty_batch_encodes_to_nothing() -> None:
    """Engines hand a function empty batches; the encoder answers with no rows."""
    table = pa.table({"s": pa.array([], pa.string()), "d": pa.array([], pa.duration("ms"))})
    encoded, tails = encode_fixed(table.columns, canonical_columns(table.schema))
    assert len(encoded) == 0 and [len(t) for t in tails] == [0]
