"""Every source type, declared once (``KINDS``), and the routing that reads it.

A ``SourceKind`` is what a source type means to Kalla: its name (``csv``, ``postgres``), the
recipe ``type`` that names it (``file`` for every kind of local file, uploaded with each run),
the URI schemes and file extensions that route to it, the URI options it takes, the optional
extra that installs its drivers (and the exact pip command), its capabilities, and where its
connector class lives (imported only when a source of that kind is read). Everything else
derives from this table: URI routing (``locate``, ``connector_for``), the recipe validator's
types (``check_recipe_type``), the app's registrable sources and its credential lookup.
Every lookup that fails names the closest valid choice and lists the valid ones.
"""

from __future__ import annotations

import importlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, unquote, urlsplit

from kalla.errors import MissingDependencyError, SourceError
from kalla.extras import EXTRAS, Extra
from kalla.secrets import redact_uri, resolve_env
from kalla.suggest import closest, did_you_mean

if TYPE_CHECKING:
    from kalla.connectors.base import (
        Connector,
        Filter,
        ProgressFn,
        SourcePreview,
        StagedSource,
        TableWriter,
    )
    from kalla.connectors.format import Reading
    from kalla.settings import Settings

FILE_TYPE = "file"
"""The recipe ``type`` of every local file kind: the file is given (uploaded) with each run."""
LOCAL_SCHEMES = ("file",)  # file:///path routes like the path itself
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


@dataclass(frozen=True)
class Capabilities:
    """What a kind's connector can do beyond ``columns`` and ``read`` (mixins in ``base``)."""

    filter_pushdown: bool = False  # SupportsFilterPushdown: filters applied by the source
    partitioned_read: bool = False  # SupportsPartitionedRead: parallel ranges
    preview: bool = False  # SupportsLimitedRead: a preview reads only its rows
    schema_probe: bool = False  # columns() reads a header/footer/catalog, not the data
    secrets_in_uri: bool = False  # its URI may carry a credential (user info, ?password=)


@dataclass(frozen=True)
class SourceKind:
    """One source type."""

    name: str  # also the connector class's ``kind``
    title: str  # how messages name it ("PostgreSQL")
    recipe_type: str  # the recipe's ``sources.*.type``
    connector: str  # "module:Class", imported lazily
    schemes: tuple[str, ...] = ()  # URI schemes; none for local files
    extensions: tuple[str, ...] = ()  # file extensions (lower case, with the dot)
    options: tuple[str, ...] = ()  # URI options (?table=…, ?sheet=…)
    secret_options: tuple[str, ...] = ()  # those of its options that hold a secret
    extra: Extra | None = None
    capabilities: Capabilities = field(default_factory=Capabilities)
    example: str = ""

    @property
    def persistent(self) -> bool:
        """Read from its URI on every run (registrable in the app), not uploaded."""
        return self.recipe_type != FILE_TYPE

    def missing_modules(self) -> list[str]:
        """The driver modules of its extra that cannot be imported here."""
        return self.extra.missing_modules() if self.extra else []

    def missing_message(self) -> str:
        assert self.extra is not None
        return self.extra.message(f"{self.title} sources")

    def require(self) -> None:
        """A MissingDependencyError naming the extra and the pip command, if not installed."""
        if self.missing_modules():
            raise MissingDependencyError(self.missing_message())

    def connector_class(self) -> type[Connector]:
        self.require()
        module, _, name = self.connector.partition(":")
        cls: type[Connector] = getattr(importlib.import_module(module), name)
        return cls


_SQL_OPTIONS = ("table", "partitions", "partition_on", "password")
_SQL_CAPABILITIES = Capabilities(
    filter_pushdown=True, partitioned_read=True, preview=True, schema_probe=True,
    secrets_in_uri=True,
)  # fmt: skip

