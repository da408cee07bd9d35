"""Database tables (PostgreSQL, MySQL/MariaDB) read straight into Arrow, in parallel partitions.

The flow: connect with the database's own driver (fast, classified errors) → read the table's
columns and declared types from the catalog → render pushed-down filters with the driver's
literal quoting → split the table into ranges (``partitions``) → an Arrow-native reader runs
the partition queries in parallel (``_fetch``: ADBC for PostgreSQL, connectorx for MySQL) →
columns are cast to their declared types (``numeric(12,2)`` → ``decimal128(12, 2)``).

Decimals travel exactly: up to 18 digits as their unscaled bigint (``amount * 100``), which
readers decode far faster than a numeric, and which becomes a decimal128 without any
arithmetic; up to 28 digits and scale 10 as the reader's own decimal where it has one
(connectorx); anything larger, or a numeric with no declared scale, as text that Arrow parses
exactly. Types the reader cannot read (intervals, arrays, enums…) are read as text.

A dialect subclass fills in: ``_connect``, ``_catalog``, ``_literal``, ``quote``,
``_text_expr``, ``_scaled_expr``, ``_fetch``, ``native_types`` and, optionally,
``_target_type`` and ``_physical_ranges``.
"""

from __future__ import annotations

import importlib
import os
import threading
from abc import abstractmethod
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import parse_qs, quote, unquote, urlsplit

import pyarrow as pa

from kalla.connectors.base import (
    Connector,
    Progress,
    SupportsFilterPushdown,
    SupportsPartitionedRead,
    SupportsStreamedRead,
    check_unique_columns,
)
from kalla.connectors.csv_types import exact_decimal
from kalla.connectors.sql_filters import FILTER_OPS, render_filter, where_clause
from kalla.connectors.uri import resolve_env
from kalla.errors import KallaError, MissingDependencyError, SourceError
from kalla.suggest import closest, did_you_mean

# Tables smaller than this are read in one query: partitioning costs more than it saves.
PARTITION_MIN_ROWS = 100_000
MAX_PARTITIONS = 16

# connectorx reads numerics through a 28-digit decimal and rescales them to scale 10.
NATIVE_DECIMAL_MAX_PRECISION = 28
NATIVE_DECIMAL_MAX_SCALE = 10
# Up to 18 digits a decimal travels fastest as its unscaled integer (amount * 10^scale as a
# bigint): decoding a bigint costs connectorx far less than decoding a numeric.
SCALED_INT_MAX_PRECISION = 18


# Tables this large on disk (~5M invoices rows) are staged range by range, in bounded memory:
# at 10M invoices rows a whole read peaks at 1.3 GB, ranges of ~500k rows at 0.5 GB, in
# about the same time, and the peak stays there however large the table.
STREAM_MIN_BYTES = 512 << 20
STREAM_PART_BLOCKS = 6_400
_BLOCK_BYTES = 8192

# How often a partitioned read checks, between batches, whether it should stop.
_HEARTBEAT_SECONDS = 0.5


class Interrupts:
    """What stops the queries in flight: each reader registers its cancel while it runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancels: dict[int, Callable[[], None]] = {}
        self._stopped = False

    @contextmanager
    def registered(self, cancel: Callable[[], None]) -> Iterator[None]:
        with self._lock:
            if self._stopped:
                raise SourceError("the read was interrupted")
            self._cancels[id(cancel)] = cancel
        try:
            yield
        finally:
            with self._lock:
                self._cancels.pop(id(cancel), None)

    def interrupt(self) -> None:
        with self._lock:
            self._stopped = True
            cancels = list(self._cancels.values())
        for cancel in cancels:
            with suppress(Exception):  # the query may have just ended
                cancel()


@dataclass(frozen=True)
class Column:
    """One column as the catalog declares it. ``kind`` groups types for filter checks."""

    name: str
    data_type: str  # the catalog's type name, lower case
    kind: str  # "int", "decimal", "float", "text", "date", "timestamp", "bool", "other"
    precision: int | None = None
    scale: int | None = None


def decimal_transport(column: Column, *, native: bool = True) -> str:
    """How a decimal column travels: "scaled" bigint, the reader's "native" decimal (where
    ``native``: connectorx has one), or exact "text"."""
    precision, scale = column.precision, column.scale
    if precision is None or scale is None or scale < 0 or precision > 38:
        return "text"  # no declared scale (or one Arrow cannot hold): parse the text exactly
    if precision <= SCALED_INT_MAX_PRECISION:
        return "scaled"
    if native and precision <= NATIVE_DECIMAL_MAX_PRECISION and scale <= NATIVE_DECIMAL_MAX_SCALE:
        return "native"
    return "text"


@dataclass(frozen=True)
class Catalog:
    """What the database says about the table, read once per staging."""

    schema: str
    table: str
    columns: tuple[Column, ...]
    estimated_rows: int
    primary_key: tuple[str, ...]
    physical_blocks: int = 0  # PostgreSQL heap pages, for ctid ranges; 0 = not available


@dataclass(frozen=True)
class ConnectionInfo:
    """The URI's parts with ``${ENV}`` references resolved. Holds the password: never show."""

    user: str | None
    password: str | None
    host: str
    port: int
    database: str
    options: dict[str, str]


