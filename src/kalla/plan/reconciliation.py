"""The whole run as data: ``build_plan(spec, left, right)`` → a ``ReconciliationPlan``.

Every statement is a sqlglot expression over named relations, for an executor to render in
its own dialect and run; files are named relative to the run's output directory:

1. sources   each input is registered as ``__src_<alias>``; the view ``__base_<alias>`` reads
             it with float columns cast to the decimals they hold and the filters applied
2. passes    per pass, the alias views show only records no earlier pass matched (an anti
             join on the keys of every earlier pass's matches); the pass's query (tolerance
             rewritten, duplicate names qualified, ``match_pass`` added) writes candidates;
             one aggregation per side counts distinct and repeated keys; 1:1 keeps the best
             candidate per record
3. combine   pass files unioned by column name into ``matched`` (and ``ambiguous``)
4. unmatched source rows whose key is in no final match (NULL-safe anti joins), then each
             one's nearest record on the other side and the reason (``breaks.py``)
5. totals    input rows = distinct matched keys + unmatched rows, per side; the most repeated
             keys explain totals that do not add up
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import pyarrow as pa
from sqlglot import exp

from kalla.errors import RecipeError, SqlError
from kalla.evidence.output import OUTPUT_NAMES
from kalla.plan import keys as key_steps
from kalla.plan.breaks import BreaksPlan, pass_conditions, plan_breaks
from kalla.plan.casts import check_comparisons, float_tolerances
from kalla.plan.filters import predicates
from kalla.plan.floats import finite
from kalla.plan.layout import MatchLayout, plan_pass
from kalla.plan.sql import (
    aliased,
    column,
    conjunction,
    count_rows,
    ident,
    parse_query,
    rewrite_tolerance,
)
from kalla.plan.sql import table as relation
from kalla.plan.types import sql_type
from kalla.recipe.models import Cardinality, FilterCondition, MatchSpec
from kalla.suggest import did_you_mean


def source_table(alias: str) -> str:
    """The name a source's staged Parquet is registered under."""
    return f"__src_{alias}"


def base_view(alias: str) -> str:
    """The name of a source's rows as the passes start from (decimals, filters)."""
    return f"__base_{alias}"


def work_file(name: str, index: int) -> str:
    return f".work/{name}-{index}.parquet"


def output_file(name: str) -> str:
    return f"{name}.parquet"


@dataclass(frozen=True)
class PlanInput:
    """One side, registered with an executor: what the plan needs to know about it."""

    alias: str
    schema: pa.Schema  # as the executor reads the staged Parquet
    rows: int  # rows in the file
    primary_key: tuple[str, ...]
    filters: tuple[FilterCondition, ...] = ()
    decimals: Mapping[str, pa.DataType] = field(default_factory=dict)  # floats.exact_types
    allow_duplicate_keys: bool = False
    non_finite: Mapping[str, int] = field(default_factory=dict)  # floats.non_finite_counts


@dataclass(frozen=True)
class SourcePlan:
    alias: str
    table: str  # registered Parquet
    base: str  # view of the rows the passes start from
    base_query: exp.Select
    count: exp.Select | None  # the base's rows, when filters make them fewer than the file's
    rows: int  # rows in the file
    primary_key: tuple[str, ...]
    columns: tuple[str, ...]  # the base's columns (what the SQL sees under the alias)
    decimals: Mapping[str, str]  # float column -> the decimal type it is read as
    non_finite: Mapping[str, int]  # float column -> NaN/infinity values read as NULL
    duplicate_keys: exp.Select  # the most repeated keys (explains failed control totals)
    unique_keys: exp.Select | None = None  # run before the passes: no row = a unique key


@dataclass(frozen=True)
class OneToOne:
    """Keep the best candidate per record: ascending ``rank_by``, ties by the keys."""

    rank_by: str
    left_keys: tuple[str, ...]
    right_keys: tuple[str, ...]


@dataclass(frozen=True)
class PassPlan:
    name: str
    where: str  # how messages name it: "match_sql" or "pass '<name>'"
    sql: str  # as the recipe wrote it
    query: exp.Query  # as it runs
    capped: exp.Query  # the query as written: at most ``max_candidates`` + 1 rows
    max_candidates: int
    layout: MatchLayout
    views: Mapping[str, exp.Select]  # source alias -> the records no earlier pass matched
    counts: Mapping[str, exp.Select] | None  # rows in each view (None: the input rows)
    candidates: str  # file the query writes
    stats_table: str  # candidates registered under this name for the key statistics
    key_stats: Mapping[str, exp.Select]  # source alias -> (repeated, repeated_rows)
    one_to_one: OneToOne | None
    matched: str  # file of this pass's final matches (the candidates unless 1:1)
    matched_table: str  # that file registered, for later anti joins
    ambiguous: str | None  # file of the candidates 1:1 did not keep


