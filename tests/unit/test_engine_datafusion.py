"""The DataFusion executor: read-only SQL as the second lock, errors that name the cause,
the join strategy, cancellation, its Parquet writers, and result pages."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import sqlglot
from datafusion import SessionContext

from kalla.engine import EngineOptions, open_parquet
from kalla.engine.datafusion import DataFusionExecutor
from kalla.engine.datafusion.session import read_only
from kalla.errors import JobCancelled, OutputError, SqlError
from kalla.plan.dialect import RecipeSQL

OPTIONS = EngineOptions(memory_limit=256 * 1024**2, target_partitions=2)
REFUSED = [
    "CREATE TABLE x AS SELECT 1",
    "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
    "COPY (SELECT 1) TO '/tmp/x.csv'",
    "INSERT INTO t VALUES (1)",
    "DELETE FROM t",
    "UPDATE t SET a = 1",
    "DROP TABLE t",
    "SET datafusion.execution.batch_size = 1",
]


def sql(text: str) -> sqlglot.exp.Query:
    return sqlglot.parse_one(text, read=RecipeSQL)  # type: ignore[return-value]


@pytest.mark.parametrize("statement", REFUSED)
def test_datafusion_refuses_what_is_not_a_query(statement: str) -> None:
    """The second lock: DataFusion's SQLOptions refuse what slipped past the plan's check."""
    ctx = SessionContext()
    ctx.sql("SELECT 1 AS a").collect()
    with pytest.raises(Exception, match=r"not supported|not found|not implemented"):
        ctx.sql_with_options(statement, read_only()).collect()


def test_the_executor_runs_every_statement_read_only(tmp_path: Path) -> None:
    with DataFusionExecutor(OPTIONS) as executor, pytest.raises(SqlError, match="m: DDL"):
        executor.fetch(sql("CREATE TABLE x AS SELECT 1"), what="m")


def test_an_unknown_table_is_named_with_a_suggestion() -> None:
    with DataFusionExecutor(OPTIONS) as executor:
        executor.create_view("invoices", sql("SELECT 1 AS a"), what="source 'invoices'")
        with pytest.raises(SqlError) as raised:
            executor.fetch(sql("SELECT * FROM invoice"), what="match_sql")
    assert raised.value.message == (
        "match_sql: unknown table 'invoice' (did you mean 'invoices'?); the sources are: invoices"
    )


@pytest.mark.parametrize(("conditions", "runs"), [(1000, True), (12_000, False)])
def test_sql_too_deep_for_datafusion_is_refused_not_a_crash(conditions: int, runs: bool) -> None:
    """DataFusion's planner overflows its stack (and ends the process) on a chain of ~10,000
    ORs; the executor refuses such SQL with a clear error instead."""
    ors = " OR ".join(f"a = {i}" for i in range(conditions))
    with DataFusionExecutor(OPTIONS) as executor:
        executor.create_view("t", sql("SELECT 1 AS a"), what="t")
        query = sql(f"SELECT a FROM t WHERE {ors}")
        if runs:
            assert executor.fetch(query, what="match_sql").num_rows == 1
            return
        with pytest.raises(SqlError, match=r"match_sql: the SQL nests 12,00\d levels deep"):
            executor.fetch(query, what="match_sql")


def _inputs(tmp_path: Path, executor: DataFusionExecutor, rows: int = 1000) -> None:
    for name in ("l", "r"):
        table = pa.table({"k": pa.array(range(rows)), "v": pa.array(range(rows))})
        pq.write_table(table, tmp_path / f"{name}.parquet")
        executor.register_parquet(name, tmp_path / f"{name}.parquet", what=name)


@pytest.mark.parametrize(
    ("strategy", "memory_limit", "joins"),
    [
        ("hash", 256 * 1024**2, "hash"),
        ("sort_merge", 256 * 1024**2, "sort_merge"),
        ("auto", 256 * 1024**2, "hash"),
        ("auto", 200 * 1024, "sort_merge"),  # 2,000 input rows at ~150 B do not fit 200 KiB
    ],
)
def test_the_join_strategy_decides_the_plan(
    tmp_path: Path, strategy: str, memory_limit: int, joins: str
) -> None:
    options = EngineOptions(memory_limit=memory_limit, target_partitions=2, join_strategy=strategy)
    with DataFusionExecutor(options) as executor:
        _inputs(tmp_path, executor)
        plan = executor.explain(sql("SELECT l.k, r.v FROM l JOIN r ON l.k = r.k"))
        assert executor.settings()["joins"] == joins
    assert ("HashJoinExec" if joins == "hash" else "SortMergeJoin") in plan


def test_a_cancelled_executor_starts_nothing_more(tmp_path: Path) -> None:
    with DataFusionExecutor(OPTIONS) as executor:
        _inputs(tmp_path, executor)
        executor.cancel()
        with pytest.raises(JobCancelled, match="match_sql: the run was cancelled"):
            executor.fetch(sql("SELECT COUNT(*) FROM l"), what="match_sql")
        with pytest.raises(JobCancelled):
            executor.write_table(pa.table({"a": [1]}), tmp_path / "a.parquet")


def test_writers_keep_row_order_schema_and_codec(tmp_path: Path) -> None:
    options = EngineOptions(memory_limit=256 * 1024**2, target_partitions=4, compression="snappy")
    table = pa.table({"id": [f"K{i:06d}" for i in range(50_000)][::-1], "n": range(50_000)})
    with DataFusionExecutor(options) as executor:
        executor.write_table(table, tmp_path / "t.parquet")
        executor.write_table(table.slice(0, 0), tmp_path / "empty.parquet")
        executor.register_parquet("t", tmp_path / "t.parquet", what="t")
        rows = executor.write(
            sql("SELECT * FROM t WHERE n < 0"), tmp_path / "none.parquet", what="w"
        ).rows
    assert pq.read_table(tmp_path / "t.parquet").equals(table)
    assert pq.ParquetFile(tmp_path / "t.parquet").metadata.row_group(0).column(0).compression == (
        "SNAPPY"
    )
    assert pq.read_schema(tmp_path / "empty.parquet") == table.schema
    assert rows == 0 and pq.read_schema(tmp_path / "none.parquet").names == ["id", "n"]


def test_a_file_that_cannot_be_written_is_an_output_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with DataFusionExecutor(OPTIONS) as executor, pytest.raises(OutputError) as raised:
        executor.write_table(pa.table({"a": [1]}), tmp_path / "file" / "a.parquet")
    assert raised.value.message.startswith(f"cannot write {tmp_path / 'file' / 'a.parquet'}: ")
    assert "Not a directory" in raised.value.message


def test_versions_and_settings_name_the_engine(tmp_path: Path) -> None:
    with DataFusionExecutor(OPTIONS) as executor:
        assert executor.versions()["datafusion"].startswith("55.")
        settings = executor.settings()
    assert (settings["name"], settings["memory_limit"], settings["target_partitions"]) == (
        "datafusion",
        256 * 1024**2,
        2,
    )


@pytest.fixture
def output(tmp_path: Path) -> Path:
    table = pa.table(
        {
            "id": ["a", "b", "c", "d"],
            "amount": pa.array([Decimal(x) for x in ("1.50", "20.00", "3.25", "7.00")]),
            "note": ["paid", None, "part paid", "open"],
        }
    )
    pq.write_table(table, tmp_path / "matched.parquet")
    return tmp_path / "matched.parquet"


def test_result_pages_filter_sort_and_page_in_place(output: Path) -> None:
    view = open_parquet(output)
    assert view.schema.names == ["id", "amount", "note"]
    paid = view.contains("note", "paid")
    assert paid.count() == 2
    big = view.where("amount", "gte", Decimal("3.25")).sort("amount", descending=True)
    assert big.count() == 3
    assert big.page(offset=1, limit=5).column("id").to_pylist() == ["d", "c"]
    assert view.sort("note").page(offset=0, limit=10).column("note").to_pylist()[-1] is None
    streamed = [row for batch in big.batches() for row in batch.column("id").to_pylist()]
    assert streamed == ["b", "d", "c"]
    assert view.count() == 4  # each step is a new view; the first is unchanged


def test_result_views_add_an_age_and_choose_columns(output: Path) -> None:
    table = pa.table({"id": ["a", "b"], "due": [dt.date(2024, 1, 1), dt.date(2024, 3, 1)]})
    pq.write_table(table, output)
    view = open_parquet(output).with_days_since("age_days", "due", dt.date(2024, 3, 31))
    view = view.where("age_days", "gt", 40).select(["age_days", "id"])
    assert view.schema == pa.schema([("age_days", pa.int32()), ("id", pa.string())])
    assert view.page(0, 10).to_pylist() == [{"age_days": 90, "id": "a"}]
    assert [b.schema for b in view.batches()] == [view.schema]
