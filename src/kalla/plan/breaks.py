"""Breaks explained: for every unmatched record, the nearest record on the other side and why
the recipe's own conditions did not pair them (``nearest_key``, ``nearest_reason``).

Read from each pass's SQL, the join conditions of the one SELECT that joins the two sources
(its ``ON`` and ``WHERE``, split at ``AND``) fall in two kinds:

* **keys**: ``=`` between an expression of one source and one of the other that is not an
  amount or a date (``i.invoice_id = p.reference_number``, ``TRIM(p.ref) = i.ref``);
* **residuals**: every other condition, including ``=`` between amounts or dates
  (``i.amount = p.paid_amount``, ``abs(i.amount - p.paid_amount) <= 0.02``, date windows,
  conditions on one side only). One that compares one column of each side of the same kind
  is described with its distance ("amount differs by 5.00", "issue_date 4 days apart"),
  any other by its SQL ("fails p.status = 'settled'").

Per unmatched side, at bounded cost (SQL, engine-neutral, all sqlglot expressions):

1. **same key** — the side's unmatched rows joined, on each pass's keys only, to every row of
   the other side (a hash join no bigger than the pass's own): each candidate with the
   residuals it fails;
2. **same amount** — where no pass has a key partner, the other side's *unmatched* rows
   with an equal amount, amounts that occur there more than ``RELAXED_LIMIT`` times left out;
3. the best candidate per record (same key first, fewest failed conditions, nearest amount,
   nearest date, earliest pass, smallest key) with its reason, written once; the output is
   the unmatched rows left-joined to it ("no row with this reference_number" where there is
   none), and the breaks are counted by reason without the numbers.

A pass whose SQL has no such SELECT (a UNION, the sources only inside subqueries) is not
used; when no pass can be used the run writes no explanation columns.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa
from sqlglot import exp
from sqlglot.errors import OptimizeError, SqlglotError
from sqlglot.optimizer.qualify import qualify

from kalla.plan.dialect import RecipeSQL
from kalla.plan.sql import aliased, column, conjunction, table

NEAREST_KEY = "nearest_key"
NEAREST_REASON = "nearest_reason"
TAKEN = ", but that record is already matched"
RELAXED_LIMIT = 5  # amounts shared by more unmatched rows than this explain nothing
_SQL_SHOWN = 60  # characters of a condition's SQL in a reason
_MAX_NODES = 5000  # a pass's SQL bigger than this is not read for explanations
_ME, _THEM, _BEST = "u", "o", "b"


class Kind(StrEnum):
    AMOUNT = "amount"
    DATE = "date"
    OTHER = "other"


@dataclass(frozen=True)
class Condition:
    """One residual condition of a pass, as the recipe wrote it (source aliases as tables)."""

    node: exp.Expr  # columns qualified by source alias
    kind: Kind
    pair: tuple[str, str] | None  # (left column, right column) for AMOUNT and DATE
    text: str  # the recipe's SQL for it


@dataclass(frozen=True)
class Key:
    left: exp.Expr  # columns qualified by the left alias
    right: exp.Expr


@dataclass(frozen=True)
class PassConditions:
    """What one pass's SQL asks of a pair, split into keys and residuals."""

    name: str
    keys: tuple[Key, ...]
    residuals: tuple[Condition, ...]


@dataclass(frozen=True)
class SideBreaks:
    """The steps that explain one side's unmatched rows (see the module doc)."""

    alias: str
    work_file: str  # the unmatched rows, written first
    work_table: str  # that file registered
    best_file: str  # one row per unmatched key: its nearest record and the reason
    best_table: str
    best: exp.Select
    output: exp.Select  # the unmatched rows with NEAREST_KEY and NEAREST_REASON
    counts: exp.Select  # (reason, n) per reason, most frequent first
    columns: tuple[str, str]  # the names the two columns get in the output


@dataclass(frozen=True)
class BreaksPlan:
    sides: tuple[SideBreaks, SideBreaks]  # left, right

    def side(self, alias: str) -> SideBreaks:
        return next(s for s in self.sides if s.alias == alias)


# --- reading a pass's conditions ------------------------------------------------------------


