"""FilterConditions as SQL predicates: the column checked, the value a literal of its type."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal

import pyarrow as pa
from sqlglot import exp

from kalla.plan.sql import column
from kalla.plan.types import sql_type
from kalla.recipe.models import FilterCondition, FilterOp
from kalla.suggest import did_you_mean

_COMPARISONS: dict[FilterOp, type[exp.Binary]] = {
    FilterOp.EQ: exp.EQ,
    FilterOp.NEQ: exp.NEQ,
    FilterOp.GT: exp.GT,
    FilterOp.GTE: exp.GTE,
    FilterOp.LT: exp.LT,
    FilterOp.LTE: exp.LTE,
}


def typed_literal(value: object, field: pa.Field, condition: FilterCondition) -> exp.Expr:
    """``value`` as a literal of the column's own type, so comparisons stay exact; a
    ValueError naming the column when the value is not one of that type."""
    kind = field.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return exp.Literal.string(str(value))
    if isinstance(value, bool) or pa.types.is_boolean(kind):
        if not isinstance(value, bool):
            raise ValueError(f"filter on '{condition.column}' needs true or false, got {value!r}")
        return exp.Boolean(this=value)
    text = format(value, "f") if isinstance(value, Decimal | float) else str(value)
    invalid = ValueError(
        f"filter value {value!r} for column '{condition.column}' is not a valid {kind}"
    )
    try:
        if pa.types.is_decimal(kind):  # its own scale: amount >= 19.999 on a (12, 2) column
            return exp.Literal.number(format(Decimal(text).normalize(), "f"))
        checked = pa.scalar(text).cast(kind).as_py()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ArithmeticError):
        raise invalid from None
    if isinstance(checked, dt.date | dt.time):  # one spelling every engine reads
        text = checked.isoformat()
    try:
        return exp.Cast(this=exp.Literal.string(text), to=sql_type(kind))
    except ValueError:
        raise ValueError(
            f"filter on '{condition.column}': columns of type {kind} cannot be filtered"
        ) from None


def predicate(condition: FilterCondition, schema: pa.Schema) -> exp.Expr:
    """The predicate for one condition; a ValueError naming the problem."""
    if condition.column not in schema.names:
        raise ValueError(
            f"filter column '{condition.column}' is not in the source"
            f"{did_you_mean(condition.column, schema.names)}"
        )
    field = schema.field(condition.column)
    target = column(condition.column)
    op, value = condition.op, condition.value
    if op is FilterOp.BETWEEN:
        assert isinstance(value, list)
        low, high = (typed_literal(v, field, condition) for v in value)
        return exp.Between(this=target, low=low, high=high)
    if op is FilterOp.IN:
        assert isinstance(value, list)
        return exp.In(this=target, expressions=[typed_literal(v, field, condition) for v in value])
    if op is FilterOp.LIKE:
        return exp.Like(this=target, expression=exp.Literal.string(str(value)))
    return _COMPARISONS[op](this=target, expression=typed_literal(value, field, condition))


def predicates(
    conditions: Sequence[FilterCondition], schema: pa.Schema, alias: str
) -> tuple[list[exp.Expr], list[str]]:
    """Every condition's predicate, and the problems found (all of them)."""
    found: list[exp.Expr] = []
    problems: list[str] = []
    for condition in conditions:
        try:
            found.append(predicate(condition, schema))
        except ValueError as exc:
            problems.append(f"source '{alias}': {exc}")
    return found, problems
