"""URI → connector. Routes exactly as seed 002's "Supported Data Sources" table, plus MySQL,
XLSX and JSON; anything else fails naming the closest valid scheme or extension."""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

from kalla.connectors.base import Connector, ProgressFn, StagedSource, TableWriter
from kalla.connectors.uri import redact_uri, resolve_env
from kalla.errors import SourceError
from kalla.suggest import closest

DATABASE_SCHEMES = ("postgres", "postgresql", "mysql", "mariadb")
SCHEMES = (*DATABASE_SCHEMES, "s3", "file")
CSV_EXTENSIONS = (".csv",)
PARQUET_EXTENSIONS = (".parquet", ".pq")
EXCEL_EXTENSIONS = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods")
JSON_EXTENSIONS = (".json", ".ndjson", ".jsonl")
FILE_EXTENSIONS = (*CSV_EXTENSIONS, *PARQUET_EXTENSIONS, *EXCEL_EXTENSIONS, *JSON_EXTENSIONS)
S3_EXTENSIONS = (*CSV_EXTENSIONS, *PARQUET_EXTENSIONS)

_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")


def stage_source(
    uri: str,
    *,
    alias: str,
    staging_dir: Path | None = None,
    progress: ProgressFn | None = None,
    expected_columns: Sequence[str] | None = None,
    filters: Sequence[Any] = (),
    writer: TableWriter | None = None,
) -> StagedSource:
    """Stage one source as Parquet for the engine (see ``Connector.stage`` for the flow)."""
    connector = connector_for(uri, alias=alias)
    return connector.stage(
        staging_dir,
        progress=progress,
        expected_columns=expected_columns,
        filters=filters,
        writer=writer,
    )


def connector_for(uri: str, *, alias: str) -> Connector:
    """The connector that reads ``uri``; a SourceError naming the closest valid choice if none."""
    match = _SCHEME.match(uri)
    if match is None:
        return _local_file(uri, uri, alias=alias)
    scheme = match.group(1).lower()
    if scheme in ("postgres", "postgresql"):
        from kalla.connectors.postgres import PostgresConnector

        return PostgresConnector(uri, alias=alias)
    if scheme in ("mysql", "mariadb"):
        from kalla.connectors.mysql import MySqlConnector

        return MySqlConnector(uri, alias=alias)
    if scheme == "s3":
        return _s3(uri, alias=alias)
    if scheme == "file":
        parts = urlsplit(uri)
        if parts.netloc not in ("", "localhost"):
            raise SourceError(
                f"source '{alias}': file URIs must name a local path (file:///path), "
                f"not host '{parts.netloc}'"
            )
        path = unquote(parts.path) + (f"?{parts.query}" if parts.query else "")
        return _local_file(uri, path, alias=alias)
    best = closest(scheme, SCHEMES)
    hint = f"; did you mean '{best}://'?" if best else ""
    raise SourceError(
        f"source '{alias}': unsupported URI scheme '{scheme}://' in {redact_uri(uri)}{hint} "
        f"(supported: {', '.join(s + '://' for s in SCHEMES)} or a local file path)"
    )


def _extension(name: str) -> str:
    return Path(name).suffix.lower()


def _unknown_extension(alias: str, shown: str, ext: str, valid: Sequence[str]) -> SourceError:
    best = closest(ext, valid) if ext else None
    hint = f"; did you mean '{best}'?" if best else ""
    what = f"file type '{ext}'" if ext else "a file without an extension"
    return SourceError(
        f"source '{alias}': cannot read {shown}: unsupported {what}{hint} "
        f"(supported: {', '.join(valid)})"
    )


def _local_file(uri: str, raw_path: str, *, alias: str) -> Connector:
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
    ext = _extension(path.name)
    if ext not in EXCEL_EXTENSIONS:
        _refuse_options(alias, options, ())
    if ext in CSV_EXTENSIONS:
        from kalla.connectors.csv import CsvConnector

        return CsvConnector(uri, alias=alias, path=path)
    if ext in EXCEL_EXTENSIONS:
        from kalla.connectors.excel import ExcelConnector

        sheet = options.pop("sheet", [None])[-1]
        _refuse_options(alias, options, ("sheet",))
        return ExcelConnector(uri, alias=alias, path=path, sheet=sheet)
    if ext in JSON_EXTENSIONS:
        from kalla.connectors.json import JsonConnector

        return JsonConnector(uri, alias=alias, path=path)

    from kalla.connectors.parquet import ParquetConnector, is_parquet_file

    # Seed 002: a local path is Parquet by default, whatever its name, if it is Parquet.
    if ext in PARQUET_EXTENSIONS or is_parquet_file(path):
        return ParquetConnector(uri, alias=alias, path=path)
    raise _unknown_extension(alias, str(path), ext, FILE_EXTENSIONS)


def _refuse_options(alias: str, options: dict[str, list[str]], valid: Sequence[str]) -> None:
    for name in options:
        hint = f"; did you mean '{closest(name, valid)}'?" if closest(name, valid) else ""
        raise SourceError(
            f"source '{alias}': unknown option '{name}' in the URI{hint} "
            f"(options: {', '.join(valid) or 'none for this file type'})"
        )


def _s3(uri: str, *, alias: str) -> Connector:
    parts = urlsplit(uri)
    ext = _extension(parts.path)
    if not parts.netloc or not parts.path.strip("/"):
        raise SourceError(
            f"source '{alias}': S3 URIs look like s3://bucket/path/file.csv, not {redact_uri(uri)}"
        )
    if ext not in S3_EXTENSIONS:
        raise _unknown_extension(alias, redact_uri(uri), ext, S3_EXTENSIONS)
    from kalla.connectors.s3 import S3Connector

    return S3Connector(uri, alias=alias)
