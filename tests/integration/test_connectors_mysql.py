"""MySQL/MariaDB staging against the real server: types, partitions, filters, errors."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kalla_test_services import Database, mysql_execute

from kalla.connectors import stage_source
from kalla.errors import SourceError, SourceUnavailableError
from kalla.settings import Settings

SETTINGS = Settings()

pytestmark = pytest.mark.mysql


@pytest.fixture
def payments(mysql_database: Database) -> Database:
    mysql_execute(
        mysql_database,
        "CREATE TABLE payments (id int PRIMARY KEY, reference varchar(40), paid decimal(12,2),"
        " fx decimal(30,12), paid_on date, booked datetime(6), big bigint unsigned)",
        (
            "INSERT INTO payments VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    i,
                    None if i % 10 == 0 else f"INV-{i:05d}",
                    Decimal(i) / 100,
                    Decimal("123456789012345678.123456789012") if i == 1 else None,
                    dt.date(2024, 3, 1) + dt.timedelta(days=i % 30),
                    dt.datetime(2024, 3, 1, 8, 0, 0, 250000) if i == 1 else None,
                    18446744073709551615 if i == 1 else None,
                )
                for i in range(1, 2001)
            ],
        ),
        "ANALYZE TABLE payments",
    )
    return mysql_database


def test_types_and_values_are_exact(tmp_path: Path, payments: Database) -> None:
    staged = stage_source(
        payments.table_uri("payments"), alias="p", settings=SETTINGS, staging_dir=tmp_path
    )
    assert staged.row_count == 2000
    assert {f.name: f.type for f in staged.schema} == {
        "id": pa.int32(),
        "reference": pa.string(),
        "paid": pa.decimal128(12, 2),
        "fx": pa.decimal128(30, 12),
        "paid_on": pa.date32(),
        "booked": pa.timestamp("us"),
        "big": pa.uint64(),
    }
    first = pq.read_table(staged.path).slice(0, 1).to_pylist()[0]
    assert first["fx"] == Decimal("123456789012345678.123456789012")
    assert first["big"] == 18446744073709551615
    assert first["booked"] == dt.datetime(2024, 3, 1, 8, 0, 0, 250000)


def test_partitions_by_integer_key(tmp_path: Path, payments: Database) -> None:
    single = pq.read_table(
        stage_source(
            payments.table_uri("payments"), alias="p", settings=SETTINGS, staging_dir=tmp_path
        ).path
    )
    parts = pq.read_table(
        stage_source(
            payments.table_uri("payments", partitions="3"),
            alias="p",
            settings=SETTINGS,
            staging_dir=tmp_path,
        ).path
    )
    assert parts.equals(single)


def test_filters_pushed_with_driver_quoting(tmp_path: Path, payments: Database) -> None:
    filters = [
        SimpleNamespace(column="paid", op="lt", value=1),
        SimpleNamespace(column="reference", op="neq", value="x\\' OR 1=1 -- "),
        SimpleNamespace(column="paid_on", op="gte", value="2024-03-10"),
    ]
    staged = stage_source(
        payments.table_uri("payments"),
        alias="p",
        settings=SETTINGS,
        staging_dir=tmp_path,
        filters=filters,
    )
    assert staged.filters_applied == tuple(filters)
    ids = pq.read_table(staged.path).column("id").to_pylist()
    assert ids == [i for i in range(1, 100) if i % 10 and i % 30 >= 9]


def test_wrong_password_is_a_login_error(tmp_path: Path, payments: Database) -> None:
    uri = payments.table_uri("payments").replace("root@", "root:NotThePassword@", 1)
    with pytest.raises(SourceUnavailableError) as info:
        stage_source(uri, alias="p", settings=SETTINGS, staging_dir=tmp_path)
    assert "refused the login for user 'root'" in str(info.value)
    assert "NotThePassword" not in str(info.value)


def test_missing_table_and_column(tmp_path: Path, payments: Database) -> None:
    with pytest.raises(SourceError, match=r"table 'payment' not found .*did you mean 'payments'"):
        stage_source(
            payments.table_uri("payment"), alias="p", settings=SETTINGS, staging_dir=tmp_path
        )
    with pytest.raises(SourceError, match=r"unknown column 'refrence' \(did you mean 'reference'"):
        stage_source(
            payments.table_uri("payments"),
            alias="p",
            settings=SETTINGS,
            staging_dir=tmp_path,
            filters=[SimpleNamespace(column="refrence", op="eq", value="x")],
        )


def test_server_down(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailableError, match=r"cannot reach MySQL at 127\.0\.0\.1:1"):
        stage_source(
            "mysql://root:pw@127.0.0.1:1/db?table=t",
            alias="p",
            settings=SETTINGS,
            staging_dir=tmp_path,
        )


def test_text_filters_are_case_and_space_exact(tmp_path: Path, payments: Database) -> None:
    for value in ("inv-00001", "INV-00001 "):
        staged = stage_source(
            payments.table_uri("payments"),
            alias="p",
            settings=SETTINGS,
            staging_dir=tmp_path,
            filters=[SimpleNamespace(column="reference", op="eq", value=value)],
        )
        assert staged.row_count == 0, value
    exact = stage_source(
        payments.table_uri("payments"),
        alias="p",
        settings=SETTINGS,
        staging_dir=tmp_path,
        filters=[SimpleNamespace(column="reference", op="in", value=["INV-00001"])],
    )
    assert exact.row_count == 1
