"""The engine seam: what a reconciliation needs from an engine, and what it may tune.

An ``Executor`` runs the statements of a ``kalla.plan.ReconciliationPlan`` (sqlglot
expressions, rendered in its own dialect) over Parquet files: it registers inputs, creates
views, writes query results as Parquet and fetches small results (counts, aggregates,
probes). Failures come out as ``KallaError``s naming the step (``what``) and the cause.
``kalla.engine.datafusion`` implements it in process; ``make_executor`` picks the
implementation named by ``EngineOptions.engine`` (``KALLA_ENGINE``).
"""

from __future__ import annotations

import threading
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol

import pyarrow as pa
from sqlglot import exp

from kalla.evidence.digest import TableDigest
from kalla.settings import Settings

# Set while an executor runs one engine statement (a query, a write). An engine such as
# DataFusion 55 cannot stop a running statement: a job process asked to stop then exits at
# once instead of waiting for the statement to end (``runner.child``).
IN_STATEMENT = threading.Event()


@dataclass(frozen=True)
class EngineOptions:
    """What a run may tune; defaults come from Settings."""

    memory_limit: int
    spill_path: Path | None = None
    target_partitions: int = 0  # 0: one per CPU
    compression: str = "zstd(1)"  # Parquet codec of staged and output files
    join_strategy: str = "auto"  # auto | hash | sort_merge
    engine: str = "datafusion"
    sorted_outputs: bool = False  # outputs ordered by key, then every column: same bytes each run
    content_digests: bool = True  # digests of every input and output in the manifest
    max_candidates: int = 0  # candidate pairs a pass may produce; 0: plan.candidate_cap's
    explain_breaks: bool = True  # nearest record and reason on every unmatched row

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineOptions:
        return cls(
            memory_limit=settings.memory_limit,
            spill_path=settings.spill_path,
            target_partitions=settings.target_partitions,
            compression=settings.parquet_compression,
            join_strategy=settings.join_strategy,
            engine=settings.engine,
            content_digests=settings.content_digests,
            max_candidates=settings.max_candidates,
            explain_breaks=settings.explain_breaks,
        )


@dataclass(frozen=True)
class Written:
    """What a write produced: its rows and, when asked for, the content digest of those rows
    (done, or failed with the EvidenceError saying why the table has none)."""

    rows: int
    digest: Future[TableDigest] | None = None


class Executor(Protocol):
    """Runs plan statements over Parquet files. ``what`` names the step in error messages
    ("match_sql", "pass 'exact'", "source 'invoices'")."""

    name: str
    options: EngineOptions

    def register_parquet(self, name: str, path: Path, *, what: str) -> pa.Schema:
        """Make a Parquet file queryable as ``name``; its schema as the engine reads it."""
        ...

    def create_view(self, name: str, query: exp.Query, *, what: str) -> None:
        """Make ``query`` queryable as ``name``, replacing what had that name."""
        ...

    def write(self, query: exp.Query, path: Path, *, what: str, digest: bool = False) -> Written:
        """Write ``query``'s rows to one Parquet file (with its schema when empty); the
        number of rows written and, with ``digest`` (and ``options.content_digests``), the
        content digest of those rows computed as they are written."""
        ...

    def fetch(self, query: exp.Query, *, what: str) -> pa.Table:
        """A small result (a count, an aggregate, a probe) as Arrow."""
        ...

    def explain(self, query: exp.Query) -> str:
        """The plan the engine would run ``query`` with, as text."""
        ...

    def render(self, query: exp.Expr) -> str:
        """``query`` as SQL text in the engine's dialect (what the manifest records)."""
        ...

    def write_table(self, table: pa.Table, path: Path, *, digest: bool = False) -> Written:
        """Write an Arrow table as one Parquet file, rows in order (staging, 1:1 outputs);
        ``digest`` as in ``write``."""
        ...

    def cancel(self) -> None:
        """Ask the run to stop: calls from now on raise ``JobCancelled``."""
        ...

    def versions(self) -> dict[str, str]:
        """The engine's library versions, for the manifest."""
        ...

    def digest(self, path: Path) -> Future[TableDigest]:
        """The content digest of a Parquet file the engine did not write itself (a source
        registered where it lies), read in the background. It depends on the rows only, so
        every engine must give the same one (another engine may reuse
        ``engine/datafusion/digest.py``, which reads the file)."""
        ...

    def settings(self) -> dict[str, Any]:
        """The settings the engine ran with (memory limit, join strategy, …), for the manifest."""
        ...

    def close(self) -> None:
        """Release what the engine holds (tables, memory, connections)."""
        ...

    def __enter__(self) -> Executor:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()