class SqlTableConnector(
    Connector, SupportsFilterPushdown, SupportsPartitionedRead, SupportsStreamedRead
):
    """The shared flow for database tables; dialects fill in the hooks below."""

    product: ClassVar[str]  # "PostgreSQL"
    extra: ClassVar[str]  # the pip extra that installs the drivers
    default_port: ClassVar[int]
    url_scheme: ClassVar[str]  # scheme of the URL the Arrow reader connects with
    driver_options: ClassVar[tuple[str, ...]] = ()  # URI options passed to both drivers
    native_types: ClassVar[frozenset[str]]  # catalog types the Arrow reader reads as they are
    native_decimals: ClassVar[bool] = True  # the reader decodes numerics up to 28 digits
    options: ClassVar[tuple[str, ...]] = ("table", "partitions", "partition_on")

    def __init__(self, uri: str, *, alias: str) -> None:
        super().__init__(uri, alias=alias)
        self.label = f"source '{alias}' ({self.display_uri})"
        parts = urlsplit(uri)
        query = parse_qs(parts.query, keep_blank_values=True)
        unknown = [k for k in query if k not in (*self.options, *self.driver_options)]
        for name in unknown:
            valid = (*self.options, *self.driver_options)
            raise SourceError(
                f"{self.label}: unknown URI option '{name}'{did_you_mean(name, valid)} "
                f"(options: {', '.join(valid)})"
            )
        table = query.get("table", [""])[-1].strip()
        if not table:
            raise SourceError(
                f"{self.label}: the URI needs ?table=<name> (e.g. "
                f"{parts.scheme}://user:***@host/db?table=invoices)"
            )
        self.schema_name, _, self.table_name = table.rpartition(".")
        self.partitions_option = query.get("partitions", [""])[-1]
        self.partition_on = query.get("partition_on", [""])[-1] or None
        self._catalog_cache: Catalog | None = None
        self._where: list[str] = []
        self._conn: Any = None
        self._info: ConnectionInfo | None = None

    # ---- dialect hooks ------------------------------------------------------------------

    @abstractmethod
    def _connect(self, info: ConnectionInfo) -> Any:
        """A DB-API connection; failures raise SourceUnavailableError/SourceError by cause."""

    @abstractmethod
    def _catalog(self, conn: Any) -> Catalog:
        """The table's columns, row estimate and key; a SourceError if there is no table."""

    @abstractmethod
    def _literal(self, conn: Any, value: Any) -> str:
        """``value`` as a SQL literal, quoted by the driver for this connection."""

    @abstractmethod
    def quote(self, name: str) -> str:
        """A quoted identifier."""

    @abstractmethod
    def _text_expr(self, name: str) -> str:
        """``name`` (quoted) cast to text."""

    @abstractmethod
    def _scaled_expr(self, name: str, scale: int) -> str:
        """``name`` (quoted) times 10^scale as a bigint."""

    @abstractmethod
    def _fetch(
        self, url: str, query: str, rows_read: Callable[[int], None], running: Interrupts
    ) -> pa.Table:
        """Run ``query`` on a connection of its own and return the rows as Arrow, calling
        ``rows_read`` with each batch's row count. Runs on a worker thread: the reader must
        release the GIL while it reads. A reader that can stop a query midway registers how
        with ``running`` while it runs. A missing driver raises MissingDependencyError."""

    def _select_expr(self, column: Column) -> str:
        """The expression that reads ``column``: itself, its unscaled bigint, or its text."""
        name = self.quote(column.name)
        if column.kind == "decimal":
            how = decimal_transport(column, native=self.native_decimals)
            if how == "scaled":
                return self._scaled_expr(name, column.scale or 0)
            return name if how == "native" else self._text_expr(name)
        return name if column.data_type in self.native_types else self._text_expr(name)

    def _target_type(self, column: Column) -> pa.DataType | None:
        """Arrow type to cast the read column to; None to keep what the reader gave."""
        precision, scale = column.precision, column.scale
        if column.kind == "decimal" and precision is not None and scale is not None:
            return pa.decimal128(precision, scale) if precision <= 38 else None
        return None

    def _physical_ranges(self, catalog: Catalog, count: int) -> list[str] | None:
        """Partition predicates over the storage layout (e.g. ctid), or None."""
        return None

    def _filter_target(self, column: Column) -> str:
        """What a pushed filter compares: the column, made to compare text the way the engine
        does (byte for byte, case-sensitive) where the database's collation would not."""
        return self.quote(column.name)

    # ---- Connector hooks ----------------------------------------------------------------

    def columns(self) -> list[str]:
        return [column.name for column in self.catalog().columns]

    def pushdown(self, filters: Sequence[Any]) -> Sequence[Any]:
        catalog = self.catalog()
        by_name = {column.name: column for column in catalog.columns}
        pushed: list[Any] = []
        for condition in filters:
            name = str(getattr(condition, "column", ""))
            raw_op = getattr(condition, "op", "")
            op = str(getattr(raw_op, "value", raw_op)).lower()  # an enum member or a string
            column = by_name.get(name)
            if column is None:
                raise SourceError(
                    f"{self.label}: filter on unknown column '{name}'"
                    f"{did_you_mean(name, by_name)} (table {catalog.schema}.{catalog.table})"
                )
            if op not in FILTER_OPS or column.kind == "other":
                continue  # left for the engine, which names a bad op
            value = getattr(condition, "value", None)
            self._where.append(
                render_filter(
                    self._filter_target(column),
                    column,
                    op,
                    value,
                    literal=lambda v: self._literal(self.connection(), v),
                    label=self.label,
                )
            )
            pushed.append(condition)
        return pushed

    def partition_count(self) -> int:
        if self.partitions_option:
            try:
                count = int(self.partitions_option)
            except ValueError:
                count = 0
            if not 1 <= count <= MAX_PARTITIONS:
                raise SourceError(
                    f"{self.label}: partitions must be a whole number from 1 to "
                    f"{MAX_PARTITIONS}, not '{self.partitions_option}'"
                )
            return count
        if self.catalog().estimated_rows < PARTITION_MIN_ROWS:
            return 1
        return max(2, min(os.cpu_count() or 2, MAX_PARTITIONS // 2))

    def read(self, progress: Progress, filters: Sequence[Any] = ()) -> pa.Table:
        catalog = self.catalog()
        queries = self._queries(catalog, self._partitions(catalog))
        progress(0.05)
        self.close()  # the reader opens its own connections
        table = self._read_parallel(queries, progress.part(0.05, 0.95), catalog.estimated_rows)
        return self._cast(table, catalog)

    def read_stream(
        self, progress: Progress, filters: Sequence[Any] = ()
    ) -> tuple[pa.Schema, Iterator[pa.Table]] | None:
        """A large table as ranges of ``STREAM_PART_BLOCKS`` pages (~500k rows), read a
        few ahead in parallel and handed over in order, so staging holds a window of ranges,
        not the table. None for a table under ``STREAM_MIN_BYTES`` (a whole parallel read is
        faster), without storage ranges, or whose decimal types are read off their values
        (every range must type alike).

        The choice rests on the table's size on disk, not on a row estimate: the same table
        is always read the same way, so its staged file, and fingerprint, stay the same."""
        catalog = self.catalog()
        if catalog.physical_blocks * _BLOCK_BYTES < STREAM_MIN_BYTES or any(
            c.kind == "decimal" and decimal_transport(c, native=self.native_decimals) == "text"
            for c in catalog.columns
        ):
            return None
        count = -(-catalog.physical_blocks // STREAM_PART_BLOCKS)
        ranges = self._physical_ranges(catalog, count)
        if not ranges:
            return None
        queries = self._queries(catalog, ranges)
        window = self.partition_count()
        self.close()  # the reader opens its own connections
        reads = _OrderedReads(self, queries, window, progress, catalog.estimated_rows)
        first = self._cast(reads.next(), catalog)

        def tables() -> Iterator[pa.Table]:
            with reads:
                yield first
                for _ in queries[1:]:
                    yield self._cast(reads.next(), catalog).cast(first.schema)

        return first.schema, tables()

    def _queries(self, catalog: Catalog, parts: Sequence[str]) -> list[str]:
        """One SELECT per partition predicate ("" for the whole table), with pushed filters."""
        base = self._select(catalog)
        return [base + where_clause([*self._where, *([part] if part else [])]) for part in parts]

    def _read_error(self, exc: Exception) -> SourceError:
        """A driver's own error (with the server's text), without the password."""
        return SourceError(f"{self.label}: reading the table failed: {self.scrub(str(exc))}")

    def sample(self, rows: int) -> pa.Table:
        """The first ``rows`` rows, typed as a full read types them (for previews)."""
        catalog = self.catalog()
        query = f"{self._select(catalog)}{where_clause(self._where)} LIMIT {max(int(rows), 0)}"
        self.close()
        return self._cast(self._read_parallel([query], Progress(None), rows), catalog)

    def _select(self, catalog: Catalog) -> str:
        check_unique_columns(self.columns(), alias=self.alias, uri=self.display_uri)
        select = ", ".join(
            f"{self._select_expr(column)} AS {self.quote(column.name)}"
            for column in catalog.columns
        )
        return f"SELECT {select} FROM {self._table_ref(catalog)}"

    def close(self) -> None:
        if self._conn is not None:
            try:
                self._conn.close()
            finally:
                self._conn = None

    # ---- shared machinery -----------------------------------------------------------------

    def driver(self, module: str) -> Any:
        """Import one of this dialect's drivers, naming the extra that installs it."""
        try:
            return importlib.import_module(module)
        except ImportError as exc:
            raise MissingDependencyError(
                f"{self.product} sources need the '{self.extra}' extra: "
                f"pip install 'kalla[{self.extra}]'"
            ) from exc

    def info(self) -> ConnectionInfo:
        """Parse first, then resolve ``${ENV}`` in each part: a secret may hold ``@`` or ``/``."""
        if self._info is None:
            parts = urlsplit(self.uri)

            def resolved(text: str) -> str:
                return resolve_env(unquote(text), alias=self.alias)

            try:
                port = parts.port or self.default_port
            except ValueError as exc:
                raise SourceError(f"{self.label}: the port is not a number") from exc
            database = resolved(parts.path.lstrip("/"))
            if not database:
                raise SourceError(f"{self.label}: the URI names no database (…/<db>?table=…)")
            query = parse_qs(parts.query, keep_blank_values=True)
            self._info = ConnectionInfo(
                user=resolved(parts.username) if parts.username else None,
                password=resolved(parts.password) if parts.password is not None else None,
                host=resolved(_raw_host(parts.netloc) or "localhost"),
                port=port,
                database=database,
                options={
                    k: resolve_env(v[-1], alias=self.alias)
                    for k, v in query.items()
                    if k in self.driver_options
                },
            )
        return self._info

    def connection(self) -> Any:
        if self._conn is None:
            self._conn = self._connect(self.info())
        return self._conn

    def catalog(self) -> Catalog:
        if self._catalog_cache is None:
            self._catalog_cache = self._catalog(self.connection())
        return self._catalog_cache

    def scrub(self, text: str) -> str:
        """``text`` with the password removed, for messages from drivers."""
        password = self.info().password if self._info is not None else None
        if password:
            for form in {password, quote(password, safe=""), quote(password)}:
                text = text.replace(form, "***")
        return text

    def where(self) -> str:
        return f"{self.info().host}:{self.info().port}"

    def missing_table(self, catalog_tables: Sequence[str], wanted: str) -> SourceError:
        best = closest(wanted, catalog_tables)
        hint = f" (did you mean '{best}'?)" if best else ""
        return SourceError(
            f"{self.label}: table '{wanted}' not found in database "
            f"'{self.info().database}' on {self.where()}{hint}"
        )

    def _table_ref(self, catalog: Catalog) -> str:
        return f"{self.quote(catalog.schema)}.{self.quote(catalog.table)}"

    def _partitions(self, catalog: Catalog) -> list[str]:
        """Predicates splitting the table into ranges: key ranges or storage ranges."""
        count = self.partition_count()
        if count <= 1:
            return [""]
        if self.partition_on is None:
            physical = self._physical_ranges(catalog, count)
            if physical:
                return physical
        column = self._range_column(catalog)
        if column is None:
            return [""]
        return self._key_ranges(catalog, column, count)

    def _range_column(self, catalog: Catalog) -> Column | None:
        by_name = {column.name: column for column in catalog.columns}
        if self.partition_on is not None:
            column = by_name.get(self.partition_on)
            if column is None or column.kind != "int":
                hint = did_you_mean(self.partition_on, by_name) if column is None else ""
                raise SourceError(
                    f"{self.label}: partition_on must name an integer column of the table; "
                    f"'{self.partition_on}' is {'not a column' if column is None else 'not'}"
                    f"{' an integer column' if column is not None else ''}{hint}"
                )
            return column
        if len(catalog.primary_key) == 1:
            column = by_name.get(catalog.primary_key[0])
            if column is not None and column.kind == "int":
                return column
        return None

    def _key_ranges(self, catalog: Catalog, column: Column, count: int) -> list[str]:
        key = self.quote(column.name)
        cursor = self.connection().cursor()
        try:
            cursor.execute(
                f"SELECT MIN({key}), MAX({key}) FROM {self._table_ref(catalog)}"
                + where_clause(self._where)
            )
            low, high = cursor.fetchone()
        finally:
            cursor.close()
        if low is None or high is None:
            return [""]
        low, high = int(low), int(high)
        step = max((high - low + 1 + count - 1) // count, 1)
        bounds = [low + step * i for i in range(1, count) if low + step * i <= high]
        ranges = [f"({key} < {bounds[0]} OR {key} IS NULL)"] if bounds else [""]
        for start, end in zip(bounds, [*bounds[1:], None], strict=True):
            ranges.append(f"{key} >= {start}" + (f" AND {key} < {end}" if end is not None else ""))
        return ranges

    def _read_parallel(self, queries: list[str], progress: Progress, expected: int) -> pa.Table:
        """Each partition query on its own thread, joined in partition order so the staged
        rows, and their hash, are stable. Progress counts rows against the catalog's
        estimate (``expected``)."""
        with _OrderedReads(self, queries, len(queries), progress, expected) as reads:
            parts = reads.all()
        progress(1.0)
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)

    def _driver_url(self) -> str:
        """The URL the Arrow reader connects with. Holds the password: never show."""
        info = self.info()
        auth = ""
        if info.user is not None:
            auth = quote(info.user, safe="")
            if info.password:
                auth += ":" + quote(info.password, safe="")
            auth += "@"
        extra = "&".join(f"{k}={quote(v, safe='')}" for k, v in info.options.items())
        host = f"[{info.host}]" if ":" in info.host else info.host  # an IPv6 address
        return f"{self.url_scheme}://{auth}{host}:{info.port}/{quote(info.database, safe='')}" + (
            f"?{extra}" if extra else ""
        )

    def _cast(self, table: pa.Table, catalog: Catalog) -> pa.Table:
        columns = []
        for column, values in zip(catalog.columns, table.columns, strict=True):
            target = self._target_type(column)
            if column.kind == "decimal" and pa.types.is_string(values.type):
                values = _decimal_from_text(values, target)
            elif column.kind == "decimal" and pa.types.is_integer(values.type):
                assert target is not None
                values = _decimal_from_unscaled(values, target)
            elif target is not None and values.type != target:
                try:
                    values = values.cast(target)
                except pa.ArrowInvalid as exc:
                    raise SourceError(
                        f"{self.label}: column '{column.name}' ({column.data_type}) does not "
                        f"fit {target}: {exc}"
                    ) from exc
            columns.append(values)
        return pa.Table.from_arrays(columns, names=[c.name for c in catalog.columns])


def _decimal_from_unscaled(values: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """Unscaled integers (19.99 read as 1999) as decimals: the same 128-bit integers with the
    target's scale, so no value is multiplied or rounded."""
    wide = values.cast(pa.decimal128(19, 0))
    chunks = [
        pa.Array.from_buffers(target, len(chunk), chunk.buffers(), chunk.null_count, chunk.offset)
        for chunk in wide.chunks
    ]
    return pa.chunked_array(chunks, type=target)


def _decimal_from_text(values: pa.ChunkedArray, target: pa.DataType | None) -> pa.ChunkedArray:
    """Numerics read as text, parsed exactly; NaN or over-long values keep the column text."""
    if target is not None:
        try:
            return values.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return exact_decimal(values)


def _raw_host(netloc: str) -> str:
    """The host as written (``urlsplit().hostname`` lower-cases ``${PG_HOST}``)."""
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.partition(":")[0]


class _OrderedReads:
    """Partition queries run by a pool, at most ``window`` at a time, and handed over in
    query order (the staged rows, and their hash, are the same on every run).

    While a caller waits, a heartbeat every half second gives a cancelled job (or Ctrl-C)
    its chance; the queries in flight are then cancelled on the server (``Interrupts``)
    instead of being waited for. Drivers' errors become a SourceError without the password.
    """

    def __init__(
        self,
        connector: SqlTableConnector,
        queries: Sequence[str],
        window: int,
        progress: Progress,
        expected: int,
    ) -> None:
        self.connector = connector
        self.queries = list(queries)
        self.window = max(window, 1)
        self.progress = progress
        self.expected = max(expected, 1)
        self.url = connector._driver_url()
        self.running = Interrupts()
        self.pool = ThreadPoolExecutor(max_workers=self.window)
        self.pending: deque[Future[pa.Table]] = deque()
        self.submitted = 0
        self.rows = 0
        self.lock = threading.Lock()
        self._fill()

    def __enter__(self) -> _OrderedReads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next(self) -> pa.Table:
        """The next query's rows, in order."""
        future = self.pending.popleft()
        try:
            self._await([future, *self.pending])
            table = future.result()
        except BaseException as exc:
            self.close()
            if isinstance(exc, KallaError) or not isinstance(exc, Exception):
                raise  # a cancelled job, Ctrl-C, or our own error
            raise self.connector._read_error(exc) from None
        self._fill()
        return table

    def all(self) -> list[pa.Table]:
        return [self.next() for _ in self.queries]

    def close(self) -> None:
        self.running.interrupt()  # a no-op once every query has ended
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _fill(self) -> None:
        while self.submitted < len(self.queries) and len(self.pending) < self.window:
            query = self.queries[self.submitted]
            fetch = self.connector._fetch
            self.pending.append(
                self.pool.submit(fetch, self.url, query, self._rows_read, self.running)
            )
            self.submitted += 1

    def _rows_read(self, count: int) -> None:
        with self.lock:
            self.rows += count
            self.progress(self.rows / self.expected)

    def _await(self, futures: list[Future[pa.Table]]) -> None:
        """Until the first future is done; an error in any of them is raised at once."""
        first, watching = futures[0], set(futures)
        while not first.done():
            finished, watching = wait(watching, _HEARTBEAT_SECONDS, return_when=FIRST_COMPLETED)
            for future in finished:
                if (error := future.exception()) is not None:
                    raise error
            if not finished:
                self.progress.heartbeat()
