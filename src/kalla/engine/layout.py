"""Where each side's primary key sits in a match output, and unique output names.

DataFusion knows which table every output column came from (the plan's qualifiers); we
map SQL table aliases (``i``, ``p``) back to source aliases by walking the plan, so keys
are found however the SQL selected them, and duplicate names are qualified, not dropped.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass

import pyarrow as pa
from datafusion import DataFrame, Expr, LogicalPlan, col, lit

from kalla.engine.sql import quote_ident
from kalla.errors import SqlError


@dataclass(frozen=True)
class OutputColumn:
    qualifier: str | None  # as the plan has it: an SQL alias ("i"), a table, or None
    name: str  # the name DataFusion gives the column
    source: str | None  # the source alias the qualifier maps to, when it maps to one

    def ref(self) -> Expr:
        """An expression selecting exactly this column (names are case-sensitive)."""
        quoted = quote_ident(self.name)
        if self.qualifier is None:
            return col(quoted)
        return col(f"{quote_ident(self.qualifier)}.{quoted}")


@dataclass(frozen=True)
class MatchLayout:
    """The columns of one pass's match output and where each side's keys are."""

    columns: tuple[OutputColumn, ...]
    names: tuple[str, ...]  # final, unique output names (same order as columns)
    keys: Mapping[str, tuple[str, ...]]  # source alias -> output names of its key columns

    def select(self, df: DataFrame, pass_name: str) -> DataFrame:
        """The pass output with unique names and the ``match_pass`` column appended."""
        exprs = [c.ref().alias(n) for c, n in zip(self.columns, self.names, strict=True)]
        return df.select(*exprs, lit(pass_name).cast(pa.string()).alias("match_pass"))


def _children(plan: LogicalPlan) -> list[LogicalPlan]:
    try:
        return list(plan.inputs())
    except Exception:  # some plan nodes (e.g. empty relations) expose no inputs
        return []


def _walk(plan: LogicalPlan) -> Iterator[LogicalPlan]:
    yield plan
    for child in _children(plan):
        yield from _walk(child)


def _node_name(plan: LogicalPlan) -> tuple[str, str] | None:
    variant = plan.to_variant()
    kind = type(variant).__name__
    if kind == "SubqueryAlias":
        return kind, str(variant.alias())
    if kind == "TableScan":
        return kind, str(variant.table_name())
    return None


def _sources_below(plan: LogicalPlan, sources: Mapping[str, str]) -> set[str]:
    """The source aliases whose nearest named node below ``plan`` identifies them."""
    found: set[str] = set()
    for child in _children(plan):
        named = _node_name(child)
        if named is not None and named[1] in sources:
            found.add(sources[named[1]])
        else:
            found |= _sources_below(child, sources)
    return found


def qualifier_map(plan: LogicalPlan, sources: Mapping[str, str]) -> dict[str, str]:
    """SQL alias -> source alias, for every alias that stands for exactly one source.

    ``sources`` maps every table name that stands for a source (its alias, internal
    registration names) to the source alias.
    """
    mapping = dict(sources)
    ambiguous: set[str] = set()
    for node in _walk(plan):
        named = _node_name(node)
        if named is None or named[1] in sources:
            continue
        below = _sources_below(node, sources)
        if len(below) == 1:
            (source,) = below
            if mapping.get(named[1], source) != source:
                ambiguous.add(named[1])
            mapping[named[1]] = source
        else:
            ambiguous.add(named[1])
    for name in ambiguous:
        mapping.pop(name, None)
    return mapping


def _output_fields(df: DataFrame) -> list[tuple[str | None, str]]:
    """(qualifier, name) of each output column, from the top plan node that has a schema."""
    names = df.schema().names
    plan = df.logical_plan()
    while True:
        variant = plan.to_variant()
        schema = getattr(variant, "schema", None)
        if schema is not None:
            qualified = list(schema().field_names())
            break
        children = _children(plan)
        if not children:
            return [(None, n) for n in names]
        plan = children[0]
    fields: list[tuple[str | None, str]] = []
    for name, full in zip(names, qualified, strict=True):
        if full != name and full.endswith("." + name):
            fields.append((full[: -len(name) - 1].strip('"'), name))
        else:
            fields.append((None, name))
    return fields


def analyse(
    df: DataFrame,
    *,
    keys: Mapping[str, Sequence[str]],
    sources: Mapping[str, str],
    where: str,
) -> MatchLayout:
    """Find every side's key columns in ``df``'s output and give every column a unique name.

    ``keys``: source alias -> its primary-key column names (two entries, left first).
    """
    qualifiers = qualifier_map(df.logical_plan(), sources)
    columns = tuple(
        OutputColumn(q, n, qualifiers.get(q) if q is not None else None)
        for q, n in _output_fields(df)
    )
    if any(c.name == "match_pass" for c in columns):
        raise SqlError(
            f"{where}: the output already has a column named 'match_pass'; Kalla adds that "
            "column to record which pass matched each row, so alias yours differently"
        )
    counts = Counter(c.name for c in columns)
    names: list[str] = []
    for c in columns:
        name = c.name
        if counts[name] > 1:
            name = f"{c.source or c.qualifier or 'expr'}.{c.name}"
            while name in names:
                name += "_2"
        names.append(name)

    found: dict[str, tuple[str, ...]] = {}
    problems: list[str] = []
    for alias, key_columns in keys.items():
        others = {o for o in keys if o != alias}
        shared = {k for o in others for k in keys[o]}
        located: list[str] = []
        for key in key_columns:
            index = _locate(columns, alias, key, others, shared_name=key in shared)
            if index is None:
                problems.append(f"key column '{key}' of source '{alias}'")
            else:
                located.append(names[index])
        found[alias] = tuple(located)
    if problems:
        raise SqlError(
            f"{where}: the match output must contain each source's primary key; missing "
            + "; ".join(problems)
            + f". Output columns: {', '.join(names)}. Select them plainly (e.g. "
            "i.invoice_id), or as <alias>_<column> when both sides share a name."
        )
    return MatchLayout(columns=columns, names=tuple(names), keys=found)


def _locate(
    columns: Sequence[OutputColumn], alias: str, key: str, others: set[str], *, shared_name: bool
) -> int | None:
    for i, c in enumerate(columns):  # qualified by the plan: i.invoice_id
        if c.name == key and c.source == alias:
            return i
    for i, c in enumerate(columns):  # aliased by the user: invoices_invoice_id
        if c.name == f"{alias}_{key}":
            return i
    plain = [i for i, c in enumerate(columns) if c.name == key and c.source not in others]
    if len(plain) == 1 and not (shared_name and columns[plain[0]].source != alias):
        return plain[0]
    return None
