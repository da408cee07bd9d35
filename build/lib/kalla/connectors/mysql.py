"""MySQL and MariaDB tables: ``mysql://user:pass@host:3306/db?table=name``.

Catalog and filter literals through PyMySQL (its escaping follows the server's SQL mode);
data through connectorx (it releases the GIL while it reads), in parallel ranges of an
integer key (``?partition_on=`` or the integer primary key).
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
from kalla.errors import SourceError, SourceUnavailableError

_KINDS = {
    "bigint unsigned": "int",
    "tinyint": "int",
    "smallint": "int",
    "mediumint": "int",
    "int": "int",
    "bigint": "int",
    "decimal": "decimal",
    "float": "float",
    "double": "float",
    "char": "text",
    "varchar": "text",
    "tinytext": "text",
    "text": "text",
    "mediumtext": "text",
    "longtext": "text",
    "enum": "text",
    "set": "text",
    "date": "date",
    "datetime": "timestamp",
    "timestamp": "timestamp",
    "year": "int",
    "json": "other",
    "time": "other",
    "binary": "other",
    "varbinary": "other",
    "tinyblob": "other",
    "blob": "other",
    "mediumblob": "other",
    "longblob": "other",
}

# MySQL error codes (client and server) that say why a connection failed.
_CANNOT_CONNECT = {2002, 2003, 2005, 2006, 2013}
_ACCESS_DENIED = {1045, 1698}
_UNKNOWN_DATABASE = {1049, 1044}


class MySqlConnector(SqlTableConnector):
    kind = "mysql"
    default_port = 3306
    url_scheme = "mysql"
    native_types = frozenset(_KINDS) - {"bigint unsigned"}  # beyond int64: text, then uint64

    def _connect(self, info: ConnectionInfo) -> Any:
        pymysql = self.driver("pymysql")
        try:
            return pymysql.connect(
                host=info.host,
                port=info.port,
                user=info.user or "",
                password=info.password or "",
                database=info.database,
                connect_timeout=10,
                charset="utf8mb4",
                autocommit=True,
            )
        except pymysql.err.MySQLError as exc:
            raise self._connect_error(exc) from None

    def _fetch(
        self, url: str, query: str, rows_read: Callable[[int], None], running: Interrupts
    ) -> pa.Table:
        cx = self.driver("connectorx")  # it cannot stop a query midway: nothing to register
        table = cx.read_sql(url, query, return_type="arrow")
        table = table if isinstance(table, pa.Table) else pa.table(table)
        rows_read(table.num_rows)
        return table

    def _connect_error(self, exc: Any) -> SourceError:
        info = self.info()
        code = exc.args[0] if exc.args and isinstance(exc.args[0], int) else None
        text = self.scrub(str(exc.args[1] if len(exc.args) > 1 else exc))
        if code in _UNKNOWN_DATABASE and "denied" not in text.lower():
            return SourceError(
                f"{self.label}: database '{info.database}' does not exist on {self.where()}"
            )
        if code in _ACCESS_DENIED or code == 1044:
            return SourceUnavailableError(
                f"{self.label}: MySQL at {self.where()} refused the login for user "
                f"'{info.user}' (wrong user or password, or no access to '{info.database}')"
            )
        if code in _CANNOT_CONNECT:
            return SourceUnavailableError(
                f"{self.label}: cannot reach MySQL at {self.where()}: connection refused; "
                "is the server running?"
            )
        return SourceUnavailableError(f"{self.label}: cannot connect to MySQL: {text}")

    def _catalog(self, conn: Any) -> Catalog:
        schema = self.schema_name or self.info().database
        try:
            with conn.cursor() as cursor:
                cursor.execute(
                    "SELECT TABLE_NAME, TABLE_ROWS FROM information_schema.TABLES"
                    " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s",
                    (schema, self.table_name),
                )
                found = cursor.fetchone()
                if found is None:
                    cursor.execute(
                        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = %s",
                        (schema,),
                    )
                    tables = [r[0] for r in cursor.fetchall()]
                    raise self.missing_table(tables, self.table_name)
                table, estimate = found
                cursor.execute(
                    "SELECT COLUMN_NAME, DATA_TYPE, NUMERIC_PRECISION, NUMERIC_SCALE,"
                    " COLUMN_KEY, COLUMN_TYPE FROM information_schema.COLUMNS"
                    " WHERE TABLE_SCHEMA = %s AND TABLE_NAME = %s ORDER BY ORDINAL_POSITION",
                    (schema, table),
                )
                rows = cursor.fetchall()
        except SourceError:
            raise
        except Exception as exc:
            message = f"{self.label}: cannot read the catalog: {self.scrub(str(exc))}"
            raise SourceError(message) from None
        columns = []
        key = []
        for name, data_type, precision, scale, column_key, column_type in rows:
            data_type = str(data_type).lower()
            if "unsigned" in str(column_type).lower() and data_type == "bigint":
                data_type = "bigint unsigned"  # beyond int64: read as text, cast to uint64
            columns.append(
                Column(
                    name=name,
                    data_type=data_type,
                    kind=_KINDS.get(
                        data_type, "int" if data_type == "bigint unsigned" else "other"
                    ),
                    precision=int(precision) if data_type == "decimal" else None,
                    scale=int(scale) if data_type == "decimal" else None,
                )
            )
            if column_key == "PRI":
                key.append(name)
        return Catalog(schema, table, tuple(columns), int(estimate or 0), tuple(key))

    def _literal(self, conn: Any, value: Any) -> str:
        return str(conn.escape(value))

    def quote(self, name: str) -> str:
        return "`" + name.replace("`", "``") + "`"

    def _filter_target(self, column: Column) -> str:
        name = self.quote(column.name)
        if column.kind == "text":
            # MySQL collations ignore case and trailing spaces; the engine compares bytes.
            return f"CAST({name} AS BINARY)"
        return name

    def _text_expr(self, name: str) -> str:
        return f"CAST({name} AS CHAR)"

    def _scaled_expr(self, name: str, scale: int) -> str:
        return f"CAST({name} * {10**scale} AS SIGNED)"

    def _target_type(self, column: Column) -> pa.DataType | None:
        if column.data_type == "bigint unsigned":
            return pa.uint64()
        if column.kind == "timestamp":
            return pa.timestamp("us")
        return super()._target_type(column)
