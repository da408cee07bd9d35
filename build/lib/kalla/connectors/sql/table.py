"""The shared flow for a database table; a dialect (``postgres``, ``mysql``) fills the hooks.

The flow: connect with the database's own driver (fast, classified errors) → read the table's
columns and declared types from the catalog → render pushed-down filters with the driver's
literal quoting (``filters``) → split the table into ranges (``partitions``) → the parallel
reader runs the partition queries (``reader``; ADBC for PostgreSQL, connectorx for MySQL) →
columns are cast to their declared types (``numeric(12,2)`` → ``decimal128(12, 2)``,
``decimals``). Types the reader cannot read (intervals, arrays, enums…) are read as text.

A dialect fills in: ``_connect``, ``_catalog``, ``_literal``, ``quote``, ``_text_expr``,
``_scaled_expr``, ``_fetch``, ``native_types`` and, optionally, ``_target_type``,
``_physical_ranges``, ``_filter_target`` and ``_select_expr``.
"""

from __future__ import annotations

import importlib
import os
from abc import abstractmethod
from collections.abc import Callable, Iterator, Sequence
from typing import Any, ClassVar

import pyarrow as pa

from kalla.connectors import registry
from kalla.connectors.base import (
    Connector,
    Filter,
    Progress,
    SupportsFilterPushdown,
    SupportsLimitedRead,
    SupportsPartitionedRead,
    SupportsStreamedRead,
    check_unique_columns,
)
from kalla.connectors.sql import partitions
from kalla.connectors.sql.catalog import Catalog, Column
from kalla.connectors.sql.decimals import (
    decimal_from_text,
    decimal_from_unscaled,
    decimal_transport,
    declared_decimal,
)
from kalla.connectors.sql.filters import FILTER_OPS, render_filter, where_clause
from kalla.connectors.sql.location import (
    ConnectionInfo,
    connection_info,
    driver_url,
    scrub_password,
    table_options,
)
from kalla.connectors.sql.reader import Interrupts, OrderedReads
from kalla.errors import MissingDependencyError, SourceError
from kalla.settings import Settings
from kalla.suggest import closest, did_you_mean


