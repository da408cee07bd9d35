"""Float columns holding decimals are read as exact decimals; true floats stay floats."""

from __future__ import annotations

from decimal import Decimal

import pyarrow as pa
import pytest
from datafusion import SessionContext

from kalla.engine.floats import as_decimals, exact_types, float_columns

NAN, INF = float("nan"), float("inf")


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
        ([1.5, NAN], pa.float64(), None),
        ([1.5, INF], pa.float64(), None),
        ([None, None], pa.float64(), None),  # nothing to compare
    ],
)
def test_which_float_columns_become_decimals(
    values: list[float | None], kind: pa.DataType, expected: pa.DataType | None
) -> None:
    ctx = SessionContext()
    ctx.register_record_batches("t", [[pa.record_batch({"x": pa.array(values, kind)})]])
    df = ctx.table("t")

    def row(sql: str) -> dict[str, object]:
        return ctx.sql(sql).to_arrow_table().to_pylist()[0]

    types = exact_types("t", float_columns(df), row)
    assert types.get("x") == expected
    if expected is not None:
        converted = as_decimals(df, types).to_arrow_table().column("x").to_pylist()
        assert converted == [None if v is None else Decimal(repr(v)) for v in values]


def test_only_float_columns_are_looked_at() -> None:
    ctx = SessionContext()
    batch = pa.record_batch(
        {
            "Amount (EUR)": pa.array([1.25]),
            "id": pa.array(["a"]),
            "n": pa.array([1]),
            "d": pa.array([Decimal("1.5")]),
        }
    )
    ctx.register_record_batches("t", [[batch]])
    df = ctx.table("t")
    assert float_columns(df) == [("Amount (EUR)", pa.float64())]
    types = exact_types("t", float_columns(df), lambda sql: ctx.sql(sql).to_pylist()[0])
    out = as_decimals(df, types).to_arrow_table()
    assert out.column_names == ["Amount (EUR)", "id", "n", "d"]
    assert out.schema.field("Amount (EUR)").type == pa.decimal128(3, 2)
