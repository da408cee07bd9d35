"""The steps over key columns: records no pass matched yet (NULL-safe anti joins), key
statistics of a pass, and the duplicate keys that explain control totals that do not add up."""

from __future__ import annotations

from collections.abc import Sequence

from sqlglot import exp

from kalla.plan.sql import aliased, column, conjunction, table

MatchedKeys = tuple[str, tuple[str, ...]]  # (table of a pass's final matches, its key columns)


def unmatched(base: str, primary_key: Sequence[str], matched: Sequence[MatchedKeys]) -> exp.Select:
    """Rows of ``base`` whose key is in none of ``matched``. NULL-safe (``IS NOT DISTINCT
    FROM``), so a NULL key behaves like any other value instead of vanishing from both sides."""
    if not matched:
        return exp.select(exp.Star()).from_(table(base))
    selects = [
        exp.select(*(aliased(column(name), f"k{i}") for i, name in enumerate(names))).from_(
            table(relation)
        )
        for relation, names in matched
    ]
    keys = selects[0] if len(selects) == 1 else exp.union(*selects, distinct=False)
    on = conjunction(
        [
            exp.NullSafeEQ(this=column(key, "b"), expression=column(f"k{i}", "m"))
            for i, key in enumerate(primary_key)
        ]
    )
    join = exp.Join(
        this=exp.Subquery(
            this=keys, alias=exp.TableAlias(this=exp.to_identifier("m", quoted=True))
        ),
        on=on,
        side="LEFT",
        kind="ANTI",
    )
    select = exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier("b", quoted=True)))
    return select.from_(table(base, "b")).join(join)


def key_stats(relation: str, keys: Sequence[str]) -> exp.Select:
    """One row: ``repeated`` keys (in more than one row) and the ``repeated_rows`` they fill.
    Only repeated keys leave the aggregation (cheaper than a pass over every key); distinct
    keys = rows - repeated_rows + repeated."""
    count = exp.Count(this=exp.Star())
    groups = (
        exp.select(aliased(count, "c"))
        .from_(table(relation))
        .group_by(*(column(k) for k in keys))
        .having(exp.GT(this=count.copy(), expression=exp.Literal.number(1)))
    )
    total = exp.Coalesce(this=exp.Sum(this=column("c")), expressions=[exp.Literal.number(0)])
    return exp.select(
        aliased(exp.Count(this=exp.Star()), "repeated"), aliased(total, "repeated_rows")
    ).from_(
        exp.Subquery(this=groups, alias=exp.TableAlias(this=exp.to_identifier("r", quoted=True)))
    )


DUPLICATES_SHOWN = 10


def duplicate_keys(
    base: str, primary_key: Sequence[str], limit: int = DUPLICATES_SHOWN
) -> exp.Select:
    """The most repeated keys of ``base``, with their row count ``n``."""
    count = exp.Count(this=exp.Star())
    keys = [column(k) for k in primary_key]
    return (
        exp.select(*keys, aliased(count, "n"))
        .from_(table(base))
        .group_by(*(k.copy() for k in keys))
        .having(exp.GT(this=count.copy(), expression=exp.Literal.number(1)))
        .order_by(exp.Ordered(this=column("n"), desc=True), *(k.copy() for k in keys))
        .limit(limit)
    )
