"""Float columns holding decimals are read as exact decimals; true floats stay floats.

The plan builds the probe, each engine runs it, the plan casts what it found."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlglot import exp

from kalla.engine import EngineOptions, SourceInput, make_executor
from kalla.engine.executor import Executor
from kalla.engine.reconcile import plan_run
from kalla.plan import ReconciliationPlan
from kalla.recipe import MatchSpec

NAN, INF = float("nan"), float("inf")
SPEC = MatchSpec(match_sql="SELECT l.k, r.k FROM l JOIN r ON l.k = r.k")


def _plan(executor: Executor, tmp_path: Path, columns: dict[str, pa.Array]) -> ReconciliationPlan:
    rows = len(next(iter(columns.values())))
    pq.write_table(pa.table({"k": pa.array(range(rows)), **columns}), tmp_path / "l.parquet")
    pq.write_table(pa.table({"k": pa.array([0])}), tmp_path / "r.parquet")
    sides = [SourceInput(n, tmp_path / f"{n}.parquet", ("k",)) for n in ("l", "r")]
    return plan_run(SPEC, sides, executor)


def _base(executor: Executor, plan: ReconciliationPlan) -> pa.Table:
    source = plan.source("l")
    executor.create_view(source.base, source.base_query, what="l")
    return executor.fetch(exp.select("*").from_(source.base), what="l")


@pytest.mark.parametrize(
    ("values", "kind", "expected"),
    [
        ([19.99, 20.0, None, -5.01], pa.float64(), pa.decimal128(4, 2)),
        ([1.0, 2.0, 300.0], pa.float64(), pa.decimal128(3, 0)),
        ([0.001234, 0.5], pa.float64(), pa.decimal128(6, 6)),
        ([999999.979, 0.1], pa.float64(), pa.decimal128(9, 3)),
        ([1234567890.12345], pa.float64(), pa.decimal128(15, 5)),  # 15 digits: exact
        ([19.99, 0.25], pa.float32(), pa.decimal128(4, 2)),
        ([0.1 + 0.2, 1.0], pa.float64(), None),  # 17 significant digits: a real float
        ([12345678901.123456], pa.float64(), None),  # beyond 15 digits
        ([1e20], pa.float64(), None),
        ([1234.567], pa.float32(), None),  # 7 digits: more than float32 gives back
        ([1.5, NAN, 2.25], pa.float64(), None),
        ([1.5, INF], pa.float64(), None),
        ([None, None], pa.float64(), None),  # nothing to compare
    ],
)
def test_which_float_columns_become_decimals(
    engine: str,
    tmp_path: Path,
    values: list[float | None],
    kind: pa.DataType,
    expected: pa.DataType | None,
) -> None:
    options = EngineOptions(memory_limit=256 * 1024**2, engine=engine)
    with make_executor(options) as executor:
        plan = _plan(executor, tmp_path, {"x": pa.array(values, kind)})
        assert plan.source("l").decimals.get("x") == (str(expected) if expected else None)
        base = _base(executor, plan)
    if expected is not None:
        assert base.schema.field("x").type == expected
        assert base.column("x").to_pylist() == [
            None if v is None else Decimal(repr(v)) for v in values
        ]


def test_only_float_columns_are_looked_at(engine: str, tmp_path: Path) -> None:
    columns = {
        "Amount (EUR)": pa.array([1.25]),
        "id": pa.array(["a"]),
        "n": pa.array([1]),
        "d": pa.array([Decimal("1.5")]),
    }
    with make_executor(EngineOptions(memory_limit=256 * 1024**2, engine=engine)) as executor:
        plan = _plan(executor, tmp_path, columns)
        base = _base(executor, plan)
    assert plan.source("l").decimals == {"Amount (EUR)": "decimal128(3, 2)"}
    assert base.column_names == ["k", "Amount (EUR)", "id", "n", "d"]
    assert base.schema.field("Amount (EUR)").type == pa.decimal128(3, 2)
    assert base.schema.field("d").type == columns["d"].type
