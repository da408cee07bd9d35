"""PostgreSQL staging against the real server: types, partitions, filters, errors."""

from __future__ import annotations

import datetime as dt
import time
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from kalla_test_services import Database, pg_execute

from kalla.connectors import connector_for, stage_source
from kalla.connectors.base import Progress
from kalla.errors import KallaError, SourceError, SourceUnavailableError
from kalla.settings import Settings

SETTINGS = Settings()

pytestmark = pytest.mark.postgres


def Filter(column: str, op: str, value: object) -> SimpleNamespace:
    """Duck-typed FilterCondition (column/op/value), as the connectors accept it."""
    return SimpleNamespace(column=column, op=op, value=value)


@pytest.fixture
def invoices(pg_database: Database) -> Database:
    pg_execute(
        pg_database,
        "CREATE SCHEMA ledger",
        "CREATE TABLE ledger.invoices (invoice_id text PRIMARY KEY, seq bigint NOT NULL,"
        " customer text, amount numeric(12,2), rate numeric(30,12), raw numeric,"
        " code char(5), issued date, posted timestamp, posted_tz timestamptz,"
        " paid boolean, span interval)",
        (
            "INSERT INTO ledger.invoices VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    f"INV-{i:05d}",
                    i,
                    "Zoë" if i % 2 else "O'Brien",
                    Decimal(i) / 100,
                    Decimal("123456789012345678.123456789012") if i == 1 else None,
                    Decimal("1.123456789012345") if i == 1 else Decimal(i),
                    "AB" if i == 1 else None,
                    dt.date(2024, 1, 1) + dt.timedelta(days=i % 60),
                    dt.datetime(2024, 1, 1, 12, 30, 15, 123456) if i == 1 else None,
                    dt.datetime(2024, 1, 1, 12, 0, tzinfo=dt.UTC) if i == 1 else None,
                    i % 3 == 0,
                    dt.timedelta(days=1) if i == 1 else None,
                )
                for i in range(1, 3001)
            ],
        ),
        "ANALYZE ledger.invoices",
    )
    return pg_database


def test_types_are_exact(tmp_path: Path, invoices: Database) -> None:
    staged = stage_source(
        invoices.table_uri("ledger.invoices"), alias="inv", settings=SETTINGS, staging_dir=tmp_path
    )
    assert staged.row_count == 3000
    assert staged.fingerprint["kind"] == "table" and staged.fingerprint["rows"] == 3000
    assert "content_sha256" in staged.fingerprint
    types = {f.name: f.type for f in staged.schema}
    assert types == {
        "invoice_id": pa.string(),
        "seq": pa.int64(),
        "customer": pa.string(),
        "amount": pa.decimal128(12, 2),
        "rate": pa.decimal128(30, 12),
        "raw": pa.decimal128(19, 15),
        "code": pa.string(),
        "issued": pa.date32(),
        "posted": pa.timestamp("us"),
        "posted_tz": pa.timestamp("us", tz="UTC"),
        "paid": pa.bool_(),
        "span": pa.string(),
    }
    first = pq.read_table(staged.path).slice(0, 1).to_pylist()[0]
    assert first["amount"] == Decimal("0.01")
    assert first["rate"] == Decimal("123456789012345678.123456789012")
    assert first["raw"] == Decimal("1.123456789012345")
    assert first["code"] == "AB"  # char(5) padding dropped
    assert first["posted"] == dt.datetime(2024, 1, 1, 12, 30, 15, 123456)
    assert first["span"] == "1 day"
    assert first["customer"] == "Zoë"


