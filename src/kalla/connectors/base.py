"""The staging seam: one base class owns the flow, connectors fill in a few hooks.

Flow (``Connector.stage``): list the source's columns → check the expected ones → read it as
a typed Arrow table (with progress) → write it to the staging directory as Parquet, atomically
→ fingerprint it. A connector implements ``columns`` and ``read``; a file that the engine can
register as it is (local Parquet) says so through ``in_place``; optional capabilities are the
mixins ``SupportsFilterPushdown``, ``SupportsPartitionedRead`` and ``SupportsStreamedRead``
(a large source written batch by batch, in bounded memory).
"""

from __future__ import annotations

import os
import re
import threading
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, cast

import pyarrow as pa

from kalla.connectors.uri import redact_uri
from kalla.errors import OutputError, SourceError
from kalla.hashing import Deferred, in_background, sha256_file
from kalla.settings import get_settings, parquet_codec
from kalla.suggest import did_you_mean

ProgressFn = Callable[[float], None]
"""Receives the fraction (0..1) of one source staged so far."""

TableWriter = Callable[[pa.Table, Path], None]
"""Writes an Arrow table to a Parquet file (the engine's writer; pyarrow's by default)."""


@dataclass(frozen=True)
class StagedSource:
    """A source made ready for the engine: a Parquet file plus what the manifest records."""

    alias: str
    uri: str  # redacted: safe to log and show
    path: Path  # Parquet file to register (a local .parquet input is used where it lies)
    schema: pa.Schema
    row_count: int
    fingerprint: Mapping[str, object]  # may still be computing (see kalla.hashing)
    filters_applied: tuple[Any, ...] = ()  # FilterConditions already applied by the source


class Progress:
    """Wraps an optional ``ProgressFn``: never goes backwards, maps sub-steps onto a range.

    Readers may report from their own threads (a download's parts, pyarrow's reader); a lock
    shared by every part keeps the calls one at a time and in increasing order. An exception
    from the callback (e.g. a cancelled job) propagates out of staging; ``heartbeat`` gives
    the callback that chance while a reader waits.
    """

    def __init__(self, fn: ProgressFn | None, start: float = 0.0, end: float = 1.0) -> None:
        self._fn = fn
        self._start = start
        self._end = end
        self._state: list[float] = [-1.0]  # last value sent; shared by every part
        self._lock = threading.Lock()

    def __call__(self, fraction: float) -> None:
        if self._fn is None:
            return
        value = self._start + (self._end - self._start) * min(max(fraction, 0.0), 1.0)
        with self._lock:
            if value > self._state[0]:
                self._state[0] = value
                self._fn(value)

    def heartbeat(self) -> None:
        """Report the last fraction again: a cancellation checkpoint while nothing advances
        (a query that has not returned its first rows yet)."""
        if self._fn is None:
            return
        with self._lock:
            last = self._state[0]
            if last >= 0.0:
                self._fn(last)

    def part(self, start: float, end: float) -> Progress:
        """A progress for a sub-step covering ``start..end`` of this one."""
        span = self._end - self._start
        sub = Progress(self._fn, self._start + span * start, self._start + span * end)
        sub._state, sub._lock = self._state, self._lock
        return sub


