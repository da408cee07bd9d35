"""The staging seam: one base class owns the flow, connectors fill in a few hooks.

Flow (``Connector.stage``): bring the source close (``prepare``) → check the expected columns
→ push the filters the source can apply → read it as a typed Arrow table (with progress) →
write it to the staging directory as Parquet, atomically → fingerprint it. ``preview`` runs
the same first steps and reads only the first rows. A connector implements ``columns`` and
``read``; a file that the engine can register as it is (local Parquet) says so through
``in_place``; optional capabilities are the mixins ``SupportsFilterPushdown``,
``SupportsPartitionedRead``, ``SupportsLimitedRead`` (a preview reads only its rows) and
``SupportsStreamedRead`` (a large source written batch by batch, in bounded memory).
Connectors are given the ``Settings`` they use; of this module, only ``write_parquet_atomic``
still reads the global ones (its compression).
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
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, cast

import pyarrow as pa

from kalla.connectors.format import DEFAULT_READING, Reading
from kalla.errors import OutputError, SourceError
from kalla.hashing import Deferred, in_background, sha256_file
from kalla.secrets import redact_uri
from kalla.settings import Settings, parquet_codec
from kalla.suggest import did_you_mean

if TYPE_CHECKING:
    from kalla.connectors.registry import Location
    from kalla.evidence.digest import TableDigest

ProgressFn = Callable[[float], None]
"""Receives the fraction (0..1) of one source staged so far."""

TableWriter = Callable[[pa.Table, Path], "Future[TableDigest] | None"]
"""Writes an Arrow table to a Parquet file (the engine's writer; pyarrow's by default); the
content digest of its rows, computed as it writes them, when the writer computes one."""


class Filter(Protocol):
    """A pre-filter on one column (``recipe.FilterCondition`` is one): ``op`` is a
    ``FilterOp`` member or its name."""

    @property
    def column(self) -> str: ...

    @property
    def op(self) -> Any: ...

    @property
    def value(self) -> Any: ...


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
    digest: Future[TableDigest] | None = None  # of the staged rows, when the writer gave one


@dataclass(frozen=True)
class SourcePreview:
    """The first rows of a source, read through the staging flow (``Connector.preview``)."""

    alias: str
    uri: str  # redacted: safe to log and show
    table: pa.Table = field(repr=False)
    filters_applied: tuple[Any, ...] = ()  # the others are not applied to these rows


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
    """The name of its ``SourceKind`` in ``connectors.registry`` ("csv", "postgres", …)."""
    fetch_share: ClassVar[float] = 0.0
    """Share of the progress bar that ``prepare`` covers (a download); 0 when it does nothing."""

    def __init__(self, uri: str, *, alias: str, settings: Settings) -> None:
        self.uri = uri  # may hold ${ENV} references or secrets: never show it
        self.alias = alias
        self.settings = settings
        self.display_uri = redact_uri(uri)
        self.staging_dir: Path = settings.staging_path  # ``stage`` may be given another
        self.reading: Reading = DEFAULT_READING  # the recipe's format and the key columns

    @classmethod
    def open(cls, location: Location, *, settings: Settings) -> Connector:
        """The connector for a routed source (``registry.locate``); files override it to
        take their path and options."""
        return cls(location.uri, alias=location.alias, settings=settings)

    # ---- hooks ------------------------------------------------------------------------

    def prepare(self, progress: Progress) -> None:  # noqa: B027 - optional hook
        """Bring a remote source close (e.g. download an S3 object into the staging dir)."""

    @abstractmethod
    def columns(self) -> list[str]:
        """Column names as the source declares them (header, footer, catalog); cheap."""

    @abstractmethod
    def read(self, progress: Progress, filters: Sequence[Filter]) -> pa.Table:
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

    def _open_flow(
        self,
        report: Progress,
        expected_columns: Sequence[str] | None,
        filters: Sequence[Filter],
    ) -> tuple[Filter, ...]:
        """The steps staging and preview share: bring the source close, check the expected
        columns, push the filters the source applies (returned)."""
        self.prepare(report.part(0.0, self.fetch_share))
        if expected_columns:
            check_expected_columns(
                self.columns(), expected_columns, alias=self.alias, uri=self.display_uri
            )
        if filters and isinstance(self, SupportsFilterPushdown):
            return tuple(self.pushdown(filters))
        return ()

    def stage(
        self,
        staging_dir: Path | None = None,
        *,
        progress: ProgressFn | None = None,
        expected_columns: Sequence[str] | None = None,
        filters: Sequence[Filter] = (),
        writer: TableWriter | None = None,
    ) -> StagedSource:
        report = Progress(progress)
        report(0.0)
        if staging_dir is not None:
            self.staging_dir = Path(staging_dir)
        try:
            pushed = self._open_flow(report, expected_columns, filters)
            source_fp = in_background(self.source_fingerprint)
            placed = self.in_place()
            fingerprint: Mapping[str, object] | None
            digest: Future[TableDigest] | None = None
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
                    schema, rows = write_parquet_stream(
                        *stream, path, compression=self.settings.parquet_compression
                    )
                else:
                    table = self.read(reading, pushed)
                    digest = write_parquet_atomic(
                        table, path, writer, compression=self.settings.parquet_compression
                    )
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
            digest=digest,
        )

    def preview(
        self,
        rows: int,
        *,
        staging_dir: Path | None = None,
        expected_columns: Sequence[str] | None = None,
        filters: Sequence[Filter] = (),
    ) -> SourcePreview:
        """The first ``rows`` rows, typed as staging types them: the staging flow (expected
        columns checked, filters pushed, secrets resolved only here), reading no more than
        the source allows (``SupportsLimitedRead``). Filters the source cannot apply are not
        applied (they are the engine's); ``filters_applied`` says which were."""
        rows = max(int(rows), 0)
        if staging_dir is not None:
            self.staging_dir = Path(staging_dir)
        report = Progress(None)
        try:
            pushed = self._open_flow(report, expected_columns, filters)
            if isinstance(self, SupportsLimitedRead):
                table = self.read_head(report, pushed, rows)
            else:
                table = self.read(report, pushed)
            table = table.slice(0, rows)
        finally:
            self.close()
        return SourcePreview(
            alias=self.alias, uri=self.display_uri, table=table, filters_applied=pushed
        )


class FileConnector(Connector):
    """A local file: its path, how messages name it, and its bytes as its fingerprint."""

    def __init__(
        self, uri: str, *, alias: str, settings: Settings, path: Path, shown: str | None = None
    ) -> None:
        super().__init__(uri, alias=alias, settings=settings)
        self.path = path
        self.shown = shown or str(path)  # what messages call the file (an S3 URI for a fetch)
        self.label = f"source '{alias}' ({self.shown})"

    @classmethod
    def open(cls, location: Location, *, settings: Settings) -> Connector:
        assert location.path is not None
        return cls(location.uri, alias=location.alias, settings=settings, path=location.path)

    def source_fingerprint(self) -> dict[str, object] | None:
        return file_fingerprint(self.path)


class SupportsFilterPushdown(ABC):
    """A connector that applies FilterConditions at the source (e.g. a SQL WHERE clause)."""

    @abstractmethod
    def pushdown(self, filters: Sequence[Filter]) -> Sequence[Filter]:
        """Accept the filters the source will apply; the engine applies the rest."""


class SupportsLimitedRead(ABC):
    """A connector that reads only the first rows for a preview (``LIMIT n``)."""

    @abstractmethod
    def read_head(self, progress: Progress, filters: Sequence[Filter], rows: int) -> pa.Table:
        """At most ``rows`` rows, typed as ``read`` types them."""


class SupportsStreamedRead(ABC):
    """A connector that can hand over a large source as a stream of batches, so staging
    writes it in bounded memory instead of holding the whole table."""

    @abstractmethod
    def read_stream(
        self, progress: Progress, filters: Sequence[Filter]
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


def check_column_count(count: int, *, label: str, settings: Settings) -> None:
    """A source wider than ``KALLA_MAX_COLUMNS`` is refused before it is read (reading and
    planning cost grows faster than the column count)."""
    if count > settings.max_columns:
        raise SourceError(
            f"{label}: {count} columns, more than the {settings.max_columns} allowed; "
            "raise KALLA_MAX_COLUMNS to read it"
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
    schema: pa.Schema, parts: Iterator[pa.Table], path: Path, *, compression: str
) -> tuple[pa.Schema, int]:
    """Write ``parts`` to ``path`` as they come (pyarrow's writer holds one row group at a
    time), atomically like ``write_parquet_atomic``; ``compression`` as in the settings."""
    import pyarrow.parquet as pq

    codec, level = parquet_codec(compression)
    rows = 0
    with (
        _replacing(path) as tmp,
        pq.ParquetWriter(
            tmp,
            schema,
            compression=codec,
            compression_level=level,
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


def write_parquet_atomic(
    table: pa.Table, path: Path, writer: TableWriter | None = None, *, compression: str
) -> Future[TableDigest] | None:
    """Write ``table`` to ``path`` via a temp file and a rename: no reader sees half a file.

    ``writer`` writes the file (the pipeline passes its executor's, which encodes in
    parallel); without one, pyarrow's writer does, with ``compression`` as in the settings.
    """
    with _replacing(path) as tmp:
        if writer is not None:
            return writer(table, tmp)
        _pyarrow_writer(table, tmp, compression)
    return None


def _pyarrow_writer(table: pa.Table, path: Path, compression: str) -> None:
    import pyarrow.parquet as pq

    codec, level = parquet_codec(compression)
    pq.write_table(
        table, path, compression=codec, compression_level=level, row_group_size=_ROW_GROUP_ROWS
    )
