"""reconcile(): passes, unmatched derivation, ambiguity, control totals, atomic outputs.

The run is a fixed list of small steps, each expressed as SQL over registered tables
(so another engine can execute the same steps), each timed:

1. register   each source under ``__src_<alias>``, filters applied as ``__base_<alias>``
2. match      per pass: the alias views show only records no earlier pass matched; the
              pass SQL's output is written as Parquet (1:1 selection when asked)
3. matched    pass outputs combined into ``matched.parquet`` (+ ``ambiguous.parquet``)
4. unmatched  source rows whose key is in no final match (NULL-safe anti joins)
5. totals     input rows = distinct matched keys + unmatched rows, per side
6. manifest   recipe, SQL, versions, fingerprints, counts, timings
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from datafusion import DataFrame, ParquetWriterOptions, SessionContext, col

from kalla.engine.datafusion.digest import cancelled_on_error, digest_in_background
from kalla.engine.filters import apply_filters
from kalla.engine.floats import as_decimals, exact_types, float_columns
from kalla.engine.layout import MatchLayout, analyse
from kalla.engine.one_to_one import select_one_to_one
from kalla.engine.session import EngineOptions, make_context, read_only
from kalla.engine.sql import explain_sql_error, quote_ident, rewrite_tolerance
from kalla.engine.summary import ControlTotal, PassStats, RunSummary
from kalla.errors import DataIntegrityError, KallaError, RecipeError, ResourceLimitError, SqlError
from kalla.evidence.digest import TableDigest
from kalla.evidence.manifest import build_manifest, canonical_json
from kalla.evidence.output import OUTPUT_NAMES, AtomicOutputDir
from kalla.hashing import in_background, sha256_file
from kalla.recipe.models import Cardinality, FilterCondition, MatchPass, MatchSpec
from kalla.recipe.sqltext import check_read_only, referenced_tables
from kalla.suggest import did_you_mean

ProgressHook = Callable[[str, float], None]  # (stage, fraction of that stage done)


@dataclass(frozen=True)
class SourceInput:
    """One side, staged: a Parquet file plus what the recipe says about it."""

    alias: str
    path: Path
    primary_key: tuple[str, ...]
    filters: tuple[FilterCondition, ...] = ()
    uri: str = ""  # redacted; for the manifest
    fingerprint: Mapping[str, Any] = field(default_factory=dict)


def _rows(path: Path) -> int:
    return int(pq.ParquetFile(path).metadata.num_rows)


def _size(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


def _is_memory_error(message: str) -> bool:
    return "Resources exhausted" in message or ("memory" in message.lower() and "limit" in message)


@dataclass
class _Pass:
    spec: MatchPass
    sql: str
    layout: MatchLayout
    path: Path  # final matches of this pass
    ambiguous_path: Path | None
    distinct_keys: dict[str, int]  # source alias -> distinct keys among its final matches
    stats: PassStats


class _Run:
    def __init__(
        self,
        spec: MatchSpec,
        left: SourceInput,
        right: SourceInput,
        options: EngineOptions,
        progress: ProgressHook | None,
    ) -> None:
        self.spec = spec
        self.sides = (left, right)
        self.options = options
        self.progress = progress or (lambda stage, fraction: None)
        self.file_rows = {s.alias: _rows(s.path) for s in (left, right)}
        self.ctx: SessionContext = make_context(options, input_rows=sum(self.file_rows.values()))
        self.timings: dict[str, float] = {}
        self.sql_log: list[dict[str, str]] = []
        self.input_rows: dict[str, int] = {}
        self.floats_as_decimals: dict[str, dict[str, str]] = {}  # alias → column → type
        self.passes: list[_Pass] = []
        # Outputs are mostly unique strings (ids, descriptions): dictionary encoding and
        # page-level statistics cost ~20% of the write and buy nothing there (measured at 1M).
        self.writer_options = ParquetWriterOptions(
            compression=options.compression, dictionary_enabled=False, statistics_enabled="chunk"
        )
        # every table name that stands for a source -> the source alias
        self.source_names = {
            name: s.alias
            for s in self.sides
            for name in (s.alias, f"__src_{s.alias}", f"__base_{s.alias}")
        }

    # --- plumbing ---------------------------------------------------------------------

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.timings[stage] = round(time.perf_counter() - start, 4)

    def execute(self, what: str, action: Callable[..., Any], *args: Any) -> Any:
        """Run a DataFusion action, turning its failures into errors that name the cause."""
        try:
            return action(*args)
        except KallaError:
            raise
        except Exception as exc:  # DataFusion raises plain Exceptions
            message = str(exc)
            if _is_memory_error(message):
                limit = _size(self.options.memory_limit)
                raise ResourceLimitError(
                    f"{what}: the run needs more than the memory limit of {limit} even "
                    "when spilling to disk; raise KALLA_MEMORY_LIMIT or reduce the data "
                    f"(DataFusion: {message.splitlines()[0][:300]})"
                ) from None
            raise explain_sql_error(exc, what, [s.alias for s in self.sides]) from None

    def write(self, df: DataFrame, path: Path, what: str, keys: Sequence[str] = ()) -> int:
        if self.options.sorted_outputs:  # by key, then by every column: the same bytes each run
            names = list(keys) + [n for n in df.schema().names if n not in keys]
            df = df.sort(*[col(quote_ident(n)).sort() for n in names])
        self.execute(what, df.write_parquet, str(path), self.writer_options)
        if not path.exists():  # DataFusion writes nothing for an empty result
            pq.write_table(pa.Table.from_batches([], schema=df.schema()), path)
        return _rows(path)

    def row(self, sql: str, what: str) -> dict[str, Any]:
        """The first row of a query, by column name."""
        table = self.execute(what, lambda: self.ctx.sql(sql).to_arrow_table())
        return table.slice(0, 1).to_pylist()[0]

    def scalar(self, sql: str, what: str) -> int:
        return int(next(iter(self.row(sql, what).values())) or 0)

    def register_view(self, name: str, df: DataFrame) -> None:
        if self.ctx.table_exist(name):
            self.ctx.deregister_table(name)
        self.ctx.register_view(name, df)

    # --- 1. register ------------------------------------------------------------------

    def register(self) -> None:
        problems: list[str] = []
        for side in self.sides:
            raw = f"__src_{side.alias}"
            path = str(side.path)
            self.execute(f"source '{side.alias}'", self.ctx.register_parquet, raw, path)
            df = self.ctx.table(raw)
            floats = float_columns(df)
            if floats:  # decimals stored as floats are compared as the decimals they are
                types = exact_types(raw, floats, partial(self.row, what=f"source '{side.alias}'"))
                df = as_decimals(df, types)
                self.floats_as_decimals[side.alias] = {n: str(t) for n, t in types.items()}
            columns = df.schema().names
            for key in side.primary_key:
                if key not in columns:
                    problems.append(
                        f"primary key column '{key}' is not in source '{side.alias}'"
                        f"{did_you_mean(key, columns)}; its columns: {', '.join(columns)}"
                    )
            df, filter_problems = apply_filters(df, side.filters, side.alias)
            problems += filter_problems
            self.register_view(f"__base_{side.alias}", df)
        if problems:
            raise RecipeError(
                f"the recipe does not fit its sources ({len(problems)} problem(s))",
                problems=problems,
            )
        for side in self.sides:
            if side.filters:
                self.input_rows[side.alias] = self.scalar(
                    f"SELECT COUNT(*) FROM {quote_ident('__base_' + side.alias)}",
                    f"source '{side.alias}'",
                )
            else:
                self.input_rows[side.alias] = self.file_rows[side.alias]

    # --- 2. match passes --------------------------------------------------------------

    def matched_keys_sql(self, side: SourceInput, passes: Sequence[_Pass]) -> str:
        """Distinct-able key rows of every final match so far, as columns k0, k1, …"""
        parts = []
        for p in passes:
            cols = ", ".join(
                f"{quote_ident(name)} AS k{i}" for i, name in enumerate(p.layout.keys[side.alias])
            )
            parts.append(f"SELECT {cols} FROM {quote_ident(self.pass_table(p))}")
        return " UNION ALL ".join(parts)

    def pass_table(self, p: _Pass) -> str:
        name = f"__pass_{self.passes.index(p)}"
        if not self.ctx.table_exist(name):
            self.ctx.register_parquet(name, str(p.path))
        return name

    def anti_join_sql(self, side: SourceInput, passes: Sequence[_Pass]) -> str:
        """Rows of the (filtered) source whose key is in no match: NULL-safe, so a NULL
        key behaves like any other value instead of vanishing from both sides."""
        base = quote_ident(f"__base_{side.alias}")
        if not passes:
            return f"SELECT * FROM {base}"
        on = " AND ".join(
            f"(b.{quote_ident(key)} IS NOT DISTINCT FROM m.k{i})"
            for i, key in enumerate(side.primary_key)
        )
        return (
            f"SELECT b.* FROM {base} b LEFT ANTI JOIN "
            f"({self.matched_keys_sql(side, passes)}) m ON {on}"
        )

    def match(self, workdir: Path, final_matched: Path) -> None:
        passes = self.spec.match_passes()
        for index, spec in enumerate(passes):
            with self.timed(f"match:{spec.name}"):
                single = len(passes) == 1 and self.spec.cardinality is Cardinality.MANY_TO_MANY
                path = final_matched if single else workdir / f"pass-{index}.parquet"
                self.passes.append(self.run_pass(index, spec, path, workdir))
            self.progress("matching", (index + 1) / len(passes))

    def plan_pass(self, spec: MatchPass, where: str) -> tuple[str, DataFrame]:
        check_read_only(spec.match_sql, where)
        aliases = [s.alias for s in self.sides]
        tables = referenced_tables(spec.match_sql) or set()
        internal = sorted(t for t in tables if t in self.source_names and t not in aliases)
        if internal:  # __src_… would show records that earlier passes matched
            raise explain_sql_error(Exception(f"table '{internal[0]}' not found"), where, aliases)
        sql = rewrite_tolerance(spec.match_sql, where)
        return sql, self.execute(where, self.ctx.sql_with_options, sql, read_only())

    def run_pass(self, index: int, spec: MatchPass, path: Path, workdir: Path) -> _Pass:
        start = time.perf_counter()
        where = "match_sql" if spec.name == "match_sql" else f"pass '{spec.name}'"
        left, right = self.sides
        for side in self.sides:  # the aliases now show only records no pass matched yet
            self.register_view(side.alias, self.ctx.sql(self.anti_join_sql(side, self.passes)))
        rows_in = {
            s.alias: self.input_rows[s.alias]
            if index == 0
            else self.scalar(f"SELECT COUNT(*) FROM {quote_ident(s.alias)}", where)
            for s in self.sides
        }
        sql, df = self.plan_pass(spec, where)
        layout = analyse(
            df,
            keys={left.alias: left.primary_key, right.alias: right.primary_key},
            sources=self.source_names,
            where=where,
        )
        self.sql_log.append({"step": f"match:{spec.name}", "sql": spec.match_sql, "executed": sql})
        one_to_one = self.spec.cardinality is Cardinality.ONE_TO_ONE
        candidates = workdir / f"candidates-{index}.parquet" if one_to_one else path
        keys = [*layout.keys[left.alias], *layout.keys[right.alias]]
        candidate_count = self.write(layout.select(df, spec.name), candidates, where, keys)
        # one aggregation per side gives both the distinct keys (control totals) and the
        # keys in more than one row (ambiguity); 1:1 counts ambiguity among candidates
        stats = {
            s.alias: self.key_stats(candidates, layout.keys[s.alias], where) for s in self.sides
        }
        ambiguous_path, matched_count = None, candidate_count
        if one_to_one:
            ambiguous_path = workdir / f"ambiguous-{index}.parquet"
            matched_count = self.keep_one_to_one(candidates, layout, path, ambiguous_path, where)
            distinct = {s.alias: matched_count for s in self.sides}
        else:
            distinct = {alias: n for alias, (n, _) in stats.items()}
        return _Pass(
            spec=spec,
            sql=sql,
            layout=layout,
            path=path,
            ambiguous_path=ambiguous_path,
            distinct_keys=distinct,
            stats=PassStats(
                name=spec.name,
                candidate_count=candidate_count,
                matched_count=matched_count,
                ambiguous_left_count=stats[left.alias][1],
                ambiguous_right_count=stats[right.alias][1],
                left_rows_in=rows_in[left.alias],
                right_rows_in=rows_in[right.alias],
                seconds=round(time.perf_counter() - start, 4),
            ),
        )

    def keep_one_to_one(
        self, candidates: Path, layout: MatchLayout, kept: Path, lost: Path, where: str
    ) -> int:
        rank_by = self.spec.rank_by
        assert rank_by is not None
        if rank_by not in layout.names:
            raise SqlError(
                f"{where}: rank_by column '{rank_by}' is not in the match output"
                f"{did_you_mean(rank_by, layout.names)}; output columns: {', '.join(layout.names)}"
            )
        table = pq.read_table(candidates)
        left, right = self.sides
        mask = select_one_to_one(table, rank_by, layout.keys[left.alias], layout.keys[right.alias])
        pq.write_table(table.filter(mask), kept, compression="zstd")
        pq.write_table(table.filter(pc.invert(mask)), lost, compression="zstd")
        return int(pc.sum(mask).as_py() or 0)

    def key_stats(self, path: Path, key_names: Sequence[str], where: str) -> tuple[int, int]:
        """(distinct keys, keys in more than one row) of one side's keys in a pass file."""
        name = f"__keys_{path.stem.replace('-', '_')}"
        if not self.ctx.table_exist(name):
            self.ctx.register_parquet(name, str(path))
        keys = ", ".join(quote_ident(k) for k in key_names)
        # Only repeated keys leave the aggregation (cheaper than a pass over every key);
        # distinct keys = rows - rows of repeated keys + repeated keys.
        table = self.execute(
            where,
            lambda: self.ctx.sql(
                "SELECT COUNT(*) AS repeated, COALESCE(SUM(c), 0) AS repeated_rows FROM "
                f"(SELECT COUNT(*) AS c FROM {quote_ident(name)} GROUP BY {keys}"
                " HAVING COUNT(*) > 1)"
            ).to_pylist(),
        )
        repeated, repeated_rows = int(table[0]["repeated"]), int(table[0]["repeated_rows"])
        return _rows(path) - repeated_rows + repeated, repeated

    # --- 3. matched / ambiguous outputs ------------------------------------------------

    def combine(self, parts: Sequence[Path], target: Path) -> int:
        """Union passes by column name (passes may select different columns)."""
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
        order = [n for n in unified.names if n != "match_pass"] + ["match_pass"]
        unified = pa.schema([unified.field(n) for n in order])
        import pyarrow.dataset as pads  # lazy: it costs ~0.2 s of start-up (and loads pandas)

        dataset = pads.dataset([str(p) for p in parts], schema=unified, format="parquet")
        with pq.ParquetWriter(target, unified, compression="zstd") as writer:
            for batch in dataset.to_batches():
                writer.write_batch(batch)
        return _rows(target)

    # --- 4. unmatched -----------------------------------------------------------------

    def unmatched(self, side: SourceInput, target: Path) -> int:
        sql = self.anti_join_sql(side, self.passes)
        self.sql_log.append({"step": f"unmatched:{side.alias}", "executed": sql})
        what = f"unmatched rows of '{side.alias}'"
        return self.write(self.ctx.sql(sql), target, what, side.primary_key)

    # --- 5. control totals ------------------------------------------------------------

    def control_total(self, side: SourceInput, unmatched_rows: int) -> ControlTotal:
        # passes are disjoint (each sees only unmatched records), so distinct keys add up
        return ControlTotal(
            alias=side.alias,
            input_rows=self.input_rows[side.alias],
            matched_keys=sum(p.distinct_keys[side.alias] for p in self.passes),
            unmatched_rows=unmatched_rows,
        )

    def explain_totals(self, total: ControlTotal, side: SourceInput) -> DataIntegrityError:
        keys = ", ".join(quote_ident(k) for k in side.primary_key)
        base = quote_ident(f"__base_{side.alias}")
        dupes = self.execute(
            "control totals",
            lambda: self.ctx.sql(
                f"SELECT {keys}, COUNT(*) AS n FROM {base} GROUP BY {keys} HAVING COUNT(*) > 1 "
                f"ORDER BY n DESC, {keys} LIMIT 5"
            ).to_pylist(),
        )
        head = (
            f"control totals do not add up for '{side.alias}': {total.input_rows} input rows != "
            f"{total.matched_keys} matched keys + {total.unmatched_rows} unmatched rows"
        )
        if dupes:
            shown = "; ".join(
                ", ".join(f"{k}={row[k]!r}" for k in side.primary_key) + f" ({row['n']} rows)"
                for row in dupes
            )
            return DataIntegrityError(
                f"{head}. The primary key ({', '.join(side.primary_key)}) is not unique in "
                f"source '{side.alias}'; duplicate keys include: {shown}"
            )
        return DataIntegrityError(
            f"{head}. The match output contains {side.alias} keys that are not in the source "
            "(computed or constant key columns?): select the source's own key columns"
        )

    def check_totals(self, unmatched: Mapping[str, int]) -> tuple[ControlTotal, ControlTotal]:
        left, right = self.sides
        totals = (
            self.control_total(left, unmatched[left.alias]),
            self.control_total(right, unmatched[right.alias]),
        )
        for total, side in zip(totals, self.sides, strict=True):
            if not total.holds:
                raise self.explain_totals(total, side)
        return totals