@dataclass(frozen=True)
class Combine:
    """An output assembled from pass files, by column name."""

    target: str
    parts: tuple[str, ...]


@dataclass(frozen=True)
class UnmatchedPlan:
    alias: str
    output: str  # "unmatched_left" or "unmatched_right"
    file: str
    query: exp.Select


@dataclass(frozen=True)
class ReconciliationPlan:
    cardinality: Cardinality
    sources: tuple[SourcePlan, SourcePlan]  # left, right
    passes: tuple[PassPlan, ...]
    combine: tuple[Combine, ...]
    unmatched: tuple[UnmatchedPlan, UnmatchedPlan]
    outputs: Mapping[str, str]  # output name -> file, every output this run writes
    breaks: BreaksPlan | None = None  # nearest record and reason per unmatched row (breaks.py)

    def source(self, alias: str) -> SourcePlan:
        return next(s for s in self.sources if s.alias == alias)


CANDIDATES_PER_ROW = 10
MIN_CANDIDATES = 1_000_000


def candidate_cap(left_rows: int, right_rows: int, setting: int = 0) -> int:
    """The candidate pairs one pass may produce: the setting, else proportional to the
    inputs (a many-to-many match rarely pairs a record with more than a few others)."""
    if setting:
        return setting
    return max(CANDIDATES_PER_ROW * (left_rows + right_rows), MIN_CANDIDATES)


def capped(query: exp.Query, limit: int) -> exp.Select:
    """``query``'s rows, at most ``limit``: a runaway join stops there instead of
    materialising every pair (the engine stops the join once the limit is reached)."""
    return (
        exp.select(exp.Star())
        .from_(exp.Subquery(this=query.copy(), alias=exp.TableAlias(this=ident("__capped"))))
        .limit(limit)
    )


def build_plan(
    spec: MatchSpec, left: PlanInput, right: PlanInput, *, max_candidates: int = 0
) -> ReconciliationPlan:
    """The plan for ``spec`` on two registered inputs; every problem with the recipe's fit to
    its sources in one RecipeError, then the first problem of each pass's SQL as a SqlError.
    ``max_candidates``: the candidate pairs a pass may produce (0: ``candidate_cap``'s)."""
    sources = _sources(left, right)
    cap = candidate_cap(left.rows, right.rows, max_candidates)
    one_to_one = spec.cardinality is Cardinality.ONE_TO_ONE
    specs = spec.match_passes()
    single = len(specs) == 1
    passes: list[PassPlan] = []
    schemas = {side.alias: _base_schema(side) for side in (left, right)}
    conditions = []
    for index, match in enumerate(specs):
        where = "match_sql" if match.name == "match_sql" else f"pass '{match.name}'"
        parsed = parse_query(match.match_sql, where)
        tree = rewrite_tolerance(parsed.copy(), where, float_tolerances(parsed, schemas))
        conditions.append(pass_conditions(tree, match.name, schemas))
        query, layout = plan_pass(
            tree,
            sources={s.alias: s.columns for s in sources},
            keys={s.alias: s.primary_key for s in sources},
            pass_name=match.name,
            where=where,
        )
        check_comparisons(parsed, schemas, where)
        ranking = None
        if one_to_one:
            assert spec.rank_by is not None
            ranking = OneToOne(spec.rank_by, layout.keys[left.alias], layout.keys[right.alias])
            check_rank_by(spec.rank_by, layout.names, where, complete=None not in layout.names)
        matched = output_file("matched") if single else work_file("pass", index)
        candidates = work_file("candidates", index) if one_to_one else matched
        stats_table = f"__candidates_{index}" if one_to_one else f"__pass_{index}"
        earlier = [(p.matched_table, p.layout.keys) for p in passes]
        passes.append(
            PassPlan(
                name=match.name,
                where=where,
                sql=match.match_sql,
                query=query,
                capped=capped(query, cap + 1),
                max_candidates=cap,
                layout=layout,
                views={
                    s.alias: key_steps.unmatched(
                        s.base, s.primary_key, [(t, k[s.alias]) for t, k in earlier]
                    )
                    for s in sources
                },
                counts={s.alias: count_rows(s.alias) for s in sources} if index else None,
                candidates=candidates,
                stats_table=stats_table,
                key_stats={
                    s.alias: key_steps.key_stats(stats_table, layout.keys[s.alias]) for s in sources
                },
                one_to_one=ranking,
                matched=matched,
                matched_table=f"__pass_{index}",
                ambiguous=(
                    (output_file("ambiguous") if single else work_file("ambiguous", index))
                    if one_to_one
                    else None
                ),
            )
        )
    outputs = {name: output_file(name) for name in OUTPUT_NAMES}
    if not one_to_one:
        del outputs["ambiguous"]
    combine: list[Combine] = []
    if not single:
        combine.append(Combine(outputs["matched"], tuple(p.matched for p in passes)))
        if one_to_one:
            parts = tuple(p.ambiguous for p in passes if p.ambiguous is not None)
            combine.append(Combine(outputs["ambiguous"], parts))
    final = [(p.matched_table, p.layout.keys) for p in passes]
    unmatched = tuple(
        UnmatchedPlan(
            alias=s.alias,
            output=name,
            file=outputs[name],
            query=key_steps.unmatched(s.base, s.primary_key, [(t, k[s.alias]) for t, k in final]),
        )
        for s, name in zip(sources, ("unmatched_left", "unmatched_right"), strict=True)
    )
    return ReconciliationPlan(
        cardinality=spec.cardinality,
        sources=sources,
        passes=tuple(passes),
        combine=tuple(combine),
        unmatched=(unmatched[0], unmatched[1]),
        outputs=outputs,
        breaks=plan_breaks(
            conditions,
            schemas,
            {s.alias: s.primary_key for s in sources},
            {s.alias: s.base for s in sources},
        ),
    )


