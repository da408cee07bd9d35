"""Parsing a user's file for a service, in a child process (``child.run_in_child``): a file
built to crash or exhaust its reader fails that call with an error, never the service."""

from __future__ import annotations

from typing import Any

import pyarrow as pa

from kalla.connectors import connector_for
from kalla.connectors.format import FileFormat, Reading
from kalla.connectors.registry import preview_source
from kalla.runner.child import run_in_child
from kalla.settings import Settings


def _columns(
    channel: Any, uri: str, alias: str, settings: Settings, fmt: FileFormat | None
) -> list[str]:
    reading = Reading(format=fmt) if fmt is not None else None
    return connector_for(uri, alias=alias, settings=settings, reading=reading).columns()


def source_columns(
    uri: str, *, alias: str, settings: Settings, what: str, fmt: FileFormat | None = None
) -> list[str]:
    """The column names of a source, read in a child capped like a job's process, with the
    recipe's ``format`` for it (lines to skip, a sheet).

    ``what`` names the reader in an error ("reading the upload"). A KallaError of the
    connector is raised as it is; a crash or the memory cap raise one naming the cause.
    """
    columns: list[str] = run_in_child(
        _columns, uri, alias, settings, fmt, settings=settings, what=what
    )
    return columns


def _preview(channel: Any, uri: str, alias: str, settings: Settings, rows: int) -> pa.Table:
    return preview_source(uri, alias=alias, settings=settings, rows=rows).table


def source_preview(uri: str, *, alias: str, settings: Settings, rows: int, what: str) -> pa.Table:
    """The first ``rows`` rows of a source through the staging flow, read in a child."""
    table: pa.Table = run_in_child(
        _preview, uri, alias, settings, rows, settings=settings, what=what
    )
    return table
