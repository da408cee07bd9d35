"""reconcile(): a recipe's plan run on an executor; outputs, summary and manifest, atomically.

The steps are the plan's (``kalla.plan.reconciliation``), each timed under its name:

1. register        both inputs registered, float columns probed, the plan built, base views
2. match:<pass>    the alias views, the pass's candidates, key statistics, 1:1 selection
3. write_matched   pass files combined into ``matched.parquet`` (+ ``ambiguous.parquet``)
4. unmatched_left, unmatched_right   source rows whose key is in no final match
   breaks:<alias>  each unmatched row's nearest record and reason (``plan/breaks.py``)
5. control_totals  input rows = distinct matched keys + unmatched rows, per side
6. exports         CSV / XLSX beside the Parquet outputs (``evidence/export.py``)

The summary and the manifest are built here, once, from what the executor reported.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from sqlglot import exp

from kalla.engine.breaks import explain_side, write_unmatched_rows
from kalla.engine.executor import Executor, Written
from kalla.engine.one_to_one import select_one_to_one
from kalla.engine.summary import Breaks, ControlTotal, PassStats, RunSummary
from kalla.errors import CandidateLimitError, DataIntegrityError, SqlError
from kalla.evidence.digest import TableDigest, canonical_columns
from kalla.evidence.digest import combine as digest_sum
from kalla.evidence.export import ExportFormat, export_names, export_run
from kalla.evidence.manifest import build_manifest, canonical_json
from kalla.evidence.output import MANIFEST, AtomicOutputDir
from kalla.hashing import in_background, sha256_file
from kalla.plan import (
    PassPlan,
    PlanInput,
    ReconciliationPlan,
    SourcePlan,
    build_plan,
    check_rank_by,
    exact_types,
    float_columns,
    probe,
    source_table,
)
from kalla.plan.floats import non_finite_counts
from kalla.plan.keys import DUPLICATES_SHOWN
from kalla.plan.layout import MATCH_PASS
from kalla.recipe.models import FilterCondition, MatchSpec
from kalla.settings import parquet_codec

ProgressHook = Callable[[str, float], None]  # (stage, fraction of that stage done)


@dataclass(frozen=True)
class SourceInput:
    """One side, staged: a Parquet file plus what the recipe says about it."""

    alias: str
    path: Path
    primary_key: tuple[str, ...]
    filters: tuple[FilterCondition, ...] = ()  # the ones the source did not apply itself
    uri: str = ""  # redacted; for the manifest
    fingerprint: Mapping[str, Any] = field(default_factory=dict)
    allow_duplicate_keys: bool = False  # else a repeated primary key stops the run
    digest: Future[TableDigest] | None = None  # computed while staging wrote it, if it did


def _rows(path: Path) -> int:
    return int(pq.ParquetFile(path).metadata.num_rows)


def plan_run(
    spec: MatchSpec, sides: Sequence[SourceInput], executor: Executor
) -> ReconciliationPlan:
    """Register both inputs, let the executor probe their float columns, build the plan."""
    schemas = [
        executor.register_parquet(
            source_table(side.alias), side.path, what=f"source '{side.alias}'"
        )
        for side in sides
    ]
    inputs = []
    for side, schema in zip(sides, schemas, strict=True):
        floats = float_columns(schema)
        decimals: dict[str, pa.DataType] = {}
        non_finite: dict[str, int] = {}
        if floats:
            found = executor.fetch(
                probe(source_table(side.alias), floats), what=f"source '{side.alias}'"
            ).to_pylist()[0]
            decimals = exact_types(floats, found)
            non_finite = non_finite_counts(floats, found)
        inputs.append(
            PlanInput(
                alias=side.alias,
                schema=schema,
                rows=_rows(side.path),
                primary_key=side.primary_key,
                filters=side.filters,
                decimals=decimals,
                non_finite=non_finite,
                allow_duplicate_keys=side.allow_duplicate_keys,
            )
        )
    return build_plan(spec, inputs[0], inputs[1], max_candidates=executor.options.max_candidates)


def combine(parts: Sequence[Path], target: Path, compression: str) -> int:
    """Union pass files by column name (passes may select different columns)."""
    if len(parts) == 1:
        parts[0].rename(target)
        return _rows(target)
    schemas = [pq.read_schema(p) for p in parts]
    try:
        unified = pa.unify_schemas(schemas, promote_options="permissive")
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise SqlError(
            f"passes return the same column with incompatible types: {exc}; cast them "
            "to one type in each pass's SQL"
        ) from None
    order = [n for n in unified.names if n != MATCH_PASS] + [MATCH_PASS]
    unified = pa.schema([unified.field(n) for n in order])
    import pyarrow.dataset as pads  # lazy: it costs ~0.2 s of start-up (and loads pandas)

    dataset = pads.dataset([str(p) for p in parts], schema=unified, format="parquet")
    codec, level = parquet_codec(compression)
    with pq.ParquetWriter(target, unified, compression=codec, compression_level=level) as writer:
        for batch in dataset.to_batches():
            writer.write_batch(batch)
    return _rows(target)


def combined_digest(
    executor: Executor, parts: Sequence[Future[TableDigest] | None], target: Path
) -> Future[TableDigest]:
    """The digest of passes' files unioned into ``target``: the sum of the parts' when they
    all have one over the target's columns (the digest adds up over any split of a table),
    else ``target`` read back (passes selecting different columns, NULL-filled by the union)."""
    if len(parts) == 1 and parts[0] is not None:
        return parts[0]
    digests = []
    for part in parts:
        if part is None or part.exception() is not None:
            return executor.digest(target)
        digests.append(part.result())
    columns = TableDigest.empty(canonical_columns(pq.read_schema(target))).columns
    if any(d.columns != columns for d in digests):
        return executor.digest(target)
    done: Future[TableDigest] = Future()
    done.set_result(digest_sum(digests))
    return done


@dataclass
class _PassResult:
    plan: PassPlan
    distinct_keys: dict[str, int]  # source alias -> distinct keys among its final matches
    stats: PassStats


class _Run:
    plan: ReconciliationPlan

    def __init__(self, executor: Executor, root: Path) -> None:
        self.executor = executor
        self.root = root  # the output dir being written
        self.timings: dict[str, float] = {}
        self.sql_log: list[dict[str, str]] = []
        self.input_rows: dict[str, int] = {}
        self.passes: list[_PassResult] = []
        # content digests of the files written as outputs or parts of one, by file name
        self.digests: dict[str, Future[TableDigest]] = {}

    def keep_digest(self, file: str, written: Written) -> None:
        if written.digest is not None:
            self.digests[file] = written.digest

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            spent = time.perf_counter() - start  # a stage may come back (the unmatched sides)
            self.timings[stage] = round(self.timings.get(stage, 0.0) + spent, 4)

    def count(self, query: Any, what: str) -> int:
        table = self.executor.fetch(query, what=what)
        return int(table.column(0)[0].as_py() or 0)

    # --- 1. register ------------------------------------------------------------------

    def register(self, spec: MatchSpec, sides: Sequence[SourceInput]) -> None:
        self.plan = plan_run(spec, sides, self.executor)
        for source in self.plan.sources:
            what = f"source '{source.alias}'"
            self.executor.create_view(source.base, source.base_query, what=what)
        for source in self.plan.sources:
            what = f"source '{source.alias}'"
            rows = source.rows if source.count is None else self.count(source.count, what)
            self.input_rows[source.alias] = rows
        for source in self.plan.sources:
            if source.unique_keys is not None:
                self.check_unique(source, source.unique_keys)

    def check_unique(self, source: SourcePlan, query: Any) -> None:
        """The primary key must be unique in the source (after its filters): a repeated key
        is an error in the data, not a match to decide (``allow_duplicate_keys`` lets it)."""
        dupes = self.executor.fetch(query, what=f"source '{source.alias}'").to_pylist()
        if not dupes:
            return
        key = ", ".join(source.primary_key)
        raise DataIntegrityError(
            f"the primary key ({key}) of source '{source.alias}' is not unique: "
            f"{_shown(dupes, source.primary_key)}. Fix the data, name a key that is unique, or "
            f"set allow_duplicate_keys: true on the source to run anyway"
        )

    # --- 2. match passes --------------------------------------------------------------

    def match(self, step: PassPlan, index: int) -> None:
        start = time.perf_counter()
        executor, where = self.executor, step.where
        for alias, view in step.views.items():  # only records no pass matched yet
            executor.create_view(alias, view, what=where)
        rows_in = {
            s.alias: self.input_rows[s.alias]
            if step.counts is None
            else self.count(step.counts[s.alias], where)
            for s in self.plan.sources
        }
        self.sql_log.append(
            {"step": f"match:{step.name}", "sql": step.sql, "executed": executor.render(step.query)}
        )
        candidates = self.root / step.candidates
        # the candidates are the pass's matches unless 1:1 keeps some: then digest those
        written = executor.write(
            step.capped, candidates, what=where, digest=step.one_to_one is None
        )
        self.keep_digest(step.matched, written)
        candidate_count = written.rows
        if candidate_count > step.max_candidates:
            raise CandidateLimitError(
                f"{where} yields more than {step.max_candidates:,} candidate pairs "
                f"(inputs: {rows_in[self.plan.sources[0].alias]:,} and "
                f"{rows_in[self.plan.sources[1].alias]:,} rows): its join condition does not "
                "narrow the pairs enough. Join on a key (an = between the sources) or a "
                "tighter condition, or raise KALLA_MAX_CANDIDATES"
            )
        executor.register_parquet(step.stats_table, candidates, what=where)
        # one aggregation per side gives both the distinct keys (control totals) and the
        # keys in more than one row (ambiguity); 1:1 counts ambiguity among candidates
        stats: dict[str, tuple[int, int]] = {}
        for alias, query in step.key_stats.items():
            row = executor.fetch(query, what=where).to_pylist()[0]
            repeated, repeated_rows = int(row["repeated"]), int(row["repeated_rows"])
            stats[alias] = (candidate_count - repeated_rows + repeated, repeated)
        matched_count = candidate_count
        distinct = {alias: n for alias, (n, _) in stats.items()}
        if step.one_to_one is not None:
            matched_count = self.keep_one_to_one(step, candidates)
            distinct = {alias: matched_count for alias in distinct}
        if step.matched_table != step.stats_table:
            executor.register_parquet(step.matched_table, self.root / step.matched, what=where)
        left, right = self.plan.sources
        self.passes.append(
            _PassResult(
                plan=step,
                distinct_keys=distinct,
                stats=PassStats(
                    name=step.name,
                    candidate_count=candidate_count,
                    matched_count=matched_count,
                    ambiguous_left_count=stats[left.alias][1],
                    ambiguous_right_count=stats[right.alias][1],
                    left_rows_in=rows_in[left.alias],
                    right_rows_in=rows_in[right.alias],
                    seconds=round(time.perf_counter() - start, 4),
                ),
            )
        )

    def keep_one_to_one(self, step: PassPlan, candidates: Path) -> int:
        ranking = step.one_to_one
        assert ranking is not None and step.ambiguous is not None
        table = pq.read_table(candidates)
        names = [n for n in table.column_names if n != MATCH_PASS]
        check_rank_by(ranking.rank_by, names, step.where)
        mask = select_one_to_one(table, ranking.rank_by, ranking.left_keys, ranking.right_keys)
        for file, rows in ((step.matched, mask), (step.ambiguous, pc.invert(mask))):
            written = self.executor.write_table(table.filter(rows), self.root / file, digest=True)
            self.keep_digest(file, written)
        return int(pc.sum(mask).as_py() or 0)

    # --- optional: outputs in a fixed order -------------------------------------------

    def sort_output(self, path: Path, keys: Sequence[str]) -> None:
        """Rewrite an output ordered by ``keys``, then by every other column: the same rows
        give the same bytes on every run (``--sorted-outputs``)."""
        name = f"__sorted_{path.stem}"
        schema = self.executor.register_parquet(name, path, what=f"output {path.name}")
        first = [k for k in keys if k in schema.names]
        order = [*first, *(n for n in schema.names if n not in first)]
        query = (
            exp.select("*")
            .from_(exp.to_identifier(name, quoted=True))
            .order_by(*(exp.column(n, quoted=True) for n in order))
        )
        target = path.with_name(f".{path.stem}.sorted.parquet")
        self.executor.write(query, target, what=f"output {path.name}")
        target.replace(path)

    # --- 5. control totals ------------------------------------------------------------

    def control_total(self, source: SourcePlan, unmatched_rows: int) -> ControlTotal:
        # passes are disjoint (each sees only unmatched records), so distinct keys add up
        return ControlTotal(
            alias=source.alias,
            input_rows=self.input_rows[source.alias],
            matched_keys=sum(p.distinct_keys[source.alias] for p in self.passes),
            unmatched_rows=unmatched_rows,
        )

    def explain_totals(self, total: ControlTotal, source: SourcePlan) -> DataIntegrityError:
        dupes = self.executor.fetch(source.duplicate_keys, what="control totals").to_pylist()
        key = source.primary_key
        head = (
            f"control totals do not add up for '{source.alias}': {total.input_rows} input rows "
            f"!= {total.matched_keys} matched keys + {total.unmatched_rows} unmatched rows"
        )
        if dupes:
            return DataIntegrityError(
                f"{head}. The primary key ({', '.join(key)}) is not unique in source "
                f"'{source.alias}'; {_shown(dupes, key)}"
            )
        return DataIntegrityError(
            f"{head}. The match output contains {source.alias} keys that are not in the source "
            "(computed or constant key columns?): select the source's own key columns"
        )

    def check_totals(self, unmatched: Mapping[str, int]) -> tuple[ControlTotal, ControlTotal]:
        left, right = self.plan.sources
        totals = (
            self.control_total(left, unmatched[left.alias]),
            self.control_total(right, unmatched[right.alias]),
        )
        for total, source in zip(totals, self.plan.sources, strict=True):
            if not total.holds:
                raise self.explain_totals(total, source)
        return totals


def _shown(dupes: Sequence[Mapping[str, Any]], key: Sequence[str]) -> str:
    """The duplicate keys found, most repeated first, with their rows."""
    shown = "; ".join(
        ", ".join(f"{k}={row[k]!r}" for k in key) + f" ({row['n']} rows)" for row in dupes
    )
    more = " (and maybe more)" if len(dupes) >= DUPLICATES_SHOWN else ""
    return f"duplicate keys{more}: {shown}"


def reconcile(
    spec: MatchSpec,
    left: SourceInput,
    right: SourceInput,
    output_dir: Path,
    *,
    executor: Executor,
    recipe: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: ProgressHook | None = None,
    exports: Sequence[ExportFormat] = (),
) -> RunSummary:
    """Run the recipe on two staged sources and write all outputs atomically into output_dir."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    report = progress or (lambda stage, fraction: None)
    output_dir = Path(output_dir).absolute()
    with AtomicOutputDir(output_dir, overwrite=overwrite) as tmp:
        (tmp / ".work").mkdir()
        run = _Run(executor, tmp)
        with run.timed("register"):
            run.register(spec, (left, right))
        plan = run.plan
        # content digests (evidence.digest): an input's from staging, where it was written,
        # or read while the engine works (a Parquet file registered where it lies); an
        # output's summed as the engine writes it
        digesting = executor.options.content_digests
        input_digests = {
            s.alias: s.digest or executor.digest(s.path) for s in (left, right) if digesting
        }
        output_digests: dict[str, Future[TableDigest]] = {}
        for index, step in enumerate(plan.passes):
            with run.timed(f"match:{step.name}"):
                run.match(step, index)
            report("matching", (index + 1) / len(plan.passes))
        paths = {name: tmp / file for name, file in plan.outputs.items()}
        with run.timed("write_matched"):
            for merge in plan.combine:
                parts = [tmp / p for p in merge.parts]
                combine(parts, tmp / merge.target, executor.options.compression)
                if digesting:
                    run.digests[merge.target] = combined_digest(
                        executor, [run.digests.get(p) for p in merge.parts], tmp / merge.target
                    )
            for name in ("matched", "ambiguous"):
                if name in paths and executor.options.sorted_outputs:
                    run.sort_output(
                        paths[name], [k for ks in plan.passes[0].layout.keys.values() for k in ks]
                    )
        # final from here on: hash them while the unmatched sides are derived
        digests: dict[str, Future[str]] = {}
        for name in ("matched", "ambiguous"):
            if name in paths:
                digests[name] = in_background(sha256_file, paths[name])
                if digesting:
                    output_digests[name] = run.digests.get(plan.outputs[name]) or executor.digest(
                        paths[name]
                    )
        unmatched: dict[str, int] = {}
        explain = plan.breaks if executor.options.explain_breaks else None
        breaks: list[Breaks] = []
        for side in plan.unmatched:
            with run.timed(side.output):
                run.sql_log.append(
                    {"step": f"unmatched:{side.alias}", "executed": executor.render(side.query)}
                )
                if explain is not None:  # the rows first: each side's explanation reads both
                    write_unmatched_rows(executor, side, explain.side(side.alias), tmp)
                    continue
                written = executor.write(
                    side.query,
                    tmp / side.file,
                    what=f"unmatched rows of '{side.alias}'",
                    digest=True,
                )
                unmatched[side.alias] = written.rows
                run.keep_digest(side.file, written)
        for side in plan.unmatched:
            with run.timed(f"breaks:{side.alias}" if explain else side.output):
                if explain is not None:
                    steps = explain.side(side.alias)
                    for part, query in (("best", steps.best), ("output", steps.output)):
                        run.sql_log.append(
                            {
                                "step": f"breaks:{side.alias}:{part}",
                                "executed": executor.render(query),
                            }
                        )
                    written, found = explain_side(executor, side, steps, tmp)
                    unmatched[side.alias] = written.rows
                    run.keep_digest(side.file, written)
                    breaks.append(found)
                if executor.options.sorted_outputs:
                    run.sort_output(tmp / side.file, plan.source(side.alias).primary_key)
            digests[side.output] = in_background(sha256_file, paths[side.output])
            if digesting:
                output_digests[side.output] = run.digests.get(side.file) or executor.digest(
                    paths[side.output]
                )
        with run.timed("control_totals"):
            totals = run.check_totals(unmatched)
        # the work dir holds per-pass files the anti joins read; drop it only now
        shutil.rmtree(tmp / ".work")
        run.timings["total"] = round(time.perf_counter() - t0, 4)
        summary = RunSummary(
            matched_count=_rows(paths["matched"]),
            unmatched_left_count=unmatched[left.alias],
            unmatched_right_count=unmatched[right.alias],
            ambiguous_left_count=sum(p.stats.ambiguous_left_count for p in run.passes),
            ambiguous_right_count=sum(p.stats.ambiguous_right_count for p in run.passes),
            ambiguous_count=_rows(paths["ambiguous"]) if "ambiguous" in paths else 0,
            left_rows=run.input_rows[left.alias],
            right_rows=run.input_rows[right.alias],
            left_alias=left.alias,
            right_alias=right.alias,
            cardinality=spec.cardinality.value,
            passes=tuple(p.stats for p in run.passes),
            control_totals=totals,
            timings=run.timings,
            output_paths={
                **{name: str(output_dir / path.name) for name, path in paths.items()},
                "manifest": str(output_dir / MANIFEST),
                **{name: str(output_dir / name) for name in export_names(exports, plan.outputs)},
            },
            breaks=tuple(breaks),
        )
        exported = {}
        if set(exports) - {ExportFormat.PARQUET}:  # CSV / XLSX beside the Parquet outputs
            with run.timed("exports"):
                exported = export_run(tmp, paths, exports, summary.to_dict())
            summary = summary.model_copy(update={"timings": dict(run.timings)})
        manifest = build_manifest(
            recipe=recipe if recipe is not None else spec.to_dict(),
            sql=run.sql_log,
            inputs=[
                {
                    "alias": s.alias,
                    "uri": s.uri,
                    "primary_key": list(s.primary_key),
                    "allow_duplicate_keys": s.allow_duplicate_keys,
                    "filters": [f.to_dict() for f in s.filters],
                    "rows": run.input_rows[s.alias],
                    "fingerprint": dict(s.fingerprint),
                    "floats_as_decimals": dict(plan.source(s.alias).decimals),
                    "floats_non_finite_as_null": dict(plan.source(s.alias).non_finite),
                }
                for s in (left, right)
            ],
            outputs=paths,
            digests=digests,
            input_digests=input_digests if digesting else None,
            output_digests=output_digests if digesting else None,
            sorted_outputs=executor.options.sorted_outputs,
            breaks_explained=explain is not None,
            exports=exported,
            summary=summary.to_dict(),
            started_at=started,
            engine=executor.versions(),
            executor=executor.settings(),
        )
        (tmp / MANIFEST).write_text(canonical_json(manifest) + "\n", encoding="utf-8")
    return summary