def check_rank_by(
    rank_by: str, names: Sequence[str | None], where: str, *, complete: bool = True
) -> None:
    """``rank_by`` must be an output column; ``complete`` is False when some names are the
    engine's to give (then only the written output can tell)."""
    known = [n for n in names if n is not None]
    if rank_by in known or not complete:
        return
    raise SqlError(
        f"{where}: rank_by column '{rank_by}' is not in the match output"
        f"{did_you_mean(rank_by, known)}; output columns: {', '.join(known)}"
    )


def _sources(left: PlanInput, right: PlanInput) -> tuple[SourcePlan, SourcePlan]:
    problems: list[str] = []
    planned = []
    for side in (left, right):
        schema = _base_schema(side)
        for key in side.primary_key:
            if key not in schema.names:
                problems.append(
                    f"primary key column '{key}' is not in source '{side.alias}'"
                    f"{did_you_mean(key, schema.names)}; its columns: {', '.join(schema.names)}"
                )
        found, filter_problems = predicates(side.filters, schema, side.alias)
        problems += filter_problems
        planned.append(_source(side, schema, found))
    if problems:
        raise RecipeError(
            f"the recipe does not fit its sources ({len(problems)} problem(s))",
            problems=problems,
        )
    return planned[0], planned[1]


def _base_schema(side: PlanInput) -> pa.Schema:
    """The columns as the passes see them: float columns holding decimals as decimals."""
    return pa.schema(
        [f.with_type(side.decimals[f.name]) if f.name in side.decimals else f for f in side.schema]
    )


def _source(side: PlanInput, schema: pa.Schema, found: Sequence[exp.Expr]) -> SourcePlan:
    raw, base = source_table(side.alias), base_view(side.alias)
    if side.decimals or side.non_finite:
        # decimals stored as floats are compared as the decimals they are; NaN and infinity
        # in the floats left are NULL
        items: list[exp.Expr] = [
            aliased(exp.Cast(this=column(f.name), to=sql_type(f.type)), f.name)
            if f.name in side.decimals
            else aliased(finite(f.name), f.name)
            if f.name in side.non_finite
            else column(f.name)
            for f in schema
        ]
    else:
        items = [exp.Star()]
    query = exp.select(*items).from_(relation(raw))
    if found:
        query = query.where(conjunction(list(found)))
    return SourcePlan(
        alias=side.alias,
        table=raw,
        base=base,
        base_query=query,
        count=count_rows(base) if side.filters else None,
        rows=side.rows,
        primary_key=side.primary_key,
        columns=tuple(schema.names),
        decimals={name: str(kind) for name, kind in side.decimals.items()},
        non_finite=dict(side.non_finite),
        duplicate_keys=key_steps.duplicate_keys(base, side.primary_key),
        unique_keys=None
        if side.allow_duplicate_keys
        else key_steps.duplicate_keys(base, side.primary_key),
    )
