"""``DataFusionExecutor``: the plan's statements on an in-process DataFusion session.

Every statement is rendered in the recipe dialect (DataFusion's own SQL) and planned with
read-only ``SQLOptions``: the second lock after the plan's own check of the recipe SQL.
Memory is bounded by a fair spill pool; the join strategy (``KALLA_JOIN_STRATEGY``) is set
before the first query, from the rows of the tables registered by then (the run's inputs).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path
from typing import Any, TypeVar

import datafusion
import pyarrow as pa
import pyarrow.parquet as pq
from datafusion import DataFrame, ParquetWriterOptions, SessionConfig, SessionContext
from sqlglot import exp

from kalla.engine.datafusion.digest import Tap, digest_in_background, stop_digests, tapped
from kalla.engine.datafusion.errors import translate
from kalla.engine.datafusion.session import (
    location,
    make_context,
    partitions,
    prefer_hash_join,
    read_only,
)
from kalla.engine.executor import IN_STATEMENT, EngineOptions, Executor, Written
from kalla.errors import EvidenceError, JobCancelled, KallaError, OutputError, SqlError
from kalla.evidence.digest import TableDigest
from kalla.plan.dialect import RecipeSQL
from kalla.settings import parquet_codec

T = TypeVar("T")

# Small enough row groups that a staged file is scanned on every core at 1M rows.
_ROW_GROUP_ROWS = 512 * 1024
# DataFusion's planner recurses once per level of an expression and overflows its stack, and
# takes the process down, between 8,000 and 10,000 levels (a chain of ORs, measured): refuse
# well before that.
MAX_DEPTH = 4000


def _depth(tree: exp.Expr) -> int:
    deepest, stack = 0, [(tree, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        stack.extend((child, level + 1) for child in node.iter_expressions())
    return deepest


def _split_limit(query: exp.Query) -> tuple[exp.Query, int | None]:
    """``SELECT … LIMIT n`` (no ORDER BY, no OFFSET) as the query without it and ``n``;
    any other query as it is and None."""
    limit = query.args.get("limit")
    if (
        not isinstance(query, exp.Select)
        or not isinstance(limit, exp.Limit)
        or query.args.get("order") is not None
        or query.args.get("offset") is not None
        or not isinstance(limit.expression, exp.Literal)
        or not limit.expression.is_int
    ):
        return query, None
    body = query.copy()
    body.set("limit", None)
    return body, int(limit.expression.name)


class DataFusionExecutor(Executor):
    name = "datafusion"

    def __init__(self, options: EngineOptions) -> None:
        self.options = options
        self._ctx: SessionContext = make_context(options)
        self._rows_registered = 0
        self._hash_join: bool | None = None  # decided before the first query
        self._cancelled = threading.Event()
        self._views: list[str] = []  # names messages may offer (the source aliases)
        self._digests: list[Future[TableDigest]] = []  # stopped by close() if still running
        # Outputs are mostly unique strings (ids, descriptions): dictionary encoding and
        # page-level statistics cost ~20% of the write and buy nothing there (measured at 1M).
        self._output_options = ParquetWriterOptions(
            compression=options.compression, dictionary_enabled=False, statistics_enabled="chunk"
        )

    # --- plumbing ------------------------------------------------------------------------

    def _run(self, what: str, action: Callable[..., T], *args: Any) -> T:
        if self._cancelled.is_set():
            raise JobCancelled(f"{what}: the run was cancelled")
        IN_STATEMENT.set()
        try:
            return action(*args)
        except Exception as exc:  # DataFusion raises plain Exceptions
            raise translate(
                exc, what, memory_limit=self.options.memory_limit, tables=self._views
            ) from None
        finally:
            IN_STATEMENT.clear()

    def _decide_join_strategy(self) -> None:
        if self._hash_join is not None:
            return
        self._hash_join = prefer_hash_join(self.options, self._rows_registered)
        setting = "true" if self._hash_join else "false"
        self._ctx.sql(f"SET datafusion.optimizer.prefer_hash_join = {setting}")

    def _frame(self, query: exp.Query, what: str) -> DataFrame:
        depth = _depth(query)
        if depth > MAX_DEPTH:
            raise SqlError(
                f"{what}: the SQL nests {depth:,} levels deep (a chain of thousands of ORs?); "
                f"DataFusion plans at most {MAX_DEPTH:,}: match long lists with IN (...)"
            )
        self._decide_join_strategy()
        return self._run(what, self._ctx.sql_with_options, self.render(query), read_only())

    # --- the Executor protocol -----------------------------------------------------------

    def render(self, query: exp.Expr) -> str:
        return query.sql(dialect=RecipeSQL, identify=True)

    def register_parquet(self, name: str, path: Path, *, what: str) -> pa.Schema:
        self._run(what, self._ctx.register_parquet, name, location(path))
        if self._hash_join is None:
            self._rows_registered += pq.ParquetFile(path).metadata.num_rows
        return self._ctx.table(name).schema()

    def create_view(self, name: str, query: exp.Query, *, what: str) -> None:
        frame = self._frame(query, what)
        if self._ctx.table_exist(name):
            self._ctx.deregister_table(name)
        self._ctx.register_view(name, frame)
        if not name.startswith("__") and name not in self._views:
            self._views.append(name)

    def _write_frame(
        self,
        frame: DataFrame,
        path: Path,
        what: str,
        write: Callable[[DataFrame], None],
        digest: bool,
        limit: int | None = None,
    ) -> Written:
        """``write(frame)`` (at most ``limit`` rows), the content digest summed in the same
        pass when asked for."""
        tap: Tap | None = None
        problem: EvidenceError | None = None
        if digest and self.options.content_digests:
            try:
                tapped_frame, tap = tapped(frame, limit=limit)
            except EvidenceError as exc:  # a column type without an encoding: no digest
                problem = exc
        if limit is not None:
            # the tap enforces the LIMIT itself: under a LIMIT, DataFusion would hash the rows
            # on one partition, after gathering them (+25% on a 10M-row match, measured)
            frame = frame.limit(limit)
        read_back = False
        try:
            self._run(what, write, tapped_frame if tap is not None else frame)
        except KallaError:
            if tap is None or not (tap.failures or tap.exceeded):
                raise
            # a value without an encoding (a decimal beyond 128 bits), or more rows than the
            # LIMIT: the file is written again without the tap, the digest read back after
            if tap.failures:
                problem = tap.failures[0]
            read_back, tap = tap.exceeded, None
            self._run(what, write, frame)
        if not path.exists():  # DataFusion writes nothing for an empty result
            codec, level = parquet_codec(self.options.compression)
            empty = pa.Table.from_batches([], schema=frame.schema())
            pq.write_table(empty, path, compression=codec, compression_level=level)
        rows = int(pq.ParquetFile(path).metadata.num_rows)
        if read_back and problem is None:
            return Written(rows, self.digest(path))
        if tap is None and problem is None:
            return Written(rows)
        found: Future[TableDigest] = Future()
        if problem is not None:
            found.set_exception(problem)
            return Written(rows, found)
        assert tap is not None
        try:
            found.set_result(tap.digest(rows))
        except EvidenceError:  # the tap saw other rows than were written: read them back
            return Written(rows, self.digest(path))
        return Written(rows, found)

    def write(self, query: exp.Query, path: Path, *, what: str, digest: bool = False) -> Written:
        limit = None
        if digest and self.options.content_digests:
            query, limit = _split_limit(query)
        return self._write_frame(
            self._frame(query, what),
            path,
            what,
            lambda f: f.write_parquet(location(path), self._output_options),
            digest,
            limit,
        )

    def fetch(self, query: exp.Query, *, what: str) -> pa.Table:
        frame = self._frame(query, what)
        return self._run(what, frame.to_arrow_table)

    def explain(self, query: exp.Query) -> str:
        frame = self._frame(query, "explain")
        return str(self._run("explain", lambda: frame.execution_plan().display_indent()))

    def write_table(self, table: pa.Table, path: Path, *, digest: bool = False) -> Written:
        """DataFusion's writer encodes columns and row groups in parallel (about twice
        pyarrow's single-threaded writer on 10M rows) and writes the same Arrow schema back.
        One input partition keeps the rows in their order, so the file (whose hash
        fingerprints a staged table) is the same byte for byte on every run; row groups and
        columns are still encoded in parallel. Row-group statistics only: page-level ones
        cost ~10% of the write (measured on the 1M invoices table) and the file is scanned
        whole."""
        # A context of its own per table: from_arrow registers the table in its context,
        # which would otherwise keep every staged table in memory until the run ends.
        ordered = SessionContext(SessionConfig().with_target_partitions(1))
        options = ParquetWriterOptions(
            compression=self.options.compression,
            max_row_group_size=_ROW_GROUP_ROWS,
            statistics_enabled="chunk",
        )
        frame = ordered.from_arrow(table)
        found = None
        if digest and self.options.content_digests:
            # hashed from memory on the digest thread while the writer encodes the same rows:
            # nothing is read back, and the ordered (one-partition) write is not slowed by
            # hashing in its pipeline (+30% on staging 10M rows, measured)
            found = digest_in_background(table)
            self._digests.append(found)
        try:
            written = self._write_frame(
                frame,
                path,
                str(path),
                lambda f: f.write_parquet_with_options(location(path), options),
                digest=False,
            )
        except SqlError as exc:  # no SQL here: the file could not be written
            raise OutputError(f"cannot write {exc.message}") from None
        return Written(written.rows, found)

    def cancel(self) -> None:
        """Statements that have not started raise ``JobCancelled``; one that is running
        finishes first (DataFusion 55 has no way to stop it: a job's process exits instead,
        ``engine.executor.IN_STATEMENT``)."""
        self._cancelled.set()

    def versions(self) -> dict[str, str]:
        return {"datafusion": datafusion.__version__}

    def digest(self, path: Path) -> Future[TableDigest]:
        future = digest_in_background(path)
        self._digests.append(future)
        return future

    def settings(self) -> dict[str, Any]:
        hash_join = self._hash_join
        if hash_join is None:
            hash_join = prefer_hash_join(self.options, self._rows_registered)
        return {
            "name": self.name,
            "memory_limit": self.options.memory_limit,
            "target_partitions": partitions(self.options),
            "join_strategy": self.options.join_strategy,
            "joins": "hash" if hash_join else "sort_merge",
            "compression": self.options.compression,
        }

    def close(self) -> None:
        # a failed or cancelled run leaves no digest running, nor the process waiting on one
        stop_digests(f for f in self._digests if not f.done())
        self._digests.clear()
        for name in self._views:
            if self._ctx.table_exist(name):
                self._ctx.deregister_table(name)
        self._views.clear()