class SqlTableConnector(
    Connector,
    SupportsFilterPushdown,
    SupportsPartitionedRead,
    SupportsStreamedRead,
    SupportsLimitedRead,
):
    """The shared flow for database tables; dialects fill in the hooks below."""

    default_port: ClassVar[int]
    url_scheme: ClassVar[str]  # scheme of the URL the Arrow reader connects with
    driver_options: ClassVar[tuple[str, ...]] = ()  # URI options passed to both drivers
    native_types: ClassVar[frozenset[str]]  # catalog types the Arrow reader reads as they are
    native_decimals: ClassVar[bool] = True  # the reader decodes numerics up to 28 digits

    def __init__(self, uri: str, *, alias: str, settings: Settings) -> None:
        super().__init__(uri, alias=alias, settings=settings)
        self.label = f"source '{alias}' ({self.display_uri})"
        self.source_kind = registry.kind_named(self.kind)
        self.options = table_options(uri, label=self.label)
        self.schema_name = self.options.schema_name
        self.table_name = self.options.table_name
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
        with ``running`` while it runs."""

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
        return declared_decimal(column)

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

    def pushdown(self, filters: Sequence[Filter]) -> Sequence[Filter]:
        catalog = self.catalog()
        by_name = {column.name: column for column in catalog.columns}
        pushed: list[Filter] = []
        for condition in filters:
            name = str(condition.column)
            op = str(getattr(condition.op, "value", condition.op)).lower()  # enum or name
            column = by_name.get(name)
            if column is None:
                raise SourceError(
                    f"{self.label}: filter on unknown column '{name}'"
                    f"{did_you_mean(name, by_name)} (table {catalog.schema}.{catalog.table})"
                )
            if op not in FILTER_OPS or column.kind == "other":
                continue  # left for the engine, which names a bad op
            self._where.append(
                render_filter(
                    self._filter_target(column),
                    column,
                    op,
                    condition.value,
                    literal=lambda v: self._literal(self.connection(), v),
                    label=self.label,
                )
            )
            pushed.append(condition)
        return pushed

    def partition_count(self) -> int:
        estimate = 0 if self.options.partitions else self.catalog().estimated_rows
        return partitions.partition_count(
            self.options.partitions,
            estimated_rows=estimate,
            cpus=os.cpu_count(),
            label=self.label,
        )

    def read(self, progress: Progress, filters: Sequence[Filter] = ()) -> pa.Table:
        catalog = self.catalog()
        queries = self._queries(catalog, self._partitions(catalog))
        progress(0.05)
        self.close()  # the reader opens its own connections
        table = self._read_all(queries, progress.part(0.05, 0.95), catalog.estimated_rows)
        return self._cast(table, catalog)

    def read_head(self, progress: Progress, filters: Sequence[Filter], rows: int) -> pa.Table:
        """The first ``rows`` rows, typed as a full read types them."""
        catalog = self.catalog()
        query = f"{self._select(catalog)}{where_clause(self._where)} LIMIT {max(int(rows), 0)}"
        self.close()
        return self._cast(self._read_all([query], progress, rows), catalog)

    def read_stream(
        self, progress: Progress, filters: Sequence[Filter] = ()
    ) -> tuple[pa.Schema, Iterator[pa.Table]] | None:
        """A large table as ranges of ``STREAM_PART_BLOCKS`` pages (~500k rows), read a
        few ahead in parallel and handed over in order, so staging holds a window of ranges,
        not the table; None when ``partitions.streams`` says to read it whole, or the
        dialect has no storage ranges."""
        catalog = self.catalog()
        if not partitions.streams(catalog, native_decimals=self.native_decimals):
            return None
        ranges = self._physical_ranges(catalog, partitions.stream_range_count(catalog))
        if not ranges:
            return None
        queries = self._queries(catalog, ranges)
        window = self.partition_count()
        self.close()  # the reader opens its own connections
        reads = self._reads(queries, window, progress, catalog.estimated_rows)
        first = self._cast(reads.next(), catalog)

        def tables() -> Iterator[pa.Table]:
            with reads:
                yield first
                for _ in queries[1:]:
                    yield self._cast(reads.next(), catalog).cast(first.schema)

        return first.schema, tables()

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
            raise MissingDependencyError(self.source_kind.missing_message()) from exc

    def info(self) -> ConnectionInfo:
        if self._info is None:
            self._info = connection_info(
                self.uri,
                alias=self.alias,
                label=self.label,
                default_port=self.default_port,
                driver_options=self.driver_options,
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
        return scrub_password(text, self._info.password if self._info is not None else None)

    def where(self) -> str:
        return f"{self.info().host}:{self.info().port}"

    def missing_table(self, catalog_tables: Sequence[str], wanted: str) -> SourceError:
        best = closest(wanted, catalog_tables)
        hint = f" (did you mean '{best}'?)" if best else ""
        return SourceError(
            f"{self.label}: table '{wanted}' not found in database "
            f"'{self.info().database}' on {self.where()}{hint}"
        )

    def _driver_url(self) -> str:
        """The URL the Arrow reader connects with. Holds the password: never show."""
        return driver_url(self.url_scheme, self.info())

    def _read_error(self, exc: Exception) -> SourceError:
        """A driver's own error (with the server's text), without the password."""
        return SourceError(f"{self.label}: reading the table failed: {self.scrub(str(exc))}")

    def _table_ref(self, catalog: Catalog) -> str:
        return f"{self.quote(catalog.schema)}.{self.quote(catalog.table)}"

    def _select(self, catalog: Catalog) -> str:
        check_unique_columns(self.columns(), alias=self.alias, uri=self.display_uri)
        select = ", ".join(
            f"{self._select_expr(column)} AS {self.quote(column.name)}"
            for column in catalog.columns
        )
        return f"SELECT {select} FROM {self._table_ref(catalog)}"

    def _queries(self, catalog: Catalog, parts: Sequence[str]) -> list[str]:
        """One SELECT per partition predicate ("" for the whole table), with pushed filters."""
        base = self._select(catalog)
        return [base + where_clause([*self._where, *([part] if part else [])]) for part in parts]

    def _partitions(self, catalog: Catalog) -> list[str]:
        """Predicates splitting the table into ranges: storage ranges or key ranges."""
        count = self.partition_count()
        if count <= 1:
            return [""]
        if self.options.partition_on is None:
            physical = self._physical_ranges(catalog, count)
            if physical:
                return physical
        column = partitions.range_column(catalog, self.options.partition_on, label=self.label)
        if column is None:
            return [""]
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
        return partitions.key_predicates(key, partitions.key_bounds(int(low), int(high), count))

    def _reads(
        self, queries: Sequence[str], window: int, progress: Progress, expected: int
    ) -> OrderedReads:
        return OrderedReads(
            self._fetch,
            self._driver_url(),
            queries,
            window=window,
            progress=progress,
            expected=expected,
            read_error=self._read_error,
        )

    def _read_all(self, queries: list[str], progress: Progress, expected: int) -> pa.Table:
        """Each partition query on its own thread, joined in partition order so the staged
        rows, and their hash, are stable. Progress counts rows against the catalog's
        estimate (``expected``)."""
        with self._reads(queries, len(queries), progress, expected) as reads:
            parts = reads.all()
        progress(1.0)
        return parts[0] if len(parts) == 1 else pa.concat_tables(parts)

    def _cast(self, table: pa.Table, catalog: Catalog) -> pa.Table:
        columns = []
        for column, values in zip(catalog.columns, table.columns, strict=True):
            target = self._target_type(column)
            if column.kind == "decimal" and pa.types.is_string(values.type):
                values = decimal_from_text(values, target)
            elif column.kind == "decimal" and pa.types.is_integer(values.type):
                assert target is not None
                values = decimal_from_unscaled(values, target)
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
