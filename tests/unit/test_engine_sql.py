"""Recipe SQL handling: the tolerance rewrite, read-only refusals, exact decimal literals."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest

from kalla.engine.filters import apply_filters
from kalla.engine.session import EngineOptions, make_context, read_only
from kalla.engine.sql import explain_sql_error, rewrite_tolerance
from kalla.errors import SqlError
from kalla.recipe import FilterCondition
from kalla.recipe.sqltext import check_read_only, referenced_tables

REWRITES = [
    ("tolerance_match(a, b, 0.02)", "(abs((a) - (b)) <= (0.02))"),
    ("TOLERANCE_MATCH(i.x,p.y,t.z)", "(abs((i.x) - (p.y)) <= (t.z))"),
    (
        "tolerance_match(abs(a - (b)), coalesce(c, 0), 1)",
        "(abs((abs(a - (b))) - (coalesce(c, 0))) <= (1))",
    ),
    (
        "tolerance_match(tolerance_match(a, b, 1)::int, 1, 0)",
        "(abs(((abs((a) - (b)) <= (1))::int) - (1)) <= (0))",
    ),
    # left alone: strings, quoted identifiers, comments, other functions
    ("'tolerance_match(a, b, c)'", "'tolerance_match(a, b, c)'"),
    ('"tolerance_match"', '"tolerance_match"'),
    ("x -- tolerance_match(a, b, c)", "x -- tolerance_match(a, b, c)"),
    ("my_tolerance_match(a, b, c)", "my_tolerance_match(a, b, c)"),
]


@pytest.mark.parametrize(("sql", "expected"), REWRITES)
def test_tolerance_match_is_rewritten_to_the_native_expression(sql: str, expected: str) -> None:
    assert rewrite_tolerance(f"SELECT {sql} FROM t") == f"SELECT {expected} FROM t"


@pytest.mark.parametrize("sql", ["tolerance_match(a, b)", "tolerance_match(a, b, c, d)"])
def test_tolerance_match_needs_three_arguments(sql: str) -> None:
    with pytest.raises(SqlError, match="takes 3 arguments"):
        rewrite_tolerance(f"SELECT {sql}")


@pytest.mark.parametrize(
    ("a", "b", "t", "expected"),
    [
        ("19.99", "20.01", "0.02", True),
        ("20.01", "19.99", "0.02", True),
        ("19.99", "20.02", "0.02", False),
        ("0.1", "0.3", "0.2", True),  # 0.1 + 0.2 != 0.3 in floats
        ("1000000.00", "999999.979", "0.02", False),
        ("-5.01", "-4.99", "0.02", True),
    ],
)
def test_tolerance_is_exact_on_decimal_literals(a: str, b: str, t: str, expected: bool) -> None:
    ctx = make_context(EngineOptions(memory_limit=256 * 1024**2))
    sql = rewrite_tolerance(f"SELECT tolerance_match({a}, {b}, {t}) AS ok")
    assert ctx.sql_with_options(sql, read_only()).to_pylist() == [{"ok": expected}]


READ_ONLY_REFUSED = [
    "CREATE TABLE x AS SELECT 1",
    "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
    "COPY (SELECT 1) TO '/tmp/x.csv'",
    "INSERT INTO t VALUES (1)",
    "WITH a AS (SELECT 1) INSERT INTO t SELECT * FROM a",
    "DELETE FROM t",
    "UPDATE t SET a = 1",
    "DROP TABLE t",
    "SET datafusion.execution.batch_size = 1",
    "EXPLAIN SELECT 1",
]


@pytest.mark.parametrize("sql", READ_ONLY_REFUSED)
def test_only_queries_are_allowed(sql: str) -> None:
    with pytest.raises(SqlError, match="read-only query"):
        check_read_only(sql)


@pytest.mark.parametrize("sql", [s for s in READ_ONLY_REFUSED if not s.startswith("EXPLAIN")])
def test_datafusion_refuses_them_too(sql: str) -> None:
    """The second lock: DataFusion's SQLOptions refuse what slipped past the first."""
    ctx = make_context(EngineOptions(memory_limit=256 * 1024**2))
    ctx.sql("SELECT 1 AS a").collect()
    with pytest.raises(Exception, match=r"not supported|not found|not implemented"):
        ctx.sql_with_options(sql, read_only()).collect()


def test_one_statement_only() -> None:
    with pytest.raises(SqlError, match="single statement"):
        check_read_only("SELECT 1; DROP TABLE t")
    check_read_only("SELECT 1;")
    with pytest.raises(SqlError, match="empty"):
        check_read_only("   ")


def test_referenced_tables_skip_ctes() -> None:
    sql = "WITH m AS (SELECT * FROM a JOIN b ON a.x = b.x) SELECT * FROM m JOIN c ON 1 = 1"
    assert referenced_tables(sql) == {"a", "b", "c"}


def test_unknown_table_error_names_it_with_a_suggestion() -> None:
    error = explain_sql_error(
        Exception("Error during planning: table 'datafusion.public.invoice' not found"),
        "match_sql",
        ["invoices", "payments"],
    )
    assert error.message == (
        "match_sql: unknown table 'invoice' (did you mean 'invoices'?); "
        "the sources are: invoices, payments"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (19.999, ["20.00", "1000.10"]),  # finer than the column's scale, compared exactly
        ("19.99", ["19.99", "20.00", "1000.10"]),
        (1000.1, ["1000.10"]),
        (20, ["20.00", "1000.10"]),
    ],
)
def test_decimal_filters_compare_exactly(value: object, expected: list[str]) -> None:
    ctx = make_context(EngineOptions(memory_limit=256 * 1024**2))
    amounts = pa.array([Decimal(v) for v in ("19.99", "20.00", "1000.10")], pa.decimal128(12, 2))
    ctx.register_record_batches("t", [[pa.record_batch({"amount": amounts})]])
    condition = FilterCondition.model_validate({"column": "amount", "op": "gte", "value": value})
    df, problems = apply_filters(ctx.table("t"), [condition], "t")
    assert problems == []
    assert [str(v) for v in df.to_pydict()["amount"]] == expected