def pass_conditions(
    tree: exp.Query, name: str, schemas: Mapping[str, pa.Schema]
) -> PassConditions | None:
    """The keys and residuals of the SELECT of ``tree`` that joins the two sources (``schemas``:
    alias -> columns and types, left first), or None when there is no such SELECT."""
    aliases = list(schemas)
    if any(i > _MAX_NODES for i, _ in enumerate(tree.walk())):
        return None  # generated SQL (thousands of ORs): reading it would cost more than the run
    try:
        qualified = qualify(
            tree.copy(),
            dialect=RecipeSQL,
            schema={a: {f.name: "UNKNOWN" for f in s} for a, s in schemas.items()},
            validate_qualify_columns=False,
            quote_identifiers=False,
        )
    except (OptimizeError, SqlglotError, RecursionError, KeyError, ValueError):
        return None  # the pass's own planning (layout.py) reports what is wrong with its SQL
    for select in qualified.find_all(exp.Select):
        tables = [select.args.get("from_") or select.args.get("from")]
        tables += [j for j in select.args.get("joins") or []]
        names: dict[str, str] = {}
        for holder in tables:
            node = holder.this if holder is not None else None
            if isinstance(node, exp.Table) and node.name in aliases and not node.args.get("db"):
                names[node.alias_or_name] = node.name
        if sorted(set(names.values())) != sorted(aliases):
            continue
        predicates = [j.args.get("on") for j in select.args.get("joins") or []]
        where = select.args.get("where")
        predicates.append(where.this if where is not None else None)
        conjuncts = [c for p in predicates if p is not None for c in _flatten(p)]
        return _classify(name, conjuncts, names, schemas)
    return None


def _flatten(node: exp.Expr) -> list[exp.Expr]:
    while isinstance(node, exp.Paren):
        node = node.this
    if isinstance(node, exp.And):
        return _flatten(node.left) + _flatten(node.right)
    return [node]


def _sides(node: exp.Expr, names: Mapping[str, str]) -> set[tuple[str, str]] | None:
    """(source, column) of every column under ``node``; None when one reads something else."""
    if node.find(exp.Query) is not None:
        return None
    found = set()
    for col in node.find_all(exp.Column):
        source = names.get(col.table)
        if source is None:
            return None
        found.add((source, col.name))
    return found


def _kind(schemas: Mapping[str, pa.Schema], source: str, name: str) -> Kind:
    kind = schemas[source].field(name).type if name in schemas[source].names else None
    if kind is None:
        return Kind.OTHER
    if pa.types.is_decimal(kind) or pa.types.is_floating(kind):
        return Kind.AMOUNT
    if pa.types.is_date(kind) or pa.types.is_timestamp(kind):
        return Kind.DATE
    return Kind.OTHER


def _by_alias(node: exp.Expr, names: Mapping[str, str]) -> exp.Expr:
    """``node`` with every column qualified by its source alias (not the SQL's table alias)."""
    copy = node.copy()
    for col in copy.find_all(exp.Column):
        col.set("table", exp.to_identifier(names[col.table], quoted=True))
    return copy


def _text(node: exp.Expr) -> str:
    text = node.sql(dialect=RecipeSQL)
    return text if len(text) <= _SQL_SHOWN else text[: _SQL_SHOWN - 1] + "…"


def _classify(
    name: str,
    conjuncts: Sequence[exp.Expr],
    names: Mapping[str, str],
    schemas: Mapping[str, pa.Schema],
) -> PassConditions:
    left, right = list(schemas)
    keys: list[Key] = []
    residuals: list[Condition] = []
    for conjunct in conjuncts:
        found = _sides(conjunct, names)
        if found is None or not found:
            continue  # a subquery, or a constant: nothing a pair can be told by
        node = _by_alias(conjunct, names)
        by_side = {s: sorted(c for src, c in found if src == s) for s in (left, right)}
        pair: tuple[str, str] | None = None
        kind = Kind.OTHER
        if len(by_side[left]) == 1 and len(by_side[right]) == 1:
            lk = _kind(schemas, left, by_side[left][0])
            rk = _kind(schemas, right, by_side[right][0])
            if lk is rk and lk is not Kind.OTHER:
                kind, pair = lk, (by_side[left][0], by_side[right][0])
        if isinstance(node, exp.EQ) and kind is Kind.OTHER:
            plain = {left: left, right: right}
            operands = [_sides(node.left, plain) or set(), _sides(node.right, plain) or set()]
            sources = [{s for s, _ in o} for o in operands]
            if sources in ([{left}, {right}], [{right}, {left}]):
                lhs, rhs = (
                    (node.left, node.right) if sources[0] == {left} else (node.right, node.left)
                )
                keys.append(Key(lhs, rhs))
                continue
        residuals.append(Condition(node, kind, pair, _text(_as_written(conjunct))))
    if not keys:  # amounts (or dates) compared with "=" are then what pairs records
        for condition in residuals:
            if isinstance(condition.node, exp.EQ) and condition.pair is not None:
                keys.append(Key(column(condition.pair[0], left), column(condition.pair[1], right)))
        residuals = [r for r in residuals if not (isinstance(r.node, exp.EQ) and r.pair)]
    return PassConditions(name, tuple(keys), tuple(residuals))


