"""Recipe SQL as the plan reads it: parse errors with a position, the tolerance rewrite as
a tree transform, read-only refusals, exact decimal literals on every engine."""

from __future__ import annotations

import pytest
import sqlglot

from kalla.engine import EngineOptions, make_executor
from kalla.errors import SqlError
from kalla.plan.dialect import RecipeSQL
from kalla.plan.sql import parse_query, rewrite_tolerance
from kalla.recipe.sqltext import check_read_only, referenced_tables

REWRITES = [
    ("tolerance_match(a, b, 0.02)", "(ABS(a - b) <= 0.02)"),
    ("TOLERANCE_MATCH(i.x,p.y,t.z)", "(ABS(i.x - p.y) <= t.z)"),
    (
        "tolerance_match(abs(a - (b)), coalesce(c, 0), 1)",
        "(ABS(ABS(a - (b)) - COALESCE(c, 0)) <= 1)",
    ),
    (  # nested: the inner call is rewritten first
        "tolerance_match(tolerance_match(a, b, 1)::int, 1, 0)",
        "(ABS(CAST((ABS(a - b) <= 1) AS INT) - 1) <= 0)",
    ),
    (  # operands keep their grouping
        "tolerance_match(a + 1, b - 2 * c, 0.1 + 0.1) = true",
        "(ABS((a + 1) - (b - 2 * c)) <= (0.1 + 0.1)) = TRUE",
    ),
    # left alone: strings, quoted identifiers, comments, other functions
    ("'tolerance_match(a, b, c)'", "'tolerance_match(a, b, c)'"),
    ('"tolerance_match"', '"tolerance_match"'),
    ("x -- tolerance_match(a, b, c)\n", "x /* tolerance_match(a, b, c) */"),
    ("my_tolerance_match(a, b, c)", "MY_TOLERANCE_MATCH(a, b, c)"),
]


@pytest.mark.parametrize(("sql", "expected"), REWRITES)
def test_tolerance_match_is_rewritten_to_the_native_expression(sql: str, expected: str) -> None:
    tree = rewrite_tolerance(parse_query(f"SELECT {sql} FROM t", "match_sql"))
    assert tree.sql(dialect=RecipeSQL) == f"SELECT {expected} FROM t"


@pytest.mark.parametrize(
    ("sql", "count"), [("tolerance_match(a, b)", 2), ("tolerance_match(a, b, c, d)", 4)]
)
def test_tolerance_match_needs_three_arguments(sql: str, count: int) -> None:
    with pytest.raises(SqlError, match=f"takes 3 arguments .*got {count} at line 1"):
        rewrite_tolerance(parse_query(f"SELECT {sql} FROM t", "match_sql"))


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("SELECT a FROM t WHERE (", "line 1, column 23 (near 'SELECT a FROM t WHERE (')"),
        ("SELECT a,\n  b +\nFROM t", "line 3, column 4"),
        ("SELECT a FROM t WHERE x = 'open", "cannot read the SQL"),
    ],
)
def test_sql_that_cannot_be_parsed_is_refused_with_its_position(sql: str, fragment: str) -> None:
    with pytest.raises(SqlError, match="match_sql: cannot") as raised:
        parse_query(sql, "match_sql")
    assert fragment in raised.value.message


def test_deeply_nested_sql_is_a_clear_error() -> None:
    sql = "SELECT a FROM t WHERE " + "(" * 2000 + "a = 1" + ")" * 2000
    with pytest.raises(SqlError, match=r"nests 2000 levels deep.*KALLA_MAX_SQL_DEPTH"):
        parse_query(sql, "match_sql")


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
def test_tolerance_is_exact_on_decimal_literals(
    engine: str, a: str, b: str, t: str, expected: bool
) -> None:
    query = rewrite_tolerance(parse_query(f"SELECT tolerance_match({a}, {b}, {t}) AS ok", "m"))
    with make_executor(EngineOptions(memory_limit=256 * 1024**2, engine=engine)) as executor:
        assert executor.fetch(query, what="m").to_pylist() == [{"ok": expected}]


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
        parse_query(sql, "match_sql")


def test_one_statement_only() -> None:
    with pytest.raises(SqlError, match="single statement"):
        check_read_only("SELECT 1; DROP TABLE t")
    check_read_only("SELECT 1;")
    with pytest.raises(SqlError, match="empty"):
        check_read_only("   ")


def test_referenced_tables_skip_ctes() -> None:
    sql = "WITH m AS (SELECT * FROM a JOIN b ON a.x = b.x) SELECT * FROM m JOIN c ON 1 = 1"
    assert referenced_tables(sql) == {"a", "b", "c"}


def test_recipe_sql_reads_back_as_written() -> None:
    """Identifiers keep their case; Postgres-only rewrites (anti joins, float rounding) stay
    out, so the SQL an engine runs means what the recipe says."""
    sql = (
        'SELECT "Invoice No", Amount, ROUND(x, 2), isnan(y) FROM a LEFT ANTI JOIN b '
        "ON a.k IS NOT DISTINCT FROM b.k"
    )
    rendered = sqlglot.parse_one(sql, read=RecipeSQL).sql(dialect=RecipeSQL, identify=True)
    assert rendered == (
        'SELECT "Invoice No", "Amount", ROUND("x", 2), ISNAN("y") FROM "a" LEFT ANTI JOIN "b" '
        'ON "a"."k" IS NOT DISTINCT FROM "b"."k"'
    )


@pytest.mark.parametrize(
    "call",
    [
        "TO_DATE(\"d\", '%d/%m/%Y')",
        "TO_TIMESTAMP(\"d\", '%Y-%m-%d %H:%M:%S')",
        "TO_CHAR(\"d\", '%Y')",
    ],
)
def test_date_formats_are_datafusions_and_stay_as_written(call: str) -> None:
    """DataFusion reads chrono formats (``%d/%m/%Y``); PostgreSQL's mapping would turn them
    into ``DD/MM/YYYY``-style text DataFusion cannot parse."""
    sql = f'SELECT {call} FROM "a"'
    assert sqlglot.parse_one(sql, read=RecipeSQL).sql(dialect=RecipeSQL, identify=True) == sql
