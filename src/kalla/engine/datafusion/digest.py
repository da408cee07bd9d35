"""Content digests (kalla.evidence.digest) computed on DataFusion, on every core.

One scan per table: DataFusion reads the Parquet file in parallel partitions; a vectorised
Python UDF writes each batch's fixed fields (``evidence.digest.encode_fixed``: numpy, no
per-row Python); DataFusion appends the string bytes (``concat`` of binaries) and hashes
every row with SHA-256 in Rust; the 32-byte hashes stream back and are summed in numpy. The
digest depends only on the rows, so it is the same for a file written by any engine, in any
row order, layout or compression: the Spark engine can digest its outputs with this too.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections.abc import Iterable, Sequence
from concurrent.futures import CancelledError, Future, ThreadPoolExecutor
from pathlib import Path

import pyarrow as pa
from datafusion import DataFrame, Expr, SessionConfig, SessionContext, col, udf
from datafusion import functions as f

from kalla.engine.datafusion.results import quote_ident
from kalla.engine.datafusion.session import location
from kalla.errors import EvidenceError
from kalla.evidence.digest import (
    MODULUS,
    Column,
    TableDigest,
    canonical_columns,
    combine,
    encode_fixed,
    sum_hashes,
)

# Rows per batch handed to the encoder: large enough that its per-call overhead (~50 µs)
# vanishes, small enough that a batch stays in the CPU caches' neighbourhood.
_BATCH_ROWS = 65_536


def _context() -> SessionContext:
    config = (
        SessionConfig()
        .with_target_partitions(os.cpu_count() or 2)
        .with_batch_size(_BATCH_ROWS)
        .with_information_schema(False)
        # plain strings, as the engine writes them: no Utf8View to convert back per batch
        .set("datafusion.execution.parquet.schema_force_view_types", "false")
        # Parquet's min/max leave NaN out; trusting them, DataFusion 55 reads a row group
        # holding [1.0, NaN] as [1.0, 1.0] (apache/datafusion#24804). A digest reads every
        # row anyway: no statistics.
        .set("datafusion.execution.collect_statistics", "false")
    )
    return SessionContext(config)


def _row_hashes(df: DataFrame, failures: list[EvidenceError]) -> tuple[Expr, tuple[Column, ...]]:
    """The expression of each row's SHA-256 (``evidence.digest``, steps 2-3) over ``df``'s
    columns, and the digest's view of them. An encoding failure is kept in ``failures``:
    DataFusion wraps it, the callers raise it as it is."""
    schema = df.schema()
    columns = canonical_columns(schema)

    def encode(*arrays: pa.Array) -> pa.Array:
        try:
            return encode_fixed(arrays, columns)[0]
        except EvidenceError as exc:
            failures.append(exc)
            raise

    encoder = udf(encode, [field.type for field in schema], pa.binary(), "immutable", "encode")
    values = [col(quote_ident(c.name)) for c in columns]
    # the bytes of strings and binaries after the fixed fields; concat skips a NULL's
    tails = [f.arrow_cast(v, "Binary") for v, c in zip(values, columns, strict=True) if c.variable]
    row = f.concat(encoder(*values), *tails) if tails else encoder(*values)
    return f.sha256(row), columns


def _digest_frame(df: DataFrame, stop: threading.Event | None = None) -> TableDigest:
    failures: list[EvidenceError] = []
    hashes, columns = _row_hashes(df, failures)
    hashed = df.select(hashes)
    rows, total = 0, 0
    try:
        for stream in hashed.execute_stream_partitioned():
            for batch in stream:
                if stop is not None and stop.is_set():  # dropping the stream ends the scan
                    raise CancelledError("digest cancelled")
                column = batch.to_pyarrow().column(0)
                rows += len(column)
                total += sum_hashes(column)
    except CancelledError:
        raise
    except Exception:
        if failures:
            raise failures[0] from None
        raise
    return TableDigest(TableDigest.empty(columns).columns, rows, total % MODULUS)


class Tap:
    """The digest of a frame's rows, summed while the engine executes it for another reason
    (a write): the same pass, no second read. ``tapped`` builds it."""

    def __init__(self, columns: Sequence[Column], limit: int | None = None) -> None:
        self._empty = TableDigest.empty(columns)
        self._lock = threading.Lock()  # partitions run on several threads
        self.limit = limit
        self.rows = 0
        self._total = 0
        self.failures: list[EvidenceError] = []  # rows that have no encoding
        self.exceeded = False  # more rows came than ``limit``: the statement was stopped

    def add(self, hashes: pa.Array) -> None:
        """Add a batch's row hashes; past ``limit`` rows, raise to stop the statement."""
        found = sum_hashes(hashes)
        with self._lock:
            self.rows += len(hashes)
            self._total += found
            if self.limit is not None and self.rows > self.limit:
                self.exceeded = True
        if self.exceeded:
            raise EvidenceError(f"more than {self.limit:,} rows")

    def digest(self, written_rows: int) -> TableDigest:
        """The digest, once the engine has written ``written_rows`` rows; EvidenceError when
        the tap saw a different number (an engine that evaluated the projection on rows it
        did not write: the caller digests the file instead)."""
        if self.rows != written_rows:
            raise EvidenceError(
                f"the digest saw {self.rows:,} rows where {written_rows:,} were written"
            )
        return TableDigest(self._empty.columns, self.rows, self._total % MODULUS)