def reconcile(
    spec: MatchSpec,
    left: SourceInput,
    right: SourceInput,
    output_dir: Path,
    *,
    options: EngineOptions,
    recipe: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    progress: ProgressHook | None = None,
) -> RunSummary:
    """Run the recipe on two staged sources and write all outputs atomically into output_dir."""
    started = datetime.now(UTC)
    t0 = time.perf_counter()
    output_dir = Path(output_dir).absolute()
    run = _Run(spec, left, right, options, progress)
    # content digests (evidence.digest) of the inputs, computed while the engine works
    digest = options.content_digests
    input_digests = {s.alias: digest_in_background(s.path) for s in run.sides if digest}
    output_digests: dict[str, Future[TableDigest]] = {}
    with (
        AtomicOutputDir(output_dir, overwrite=overwrite) as tmp,
        cancelled_on_error(input_digests, output_digests),
    ):
        work = tmp / ".work"
        work.mkdir()
        paths = {name: tmp / f"{name}.parquet" for name in OUTPUT_NAMES}
        with run.timed("register"):
            run.register()
        run.match(work, paths["matched"])
        with run.timed("write_matched"):
            if not paths["matched"].exists():
                matched_count = run.combine([p.path for p in run.passes], paths["matched"])
                if len(run.passes) == 1:  # renamed, not copied: the key views follow it
                    run.passes[0].path = paths["matched"]
            else:
                matched_count = _rows(paths["matched"])
            ambiguous_count = 0
            if spec.cardinality is Cardinality.ONE_TO_ONE:
                lost = [p.ambiguous_path for p in run.passes if p.ambiguous_path is not None]
                ambiguous_count = run.combine(lost, paths["ambiguous"])
            else:
                del paths["ambiguous"]
        # final from here on: hash them while the unmatched sides are derived
        digests = {
            name: in_background(sha256_file, path)
            for name, path in paths.items()
            if name in ("matched", "ambiguous")
        }
        output_digests.update({n: digest_in_background(paths[n]) for n in digests if digest})
        unmatched: dict[str, int] = {}
        for side, name in zip(run.sides, ("unmatched_left", "unmatched_right"), strict=True):
            with run.timed(name):
                unmatched[side.alias] = run.unmatched(side, paths[name])
            digests[name] = in_background(sha256_file, paths[name])
            if digest:
                output_digests[name] = digest_in_background(paths[name])
        with run.timed("control_totals"):
            totals = run.check_totals(unmatched)
        # the work dir holds per-pass files the key views read; drop it only now
        for child in sorted(work.iterdir()):
            child.unlink()
        work.rmdir()
        run.timings["total"] = round(time.perf_counter() - t0, 4)
        summary = RunSummary(
            matched_count=matched_count,
            unmatched_left_count=unmatched[left.alias],
            unmatched_right_count=unmatched[right.alias],
            ambiguous_left_count=sum(p.stats.ambiguous_left_count for p in run.passes),
            ambiguous_right_count=sum(p.stats.ambiguous_right_count for p in run.passes),
            ambiguous_count=ambiguous_count,
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
                "manifest": str(output_dir / "manifest.json"),
            },
        )
        manifest = build_manifest(
            recipe=recipe if recipe is not None else spec.to_dict(),
            sql=run.sql_log,
            inputs=[
                {
                    "alias": s.alias,
                    "uri": s.uri,
                    "primary_key": list(s.primary_key),
                    "filters": [f.to_dict() for f in s.filters],
                    "rows": run.input_rows[s.alias],
                    "fingerprint": dict(s.fingerprint),
                    "floats_as_decimals": run.floats_as_decimals.get(s.alias, {}),
                }
                for s in run.sides
            ],
            outputs=paths,
            digests=digests,
            input_digests=input_digests if digest else None,
            output_digests=output_digests if digest else None,
            sorted_outputs=options.sorted_outputs,
            summary=summary.to_dict(),
            started_at=started,
        )
        (tmp / "manifest.json").write_text(canonical_json(manifest) + "\n", encoding="utf-8")
    return summary