@pytest.mark.parametrize(
    "options", [{"partitions": "3"}, {"partitions": "4", "partition_on": "seq"}]
)
def test_partitioned_read_equals_single_read(
    tmp_path: Path, invoices: Database, options: dict[str, str]
) -> None:
    uri = invoices.table_uri("ledger.invoices")
    single = pq.read_table(
        stage_source(uri, alias="a", settings=SETTINGS, staging_dir=tmp_path).path
    )
    connector = connector_for(
        invoices.table_uri("ledger.invoices", **options), alias="b", settings=SETTINGS
    )
    assert connector.partition_count() == int(options["partitions"])  # type: ignore[attr-defined]
    parts = pq.read_table(
        stage_source(invoices.table_uri("ledger.invoices", **options), alias="b", settings=SETTINGS,
                     staging_dir=tmp_path).path
    )  # fmt: skip
    assert parts.num_rows == single.num_rows == 3000
    assert parts.sort_by("invoice_id").equals(single.sort_by("invoice_id"))


def test_ctid_partitions_cover_a_table_without_integer_key(
    tmp_path: Path, pg_database: Database
) -> None:
    pg_execute(
        pg_database,
        "CREATE TABLE wide AS SELECT 'K' || g AS k, repeat('x', 200) AS pad"
        " FROM generate_series(1, 20000) g",
    )
    staged = stage_source(
        pg_database.table_uri("wide", partitions="4"),
        alias="w",
        settings=SETTINGS,
        staging_dir=tmp_path,
    )
    keys = pq.read_table(staged.path).column("k").to_pylist()
    assert len(keys) == len(set(keys)) == 20000


def test_staging_twice_gives_the_same_fingerprint(tmp_path: Path, invoices: Database) -> None:
    uri = invoices.table_uri("ledger.invoices", partitions="3")
    first = stage_source(uri, alias="a", settings=SETTINGS, staging_dir=tmp_path)
    second = stage_source(uri, alias="a", settings=SETTINGS, staging_dir=tmp_path)
    assert first.fingerprint == second.fingerprint
    assert first.path != second.path


def test_filters_are_pushed_down(tmp_path: Path, invoices: Database) -> None:
    filters = [
        Filter("amount", "gte", "10.00"),
        Filter("issued", "between", ["2024-01-01", "2024-01-31"]),
        Filter("customer", "in", ["O'Brien", "Nobody"]),
        Filter("invoice_id", "like", "INV-01%"),
        Filter("seq", "neq", 1002),
        Filter("seq", "frobnicate", 1),  # not pushed: the engine names a bad op
    ]
    staged = stage_source(
        invoices.table_uri("ledger.invoices"),
        alias="i",
        settings=SETTINGS,
        staging_dir=tmp_path,
        filters=filters,
    )
    assert staged.filters_applied == tuple(filters[:5])
    table = pq.read_table(staged.path)
    expected = [
        i
        for i in range(1000, 2000)
        if i % 2 == 0 and (dt.date(2024, 1, 1) + dt.timedelta(days=i % 60)).month == 1
        and i != 1002
    ]  # fmt: skip
    assert sorted(table.column("seq").to_pylist()) == expected


def test_filter_values_are_quoted_not_pasted(tmp_path: Path, invoices: Database) -> None:
    sneaky = "x' OR '1'='1"
    staged = stage_source(
        invoices.table_uri("ledger.invoices"),
        alias="i",
        settings=SETTINGS,
        staging_dir=tmp_path,
        filters=[Filter("customer", "eq", sneaky), Filter("invoice_id", "eq", "a\\'; DROP")],
    )
    assert staged.row_count == 0
    assert stage_source(invoices.table_uri("ledger.invoices"), alias="i", settings=SETTINGS,
                        staging_dir=tmp_path).row_count == 3000  # fmt: skip


@pytest.mark.parametrize(
    ("condition", "message"),
    [
        (Filter("ammount", "gt", 1), "unknown column 'ammount' (did you mean 'amount'?)"),
        (Filter("amount", "gt", "lots"), "not a valid decimal"),
        (Filter("issued", "eq", "31/01/2024"), "not a valid date"),
        (Filter("amount", "between", [1]), "between needs [low, high]"),
        (Filter("seq", "in", []), "in needs a non-empty list"),
        (Filter("amount", "like", "1%"), "LIKE needs a text column"),
    ],
)
def test_bad_filters_are_named(
    tmp_path: Path, invoices: Database, condition: SimpleNamespace, message: str
) -> None:
    with pytest.raises(SourceError) as info:
        stage_source(
            invoices.table_uri("ledger.invoices"),
            alias="i",
            settings=SETTINGS,
            staging_dir=tmp_path,
            filters=[condition],
        )
    assert message in str(info.value)


