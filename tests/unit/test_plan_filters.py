"""FilterConditions as typed predicates, run on every engine: each value compares as a
value of its column's own type, and every bad filter is named."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlglot import exp

from kalla.engine import EngineOptions, make_executor
from kalla.plan.filters import predicate, predicates
from kalla.recipe import FilterCondition

AMOUNTS = pa.array([Decimal(v) for v in ("19.99", "20.00", "1000.10")], pa.decimal128(12, 2))
NAMES = pa.array(["INV-1", "inv-2", "PAY-1", None])
COUNTS = pa.array([1, 2, 3, 4, 5], pa.int32())
DAYS = pa.array([dt.date(2024, 1, 31), dt.date(2024, 2, 1), dt.date(2024, 3, 1)])
TIMES = pa.array([dt.datetime(2024, 1, 1, 10), dt.datetime(2024, 1, 1, 13)], pa.timestamp("us"))
UTC = pa.array(
    [dt.datetime(2024, 1, 1, 10), dt.datetime(2024, 1, 1, 13)], pa.timestamp("us", tz="UTC")
)
FLAGS = pa.array([True, False, None])
RATIOS = pa.array([0.1 + 0.2, 0.3, 1.5])

CASES: list[tuple[pa.Array, str, Any, list[Any]]] = [
    # decimals compare exactly, at the value's own scale
    (AMOUNTS, "gte", 19.999, ["20.00", "1000.10"]),
    (AMOUNTS, "gte", "19.99", ["19.99", "20.00", "1000.10"]),
    (AMOUNTS, "eq", 1000.1, ["1000.10"]),
    (AMOUNTS, "gte", 20, ["20.00", "1000.10"]),
    (AMOUNTS, "between", ["0.01", "20"], ["19.99", "20.00"]),
    (AMOUNTS, "in", [19.99, "1000.10"], ["19.99", "1000.10"]),
    # text: exact case, LIKE patterns, NULLs never match
    (NAMES, "eq", "INV-1", ["INV-1"]),
    (NAMES, "neq", "INV-1", ["inv-2", "PAY-1"]),
    (NAMES, "like", "INV%", ["INV-1"]),
    (NAMES, "like", "%-_", ["INV-1", "inv-2", "PAY-1"]),
    (NAMES, "in", ["PAY-1", "nope"], ["PAY-1"]),
    (NAMES, "eq", "it's", []),  # quotes are values, not SQL
    # other types read the value as their own
    (COUNTS, "between", ["2", 4], [2, 3, 4]),
    (COUNTS, "lt", "3", [1, 2]),
    (DAYS, "gte", "2024-02-01", [dt.date(2024, 2, 1), dt.date(2024, 3, 1)]),
    (TIMES, "lt", "2024-01-01T12:00:00", [dt.datetime(2024, 1, 1, 10)]),
    (UTC, "gt", "2024-01-01 12:00:00+00:00", [dt.datetime(2024, 1, 1, 13, tzinfo=dt.UTC)]),
    (FLAGS, "eq", True, [True]),
    (RATIOS, "eq", 0.3, [0.3]),
]


def _kept(engine: str, tmp_path: Path, values: pa.Array, op: str, value: Any) -> list[Any]:
    pq.write_table(pa.table({"x": values}), tmp_path / "t.parquet")
    condition = FilterCondition.model_validate({"column": "x", "op": op, "value": value})
    with make_executor(EngineOptions(memory_limit=256 * 1024**2, engine=engine)) as executor:
        schema = executor.register_parquet("t", tmp_path / "t.parquet", what="t")
        query = exp.select("x").from_("t").where(predicate(condition, schema))
        return executor.fetch(query, what="t").column("x").to_pylist()


@pytest.mark.parametrize(("values", "op", "value", "expected"), CASES)
def test_filters_keep_exactly_the_matching_rows(
    engine: str, tmp_path: Path, values: pa.Array, op: str, value: Any, expected: list[Any]
) -> None:
    kept = _kept(engine, tmp_path, values, op, value)
    assert [str(v) if isinstance(v, Decimal) else v for v in kept] == expected


def test_every_bad_filter_is_named_at_once() -> None:
    schema = pa.schema(
        [
            ("status", pa.string()),
            ("n", pa.int64()),
            ("ok", pa.bool_()),
            ("tags", pa.list_(pa.string())),
        ]
    )
    conditions = [
        FilterCondition.model_validate(c)
        for c in (
            {"column": "stauts", "op": "eq", "value": "open"},
            {"column": "n", "op": "gt", "value": "ten"},
            {"column": "ok", "op": "eq", "value": "yes"},
            {"column": "tags", "op": "eq", "value": "a"},
            {"column": "status", "op": "eq", "value": "open"},
        )
    ]
    found, problems = predicates(conditions, schema, "invoices")
    assert len(found) == 1
    assert problems == [
        "source 'invoices': filter column 'stauts' is not in the source (did you mean 'status'?)",
        "source 'invoices': filter value 'ten' for column 'n' is not a valid int64",
        "source 'invoices': filter on 'ok' needs true or false, got 'yes'",
        "source 'invoices': filter value 'a' for column 'tags' is not a valid list<item: string>",
    ]
