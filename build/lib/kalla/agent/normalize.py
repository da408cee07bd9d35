"""Normalisations of key values: the same rule in pyarrow (to measure) and in SQL (to match).

A join key that needs an expression (``INV-000123`` on one side, ``123`` on the other) is
found by comparing the two columns under each rule, from the weakest to the strongest; the
recipe then joins on the rule's SQL expression, which the engine evaluates exactly as
``apply`` does here (a unit test runs both on the same values). Empty results are NULL, so
values with nothing left ("N/A" under ``digits``) never match each other.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.compute as pc
from sqlglot import exp

from kalla.agent.columns import Kind, as_text

_LAST_NUMBER = r"^.*?([0-9]+)[^0-9]*$"


def _text_sql(column: exp.Expression, kind: Kind) -> exp.Expression:
    if kind is Kind.TEXT:
        return column
    return exp.cast(column, exp.DataType.build("VARCHAR"))


def _call(name: str, *args: exp.Expression) -> exp.Expression:
    # Anonymous: rendered exactly as named, the way DataFusion spells its functions.
    return exp.Anonymous(this=name, expressions=list(args))


def _s(value: str) -> exp.Literal:
    return exp.Literal.string(value)


def _null_if_empty_sql(value: exp.Expression) -> exp.Expression:
    return exp.Nullif(this=value, expression=_s(""))


def _null_if_empty(values: pa.ChunkedArray) -> pa.ChunkedArray:
    return pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)


def _regexp_sql(value: exp.Expression, pattern: str, replacement: str) -> exp.Expression:
    return _call("regexp_replace", value, _s(pattern), _s(replacement), _s("g"))


@dataclass(frozen=True)
class Normalisation:
    name: str
    words: str  # how match_description says it
    apply_text: Callable[[pa.ChunkedArray], pa.ChunkedArray]
    sql_text: Callable[[exp.Expression], exp.Expression]

    def apply(self, column: pa.ChunkedArray) -> pa.ChunkedArray:
        return self.apply_text(as_text(column))

    def sql(self, column: exp.Expression, kind: Kind) -> exp.Expression:
        return self.sql_text(_text_sql(column, kind))


EXACT = Normalisation(
    name="exact",
    words="identical",
    apply_text=lambda v: v,
    sql_text=lambda c: c,
)
TRIM_CASE = Normalisation(
    name="trim_case",
    words="identical once surrounding spaces and letter case are ignored",
    apply_text=lambda v: pc.utf8_upper(pc.utf8_trim(v, " ")),
    sql_text=lambda c: exp.Upper(this=_call("btrim", c)),
)
ALNUM = Normalisation(
    name="alnum",
    words="identical once spaces, punctuation and letter case are ignored",
    apply_text=lambda v: _null_if_empty(
        pc.utf8_upper(pc.replace_substring_regex(v, "[^A-Za-z0-9]", ""))
    ),
    sql_text=lambda c: _null_if_empty_sql(exp.Upper(this=_regexp_sql(c, "[^A-Za-z0-9]", ""))),
)
DIGITS = Normalisation(
    name="digits",
    words="the same number once letters, punctuation and leading zeros are removed",
    apply_text=lambda v: _null_if_empty(
        pc.utf8_ltrim(pc.replace_substring_regex(v, "[^0-9]", ""), "0")
    ),
    sql_text=lambda c: _null_if_empty_sql(_call("ltrim", _regexp_sql(c, "[^0-9]", ""), _s("0"))),
)
LAST_NUMBER = Normalisation(
    name="last_number",
    words="the same last number (leading zeros ignored)",
    apply_text=lambda v: _null_if_empty(
        pc.utf8_ltrim(pc.replace_substring_regex(v, _LAST_NUMBER, r"\1"), "0")
    ),
    sql_text=lambda c: _null_if_empty_sql(
        _call("ltrim", _call("regexp_replace", c, _s(_LAST_NUMBER), _s("${1}")), _s("0"))
    ),
)

LADDER: tuple[Normalisation, ...] = (EXACT, TRIM_CASE, ALNUM, DIGITS, LAST_NUMBER)
"""From the weakest rule to the strongest; the builder takes the weakest that works."""
BY_NAME = {n.name: n for n in LADDER}


def normalisation(name: str) -> Normalisation:
    return BY_NAME[name]
