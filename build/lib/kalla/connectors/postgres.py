"""PostgreSQL tables: ``postgres://user:pass@host:5432/db?table=[schema.]name``.

Catalog and filter literals through psycopg; data through the ADBC PostgreSQL driver (binary
COPY decoded in C and streamed: here ~1.4x connectorx's read speed at half its client CPU),
in parallel ranges of heap pages (``ctid``, a TID range scan: each partition reads only its
own pages, whatever the key), or of an integer column named by ``?partition_on=`` or the
integer primary key.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pyarrow as pa

from kalla.connectors.sql import (
    Catalog,
    Column,
    ConnectionInfo,
    Interrupts,
    SqlTableConnector,
)
from kalla.connectors.sql.partitions import page_ranges
from kalla.errors import SourceError, SourceUnavailableError

# data_type (information_schema) → kind; types not listed are read as text.
_KINDS = {
    "smallint": "int",
    "integer": "int",
    "bigint": "int",
    "numeric": "decimal",
    "money": "decimal",  # read through numeric: its text is locale-formatted ('$1,234.56')
    "real": "float",
    "double precision": "float",
    "text": "text",
    "character varying": "text",
    "character": "text",
    "uuid": "text",
    "date": "date",
    "timestamp without time zone": "timestamp",
    "timestamp with time zone": "timestamp",
    "boolean": "bool",
    "json": "other",
    "jsonb": "other",
    "bytea": "other",
}

# Types ADBC reads into plain Arrow types; the rest (uuid, json, char(n)…) are read as text.
_NATIVE = frozenset(
    {
        "smallint",
        "integer",
        "bigint",
        "real",
        "double precision",
        "text",
        "character varying",
        "date",
        "timestamp without time zone",
        "timestamp with time zone",
        "boolean",
        "bytea",
    }
)


def _named(url: str) -> str:
    """The reader's URL with ``application_name=kalla``, as psycopg's connection has, for DBAs."""
    return url + ("&" if "?" in url else "?") + "application_name=kalla"


# TID range scans (PostgreSQL 14+) make ctid partitions read only their own pages.
_TID_RANGE_SCAN_VERSION = 140000


class PostgresConnector(SqlTableConnector):
    kind = "postgres"
    default_port = 5432
    url_scheme = "postgresql"
    driver_options = ("sslmode",)
    native_types = _NATIVE  # char(n) goes through ::text, which drops its blank padding
    native_decimals = False  # ADBC hands numerics over as text: read them as text outright

    def _connect(self, info: ConnectionInfo) -> Any:
        psycopg = self.driver("psycopg")
        try:
            conn = psycopg.connect(
                host=info.host,
                port=info.port,
                user=info.user,
                password=info.password,
                dbname=info.database,
                connect_timeout=10,
                autocommit=True,
                application_name="kalla",
                **info.options,
            )
        except psycopg.OperationalError as exc:
            raise self._connect_error(exc) from None
        conn.read_only = True
        return conn

    def _fetch(
        self, url: str, query: str, rows_read: Callable[[int], None], running: Interrupts
    ) -> pa.Table:
        dbapi = self.driver("adbc_driver_postgresql.dbapi")
        with (
            dbapi.connect(_named(url), autocommit=True) as conn,
            conn.cursor() as cursor,
            running.registered(conn.adbc_cancel),  # asks the server to stop the query
        ):
            cursor.execute(query)
            reader = cursor.fetch_record_batch()
            batches = []
            for batch in reader:  # each batch is decoded with the GIL released
                batches.append(batch)
                rows_read(batch.num_rows)
            return pa.Table.from_batches(batches, schema=reader.schema)

    def _connect_error(self, exc: Any) -> SourceError:
        info = self.info()
        text = self.scrub(str(exc)).strip()
        state = getattr(exc, "sqlstate", None)
        lowered = text.lower()
        if state == "3D000" or ("database" in lowered and "does not exist" in lowered):
            return SourceError(
                f"{self.label}: database '{info.database}' does not exist on {self.where()}"
            )
        if (
            state in ("28P01", "28000")
            or "authentication failed" in lowered
            or ("role" in lowered and "does not exist" in lowered)
        ):
            return SourceUnavailableError(
                f"{self.label}: PostgreSQL at {self.where()} refused the login for user "
                f"'{info.user}' (wrong user or password)"
            )
        reason = "connection refused; is the server running?"
        if "timeout" in lowered:
            reason = "connection timed out"
        elif "could not translate host name" in lowered or "name or service" in lowered:
            reason = f"unknown host '{info.host}'"
        elif "refused" not in lowered:
            reason = text.splitlines()[0] if text else "connection failed"
        return SourceUnavailableError(
            f"{self.label}: cannot reach PostgreSQL at {self.where()}: {reason}"
        )

    def _catalog(self, conn: Any) -> Catalog:
        from psycopg import sql

        name = (
            sql.Identifier(self.schema_name, self.table_name)
            if self.schema_name
            else sql.Identifier(self.table_name)
        ).as_string(conn)
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT c.oid, n.nspname, c.relname, c.relkind, c.reltuples::bigint,"
                    " pg_relation_size(c.oid) / current_setting('block_size')::int"
                    " FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace"
                    " WHERE c.oid = to_regclass(%s)",
                    (name,),
                )
                found = cursor.fetchone()
                if found is None:
                    cursor.execute(
                        "SELECT table_schema, table_name FROM information_schema.tables"
                        " WHERE table_schema NOT IN ('pg_catalog', 'information_schema')"
                    )
                    tables = [t if s == "public" else f"{s}.{t}" for s, t in cursor.fetchall()]
                    wanted = f"{self.schema_name}.{self.table_name}".lstrip(".")
                    raise self.missing_table(tables, wanted)
                oid, schema, table, relkind, reltuples, blocks = found
                cursor.execute(
                    "SELECT column_name, data_type, numeric_precision, numeric_scale"
                    " FROM information_schema.columns"
                    " WHERE table_schema = %s AND table_name = %s ORDER BY ordinal_position",
                    (schema, table),
                )
                rows = cursor.fetchall()
                cursor.execute(
                    "SELECT a.attname FROM pg_index i JOIN pg_attribute a"
                    " ON a.attrelid = i.indrelid AND a.attnum = ANY(i.indkey)"
                    " WHERE i.indrelid = %s AND i.indisprimary",
                    (oid,),
                )
                key = tuple(r[0] for r in cursor.fetchall())
        except SourceError:
            raise
        except Exception as exc:
            message = f"{self.label}: cannot read the catalog: {self.scrub(str(exc))}"
            raise SourceError(message) from None
        if not rows:
            raise SourceError(f"{self.label}: no readable columns in {schema}.{table}")
        columns = tuple(
            Column(
                name=column,
                data_type=data_type,
                kind=_KINDS.get(data_type, "other"),
                precision=precision if data_type == "numeric" else None,
                scale=scale if data_type == "numeric" else None,
            )
            for column, data_type, precision, scale in rows
        )
        physical = (
            int(blocks or 0)
            if relkind in ("r", "m") and conn.info.server_version >= _TID_RANGE_SCAN_VERSION
            else 0
        )
        estimate = int(reltuples) if reltuples is not None and reltuples >= 0 else physical * 50
        return Catalog(schema, table, columns, estimate, key, physical)

    def _literal(self, conn: Any, value: Any) -> str:
        from psycopg import sql

        return str(sql.Literal(value).as_string(conn))

    def quote(self, name: str) -> str:
        return '"' + name.replace('"', '""') + '"'

    def _filter_target(self, column: Column) -> str:
        name = self.quote(column.name)
        if column.data_type in ("text", "character varying", "character"):
            return f'{name} COLLATE "C"'  # byte order for < and >, as the engine orders text
        if column.data_type == "money":
            return f"{name}::numeric"  # money compares with money only
        return name

    def _select_expr(self, column: Column) -> str:
        if column.data_type == "money":
            return f"{self.quote(column.name)}::numeric::text"
        return super()._select_expr(column)

    def _text_expr(self, name: str) -> str:
        return f"{name}::text"

    def _scaled_expr(self, name: str, scale: int) -> str:
        return f"({name} * {10**scale})::int8"

    def _target_type(self, column: Column) -> pa.DataType | None:
        if column.data_type == "timestamp with time zone":
            return pa.timestamp("us", tz="UTC")
        if column.data_type == "timestamp without time zone":
            return pa.timestamp("us")
        return super()._target_type(column)

    def _physical_ranges(self, catalog: Catalog, count: int) -> list[str] | None:
        pages = page_ranges(catalog.physical_blocks, count)
        if pages is None:
            return None
        ranges = []
        for start, end in pages:
            parts = []
            if start is not None:
                parts.append(f"ctid >= '({start},0)'::tid")
            if end is not None:
                parts.append(f"ctid < '({end},0)'::tid")
            ranges.append(" AND ".join(parts))
        return ranges