def _as_written(node: exp.Expr) -> exp.Expr:
    """``node`` as the recipe wrote it, less the quotes qualification added."""
    copy = node.copy()
    for ident in copy.find_all(exp.Identifier):
        ident.set("quoted", False)
    return copy


# --- the steps -------------------------------------------------------------------------------


def _swap(node: exp.Expr, me: str, them: str) -> exp.Expr:
    """``node`` over the relations ``u`` (``me``'s rows) and ``o`` (``them``'s)."""
    copy = node.copy()
    for col in copy.find_all(exp.Column):
        col.set("table", exp.to_identifier(_ME if col.table == me else _THEM, quoted=True))
    return copy


def _label(node: exp.Expr) -> str:
    copy = node.copy()
    for col in copy.find_all(exp.Column):
        col.set("table", None)
    return _as_written(copy).sql(dialect=RecipeSQL)


def _str(text: str) -> exp.Expr:
    return exp.Literal.string(text)


def _varchar(node: exp.Expr) -> exp.Expr:
    return exp.Cast(this=node, to=exp.DataType.build("VARCHAR"))


def _holds(node: exp.Expr) -> exp.Expr:
    return exp.Coalesce(this=exp.Paren(this=node), expressions=[exp.false()])


def _when(condition: exp.Expr, then: exp.Expr, otherwise: exp.Expr) -> exp.Expr:
    return exp.Case(ifs=[exp.If(this=condition, true=then)], default=otherwise)


def _concat(parts: Sequence[exp.Expr]) -> exp.Expr:
    return exp.Concat(expressions=list(parts), safe=True, coalesce=True)


@dataclass(frozen=True)
class _Side:
    me: str
    them: str
    my_key: tuple[str, ...]
    their_key: tuple[str, ...]
    mine: int  # 0 when ``me`` is the recipe's left source, 1 when right


def _mine(pair: tuple[str, str], side: _Side) -> tuple[str, str]:
    return (pair[0], pair[1]) if side.mine == 0 else (pair[1], pair[0])


def _distance(condition: Condition, side: _Side) -> exp.Expr:
    assert condition.pair is not None
    mine, theirs = _mine(condition.pair, side)
    a, b = column(mine, _ME), column(theirs, _THEM)
    if condition.kind is Kind.DATE:
        return exp.Abs(this=exp.DateDiff(this=a, expression=b, unit=exp.var("DAY")))
    return exp.Abs(this=exp.Sub(this=a, expression=b))


def _describe(condition: Condition, side: _Side) -> tuple[exp.Expr, str]:
    """What to say when ``condition`` fails: (the reason's words, its words without numbers)."""
    if condition.pair is None:
        words = f", fails {condition.text}"
        return _str(words), words
    mine = _mine(condition.pair, side)[0]
    if condition.kind is Kind.DATE:
        distance = _varchar(_distance(condition, side))
        return _concat([_str(f", {mine} "), distance, _str(" days apart")]), f", {mine} differs"
    distance = _varchar(_distance(condition, side))
    return _concat([_str(f", {mine} differs by "), distance]), f", {mine} differs"


def _nearest_key(side: _Side) -> exp.Expr:
    parts = [_varchar(column(k, _THEM)) for k in side.their_key]
    if len(parts) == 1:
        return parts[0]
    return exp.ConcatWs(expressions=[_str(" | "), *parts])


