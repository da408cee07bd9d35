"""A database URI's parts: which table, how to partition it, and how to connect.

``postgres://user:pass@host:5432/db?table=[schema.]name&partitions=4&partition_on=id``; the
password may be given as ``?password=`` instead (as libpq allows). The
URI is parsed first and each part's ``${ENV}`` references resolved after, so a secret may
hold ``@`` or ``/``; what holds the password (``ConnectionInfo``, ``driver_url``) is never
shown. Unknown options were refused by the registry before a connector is made.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from urllib.parse import parse_qs, quote, unquote, urlsplit

from kalla.errors import SourceError
from kalla.secrets import MASK, resolve_env


@dataclass(frozen=True)
class TableOptions:
    """What the URI's query says about the table and its partitions."""

    schema_name: str  # "" for the connection's default schema
    table_name: str
    partitions: str  # ?partitions= as written ("" when absent)
    partition_on: str | None


def table_options(uri: str, *, label: str) -> TableOptions:
    parts = urlsplit(uri)
    query = parse_qs(parts.query, keep_blank_values=True)
    table = query.get("table", [""])[-1].strip()
    if not table:
        raise SourceError(
            f"{label}: the URI needs ?table=<name> (e.g. "
            f"{parts.scheme}://user:***@host/db?table=invoices)"
        )
    schema_name, _, table_name = table.rpartition(".")
    return TableOptions(
        schema_name=schema_name,
        table_name=table_name,
        partitions=query.get("partitions", [""])[-1],
        partition_on=query.get("partition_on", [""])[-1] or None,
    )


@dataclass(frozen=True)
class ConnectionInfo:
    """The URI's parts with ``${ENV}`` references resolved. Holds the password: never show."""

    user: str | None
    password: str | None
    host: str
    port: int
    database: str
    options: dict[str, str]


def connection_info(
    uri: str, *, alias: str, label: str, default_port: int, driver_options: Sequence[str]
) -> ConnectionInfo:
    """Parse first, then resolve ``${ENV}`` in each part: a secret may hold ``@`` or ``/``."""
    parts = urlsplit(uri)

    def resolved(text: str) -> str:
        return resolve_env(unquote(text), alias=alias)

    try:
        port = parts.port or default_port
    except ValueError as exc:
        raise SourceError(f"{label}: the port is not a number") from exc
    database = resolved(parts.path.lstrip("/"))
    if not database:
        raise SourceError(f"{label}: the URI names no database (…/<db>?table=…)")
    query = parse_qs(parts.query, keep_blank_values=True)
    password = parts.password if parts.password is not None else query.get("password", [None])[-1]
    if password == MASK:
        raise SourceError(
            f"{label}: the password is *** (a redacted URI): write it as ${{ENV_NAME}} and "
            "set ENV_NAME where the source is read"
        )
    return ConnectionInfo(
        user=resolved(parts.username) if parts.username else None,
        password=resolved(password) if password is not None else None,
        host=resolved(raw_host(parts.netloc) or "localhost"),
        port=port,
        database=database,
        options={
            k: resolve_env(v[-1], alias=alias) for k, v in query.items() if k in driver_options
        },
    )


def driver_url(scheme: str, info: ConnectionInfo) -> str:
    """The URL an Arrow reader connects with. Holds the password: never show."""
    auth = ""
    if info.user is not None:
        auth = quote(info.user, safe="")
        if info.password:
            auth += ":" + quote(info.password, safe="")
        auth += "@"
    extra = "&".join(f"{k}={quote(v, safe='')}" for k, v in info.options.items())
    host = f"[{info.host}]" if ":" in info.host else info.host  # an IPv6 address
    return f"{scheme}://{auth}{host}:{info.port}/{quote(info.database, safe='')}" + (
        f"?{extra}" if extra else ""
    )


def raw_host(netloc: str) -> str:
    """The host as written (``urlsplit().hostname`` lower-cases ``${PG_HOST}``)."""
    host = netloc.rpartition("@")[2]
    if host.startswith("["):
        return host[1 : host.find("]")]
    return host.partition(":")[0]


def scrub_password(text: str, password: str | None) -> str:
    """``text`` (a driver's message) with the password, in each of its spellings, masked."""
    if password:
        for form in {password, quote(password, safe=""), quote(password)}:
            text = text.replace(form, MASK)
    return text
