"""Which columns a recipe's SQL compares with ``=`` across its two sources: its join keys.

Read from the SQL text before any source is staged (no schema needed), so that staging can
type those columns the same way on both sides (``connectors.csv_types``: a key column never
becomes an integer). A column counts when it appears, qualified by its source's alias or
table alias (``p.ref``, ``payments.ref``), on one side of an ``=`` whose other side reads
only the other source: ``ON i.invoice_id = p.ref``, ``ON TRIM(p.ref) = i.ref``. SQL that
does not parse yields nothing: the plan reports its error, with the position, later.
"""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from kalla.errors import KallaError
from kalla.plan.sql import parse_query
from kalla.recipe.models import MatchSpec


def compared_columns(spec: MatchSpec, aliases: Sequence[str]) -> dict[str, frozenset[str]]:
    """For each source alias, the columns its every pass compares with ``=`` to the other."""
    found: dict[str, set[str]] = {alias: set() for alias in aliases}
    for match_pass in spec.match_passes():
        try:
            tree = parse_query(match_pass.match_sql, f"pass '{match_pass.name}'")
        except (KallaError, RecursionError):
            continue
        sources = _table_aliases(tree, set(aliases))
        for equality in tree.find_all(exp.EQ):
            left = _columns(equality.left, sources)
            right = _columns(equality.right, sources)
            left_sources = {source for source, _ in left}
            right_sources = {source for source, _ in right}
            if len(left_sources) == 1 and len(right_sources) == 1 and left_sources != right_sources:
                for source, name in left | right:
                    found[source].add(name)
    return {alias: frozenset(names) for alias, names in found.items()}


def _table_aliases(tree: exp.Expr, aliases: set[str]) -> dict[str, str]:
    """Table alias or name → the source it reads (``i`` → ``invoices``)."""
    sources: dict[str, str] = {}
    for table in tree.find_all(exp.Table):
        if table.name in aliases:
            sources[table.alias_or_name] = table.name
            sources.setdefault(table.name, table.name)
    return sources


def _columns(node: exp.Expr, sources: dict[str, str]) -> set[tuple[str, str]]:
    """(source, column) of every qualified column under ``node`` that reads a source; a
    side holding an unqualified column, or a subquery, counts as none."""
    if node.find(exp.Query) is not None:
        return set()
    found: set[tuple[str, str]] = set()
    for column in node.find_all(exp.Column):
        source = sources.get(column.table)
        if not column.table or source is None:
            return set()
        found.add((source, column.name))
    return found