def _candidate(
    side: _Side,
    index: int,
    tier: int,
    source: exp.Expr,
    on: exp.Expr,
    prefix: str,
    residuals: Sequence[Condition],
    taken: bool,
    near: Condition | None = None,
) -> exp.Select:
    """One pass's candidates for ``me``'s rows, with their rank fields and reasons."""
    failed: list[exp.Expr] = []
    reason: list[exp.Expr] = [_str(prefix)]
    category: list[exp.Expr] = [_str(prefix)]
    for condition in residuals:
        holds = _holds(_swap(condition.node, side.me, side.them))
        failed.append(_when(holds, exp.Literal.number(0), exp.Literal.number(1)))
        words, plain = _describe(condition, side)
        reason.append(_when(holds.copy(), _str(""), words))
        category.append(_when(holds.copy(), _str(""), _str(plain)))
    count: exp.Expr = exp.Literal.number(0)
    for item in failed:
        count = exp.Add(this=count, expression=item)
    if taken:  # every condition holds: the other record went to another match
        none_failed = exp.EQ(this=count.copy(), expression=exp.Literal.number(0))
        reason.append(_when(none_failed, _str(TAKEN), _str("")))
        category.append(_when(none_failed.copy(), _str(TAKEN), _str("")))
    if near is not None:  # how far apart the dates are, whatever the conditions say
        mine = _mine(near.pair or ("", ""), side)[0]
        gap = _distance(near, side)
        reason.append(
            _when(
                exp.EQ(this=gap, expression=exp.Literal.number(0)),
                _str(f", same {mine}"),
                _concat([_str(f", {mine} "), _varchar(gap.copy()), _str(" days apart")]),
            )
        )
    amounts = [c for c in residuals if c.kind is Kind.AMOUNT and c.pair]
    dates = [c for c in residuals if c.kind is Kind.DATE and c.pair]
    if near is not None:
        dates = [near]
    nothing = exp.Null()
    amount = _distance(amounts[0], side) if amounts else nothing
    days = _distance(dates[0], side) if dates else nothing
    items = [
        *(aliased(column(k, _ME), f"__k{i}") for i, k in enumerate(side.my_key)),
        aliased(exp.Literal.number(tier), "__tier"),
        aliased(count, "__failed"),
        aliased(exp.Cast(this=amount, to=exp.DataType.build("DOUBLE")), "__amount"),
        aliased(exp.Cast(this=days, to=exp.DataType.build("BIGINT")), "__days"),
        aliased(exp.Literal.number(index), "__pass"),
        aliased(_nearest_key(side), NEAREST_KEY),
        aliased(_concat(reason), NEAREST_REASON),
        aliased(_concat(category), "__category"),
    ]
    return exp.select(*items).from_(table(_work_table(side.me), _ME)).join(source, on=on)


def _work_table(alias: str) -> str:
    return f"__unmatched_{alias}"


def _keys_label(passes: Sequence[PassConditions], side: _Side) -> str:
    labels: list[str] = []
    for conditions in passes:
        mine = " and ".join(_label(k.left if side.mine == 0 else k.right) for k in conditions.keys)
        if mine and mine not in labels:
            labels.append(mine)
    return " or ".join(labels)


def _relaxed(
    side: _Side, passes: Sequence[PassConditions], index: int, label: str
) -> exp.Select | None:
    """Candidates with an equal amount among the other side's unmatched rows, bounded."""
    for conditions in passes:
        for condition in conditions.residuals:
            if condition.kind is Kind.AMOUNT and condition.pair and conditions.keys:
                mine, theirs = _mine(condition.pair, side)
                others = _work_table(side.them)
                counted = (
                    exp.select(aliased(column(theirs), "__v"))
                    .from_(table(others))
                    .group_by(column(theirs))
                    .having(
                        exp.LTE(
                            this=exp.Count(this=exp.Star()),
                            expression=exp.Literal.number(RELAXED_LIMIT),
                        )
                    )
                )
                rows = (
                    exp.select(exp.Column(this=exp.Star(), table=exp.to_identifier("r")))
                    .from_(table(others, "r"))
                    .join(
                        exp.Subquery(
                            this=counted, alias=exp.TableAlias(this=exp.to_identifier("c"))
                        ),
                        on=exp.EQ(this=column(theirs, "r"), expression=column("__v", "c")),
                    )
                )
                source = exp.Subquery(
                    this=rows, alias=exp.TableAlias(this=exp.to_identifier(_THEM, quoted=True))
                )
                on = exp.EQ(this=column(mine, _ME), expression=column(theirs, _THEM))
                dates = [c for c in conditions.residuals if c.kind is Kind.DATE and c.pair]
                prefix = f"no row with this {label}; {mine} equal"
                near = dates[0] if dates else None
                return _candidate(side, index, 1, source, on, prefix, (), False, near)
    return None


def plan_breaks(
    passes: Sequence[PassConditions | None],
    schemas: Mapping[str, pa.Schema],
    primary_keys: Mapping[str, Sequence[str]],
    bases: Mapping[str, str],
) -> BreaksPlan | None:
    """The steps for both sides (``schemas``, ``primary_keys``, ``bases``: by alias, left
    first), or None when no pass's SQL can be read for them."""
    usable = [p for p in passes if p is not None and p.keys]
    if not usable:
        return None
    left, right = list(schemas)
    sides = []
    for mine, (me, them) in enumerate(((left, right), (right, left))):
        side = _Side(me, them, tuple(primary_keys[me]), tuple(primary_keys[them]), mine)
        label = _keys_label(usable, side)
        candidates: list[exp.Select] = []
        for index, conditions in enumerate(passes):
            if conditions is None or not conditions.keys:
                continue
            on = conjunction(
                [
                    exp.EQ(
                        this=_swap(k.left if mine == 0 else k.right, me, them),
                        expression=_swap(k.right if mine == 0 else k.left, me, them),
                    )
                    for k in conditions.keys
                ]
            )
            keys = " and ".join(_label(k.left if mine == 0 else k.right) for k in conditions.keys)
            candidates.append(
                _candidate(
                    side,
                    index,
                    0,
                    table(bases[them], _THEM),
                    on,
                    f"same {keys}",
                    conditions.residuals,
                    True,
                )
            )
        relaxed = _relaxed(side, usable, len(passes), label)
        if relaxed is not None:
            candidates.append(relaxed)
        sides.append(_side_plan(side, candidates, label, schemas[me].names, usable, mine))
    return BreaksPlan((sides[0], sides[1]))