class Connector(ABC):
    """One source. Subclasses fill the hooks; ``stage`` is the flow and is not overridden."""

    kind: ClassVar[str]
    """Short name of the source kind, shown in messages ("csv", "postgres", …)."""
    fetch_share: ClassVar[float] = 0.0
    """Share of the progress bar that ``prepare`` covers (a download); 0 when it does nothing."""

    def __init__(self, uri: str, *, alias: str) -> None:
        self.uri = uri  # may hold ${ENV} references or secrets: never show it
        self.alias = alias
        self.display_uri = redact_uri(uri)
        self.staging_dir: Path = get_settings().staging_path  # set by ``stage``

    # ---- hooks ------------------------------------------------------------------------

    def prepare(self, progress: Progress) -> None:  # noqa: B027 - optional hook
        """Bring a remote source close (e.g. download an S3 object into the staging dir)."""

    @abstractmethod
    def columns(self) -> list[str]:
        """Column names as the source declares them (header, footer, catalog); cheap."""

    @abstractmethod
    def read(self, progress: Progress, filters: Sequence[Any]) -> pa.Table:
        """The whole source as a typed Arrow table; ``filters`` were accepted by ``pushdown``."""

    def source_fingerprint(self) -> dict[str, object] | None:
        """Fingerprint of the source itself (a file's sha256), or None to hash the staged data.

        Runs on a second thread while ``read`` works, so hashing a big file costs no time.
        """
        return None

    def in_place(self) -> tuple[Path, pa.Schema, int] | None:
        """``(path, schema, rows)`` when the source already is a Parquet file to register."""
        return None

    def close(self) -> None:  # noqa: B027 - optional hook, most connectors hold nothing open
        """Release what the hooks opened (a database connection); called once staging ends."""

    # ---- the flow ---------------------------------------------------------------------

    def stage(
        self,
        staging_dir: Path | None = None,
        *,
        progress: ProgressFn | None = None,
        expected_columns: Sequence[str] | None = None,
        filters: Sequence[Any] = (),
        writer: TableWriter | None = None,
    ) -> StagedSource:
        report = Progress(progress)
        report(0.0)
        if staging_dir is not None:
            self.staging_dir = Path(staging_dir)
        try:
            self.prepare(report.part(0.0, self.fetch_share))
            if expected_columns:
                check_expected_columns(
                    self.columns(), expected_columns, alias=self.alias, uri=self.display_uri
                )
            pushed: tuple[Any, ...] = ()
            if filters and isinstance(self, SupportsFilterPushdown):
                pushed = tuple(self.pushdown(filters))
            source_fp = in_background(self.source_fingerprint)
            placed = self.in_place()
            fingerprint: Mapping[str, object] | None
            if placed is not None:
                # registered where it lies: let the engine start while the file is hashed
                path, schema, rows = placed
                fingerprint = Deferred(cast("Future[Mapping[str, object]]", source_fp))
            else:
                reading = report.part(self.fetch_share, 0.85)
                path = staged_path(self.staging_dir, self.alias)
                stream = None
                if isinstance(self, SupportsStreamedRead):
                    stream = self.read_stream(reading, pushed)
                if stream is not None:
                    schema, rows = write_parquet_stream(*stream, path)
                else:
                    table = self.read(reading, pushed)
                    write_parquet_atomic(table, path, writer)
                    schema, rows = table.schema, table.num_rows
                    del table
                fingerprint = source_fp.result()
            if fingerprint is None:
                fingerprint = {"kind": "table", "rows": rows, "content_sha256": sha256_file(path)}
        finally:
            self.close()
        report(1.0)
        return StagedSource(
            alias=self.alias,
            uri=self.display_uri,
            path=path,
            schema=schema,
            row_count=rows,
            fingerprint=fingerprint,
            filters_applied=pushed,
        )


class SupportsFilterPushdown(ABC):
    """A connector that applies FilterConditions at the source (e.g. a SQL WHERE clause)."""

    @abstractmethod
    def pushdown(self, filters: Sequence[Any]) -> Sequence[Any]:
        """Accept the filters the source will apply; the engine applies the rest."""


class SupportsStreamedRead(ABC):
    """A connector that can hand over a large source as a stream of batches, so staging
    writes it in bounded memory instead of holding the whole table."""

    @abstractmethod
    def read_stream(
        self, progress: Progress, filters: Sequence[Any]
    ) -> tuple[pa.Schema, Iterator[pa.Table]] | None:
        """``(schema, parts)`` in a stable order, every part of ``schema``; None when the
        source is better read whole (small, or its types depend on all of its values)."""


class SupportsPartitionedRead(ABC):
    """A connector that reads its source as ``n`` partitions in parallel."""

    @abstractmethod
    def partition_count(self) -> int:
        """How many partitions ``read`` splits the source into."""