def test_expected_columns_checked_against_the_catalog(tmp_path: Path, invoices: Database) -> None:
    with pytest.raises(SourceError, match=r"missing column 'Invoice ID' \(did you mean"):
        stage_source(
            invoices.table_uri("ledger.invoices"),
            alias="i",
            settings=SETTINGS,
            staging_dir=tmp_path,
            expected_columns=["Invoice ID", "amount"],
        )


def test_missing_table_suggests(tmp_path: Path, invoices: Database) -> None:
    with pytest.raises(SourceError, match=r"table 'ledger.invoice' not found .*did you mean"):
        stage_source(
            invoices.table_uri("ledger.invoice"), alias="i", settings=SETTINGS, staging_dir=tmp_path
        )


def test_missing_table_option(invoices: Database) -> None:
    with pytest.raises(SourceError, match=r"needs \?table=<name>"):
        connector_for(invoices.uri, alias="i", settings=SETTINGS)


def test_missing_database(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="database 'kalla_no_such_db' does not exist"):
        stage_source("postgres://postgres@127.0.0.1:5432/kalla_no_such_db?table=t",
                     alias="i", settings=SETTINGS, staging_dir=tmp_path)  # fmt: skip


def test_server_down_never_shows_the_password(tmp_path: Path) -> None:
    with pytest.raises(SourceUnavailableError) as info:
        stage_source(
            "postgres://postgres:Sup3rSecret@127.0.0.1:1/db?table=t",
            alias="i",
            settings=SETTINGS,
            staging_dir=tmp_path,
        )
    assert "cannot reach PostgreSQL at 127.0.0.1:1" in str(info.value)
    assert "Sup3rSecret" not in str(info.value)
    assert "postgres:***@" in str(info.value)


def test_unknown_role_is_a_login_error(tmp_path: Path, invoices: Database) -> None:
    uri = invoices.table_uri("ledger.invoices").replace("postgres@", "kalla_nobody:pw@", 1)
    with pytest.raises(SourceUnavailableError, match="refused the login for user 'kalla_nobody'"):
        stage_source(uri, alias="i", settings=SETTINGS, staging_dir=tmp_path)