KINDS: tuple[SourceKind, ...] = (
    SourceKind(
        name="csv",
        title="CSV",
        recipe_type=FILE_TYPE,
        connector="kalla.connectors.csv:CsvConnector",
        extensions=(".csv", ".tsv", ".tab", ".txt"),
        capabilities=Capabilities(schema_probe=True),
        example="payments.csv",
    ),
    SourceKind(
        name="parquet",
        title="Parquet",
        recipe_type=FILE_TYPE,
        connector="kalla.connectors.parquet:ParquetConnector",
        extensions=(".parquet", ".pq"),
        capabilities=Capabilities(preview=True, schema_probe=True),
        example="invoices.parquet",
    ),
    SourceKind(
        name="xlsx",
        title="XLSX",
        recipe_type=FILE_TYPE,
        connector="kalla.connectors.excel:ExcelConnector",
        extensions=(".xlsx", ".xlsm", ".xls", ".xlsb", ".ods"),
        options=("sheet",),
        extra=EXTRAS["xlsx"],
        example="book.xlsx?sheet=February",
    ),
    SourceKind(
        name="json",
        title="JSON",
        recipe_type=FILE_TYPE,
        connector="kalla.connectors.json:JsonConnector",
        extensions=(".json", ".ndjson", ".jsonl"),
        example="payments.ndjson",
    ),
    SourceKind(
        name="postgres",
        title="PostgreSQL",
        recipe_type="postgres",
        connector="kalla.connectors.postgres:PostgresConnector",
        schemes=("postgres", "postgresql"),
        options=(*_SQL_OPTIONS, "sslmode"),
        secret_options=("password",),
        extra=EXTRAS["postgres"],
        capabilities=_SQL_CAPABILITIES,
        example="postgres://app:${PGPASSWORD}@db:5432/ledger?table=invoices",
    ),
    SourceKind(
        name="mysql",
        title="MySQL",
        recipe_type="mysql",
        connector="kalla.connectors.mysql:MySqlConnector",
        schemes=("mysql", "mariadb"),
        options=_SQL_OPTIONS,
        secret_options=("password",),
        extra=EXTRAS["mysql"],
        capabilities=_SQL_CAPABILITIES,
        example="mysql://app:${MYSQL_PASSWORD}@db:3306/shop?table=orders",
    ),
    SourceKind(
        name="s3",
        title="S3",
        recipe_type="s3",
        connector="kalla.connectors.s3:S3Connector",
        schemes=("s3",),
        extensions=(".csv", ".tsv", ".tab", ".txt", ".parquet", ".pq"),
        extra=EXTRAS["s3"],
        capabilities=Capabilities(secrets_in_uri=True),
        example="s3://bucket/exports/payments.csv",
    ),
)

_BY_NAME = {kind.name: kind for kind in KINDS}
_BY_SCHEME = {scheme: kind for kind in KINDS for scheme in kind.schemes}
FILE_KINDS = tuple(kind for kind in KINDS if not kind.persistent)
FILE_EXTENSIONS = tuple(ext for kind in FILE_KINDS for ext in kind.extensions)
SCHEMES = (*_BY_SCHEME, *LOCAL_SCHEMES)
RECIPE_TYPES = tuple(dict.fromkeys(kind.recipe_type for kind in KINDS))
PERSISTENT_KINDS = tuple(kind for kind in KINDS if kind.persistent)


# ---- lookups ----------------------------------------------------------------------------------


def kind_named(name: str) -> SourceKind:
    """The kind called ``name``; a SourceError naming the closest one if there is none."""
    found = _BY_NAME.get(name)
    if found is None:
        raise SourceError(
            f"unknown source kind '{name}'{did_you_mean(name, _BY_NAME)} "
            f"(kinds: {', '.join(_BY_NAME)})"
        )
    return found


def kinds_of_type(recipe_type: str) -> tuple[SourceKind, ...]:
    """The kinds a recipe ``type`` covers (``file``: every local file kind)."""
    return tuple(kind for kind in KINDS if kind.recipe_type == recipe_type)