def tapped(df: DataFrame, *, limit: int | None = None) -> tuple[DataFrame, Tap]:
    """``df`` with the same rows, columns and types, whose row hashes go to the returned
    ``Tap`` as DataFusion computes each batch. A volatile function that hands its first
    argument back unchanged (the first column) takes the hashes as its second: DataFusion
    can neither drop nor reuse it, so every row it produces is hashed exactly once. With
    ``limit``, the statement fails (``Tap.exceeded``) once more rows than that have come.
    An EvidenceError when a column type has no canonical encoding."""
    tap = Tap(canonical_columns(df.schema()), limit)  # its failures list fills as rows encode
    hashes, columns = _row_hashes(df, tap.failures)
    first = df.schema().field(0)

    def through(values: pa.Array, row_hashes: pa.Array) -> pa.Array:
        tap.add(row_hashes)
        return values

    passing = udf(through, [first, pa.field("h", pa.binary())], first, "volatile", "digest_tap")
    names = [col(quote_ident(c.name)) for c in columns]
    frame = df.select(passing(names[0], hashes).alias(first.name), *names[1:])
    return frame, tap


def digest_parquet(
    paths: Path | Sequence[Path], *, stop: threading.Event | None = None
) -> TableDigest:
    """Digest of the rows of one Parquet file, or of several holding one table; ``stop``
    set ends it between two batches (CancelledError)."""
    parts = [paths] if isinstance(paths, str | os.PathLike) else list(paths)
    digests = []
    for path in parts:
        ctx = _context()
        digests.append(_digest_frame(ctx.read_parquet(location(path)), stop))
    return combine(digests)


# One digest at a time: each already scans on every core (two at once took 4% more CPU
# for the same three tables at 1M rows, and no less time).
_POOL = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kalla-digest")


_STOPS: weakref.WeakKeyDictionary[Future[TableDigest], threading.Event] = (
    weakref.WeakKeyDictionary()
)


def digest_in_background(source: Path | Sequence[Path] | pa.Table) -> Future[TableDigest]:
    """``digest_parquet`` of files, or ``digest_table`` of a table in memory, on the digest
    thread while the caller goes on."""
    stop = threading.Event()
    if isinstance(source, pa.Table):
        future = _POOL.submit(digest_table, source, stop=stop)
    else:
        future = _POOL.submit(digest_parquet, source, stop=stop)
    _STOPS[future] = stop
    return future


def stop_digests(futures: Iterable[Future[TableDigest]]) -> None:
    """Stop background digests: a waiting one is cancelled, a running one ends at its next
    batch."""
    for future in futures:
        future.cancel()
        stop = _STOPS.get(future)
        if stop is not None:
            stop.set()


def digest_table(table: pa.Table, *, stop: threading.Event | None = None) -> TableDigest:
    """Digest of an Arrow table in memory (no file written or read)."""
    ctx = _context()
    batches = table.to_batches(max_chunksize=_BATCH_ROWS) or [
        pa.RecordBatch.from_pylist([], schema=table.schema)
    ]
    frame = ctx.from_arrow(pa.Table.from_batches(batches, schema=table.schema))
    return _digest_frame(frame, stop)
