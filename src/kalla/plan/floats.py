"""Float columns that hold decimals are read as decimals, so amounts compare exactly.

A double written from 19.99 is really 19.98999999999999843…, and ``abs(20.00 - 19.99) <= 0.01``
is false in float arithmetic (31% of exact 2-cent differences missed when measured, in every
engine). Float columns in finance data are mostly decimals that went through a float (pandas
exports, ``double precision`` columns): each value is the nearest double to a short decimal.

For every float column, one scan (``probe``, run by the executor) finds the fewest decimal
places ``s`` at which every value rounds to itself (about 0.35 s per 10M values on 2 cores;
other columns cost nothing). When the values then need at most 15 significant digits (6 for
float32: ``DBL_DIG``/``FLT_DIG``, the digits a float is guaranteed to give back), the column
is read as ``decimal128(p, s)`` (``exact_types``), which recovers exactly the decimals that
were written. A column with NaN or infinity, or with values needing more digits
(measurements, computed ratios), stays float. The manifest lists what was converted.

NaN and ±infinity are read as NULL (``finite``): they never match, as NULL never does (the
engine would otherwise match NaN with NaN and fail decimal arithmetic on them with
"Overflowing on NaN"); the manifest counts them per column. -0.0 equals 0.0 either way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pyarrow as pa
from sqlglot import exp

from kalla.plan.sql import aliased, column, table

MAX_SCALE = 15
_NO_SCALE = 99
_SIGNIFICANT = {pa.float64(): 15, pa.float32(): 6}  # DBL_DIG, FLT_DIG

FloatColumn = tuple[str, pa.DataType]


def float_columns(schema: pa.Schema) -> list[FloatColumn]:
    return [(f.name, f.type) for f in schema if f.type in _SIGNIFICANT]


def _where(node: exp.Expr, condition: exp.Expr) -> exp.Filter:
    return exp.Filter(this=node, expression=exp.Where(this=condition))


def probe(relation: str, floats: Sequence[FloatColumn]) -> exp.Select:
    """One row: per float column ``i``, its non-NULL count ``n<i>``, largest magnitude
    ``m<i>``, NaN/infinity count ``bad<i>`` and the places its values need ``s<i>``."""
    parts: list[exp.Expr] = []
    for i, (name, _) in enumerate(floats):
        x = column(name)
        nan = exp.IsNan(this=x.copy())
        infinite = exp.EQ(
            this=exp.Abs(this=x.copy()),
            expression=exp.Cast(
                this=exp.Literal.string("Infinity"), to=exp.DataType.build("DOUBLE")
            ),
        )
        # each row's fewest places (CASE stops at the first that fits: ~3 tests a row for
        # money); the column needs the most of them
        places = exp.Case(
            ifs=[
                exp.If(
                    this=exp.EQ(
                        this=exp.Round(this=x.copy(), decimals=exp.Literal.number(s)),
                        expression=x.copy(),
                    ),
                    true=exp.Literal.number(s),
                )
                for s in range(MAX_SCALE + 1)
            ],
            default=exp.Literal.number(_NO_SCALE),
        )
        parts += [
            aliased(exp.Count(this=x.copy()), f"n{i}"),
            aliased(_where(exp.Max(this=exp.Abs(this=x.copy())), exp.Not(this=nan)), f"m{i}"),
            aliased(_where(exp.Count(this=exp.Star()), exp.or_(nan.copy(), infinite)), f"bad{i}"),
            aliased(
                _where(
                    exp.Max(this=places), exp.Not(this=exp.Is(this=x.copy(), expression=exp.Null()))
                ),
                f"s{i}",
            ),
        ]
    return exp.select(*parts).from_(table(relation))


def finite(name: str) -> exp.Expr:
    """The float column ``name`` with NaN and ±infinity as NULL."""
    x = column(name)
    infinity = exp.Cast(this=exp.Literal.string("Infinity"), to=exp.DataType.build("DOUBLE"))
    non_finite = exp.or_(
        exp.IsNan(this=x.copy()), exp.EQ(this=exp.Abs(this=x.copy()), expression=infinity)
    )
    return exp.Case(ifs=[exp.If(this=non_finite, true=exp.Null())], default=x.copy())


def non_finite_counts(floats: Sequence[FloatColumn], found: Mapping[str, Any]) -> dict[str, int]:
    """``{column: NaN and infinity values}`` for the float columns that hold any."""
    return {name: int(found[f"bad{i}"]) for i, (name, _) in enumerate(floats) if found[f"bad{i}"]}


def exact_types(floats: Sequence[FloatColumn], found: Mapping[str, Any]) -> dict[str, pa.DataType]:
    """``{column: decimal128(p, s)}`` for the float columns that hold decimals, from the
    probe's row (``found``, by column name)."""
    types: dict[str, pa.DataType] = {}
    for i, (name, kind) in enumerate(floats):
        scale = int(found[f"s{i}"] or 0)
        if not found[f"n{i}"] or found[f"bad{i}"] or scale == _NO_SCALE:
            continue  # all NULL (nothing to compare), NaN/infinity, or no short decimal
        largest = float(found[f"m{i}"] or 0.0)
        integer_digits = len(str(int(largest))) if largest >= 1 else 0
        precision = integer_digits + scale
        if precision <= _SIGNIFICANT[kind]:
            types[name] = pa.decimal128(max(precision, 1), scale)
    return types