# ---- helpers shared by connectors ----------------------------------------------------------


def check_expected_columns(
    actual: Sequence[str], expected: Sequence[str], *, alias: str, uri: str
) -> None:
    """Every expected column must be present (extra ones are fine); lists all that are not."""
    present = set(actual)
    missing = [name for name in expected if name not in present]
    if not missing:
        return
    names = ", ".join(f"'{name}'" for name in missing)
    raise SourceError(
        f"source '{alias}' ({uri}) is missing expected column{'s' if len(missing) > 1 else ''}"
        f" {names}",
        problems=[f"missing column '{name}'{did_you_mean(name, actual)}" for name in missing],
    )


def check_unique_columns(names: Sequence[str], *, alias: str, uri: str) -> None:
    """Duplicate or blank column names would make the staged table unusable in SQL."""
    seen: set[str] = set()
    duplicates: list[str] = []
    for name in names:
        if name in seen and name not in duplicates:
            duplicates.append(name)
        seen.add(name)
    if duplicates:
        listed = ", ".join(f"'{name}'" for name in duplicates)
        raise SourceError(f"source '{alias}' ({uri}) has duplicate column names: {listed}")
    blank = [str(i + 1) for i, name in enumerate(names) if not name.strip()]
    if blank:
        raise SourceError(
            f"source '{alias}' ({uri}) has columns without a name (position "
            f"{', '.join(blank)}); give every column a header"
        )


def file_fingerprint(path: Path) -> dict[str, object]:
    return {"kind": "file", "sha256": sha256_file(path), "bytes": path.stat().st_size}


_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def staged_path(root: Path, alias: str) -> Path:
    """``<staging>/<alias>-<short id>.parquet``; the alias is sanitised so it cannot escape."""
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(f"cannot create staging directory {root}: {exc.strerror}") from exc
    safe = _UNSAFE.sub("_", alias).strip("._") or "source"
    return root / f"{safe}-{uuid.uuid4().hex[:12]}.parquet"


# Small enough row groups that the engine scans a staged file on every core at 1M rows.
_ROW_GROUP_ROWS = 512 * 1024


def write_parquet_stream(
    schema: pa.Schema, parts: Iterator[pa.Table], path: Path
) -> tuple[pa.Schema, int]:
    """Write ``parts`` to ``path`` as they come (pyarrow's writer holds one row group at a
    time), atomically like ``write_parquet_atomic``."""
    import pyarrow.parquet as pq

    codec, _, level = get_settings().parquet_compression.partition("(")
    codec = {"uncompressed": "none", "lz4_raw": "lz4"}.get(codec, codec)
    rows = 0
    with (
        _replacing(path) as tmp,
        pq.ParquetWriter(
            tmp,
            schema,
            compression=codec,
            compression_level=int(level.rstrip(")")) if level else None,
        ) as writer,
    ):
        for part in parts:
            writer.write_table(part, row_group_size=_ROW_GROUP_ROWS)
            rows += part.num_rows
    return schema, rows


@contextmanager
def _replacing(path: Path) -> Iterator[Path]:
    """A temp file beside ``path``, renamed onto it when the block ends well (no reader sees
    half a file) and removed when it does not."""
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}.parquet")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OutputError(f"cannot write staged file {path}: {exc.strerror or exc}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_parquet_atomic(table: pa.Table, path: Path, writer: TableWriter | None = None) -> None:
    """Write ``table`` to ``path`` via a temp file and a rename: no reader sees half a file.

    ``writer`` writes the file (the pipeline passes its executor's, which encodes in
    parallel); without one, pyarrow's writer does.
    """
    with _replacing(path) as tmp:
        (writer or _pyarrow_writer)(table, tmp)


def _pyarrow_writer(table: pa.Table, path: Path) -> None:
    import pyarrow.parquet as pq

    codec, level = parquet_codec(get_settings().parquet_compression)
    pq.write_table(
        table, path, compression=codec, compression_level=level, row_group_size=_ROW_GROUP_ROWS
    )
