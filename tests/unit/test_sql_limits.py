"""Recipe SQL past its length or nesting limit is refused by name before sqlglot parses it
(``recipe.sqltext``): on every path that accepts SQL, never a RecursionError."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from kalla.errors import RecipeError, SqlError
from kalla.recipe import parse_job_request, parse_recipe
from kalla.recipe.sqltext import check_read_only, nesting, tokenize
from kalla.runner.job import check_sql
from kalla.settings import get_settings

ON = "SELECT i.id, p.id FROM invoices i JOIN payments p ON "
DEEP = {
    "parentheses": ON + "(" * 3000 + "i.id = p.id" + ")" * 3000,
    "NOT chain": ON + "NOT " * 3000 + "i.id = p.id",
    "unary minus": ON + "i.amount = " + "- " * 3000 + "p.amount",
    "CASE in CASE": "SELECT "
    + "CASE WHEN i.id = 1 THEN " * 500
    + "1"
    + " END" * 500
    + " FROM invoices i JOIN payments p ON i.id = p.id",
    "nested calls": "SELECT " + "abs(" * 2000 + "1" + ")" * 2000 + " FROM invoices i",
    "just past the limit": ON + "(" * 65 + "i.id = p.id" + ")" * 65,
}


@pytest.fixture(autouse=True)
def _fresh_settings() -> Iterator[None]:
    get_settings.cache_clear()
    yield
    get_settings.cache_clear()


def _recipe(sql: str) -> dict[str, Any]:
    return {
        "recipe_id": "r",
        "name": "r",
        "match_sql": sql,
        "sources": {
            "left": {"alias": "invoices", "type": "file", "primary_key": ["id"]},
            "right": {"alias": "payments", "type": "file", "primary_key": ["id"]},
        },
    }


def _job(sql: str) -> None:
    job = parse_job_request(
        {
            "run_id": str(uuid.uuid4()),
            "callback_url": "http://127.0.0.1:3000/api/worker",
            "match_sql": sql,
            "sources": [
                {"alias": "invoices", "uri": "a.csv"},
                {"alias": "payments", "uri": "b.csv"},
            ],
            "output_path": "out",
            "primary_keys": {"invoices": ["id"], "payments": ["id"]},
        }
    )
    check_sql(job)


PATHS: dict[str, Callable[[str], object]] = {
    "check_read_only": check_read_only,
    "recipe": lambda sql: parse_recipe(_recipe(sql)),
    "job": _job,
}


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("sql", DEEP.values(), ids=DEEP.keys())
def test_deep_sql_is_refused_by_name(path: str, sql: str) -> None:
    with pytest.raises(RecipeError, match=r"levels deep.*KALLA_MAX_SQL_DEPTH"):
        PATHS[path](sql)


@pytest.mark.parametrize("path", PATHS)
def test_long_sql_is_refused_by_name(path: str) -> None:
    sql = ON + " OR ".join(f"(i.id = p.id AND i.n = {n})" for n in range(5000))
    refused = r"characters long.*100,000 allowed.*KALLA_MAX_SQL_LENGTH"
    with pytest.raises(RecipeError, match=refused):
        PATHS[path](sql)


def test_the_limits_are_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    sql = ON + "((i.id = p.id))"
    check_read_only(sql)
    monkeypatch.setenv("KALLA_MAX_SQL_DEPTH", "4")
    get_settings.cache_clear()
    with pytest.raises(SqlError, match="nests 5 levels deep"):
        check_read_only(ON + "(((((i.id = p.id)))))")
    monkeypatch.setenv("KALLA_MAX_SQL_LENGTH", "100")
    get_settings.cache_clear()
    with pytest.raises(SqlError, match="more than the 100 allowed"):
        check_read_only(sql + " AND i.amount = p.amount AND i.day = p.day")


@pytest.mark.parametrize(
    ("sql", "depth"),
    [
        ("SELECT 1", 0),
        ("SELECT abs(1)", 1),
        ("SELECT (abs(1)) + (2)", 2),
        ("SELECT CASE WHEN (a) THEN 1 END", 2),
        ("SELECT NOT NOT a", 2),
        ("SELECT a - b - c", 1),  # binary minus is no nesting
        ("SELECT a[(1)]", 2),
    ],
)
def test_nesting_counts_levels(sql: str, depth: int) -> None:
    assert nesting(tokenize(sql, "sql"))[0] == depth


def test_long_flat_sql_within_the_limits_passes() -> None:
    # thousands of terms joined by OR are long, not deep
    check_read_only(ON + " OR ".join(f"i.id = p.id + {n}" for n in range(3000)))
