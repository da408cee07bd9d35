"""What a recipe's SQL compares, read with sqlglot: for checks before a run and for explaining
what did not match after it.

Identifiers are compared exactly as written (the engine does not fold their case).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import sqlglot
import sqlglot.errors
from sqlglot import exp

from kalla.recipe import Recipe
from kalla.suggest import did_you_mean

_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE, exp.Between)


@dataclass(frozen=True)
class SqlLink:
    """A comparison between a column of the left source and one of the right source."""

    left: str
    right: str
    how: str  # equal | tolerance | range | other
    tolerance: str | None = None


def _parse(sql: str) -> exp.Expr | None:
    try:
        return sqlglot.parse_one(sql, read="postgres")
    except (sqlglot.errors.SqlglotError, RecursionError):
        return None


def _qualifiers(tree: exp.Expr, aliases: Sequence[str]) -> dict[str, str]:
    """Table name or alias in the query → the source alias it reads."""
    found: dict[str, str] = {}
    for table in tree.find_all(exp.Table):
        if table.name in aliases:
            found[table.name] = table.name
            if table.alias:
                found[table.alias] = table.name
    return found


def _source_of(
    column: exp.Column, qualifiers: Mapping[str, str], columns: Mapping[str, Sequence[str]]
) -> str | None:
    if column.table:
        return qualifiers.get(column.table)
    owners = [alias for alias, names in columns.items() if column.name in names]
    return owners[0] if len(owners) == 1 else None


def links(recipe: Recipe, columns: Mapping[str, Sequence[str]]) -> list[SqlLink]:
    """Every left-right column comparison in the recipe's passes, in order, without repeats."""
    left, right = recipe.sources.left.alias, recipe.sources.right.alias
    found: list[SqlLink] = []
    for match_pass in recipe.match_passes():
        tree = _parse(match_pass.match_sql)
        if tree is None:
            continue
        qualifiers = _qualifiers(tree, [left, right])
        nodes: list[tuple[exp.Expr, str, str | None]] = []
        for call in tree.find_all(exp.Anonymous):
            if str(call.this).lower() == "tolerance_match" and len(call.expressions) == 3:
                third = call.expressions[2]
                tolerance = third.this if isinstance(third, exp.Literal) else None
                nodes.append((exp.Tuple(expressions=call.expressions[:2]), "tolerance", tolerance))
        for kind in _COMPARISONS:
            for comparison in tree.find_all(kind):
                how = "equal" if isinstance(comparison, exp.EQ) else "range"
                nodes.append((comparison, how, None))
        for node, how, tolerance in nodes:
            by_side: dict[str, list[str]] = {left: [], right: []}
            for column in node.find_all(exp.Column):
                owner = _source_of(column, qualifiers, columns)
                if owner in by_side and column.name not in by_side[owner]:
                    by_side[owner].append(column.name)
            for lc in by_side[left]:
                for rc in by_side[right]:
                    link = SqlLink(lc, rc, how, tolerance)
                    if all((x.left, x.right) != (lc, rc) for x in found):
                        found.append(link)
    return found


def queries(data: Any) -> list[tuple[str, str]]:
    """(where, sql) of every query in a recipe's JSON, valid or not."""
    if not isinstance(data, dict):
        return []
    found = []
    if isinstance(data.get("match_sql"), str):
        found.append(("match_sql", data["match_sql"]))
    for i, step in enumerate(
        data.get("passes") or [] if isinstance(data.get("passes"), list) else []
    ):
        if isinstance(step, dict) and isinstance(step.get("match_sql"), str):
            found.append((f"passes.{i}.match_sql", step["match_sql"]))
    return found


def problems(data: Any, columns: Mapping[str, Sequence[str]]) -> list[str]:
    """Columns that do not exist in their source, and reads of anything but the sources.

    Takes the recipe's JSON (valid or not), so these problems are listed with the others."""
    aliases = list(columns)
    found: list[str] = []
    for where, sql in queries(data):
        tree = _parse(sql)
        if tree is None:
            continue  # the engine reports the syntax error with its position
        for table in tree.find_all(exp.Table):
            if not isinstance(table.this, exp.Identifier):
                found.append(
                    f"{where}: reads '{table.this.sql()[:80]}', which is not a source; a recipe "
                    f"reads only its sources: {', '.join(aliases)}"
                )
        qualifiers = _qualifiers(tree, aliases)
        for column in tree.find_all(exp.Column):
            owner = qualifiers.get(column.table) if column.table else None
            if owner is None or column.name in columns.get(owner, ()):
                continue
            message = (
                f"{where}: column '{column.name}' is not in source '{owner}'"
                f"{did_you_mean(column.name, columns.get(owner, ()))}"
            )
            if message not in found:
                found.append(message)
    return found