def check_recipe_type(value: str) -> str:
    """``value`` if it is a recipe source ``type`` Kalla has; else a ValueError with the
    closest type and the valid ones (the recipe validator lists it among its problems)."""
    if value not in RECIPE_TYPES:
        raise ValueError(
            f"unknown source type '{value}'{did_you_mean(value, RECIPE_TYPES)}; "
            f"valid types: {', '.join(RECIPE_TYPES)}"
        )
    return value


def scheme_of(uri: str) -> str | None:
    """The URI's scheme in lower case, or None for a plain path."""
    match = _SCHEME.match(uri)
    return match.group(1).lower() if match else None


def kind_for_scheme(scheme: str, *, alias: str, uri: str) -> SourceKind:
    """The kind ``scheme://`` routes to; a SourceError naming the closest scheme if none."""
    found = _BY_SCHEME.get(scheme)
    if found is None:
        best = closest(scheme, SCHEMES)
        hint = f"; did you mean '{best}://'?" if best else ""
        raise SourceError(
            f"source '{alias}': unsupported URI scheme '{scheme}://' in {redact_uri(uri)}{hint} "
            f"(supported: {', '.join(s + '://' for s in SCHEMES)} or a local file path)"
        )
    return found


def kind_for_extension(
    ext: str, *, alias: str, shown: str, kinds: Sequence[SourceKind] = FILE_KINDS
) -> SourceKind:
    """The kind among ``kinds`` that reads ``ext``; a SourceError naming the closest one."""
    for kind in kinds:
        if ext in kind.extensions:
            return kind
    valid = [e for kind in kinds for e in kind.extensions]
    best = closest(ext, valid) if ext else None
    hint = f"; did you mean '{best}'?" if best else ""
    what = f"file type '{ext}'" if ext else "a file without an extension"
    raise SourceError(
        f"source '{alias}': cannot read {shown}: unsupported {what}{hint} "
        f"(supported: {', '.join(valid)})"
    )


