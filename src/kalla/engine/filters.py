"""FilterConditions as DataFusion expressions: typed literals, no string pasting."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal

import pyarrow as pa
from datafusion import DataFrame, Expr, col, lit
from datafusion import functions as f

from kalla.engine.sql import quote_ident
from kalla.recipe.models import FilterCondition, FilterOp
from kalla.suggest import did_you_mean


def _typed(value: object, field: pa.Field, condition: FilterCondition) -> Expr:
    """The value as a literal of the column's own type, so comparisons stay exact."""
    kind = field.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return lit(str(value))
    if isinstance(value, bool) or pa.types.is_boolean(kind):
        if not isinstance(value, bool):
            raise ValueError(f"filter on '{condition.column}' needs true or false, got {value!r}")
        return lit(value)
    text = format(value, "f") if isinstance(value, Decimal | float) else str(value)
    try:
        if pa.types.is_decimal(kind):  # its own scale: amount >= 19.999 on a (12, 2) column
            return lit(pa.scalar(Decimal(text).normalize()))
        return lit(pa.scalar(text).cast(kind))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ArithmeticError):
        raise ValueError(
            f"filter value {value!r} for column '{condition.column}' is not a valid {kind}"
        ) from None


def filter_expr(df: DataFrame, condition: FilterCondition, schema: pa.Schema) -> Expr:
    """The predicate for one condition; raises ValueError naming the problem."""
    if condition.column not in schema.names:
        raise ValueError(
            f"filter column '{condition.column}' is not in the source"
            f"{did_you_mean(condition.column, schema.names)}"
        )
    field = schema.field(condition.column)
    column = col(quote_ident(condition.column))
    op, value = condition.op, condition.value
    if op is FilterOp.BETWEEN:
        assert isinstance(value, list)
        return column.between(
            _typed(value[0], field, condition), _typed(value[1], field, condition)
        )
    if op is FilterOp.IN:
        assert isinstance(value, list)
        return f.in_list(column, [_typed(v, field, condition) for v in value])
    if op is FilterOp.LIKE:
        pattern = "'" + str(value).replace("'", "''") + "'"
        return df.parse_sql_expr(f"{quote_ident(condition.column)} LIKE {pattern}")
    literal = _typed(value, field, condition)
    comparisons = {
        FilterOp.EQ: column.__eq__,
        FilterOp.NEQ: column.__ne__,
        FilterOp.GT: column.__gt__,
        FilterOp.GTE: column.__ge__,
        FilterOp.LT: column.__lt__,
        FilterOp.LTE: column.__le__,
    }
    return comparisons[op](literal)


def apply_filters(
    df: DataFrame, conditions: Sequence[FilterCondition], alias: str
) -> tuple[DataFrame, list[str]]:
    """``df`` with every condition applied, and the problems found (all of them)."""
    schema = df.schema()
    problems = []
    for condition in conditions:
        try:
            df = df.filter(filter_expr(df, condition, schema))
        except ValueError as exc:
            problems.append(f"source '{alias}': {exc}")
    return df, problems
