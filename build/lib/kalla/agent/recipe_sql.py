"""A design's passes as SQL: sqlglot expressions, rendered once for the engine.

Identifiers are always quoted (headers such as ``Invoice No.`` keep their case and
punctuation); tables are referred to by their source alias. The SQL reads like what a
person would write: ``FROM invoices JOIN payments ON <key> AND <amount> AND <window>``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlglot import exp

from kalla.agent.columns import ColumnInfo, Kind
from kalla.agent.design import (
    AmountLink,
    DateLink,
    Design,
    KeyLink,
    Sign,
    TextLink,
    TextRule,
    tolerance_words,
)
from kalla.agent.normalize import normalisation

RANK = "match_rank"
DIALECT = "postgres"  # DataFusion's SQL is PostgreSQL-like; sqlglot renders it as such


@dataclass(frozen=True)
class PassSql:
    name: str
    sql: str
    description: str


def col(alias: str, info: ColumnInfo | str) -> exp.Column:
    name = info.name if isinstance(info, ColumnInfo) else info
    return exp.column(name, table=alias, quoted=True)


def _call(name: str, *args: exp.Expression) -> exp.Expression:
    return exp.Anonymous(this=name, expressions=list(args))


def _double(value: exp.Expression) -> exp.Expression:
    return exp.cast(value, exp.DataType.build("DOUBLE"))


def _num(value: object) -> exp.Expression:
    return exp.Literal.number(str(value))


def text_number(alias: str, info: ColumnInfo) -> exp.Expression:
    """An amount written as text (``$1,234.50``, ``(12.00)``) as an exact decimal."""
    column = col(alias, info)
    digits = _call(
        "regexp_replace",
        column,
        exp.Literal.string("[^0-9.]"),
        exp.Literal.string(""),
        exp.Literal.string("g"),
    )
    number = exp.cast(digits, exp.DataType.build(f"DECIMAL(38, {info.number_scale or 0})"))
    negative = exp.RegexpLike(this=column, expression=exp.Literal.string("[-(]"))
    return exp.Case(ifs=[exp.If(this=negative, true=exp.Neg(this=number))], default=number)


def value(alias: str, info: ColumnInfo) -> exp.Expression:
    """A column; an amount written as text; or an amount split in two:
    ``COALESCE(a, 0) - COALESCE(b, 0)``."""
    if info.number_scale is not None:
        return exp.paren(text_number(alias, info))
    if info.parts is None:
        return col(alias, info)
    first, second = (
        exp.Coalesce(this=col(alias, part), expressions=[_num(0)]) for part in info.parts
    )
    return exp.paren(exp.Sub(this=first, expression=second))


def key_expr(alias: str, info: ColumnInfo, link: KeyLink, other: ColumnInfo) -> exp.Expression:
    column = col(alias, info)
    if link.normalisation == "same_day":
        return date_expr(alias, info)
    if link.normalisation == "exact" and info.kind is other.kind:
        return column  # same type on both sides: a plain equi-join
    return normalisation(link.normalisation).sql(column, info.kind)


def date_expr(alias: str, info: ColumnInfo) -> exp.Expression:
    column = col(alias, info)
    if info.date_format is not None:
        return _call("to_date", _call("btrim", column), exp.Literal.string(info.date_format))
    if info.kind is Kind.TIMESTAMP:
        return exp.cast(column, exp.DataType.build("DATE"))
    return column


def amount_difference(design: Design, amount: AmountLink) -> exp.Expression:
    left = value(design.left_alias, amount.left)
    right = value(design.right_alias, amount.right)
    if amount.sign is Sign.NEGATED:
        return exp.Add(this=left, expression=right)
    if amount.sign is Sign.ABSOLUTE:
        return exp.Sub(this=exp.Abs(this=left), expression=exp.Abs(this=right))
    return exp.Sub(this=left, expression=right)


def amount_sides(design: Design, amount: AmountLink) -> tuple[exp.Expression, exp.Expression]:
    """The two expressions that must be equal (or within the tolerance)."""
    left = value(design.left_alias, amount.left)
    right = value(design.right_alias, amount.right)
    if amount.sign is Sign.NEGATED:
        return left, exp.Neg(this=right)
    if amount.sign is Sign.ABSOLUTE:
        return exp.Abs(this=left), exp.Abs(this=right)
    return left, right


def lag_expr(design: Design, link: DateLink) -> exp.Expression:
    return exp.paren(
        exp.Sub(
            this=date_expr(design.right_alias, link.right),
            expression=date_expr(design.left_alias, link.left),
        )
    )


def _folded(value: exp.Expression) -> exp.Expression:
    stripped = _call(
        "regexp_replace",
        value,
        exp.Literal.string("[^A-Za-z0-9]"),
        exp.Literal.string(""),
        exp.Literal.string("g"),
    )
    return exp.Nullif(this=exp.Upper(this=stripped), expression=exp.Literal.string(""))


def _first_word(value: exp.Expression) -> exp.Expression:
    word = _call("split_part", _call("btrim", value), exp.Literal.string(" "), _num(1))
    return _folded(word)


def _contained(needle: exp.Expression, haystack: exp.Expression) -> exp.Expression:
    long_enough = exp.GTE(this=_call("character_length", needle), expression=_num(3))
    found = exp.GT(this=_call("strpos", haystack, needle), expression=_num(0))
    return exp.And(this=long_enough, expression=found)


def text_condition(design: Design, link: TextLink) -> exp.Expression:
    left = col(design.left_alias, link.left)
    right = col(design.right_alias, link.right)
    if link.rule is TextRule.EQUAL:
        return exp.EQ(this=_folded(left), expression=_folded(right))
    if link.rule is TextRule.CONTAINS:
        a, b = _folded(left), _folded(right)
        return exp.paren(exp.Or(this=_contained(a, b), expression=_contained(b, a)))
    if link.rule is TextRule.FIRST_WORD:
        return _contained(_first_word(left), _folded(right))
    return _contained(_first_word(right), _folded(left))


def key_conditions(design: Design) -> list[exp.Expression]:
    return [
        exp.EQ(
            this=key_expr(design.left_alias, k.left, k, k.right),
            expression=key_expr(design.right_alias, k.right, k, k.left),
        )
        for k in design.keys
    ]


def rank_expr(design: Design) -> exp.Expression:
    """Closest candidate first: amount difference, then days apart (a tie-breaker only)."""
    parts: list[exp.Expression] = []
    date = design.window or design.rank_date
    days = _double(exp.Abs(this=lag_expr(design, date))) if date is not None else None
    if design.keys and design.amount is not None:
        parts.append(_double(exp.Abs(this=amount_difference(design, design.amount))))
        if days is not None:
            parts.append(exp.Mul(this=days, expression=_num("0.0000001")))
    elif days is not None:
        parts.append(days)
    if not parts:
        return _num(0)
    total = parts[0]
    for part in parts[1:]:
        total = exp.Add(this=total, expression=part)
    return total


def _select(design: Design, conditions: list[exp.Expression]) -> str:
    la, ra = design.left_alias, design.right_alias
    columns: list[exp.Expression] = [col(la, k) for k in design.left_key]
    columns += [col(ra, k) for k in design.right_key]
    # Besides the keys: every id column, the columns the match compares (for review)
    extras: list[tuple[str, ColumnInfo | str]] = [(la, name) for name in design.left_ids]
    extras += [(ra, name) for name in design.right_ids]
    for link in design.keys:
        extras += [(la, link.left), (ra, link.right)]
    if design.counterparty is not None:
        extras += [(la, design.counterparty.left), (ra, design.counterparty.right)]
    if design.amount is not None:
        extras += [(la, design.amount.left), (ra, design.amount.right)]
    date = design.window or design.rank_date
    if date is not None:
        extras += [(la, date.left), (ra, date.right)]
    seen = {(la, k) for k in design.left_key} | {(ra, k) for k in design.right_key}
    for alias, info in extras:
        names = (info,) if isinstance(info, str) else info.parts or (info.name,)
        for name in names:
            if (alias, name) not in seen:
                seen.add((alias, name))
                columns.append(col(alias, name))
    if design.one_to_one:
        columns.append(
            exp.Alias(this=rank_expr(design), alias=exp.to_identifier(RANK, quoted=True))
        )
    query = (
        exp.select(*columns)
        .from_(exp.to_table(la, quoted=True))
        .join(exp.to_table(ra, quoted=True), on=exp.and_(*conditions))
    )
    return query.sql(dialect=DIALECT)


def window_condition(design: Design, link: DateLink) -> exp.Expression:
    return exp.Between(this=lag_expr(design, link), low=_num(link.low), high=_num(link.high))


def passes(design: Design) -> list[PassSql]:
    """The waterfall: exact first, then within the tolerance; or amount + date window."""
    keys = key_conditions(design)
    if design.keys and design.window is not None:
        keys.append(window_condition(design, design.window))
    amount = design.amount
    if design.keys:
        if amount is None:
            return [PassSql("key", _select(design, keys), "same key")]
        left, right = amount_sides(design, amount)
        exact = exp.EQ(this=left, expression=right)
        result = []
        if amount.tolerance is None or amount.exact_share > 0:
            result.append(
                PassSql("exact", _select(design, [*keys, exact]), "same key, amounts equal")
            )
        if amount.tolerance is not None:
            within: exp.Expression = _call("tolerance_match", left, right, _num(amount.tolerance))
            if amount.relative:  # a share of the left amount: abs(a - b) <= t * abs(a)
                within = exp.LTE(
                    this=exp.Abs(this=amount_difference(design, amount)),
                    expression=exp.Mul(this=_num(amount.tolerance), expression=exp.Abs(this=left)),
                )
            result.append(
                PassSql(
                    "within_tolerance",
                    _select(design, [*keys, within]),
                    f"same key, amounts within {tolerance_words(amount)}",
                )
            )
        return result
    assert amount is not None, "a design without keys matches on amounts"
    left, right = amount_sides(design, amount)
    conditions: list[exp.Expression] = [exp.EQ(this=left, expression=right)]
    if design.window is not None:
        conditions.append(window_condition(design, design.window))
    if design.counterparty is not None:
        conditions.append(text_condition(design, design.counterparty))
    return [PassSql("amount_and_date", _select(design, conditions), "amounts equal, dates close")]
