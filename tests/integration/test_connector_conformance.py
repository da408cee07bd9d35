"""One suite, every connector: the same logical dataset must stage to the same Arrow table.

The dataset has NULLs, decimals with a scale, dates, non-ASCII and quoted text; a second
case is the same table with no rows. Declared decimal precision is kept where a source
declares it (numeric(12,2) → decimal128(12, 2)) while files infer the smallest that holds
their values, so decimals are compared at precision 38 with their scale. Files carry no
types for an empty table (a header-only CSV): their columns are text, and the check there
is names and zero rows.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kalla_test_services import Bucket, Database, mysql_execute, pg_execute

from kalla.connectors import stage_source
from kalla.settings import Settings

SETTINGS = Settings()

SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("name", pa.string()),
        ("amount", pa.decimal128(12, 2)),
        ("booked_on", pa.date32()),
    ]
)
ROWS = [
    (1, "Zoë Ångström", Decimal("19.99"), dt.date(2024, 1, 31)),
    (2, "東京 Trading, Ltd", Decimal("-0.50"), dt.date(2024, 2, 29)),
    (3, None, None, None),
    (4, 'O\'Brien "the elder"\nsecond line', Decimal("1000.00"), dt.date(1999, 12, 31)),
    (5, "plain", Decimal("0.01"), dt.date(2024, 6, 1)),
]
DATASETS = {"rows": ROWS, "empty": []}


def arrow(rows: list[tuple]) -> pa.Table:
    return pa.Table.from_pylist([dict(zip(SCHEMA.names, r, strict=True)) for r in rows], SCHEMA)


def normalise(table: pa.Table) -> pa.Table:
    fields = [
        f.with_type(pa.decimal128(38, f.type.scale)) if pa.types.is_decimal(f.type) else f
        for f in table.schema
    ]
    return table.cast(pa.schema(fields))


# ---- one writer per connector: logical rows → a URI that holds them ----------------------


def _csv_text(rows: list[tuple]) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(SCHEMA.names)
    for row in rows:
        writer.writerow(["" if v is None else v.isoformat() if isinstance(v, dt.date) else v
                         for v in row])  # fmt: skip
    return out.getvalue().encode("utf-8")


def _parquet_bytes(rows: list[tuple]) -> bytes:
    sink = io.BytesIO()
    pq.write_table(arrow(rows), sink)
    return sink.getvalue()


def _json_record(row: tuple) -> str:
    parts = []
    for name, value in zip(SCHEMA.names, row, strict=True):
        if value is None:
            text = "null"
        elif isinstance(value, Decimal | int):
            text = str(value)  # a JSON number, written with its scale
        elif isinstance(value, dt.date):
            text = json.dumps(value.isoformat())
        else:
            text = json.dumps(value, ensure_ascii=False)
        parts.append(f"{json.dumps(name)}: {text}")
    return "{" + ", ".join(parts) + "}"


def write_csv(tmp_path: Path, rows: list[tuple], request: pytest.FixtureRequest) -> str:
    path = tmp_path / "data.csv"
    path.write_bytes(b"\xef\xbb\xbf" + _csv_text(rows))
    return str(path)


def write_parquet(tmp_path: Path, rows: list[tuple], request: pytest.FixtureRequest) -> str:
    path = tmp_path / "data.parquet"
    path.write_bytes(_parquet_bytes(rows))
    return str(path)


def write_xlsx(tmp_path: Path, rows: list[tuple], request: pytest.FixtureRequest) -> str:
    openpyxl = pytest.importorskip("openpyxl")
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.title = "Ledger"
    sheet.append(SCHEMA.names)
    for row in rows:
        sheet.append([float(v) if isinstance(v, Decimal) else v for v in row])
    path = tmp_path / "data.xlsx"
    workbook.save(path)
    return str(path)


def write_json(tmp_path: Path, rows: list[tuple], request: pytest.FixtureRequest) -> str:
    path = tmp_path / "data.json"
    path.write_text("[\n" + ",\n".join(_json_record(r) for r in rows) + "\n]\n", "utf-8")
    return str(path)


def write_ndjson(tmp_path: Path, rows: list[tuple], request: pytest.FixtureRequest) -> str:
    path = tmp_path / "data.ndjson"
    path.write_text("".join(_json_record(r) + "\n" for r in rows), "utf-8")
    return str(path)


def write_postgres(tmp_path: Path, rows: list[tuple], request: pytest.FixtureRequest) -> str:
    database: Database = request.getfixturevalue("pg_database")
    pg_execute(
        database,
        "CREATE TABLE ledger (id bigint PRIMARY KEY, name text, amount numeric(12,2),"
        " booked_on date)",
        ("INSERT INTO ledger VALUES (%s, %s, %s, %s)", rows),
    )
    return database.table_uri("ledger")


def write_mysql(tmp_path: Path, rows: list[tuple], request: pytest.FixtureRequest) -> str:
    database: Database = request.getfixturevalue("mysql_database")
    mysql_execute(
        database,
        "CREATE TABLE ledger (id bigint PRIMARY KEY, name text, amount decimal(12,2),"
        " booked_on date)",
        ("INSERT INTO ledger VALUES (%s, %s, %s, %s)", rows),
    )
    return database.table_uri("ledger")


def write_s3_csv(tmp_path: Path, rows: list[tuple], request: pytest.FixtureRequest) -> str:
    bucket: Bucket = request.getfixturevalue("s3_bucket")
    return bucket.put("exports/data.csv", _csv_text(rows))


def write_s3_parquet(tmp_path: Path, rows: list[tuple], request: pytest.FixtureRequest) -> str:
    bucket: Bucket = request.getfixturevalue("s3_bucket")
    return bucket.put("exports/data.parquet", _parquet_bytes(rows))


Writer = Callable[[Path, list[tuple], pytest.FixtureRequest], str]
# (id, writer, keeps types when empty)
CONNECTORS: list = [
    pytest.param(write_csv, False, id="csv"),
    pytest.param(write_parquet, True, id="parquet"),
    pytest.param(write_xlsx, False, id="xlsx"),
    pytest.param(write_json, False, id="json"),
    pytest.param(write_ndjson, False, id="ndjson"),
    pytest.param(write_postgres, True, id="postgres", marks=pytest.mark.postgres),
    pytest.param(write_mysql, True, id="mysql", marks=pytest.mark.mysql),
    pytest.param(write_s3_csv, False, id="s3-csv", marks=pytest.mark.s3),
    pytest.param(write_s3_parquet, True, id="s3-parquet", marks=pytest.mark.s3),
]


@pytest.mark.parametrize(("writer", "typed_when_empty"), CONNECTORS)
@pytest.mark.parametrize("dataset", list(DATASETS))
def test_same_dataset_stages_to_the_same_table(
    tmp_path: Path,
    request: pytest.FixtureRequest,
    writer: Writer,
    typed_when_empty: bool,
    dataset: str,
) -> None:
    rows = DATASETS[dataset]
    if not rows and writer in (write_json, write_ndjson):
        pytest.skip("an empty JSON document names no columns")
    uri = writer(tmp_path, rows, request)
    progress: list[float] = []
    staged = stage_source(
        uri,
        alias="ledger",
        settings=SETTINGS,
        staging_dir=tmp_path / "staging",
        progress=progress.append,
    )
    table = pq.read_table(staged.path)

    assert staged.row_count == len(rows) == table.num_rows
    assert table.schema == staged.schema
    assert progress[0] == 0.0 and progress[-1] == 1.0 and progress == sorted(progress)
    assert set(staged.fingerprint) in (
        {"kind", "sha256", "bytes"},
        {"kind", "rows", "content_sha256"},
    )
    if rows or typed_when_empty:
        assert normalise(table).equals(normalise(arrow(rows))), table.to_pylist()
        if rows:
            assert table.schema.field("amount").type.scale == 2
    else:
        assert table.column_names == SCHEMA.names
