"""Key mapping and output names read from the SQL text, for match SQL of every shape.

tests/fixtures/plan/layouts.json holds each case's sources, SQL and what DataFusion's own
plan made of it before the plan read the SQL itself: the final output names, where each
side's keys are, or the error. Every engine then runs the planned query and must return
exactly those columns (plus ``match_pass``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlglot import exp

from kalla.engine import EngineOptions, make_executor
from kalla.errors import SqlError
from kalla.plan.layout import plan_pass
from kalla.plan.sql import parse_query, rewrite_tolerance

LAYOUTS = json.loads(
    (Path(__file__).parent.parent / "fixtures" / "plan" / "layouts.json").read_text()
)
CASES: list[dict[str, Any]] = LAYOUTS["cases"]


def _plan(case: dict[str, Any]) -> tuple[exp.Query, Any]:
    sources = LAYOUTS["sources"][case["sources"]]
    tree = rewrite_tolerance(parse_query(case["sql"], "match_sql"), "match_sql")
    return plan_pass(
        tree,
        sources={alias: list(columns) for alias, columns in sources["tables"].items()},
        keys=sources["keys"],
        pass_name="p",
        where="match_sql",
    )


def _run(case: dict[str, Any], query: exp.Query, engine: str, tmp_path: Path) -> pa.Table:
    tables = LAYOUTS["sources"][case["sources"]]["tables"]
    options = EngineOptions(memory_limit=256 * 1024**2, target_partitions=2, engine=engine)
    with make_executor(options) as executor:
        for alias, data in tables.items():
            pq.write_table(pa.table(data), tmp_path / f"{alias}.parquet")
            executor.register_parquet(alias, tmp_path / f"{alias}.parquet", what=alias)
        return executor.fetch(query, what="match_sql")


@pytest.mark.parametrize("case", CASES, ids=[f"{i:02d}" for i in range(len(CASES))])
def test_keys_and_names_come_from_the_sql(
    case: dict[str, Any], engine: str, tmp_path: Path
) -> None:
    if "error" in case:
        with pytest.raises(SqlError) as raised:
            query, _ = _plan(case)
            _run(case, query, engine, tmp_path)  # the engine's own planning refuses it
        assert case["error"] in raised.value.message
        return
    query, layout = _plan(case)
    assert dict(layout.keys) == {alias: tuple(k) for alias, k in case["keys"].items()}
    assert len(layout.names) == len(case["names"])
    for name, expected in zip(layout.names, case["names"], strict=True):
        # an expression without an alias keeps the engine's name: the plan leaves it unnamed
        assert name in (None, expected)
    assert _run(case, query, engine, tmp_path).column_names == [*case["names"], "match_pass"]


def test_key_positions_follow_the_output() -> None:
    case = next(c for c in CASES if c["sql"].startswith("SELECT b.id, l.id, b.amount"))
    _, layout = _plan(case)
    assert (layout.position("ledger"), layout.position("bank")) == ((1,), (0,))


def test_duplicate_names_are_qualified_in_the_select_list_itself() -> None:
    case = next(c for c in CASES if c["sql"].startswith("SELECT * FROM ledger l JOIN bank b"))
    query, _ = _plan(case)
    rendered = query.sql(dialect="postgres")
    assert rendered.startswith('SELECT "l"."id" AS "ledger.id", "l"."ref" AS "ledger.ref"')
    assert rendered.endswith(
        """CAST('p' AS VARCHAR) AS "match_pass" FROM ledger AS l JOIN bank AS b ON l.ref = b.ref"""
    )


def test_a_long_chain_of_conditions_is_read_whole_and_run_as_written() -> None:
    sources = {"l": ["id", "ref"], "r": ["rid", "ref"]}
    keys = {"l": ["id"], "r": ["rid"]}
    ors = " OR ".join(f"l.ref = 'v{i}'" for i in range(500))
    sql = f"SELECT l.id, r.rid FROM l JOIN r ON l.ref = r.ref WHERE {ors}"
    query, layout = plan_pass(
        parse_query(sql, "m"), sources=sources, keys=keys, pass_name="p", where="m"
    )
    assert dict(layout.keys) == {"l": ("id",), "r": ("rid",)}
    assert query.sql(dialect="postgres").endswith(f"WHERE {ors}")
    typo = sql.replace("l.ref = 'v250'", "l.reff = 'v250'")
    with pytest.raises(SqlError, match=r"unknown column 'l\.reff' at line 1, column"):
        plan_pass(parse_query(typo, "m"), sources=sources, keys=keys, pass_name="p", where="m")