def same_server(uri: str) -> tuple[str, str, int | None, str] | None:
    """``(kind, host, port, user)``: which registered source can lend ``uri`` its secret. The
    kind, not the scheme, so ``postgresql://`` and ``postgres://`` name one server; None when
    the URI names no host or its kind carries no secrets."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    kind = _BY_SCHEME.get(parts.scheme.lower())
    if kind is None or not kind.capabilities.secrets_in_uri or not parts.hostname:
        return None
    return kind.name, parts.hostname.lower(), port, parts.username or ""


# ---- routing ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Location:
    """A URI routed to its kind: what ``Connector.open`` is given."""

    uri: str  # as written: may hold ${ENV} references or secrets, never show it
    alias: str
    kind: SourceKind
    path: Path | None = None  # a local file, ${ENV} resolved
    options: Mapping[str, str] = field(default_factory=dict)


def locate(uri: str, *, alias: str) -> Location:
    """Route ``uri`` to its kind, checking what can be checked without reading it (the
    scheme or extension, the options, that a local file exists). Resolves no secret."""
    scheme = scheme_of(uri)
    if scheme is None:
        return _local_file(uri, uri, alias=alias)
    if scheme in LOCAL_SCHEMES:
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise SourceError(
                f"source '{alias}': file URIs must name a local path (file:///path), "
                f"not host '{parts.netloc}'"
            )
        path = unquote(parts.path) + (f"?{parts.query}" if parts.query else "")
        return _local_file(uri, path, alias=alias)
    kind = kind_for_scheme(scheme, alias=alias, uri=uri)
    parts = urlsplit(uri)
    if kind.extensions:  # an object store: the object's extension says how to read it
        if not parts.netloc or not parts.path.strip("/"):
            raise SourceError(
                f"source '{alias}': {kind.title} URIs look like {kind.example}, not "
                f"{redact_uri(uri)}"
            )
        ext = Path(parts.path).suffix.lower()
        kind_for_extension(ext, alias=alias, shown=redact_uri(uri), kinds=(kind,))
    options = parse_qs(parts.query, keep_blank_values=True)
    _check_options(kind, options, alias=alias, shown=redact_uri(uri))
    return Location(uri, alias, kind, options={k: v[-1] for k, v in options.items()})


def _local_file(uri: str, raw_path: str, *, alias: str) -> Location:
    text = resolve_env(raw_path, alias=alias) if "${" in raw_path else raw_path
    options: dict[str, list[str]] = {}
    if "?" in text and not Path(text).exists():
        text, _, query = text.partition("?")  # e.g. book.xlsx?sheet=February
        options = parse_qs(query, keep_blank_values=True)
    path = Path(text).expanduser()
    if not path.exists():
        raise SourceError(f"file not found: {path} (source '{alias}')")
    if path.is_dir():
        raise SourceError(f"source '{alias}': {path} is a directory, not a file")
    ext = path.suffix.lower()
    if ext in FILE_EXTENSIONS:
        kind = kind_for_extension(ext, alias=alias, shown=str(path))
    elif _is_parquet_file(path):  # seed 002: a local path is Parquet by default
        kind = _BY_NAME["parquet"]
    else:
        kind_for_extension(ext, alias=alias, shown=str(path))  # raises, naming the closest
        raise AssertionError("unreachable")
    _check_options(kind, options, alias=alias, shown=str(path))
    return Location(uri, alias, kind, path=path, options={k: v[-1] for k, v in options.items()})


def _is_parquet_file(path: Path) -> bool:
    from kalla.connectors.parquet import is_parquet_file

    return is_parquet_file(path)


def _check_options(kind: SourceKind, options: Mapping[str, Any], *, alias: str, shown: str) -> None:
    for name in options:
        if name not in kind.options:
            valid = ", ".join(kind.options) or f"none for {kind.title} sources"
            raise SourceError(
                f"source '{alias}' ({shown}): unknown URI option '{name}'"
                f"{did_you_mean(name, kind.options)} (options: {valid})"
            )


def connector_for(
    uri: str, *, alias: str, settings: Settings, reading: Reading | None = None
) -> Connector:
    """The connector that reads ``uri``: a SourceError naming the closest valid scheme,
    extension or option if there is none, a MissingDependencyError naming the extra (and
    the pip command) if its drivers are not installed. ``reading`` carries the recipe's
    ``format`` for the source and its key columns (``connectors.format``)."""
    location = locate(uri, alias=alias)
    if reading is not None and not reading.format.is_default and not _reads_files(location.kind):
        raise SourceError(
            f"source '{alias}': a format applies to files; {location.kind.title} sources "
            "have types of their own"
        )
    connector = location.kind.connector_class().open(location, settings=settings)
    if reading is not None:
        connector.reading = reading
    return connector


def _reads_files(kind: SourceKind) -> bool:
    return not kind.persistent or bool(kind.extensions)  # a local file, or an object store


def stage_source(
    uri: str,
    *,
    alias: str,
    settings: Settings,
    staging_dir: Path | None = None,
    progress: ProgressFn | None = None,
    expected_columns: Sequence[str] | None = None,
    filters: Sequence[Filter] = (),
    writer: TableWriter | None = None,
    reading: Reading | None = None,
) -> StagedSource:
    """Stage one source as Parquet for the engine (see ``Connector.stage`` for the flow);
    ``writer`` writes the staged file (the pipeline passes its executor's); ``reading``
    is the recipe's format for it and its key columns."""
    connector = connector_for(uri, alias=alias, settings=settings, reading=reading)
    return connector.stage(
        staging_dir,
        progress=progress,
        expected_columns=expected_columns,
        filters=filters,
        writer=writer,
    )


def preview_source(
    uri: str,
    *,
    alias: str,
    settings: Settings,
    rows: int,
    staging_dir: Path | None = None,
    expected_columns: Sequence[str] | None = None,
    filters: Sequence[Filter] = (),
    reading: Reading | None = None,
) -> SourcePreview:
    """The first ``rows`` rows of a source, through the staging flow (``Connector.preview``)."""
    connector = connector_for(uri, alias=alias, settings=settings, reading=reading)
    return connector.preview(
        rows, staging_dir=staging_dir, expected_columns=expected_columns, filters=filters
    )