def _side_plan(
    side: _Side,
    candidates: Sequence[exp.Select],
    label: str,
    names: Sequence[str],
    usable: Sequence[PassConditions],
    mine: int,
) -> SideBreaks:
    union: exp.Query = candidates[0]
    for more in candidates[1:]:
        union = exp.union(union, more, distinct=False)
    ks = [column(f"__k{i}") for i in range(len(side.my_key))]
    order = [
        exp.Ordered(this=column("__tier")),
        exp.Ordered(this=column("__failed")),
        exp.Ordered(this=column("__amount"), nulls_first=False),
        exp.Ordered(this=column("__days"), nulls_first=False),
        exp.Ordered(this=column("__pass")),
        exp.Ordered(this=column(NEAREST_KEY), nulls_first=False),
    ]
    ranked = exp.select(
        exp.Star(),
        aliased(
            exp.Window(
                this=exp.RowNumber(),
                partition_by=[k.copy() for k in ks],
                order=exp.Order(expressions=order),
            ),
            "__rank",
        ),
    ).from_(exp.Subquery(this=union, alias=exp.TableAlias(this=exp.to_identifier("c"))))
    best = (
        exp.select(*ks, column(NEAREST_KEY), column(NEAREST_REASON), column("__category"))
        .from_(exp.Subquery(this=ranked, alias=exp.TableAlias(this=exp.to_identifier("r"))))
        .where(exp.EQ(this=column("__rank"), expression=exp.Literal.number(1)))
    )
    on = conjunction(
        [
            exp.NullSafeEQ(this=column(k, _ME), expression=column(f"__k{i}", _BEST))
            for i, k in enumerate(side.my_key)
        ]
    )
    first = usable[0].keys
    empty = exp.and_(
        *(
            exp.Is(
                this=_swap(k.left if mine == 0 else k.right, side.me, side.them),
                expression=exp.Null(),
            )
            for k in first
        )
    )
    missing = _when(empty, _str(f"{label} is empty"), _str(f"no row with this {label}"))
    key_name, reason_name = _column_names(names)
    best_table = f"__breaks_{side.me}"
    joined = table(_work_table(side.me), _ME)
    output = (
        exp.select(
            exp.Column(this=exp.Star(), table=exp.to_identifier(_ME, quoted=True)),
            aliased(column(NEAREST_KEY, _BEST), key_name),
            aliased(
                exp.Coalesce(this=column(NEAREST_REASON, _BEST), expressions=[missing]), reason_name
            ),
        )
        .from_(joined)
        .join(table(best_table, _BEST), on=on, join_type="LEFT")
    )
    reason = exp.Coalesce(this=column("__category", _BEST), expressions=[missing.copy()])
    counts = (
        exp.select(aliased(reason, "reason"), aliased(exp.Count(this=exp.Star()), "n"))
        .from_(joined.copy())
        .join(table(best_table, _BEST), on=on.copy(), join_type="LEFT")
        .group_by(reason.copy())
        .order_by(exp.Ordered(this=column("n"), desc=True), column("reason"))
    )
    return SideBreaks(
        alias=side.me,
        work_file=f".work/unmatched-{side.mine}.parquet",
        work_table=_work_table(side.me),
        best_file=f".work/breaks-{side.mine}.parquet",
        best_table=best_table,
        best=best,
        output=output,
        counts=counts,
        columns=(key_name, reason_name),
    )


def _column_names(names: Sequence[str]) -> tuple[str, str]:
    """The two columns' names: underscores in front while the source has a column of that
    name (nothing of the source is ever replaced)."""
    taken = set(names)
    chosen = []
    for name in (NEAREST_KEY, NEAREST_REASON):
        while name in taken:
            name = f"_{name}"
        chosen.append(name)
    return chosen[0], chosen[1]
