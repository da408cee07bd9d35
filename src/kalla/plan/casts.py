"""No implicit cast decides a match: every comparison in a pass between two typed operands
must compare like with like.

DataFusion casts to make ``text = integer`` or ``naive timestamp = zoned timestamp`` plan:
``'00123' = 123`` then holds, a reference such as ``'FEE 2025-03-01'`` fails the run
mid-way ("Cannot cast string … to Int64"), and a zone-less ``09:00`` equals ``08:00Z`` held
in a ``Europe/Berlin`` column (read as that zone's local time). The plan reads each pass's
operand types with sqlglot (``qualify`` + ``annotate_types`` over the inputs' schemas, the
SQL as written, CTEs and explicit CASTs followed) and refuses such a comparison by name,
with the CAST to write. Literals are left alone (``p.ref = 123`` is the writer's choice), and
so is an operand whose type sqlglot cannot tell.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping

import pyarrow as pa
from sqlglot import exp
from sqlglot.errors import SqlglotError
from sqlglot.optimizer.annotate_types import annotate_types
from sqlglot.optimizer.qualify import qualify
from sqlglot.schema import MappingSchema

from kalla.errors import TypeMismatchError
from kalla.plan.dialect import RecipeSQL
from kalla.plan.sql import TOLERANCE_FN
from kalla.plan.types import sql_type

_ZONED = {exp.DataType.Type.TIMESTAMPTZ, exp.DataType.Type.TIMESTAMPLTZ}
_COMPARISONS = (
    exp.EQ,
    exp.NEQ,
    exp.GT,
    exp.GTE,
    exp.LT,
    exp.LTE,
    exp.NullSafeEQ,
    exp.NullSafeNEQ,
    exp.Between,
    exp.In,
)


def schema_types(schema: pa.Schema) -> dict[str, str]:
    """The columns' SQL types as sqlglot reads them (zoned timestamps kept apart)."""
    types = {}
    for f in schema:
        if pa.types.is_timestamp(f.type) and f.type.tz is not None:
            types[f.name] = "TIMESTAMPTZ"
            continue
        try:
            types[f.name] = sql_type(f.type).sql(dialect=RecipeSQL)
        except ValueError:
            types[f.name] = "UNKNOWN"
    return types


def _kind(t: exp.DataType | None) -> str | None:
    if t is None:
        return None
    if t.this in _ZONED:
        return "zoned timestamp"
    if t.is_type(*exp.DataType.TEXT_TYPES):
        return "text"
    if t.is_type(*exp.DataType.NUMERIC_TYPES):
        return "number"
    if t.is_type(*exp.DataType.TEMPORAL_TYPES):
        return "date/time"
    if t.is_type(exp.DataType.Type.BOOLEAN):
        return "boolean"
    return None


def _pairs(node: exp.Expr) -> Iterator[tuple[exp.Expr, exp.Expr]]:
    if isinstance(node, exp.Between):
        yield node.this, node.args["low"]
        yield node.this, node.args["high"]
    elif isinstance(node, exp.In):
        for item in node.expressions:
            yield node.this, item
    elif isinstance(node, exp.Anonymous):
        yield node.expressions[0], node.expressions[1]
    else:
        yield node.this, node.expression


def _text(node: exp.Expr) -> str:
    return node.sql(dialect=RecipeSQL)


def _fix(a: exp.Expr, a_type: exp.DataType, b: exp.Expr, b_type: exp.DataType) -> str:
    """The CASTs that make the comparison explicit (the text side cast to the other type,
    or the other side to text; a zoned timestamp read as UTC wall-clock time)."""
    kinds = {_kind(a_type): (a, a_type), _kind(b_type): (b, b_type)}
    if "zoned timestamp" in kinds and "date/time" in kinds:
        zoned = kinds["zoned timestamp"][0]
        return (
            f"write CAST({_text(zoned)} AS TIMESTAMP) to compare its UTC time with the "
            "zone-less one (a zone-less timestamp is not read as any zone)"
        )
    if "text" in kinds:
        text = kinds["text"][0]
        other, other_type = next(v for k, v in kinds.items() if k != "text")
        return (
            f"write CAST({_text(text)} AS {other_type.sql(dialect=RecipeSQL)}) or "
            f"CAST({_text(other)} AS VARCHAR), or declare the column's type in the "
            "source's format.types"
        )
    return f"write CAST({_text(a)} AS {b_type.sql(dialect=RecipeSQL)})"


def _typed(tree: exp.Expr, schemas: Mapping[str, pa.Schema]) -> exp.Expr | None:
    """A copy of ``tree`` with every expression's type, or None where sqlglot cannot tell
    (the plan's own checks name what is wrong with that SQL)."""
    try:
        mapping = MappingSchema(
            {alias: schema_types(schema) for alias, schema in schemas.items()}, dialect=RecipeSQL
        )
        typed = annotate_types(
            qualify(
                tree.copy(),
                schema=mapping,
                dialect=RecipeSQL,
                validate_qualify_columns=False,
                quote_identifiers=False,
                identify=False,
            ),
            schema=mapping,
            dialect=RecipeSQL,
        )
    except (SqlglotError, RecursionError, KeyError, ValueError):
        return None
    return typed


def _tolerances(tree: exp.Expr) -> list[exp.Anonymous]:
    """The ``tolerance_match`` calls, in the order ``sql.rewrite_tolerance`` finds them."""
    return [
        n
        for n in tree.find_all(exp.Anonymous, bfs=False)
        if isinstance(n.this, str) and n.this.lower() == TOLERANCE_FN
    ]


def float_tolerances(tree: exp.Expr, schemas: Mapping[str, pa.Schema]) -> list[bool]:
    """For each ``tolerance_match`` call, whether ``a`` or ``b`` is a float: it is then
    computed in float arithmetic (a float minus a decimal is a decimal to the engine, which
    fails on NaN and infinity instead of answering false)."""
    typed = _typed(tree, schemas)
    if typed is None:
        return []
    return [
        any(
            arg.type is not None and arg.type.is_type(*exp.DataType.FLOAT_TYPES)
            for arg in call.expressions[:2]
        )
        for call in _tolerances(typed)
    ]


def check_comparisons(tree: exp.Expr, schemas: Mapping[str, pa.Schema], where: str) -> None:
    """Every comparison of two columns (or expressions over them) of different kinds — text
    and number, text and date, zoned and zone-less timestamps … — in one TypeMismatchError."""
    typed = _typed(tree, schemas)
    if typed is None:
        return
    problems: list[str] = []
    nodes = [
        *typed.find_all(*_COMPARISONS),
        *(n for n in _tolerances(typed) if len(n.expressions) == 3),
    ]
    for node in nodes:
        for a, b in _pairs(node):
            if isinstance(b, exp.Query) or a.find(exp.Column) is None:
                continue
            if b.find(exp.Column) is None:
                continue
            a_kind, b_kind = _kind(a.type), _kind(b.type)
            if a_kind is None or b_kind is None or a_kind == b_kind:
                continue
            assert a.type is not None and b.type is not None
            problems.append(
                f"{_text(a)} ({a.type.sql(dialect=RecipeSQL)}) is compared with {_text(b)} "
                f"({b.type.sql(dialect=RecipeSQL)}) in '{_text(node)}': {a_kind} and {b_kind} "
                f"are never compared through an implicit cast; {_fix(a, a.type, b, b.type)}"
            )
    if problems:
        raise TypeMismatchError(
            f"{where} compares columns of different types ({len(problems)} comparison(s))",
            problems=problems,
        )
