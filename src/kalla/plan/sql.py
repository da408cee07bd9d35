"""Recipe SQL as sqlglot trees: parse with a position on failure, rewrite ``tolerance_match``.

Every statement Kalla runs is a sqlglot expression; this module turns a recipe's text into
one (after ``kalla.recipe.sqltext.check_read_only``, the first lock) and holds the few
builders the plan uses for names and literals.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TypeVar

import sqlglot
from sqlglot import exp
from sqlglot.errors import ParseError, TokenError

from kalla.errors import SqlError
from kalla.plan.dialect import RecipeSQL
from kalla.recipe.sqltext import check_read_only

TOLERANCE_FN = "tolerance_match"
E = TypeVar("E", bound=exp.Expr)


def parse_query(sql: str, where: str) -> exp.Query:
    """The recipe's one read-only query as a tree; a SqlError naming the line and column
    where sqlglot stopped when it cannot read it."""
    try:
        check_read_only(sql, where)
        tree = sqlglot.parse_one(sql, read=RecipeSQL)
    except ParseError as exc:
        raise SqlError(f"{where}: cannot parse the SQL{_position(exc)}") from None
    except TokenError as exc:
        raise SqlError(f"{where}: cannot read the SQL: {exc}") from None
    except RecursionError:
        raise SqlError(f"{where}: the SQL is nested too deeply to read") from None
    if not isinstance(tree, exp.Query):  # check_read_only lets an unparsable query through
        raise SqlError(f"{where} must be a read-only query (SELECT or WITH)")
    return tree


def _position(exc: ParseError) -> str:
    if not exc.errors:
        return f": {exc}"
    first = exc.errors[0]
    near = f"{first.get('start_context') or ''}{first.get('highlight') or ''}".strip()
    where = f" at line {first.get('line')}, column {first.get('col')}"
    hint = f" (near '{near[-40:]}')" if near else ""
    # sqlglot names its node classes ("<class 'sqlglot.expressions.core.Paren'>"): keep the name
    description = re.sub(r"<class '(?:\w+\.)*(\w+)'>", r"\1", str(first.get("description")))
    return f"{where}{hint}: {description}"


def _operand(node: exp.Expr) -> exp.Expr:
    """``node`` in parentheses unless it is one token or a call (the rewrite nests it)."""
    if isinstance(node, exp.Column | exp.Literal | exp.Paren | exp.Func):
        return node
    return exp.Paren(this=node)


def rewrite_tolerance(tree: E, where: str = "match_sql", as_double: Sequence[bool] = ()) -> E:
    """``tolerance_match(a, b, t)`` → ``(abs(a - b) <= t)`` everywhere in ``tree`` (in place);
    the calls flagged in ``as_double`` (by position: ``casts.float_tolerances``) with every
    argument cast to DOUBLE, so NaN answers false.

    The native expression keeps a join a hash join with a filter (a Python UDF in the join
    condition cost 5-16% of the run when measured) and stays exact on decimals. Strings,
    comments and quoted identifiers that merely contain the name are not calls and stay.
    """
    calls = [
        node
        for node in tree.find_all(exp.Anonymous, bfs=False)
        if isinstance(node.this, str) and node.this.lower() == TOLERANCE_FN
    ]
    flags = list(as_double) if len(as_double) == len(calls) else [False] * len(calls)
    # innermost first: an argument may be a call itself
    for call, double in reversed(list(zip(calls, flags, strict=True))):
        args = call.expressions
        if len(args) != 3:
            line = call.meta.get("line")
            at = f" at line {line}" if line else ""
            raise SqlError(
                f"{where}: {TOLERANCE_FN} takes 3 arguments (a, b, tolerance), got {len(args)}{at}"
            )
        if double:
            args = [exp.Cast(this=arg.copy(), to=exp.DataType.build("DOUBLE")) for arg in args]
        a, b, tolerance = (_operand(arg) for arg in args)
        native = exp.LTE(this=exp.Abs(this=exp.Sub(this=a, expression=b)), expression=tolerance)
        call.replace(exp.Paren(this=native))
    return tree


def ident(name: str) -> exp.Identifier:
    """``name`` as a quoted identifier: case and any character kept as they are."""
    return exp.to_identifier(name, quoted=True)


def column(name: str, table: str | None = None) -> exp.Column:
    return exp.Column(this=ident(name), table=ident(table) if table else None)


def table(name: str, alias: str | None = None) -> exp.Table:
    node = exp.Table(this=ident(name))
    if alias:
        node.set("alias", exp.TableAlias(this=ident(alias)))
    return node


def aliased(node: exp.Expr, name: str) -> exp.Alias:
    return exp.Alias(this=node, alias=ident(name))


def count_rows(relation: str) -> exp.Select:
    """``SELECT COUNT(*) AS n FROM relation``."""
    return exp.select(aliased(exp.Count(this=exp.Star()), "n")).from_(table(relation))


def conjunction(predicates: Sequence[exp.Expr]) -> exp.Expr:
    """``p1 AND p2 …``, each in parentheses: DataFusion's parser reads
    ``a IS NOT DISTINCT FROM b AND c`` as ``a IS NOT DISTINCT FROM (b AND c)``."""
    if len(predicates) == 1:
        return predicates[0]
    return exp.and_(*(exp.Paren(this=p) for p in predicates))