def test_env_placeholders_resolve_at_staging_time_only(
    tmp_path: Path, invoices: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = invoices.table_uri("ledger.invoices").replace(
        "postgres@", "${KALLA_TEST_PG_USER}:${KALLA_TEST_PG_PASSWORD}@", 1
    )
    connector = connector_for(uri, alias="i", settings=SETTINGS)  # routing needs no secret
    # placeholders are shown as written: they hold no secret
    assert connector.display_uri.startswith(
        "postgres://${KALLA_TEST_PG_USER}:${KALLA_TEST_PG_PASSWORD}@"
    )
    with pytest.raises(SourceError, match=r"\$\{KALLA_TEST_PG_USER\} is not set"):
        stage_source(uri, alias="i", settings=SETTINGS, staging_dir=tmp_path)
    monkeypatch.setenv("KALLA_TEST_PG_USER", "postgres")
    monkeypatch.setenv("KALLA_TEST_PG_PASSWORD", "s3cr3t/with:odd@chars")
    staged = stage_source(uri, alias="i", settings=SETTINGS, staging_dir=tmp_path)
    assert staged.row_count == 3000
    assert "s3cr3t" not in staged.uri


def test_empty_table_keeps_its_types(tmp_path: Path, pg_database: Database) -> None:
    pg_execute(pg_database, "CREATE TABLE e (id bigint, amount numeric(10,3), d date)")
    staged = stage_source(pg_database.table_uri("e", partitions="2"), alias="e", settings=SETTINGS,
                          staging_dir=tmp_path)  # fmt: skip
    assert staged.row_count == 0
    assert staged.schema == pa.schema(
        [("id", pa.int64()), ("amount", pa.decimal128(10, 3)), ("d", pa.date32())]
    )


def test_text_filters_compare_bytes_like_the_engine(tmp_path: Path, invoices: Database) -> None:
    # Under a linguistic collation 'O'Brien' and 'Zoë' sort after 'a'; byte order (the
    # engine's) puts every upper-case letter first.
    staged = stage_source(
        invoices.table_uri("ledger.invoices"),
        alias="i",
        settings=SETTINGS,
        staging_dir=tmp_path,
        filters=[Filter("customer", "gt", "a")],
    )
    assert staged.row_count == 0


def test_types_without_a_plain_arrow_form_arrive_as_text(
    tmp_path: Path, pg_database: Database
) -> None:
    pg_execute(
        pg_database,
        "CREATE TYPE mood AS ENUM ('ok', 'sad')",
        "CREATE TABLE odd (small int2, single real, id uuid, doc jsonb, raw bytea,"
        " tags int[], feeling mood)",
        "INSERT INTO odd VALUES (7, 1.5, 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11',"
        " '{\"b\": [1, 2]}', '\\x0102', '{1,2}', 'sad'),"
        " (NULL, NULL, NULL, NULL, NULL, NULL, NULL)",
    )
    staged = stage_source(
        pg_database.table_uri("odd"), alias="odd", settings=SETTINGS, staging_dir=tmp_path
    )
    assert staged.schema == pa.schema(
        [
            ("small", pa.int16()),
            ("single", pa.float32()),
            ("id", pa.string()),
            ("doc", pa.string()),
            ("raw", pa.binary()),
            ("tags", pa.string()),
            ("feeling", pa.string()),
        ]
    )
    rows = pq.read_table(staged.path).to_pylist()
    assert rows[0] == {
        "small": 7,
        "single": 1.5,
        "id": "a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11",
        "doc": '{"b": [1, 2]}',
        "raw": b"\x01\x02",
        "tags": "{1,2}",
        "feeling": "sad",
    }
    assert set(rows[1].values()) == {None}


def test_driver_options_reach_every_connection(tmp_path: Path, invoices: Database) -> None:
    # sslmode goes to the catalog connection and to each partition's reader alike
    uri = invoices.table_uri("ledger.invoices", sslmode="disable", partitions="2")
    assert stage_source(uri, alias="i", settings=SETTINGS, staging_dir=tmp_path).row_count == 3000
    with pytest.raises(SourceError, match="SSL"):
        stage_source(
            invoices.table_uri("ledger.invoices", sslmode="require"),
            alias="i",
            settings=SETTINGS,
            staging_dir=tmp_path,
        )


def test_money_arrives_as_its_exact_decimal(tmp_path: Path, pg_database: Database) -> None:
    pg_execute(
        pg_database,
        "CREATE TABLE fees (id int, fee money)",
        "INSERT INTO fees VALUES (1, 1234.56), (2, -0.01), (3, NULL)",
    )
    staged = stage_source(
        pg_database.table_uri("fees"),
        alias="fees",
        settings=SETTINGS,
        staging_dir=tmp_path,
        filters=[Filter("fee", "lt", "1000")],
    )
    assert staged.schema.field("fee").type == pa.decimal128(3, 2)
    assert pq.read_table(staged.path).column("fee").to_pylist() == [Decimal("-0.01")]
    everything = stage_source(
        pg_database.table_uri("fees"), alias="fees", settings=SETTINGS, staging_dir=tmp_path
    )
    assert pq.read_table(everything.path).column("fee").to_pylist() == [
        Decimal("1234.56"),
        Decimal("-0.01"),
        None,
    ]


def test_a_cancelled_read_stops_the_query_on_the_server(
    tmp_path: Path, pg_database: Database
) -> None:
    pg_execute(
        pg_database,
        "CREATE TABLE t (id int)",
        "INSERT INTO t VALUES (1)",
        "CREATE VIEW slow AS SELECT t.* FROM t, pg_sleep(30) AS s",
    )

    class Stop(KallaError):
        pass

    started = time.monotonic()

    def progress(fraction: float) -> None:
        if time.monotonic() - started > 1.0:  # the job was cancelled while the query ran
            raise Stop("stop")

    with pytest.raises(Stop):
        stage_source(
            pg_database.table_uri("slow"),
            alias="s",
            settings=SETTINGS,
            staging_dir=tmp_path,
            progress=progress,
        )
    assert time.monotonic() - started < 10  # not the 30 s the query would take
    deadline = time.monotonic() + 5
    while _running_queries(pg_database) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _running_queries(pg_database) == 0


def _running_queries(database: Database) -> int:
    import psycopg

    with psycopg.connect(database.uri, autocommit=True) as conn:
        row = conn.execute(
            "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'kalla'"
            " AND state = 'active' AND datname = current_database()"
        ).fetchone()
    return int(row[0]) if row else 0


def test_a_large_table_streams_to_the_same_staged_data(
    tmp_path: Path, pg_database: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Above STREAM_MIN_BYTES a table is written range by range (bounded memory): same rows,
    same types, same order as a whole read; a stable fingerprint; filters still pushed."""
    import kalla.connectors.sql.partitions as partitions

    pg_execute(
        pg_database,
        "CREATE TABLE big (id bigint PRIMARY KEY, amount numeric(12,2), name text,"
        " booked date, at timestamptz, ok boolean)",
        "INSERT INTO big SELECT g, g / 100.0, 'N' || g, date '2024-01-01' + (g % 90),"
        " timestamptz '2024-01-01 00:00+00' + g * interval '1 minute', g % 2 = 0"
        " FROM generate_series(1, 50000) g",
        "INSERT INTO big VALUES (0, NULL, NULL, NULL, NULL, NULL)",
        "ANALYZE big",
    )
    uri = pg_database.table_uri("big", partitions="3")
    whole = stage_source(uri, alias="b", settings=SETTINGS, staging_dir=tmp_path)
    monkeypatch.setattr(partitions, "STREAM_MIN_BYTES", 1)
    monkeypatch.setattr(partitions, "STREAM_PART_BLOCKS", 100)  # ~5 ranges of ~10k rows
    progress: list[float] = []
    streamed = stage_source(
        uri, alias="b", settings=SETTINGS, staging_dir=tmp_path, progress=progress.append
    )
    assert pq.ParquetFile(streamed.path).metadata.num_row_groups > 1  # written as it came
    assert streamed.schema == whole.schema
    assert pq.read_table(streamed.path).equals(pq.read_table(whole.path))
    assert streamed.row_count == 50001 and progress == sorted(progress) and progress[-1] == 1.0
    again = stage_source(uri, alias="b", settings=SETTINGS, staging_dir=tmp_path)
    assert again.fingerprint == streamed.fingerprint
    monkeypatch.setattr(partitions, "STREAM_MIN_BYTES", 1 << 60)
    assert (
        stage_source(uri, alias="b", settings=SETTINGS, staging_dir=tmp_path).fingerprint
        == whole.fingerprint
    )
    filtered = stage_source(uri, alias="b", settings=SETTINGS, staging_dir=tmp_path,
                            filters=[Filter("amount", "lt", "1.00")])  # fmt: skip
    assert pq.read_table(filtered.path).column("id").to_pylist() == list(range(1, 100))


def test_a_table_whose_types_depend_on_its_values_is_read_whole(
    tmp_path: Path, invoices: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import kalla.connectors.sql.partitions as partitions

    monkeypatch.setattr(partitions, "STREAM_MIN_BYTES", 1)  # big enough, but `raw numeric`
    connector = connector_for(invoices.table_uri("ledger.invoices"), alias="i", settings=SETTINGS)
    assert connector.read_stream(Progress(None), ()) is None  # type: ignore[attr-defined]
    connector.close()
