"""Local CSV files: RFC 4180 text read by pyarrow (multithreaded), typed by ``csv_types``.

Reading rules: UTF-8 with or without BOM, CRLF or LF, quoted fields with embedded commas,
doubled quotes and newlines. An empty field is NULL for every type, quoted (``""``) or
not: a blank reference is "no value", never an empty string.
"""

from __future__ import annotations

import io
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.csv as pacsv

from kalla.connectors.base import FileConnector, Filter, Progress, check_unique_columns
from kalla.connectors.csv_types import infer_table
from kalla.errors import SourceError

_BLOCK = 4 << 20  # bytes per parse block; big blocks keep both cores busy
_PARSE = pacsv.ParseOptions(newlines_in_values=True)


class CsvConnector(FileConnector):
    kind = "csv"
    _names: list[str] | None = None

    def columns(self) -> list[str]:
        if self._names is None:
            self._names = read_header(self.path, label=self.label)
            check_unique_columns(self._names, alias=self.alias, uri=self.shown)
        return self._names

    def read(self, progress: Progress, filters: Sequence[Filter] = ()) -> pa.Table:
        names = self.columns()
        return read_csv_typed(self.path, names=names, label=self.label, progress=progress)


def read_header(path: Path, *, label: str) -> list[str]:
    """Column names from the header row, read without parsing the rest of the file."""
    with open(path, "rb") as handle:
        head = handle.read(4)
    if not head:
        raise SourceError(f"{label}: the file is empty (a CSV needs at least a header row)")
    if head.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise SourceError(f"{label}: the file is UTF-16 encoded; save it as UTF-8 CSV")
    try:
        reader = pacsv.open_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=_BLOCK, use_threads=False),
            parse_options=_PARSE,
        )
    except pa.ArrowInvalid as exc:
        raise _csv_error(path, label, exc) from exc
    names = list(reader.schema.names)
    reader.close()
    return names


def read_csv_typed(
    path: Path, *, names: list[str], label: str, progress: Progress | None = None
) -> pa.Table:
    """The whole file as a typed Arrow table (see ``csv_types`` for the typing rules)."""
    size = max(path.stat().st_size, 1)
    with open(path, "rb") as raw:
        source: io.RawIOBase | io.BufferedReader = (
            _CountingReader(raw, size, progress) if progress else raw
        )
        try:
            table = pacsv.read_csv(
                source,
                read_options=pacsv.ReadOptions(block_size=_BLOCK),
                parse_options=_PARSE,
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.string() for name in names},
                    null_values=[""],
                    strings_can_be_null=True,
                    quoted_strings_can_be_null=True,
                ),
            )
        except pa.ArrowInvalid as exc:
            raise _csv_error(path, label, exc, names=names) from exc
    if progress:
        progress(0.8)
    typed = infer_table(table)
    if progress:
        progress(1.0)
    return typed


class _CountingReader(io.RawIOBase):
    """A file wrapper that reports how far pyarrow has read (bytes), for progress."""

    def __init__(self, raw: io.BufferedReader, size: int, progress: Progress) -> None:
        self._raw = raw
        self._size = size
        self._progress = progress
        self._done = 0

    def readable(self) -> bool:
        return True

    def read(self, n: int = -1) -> bytes:
        data = self._raw.read(n)
        self._done += len(data)
        self._progress(0.8 * self._done / self._size)
        return data

    def readinto(self, buffer: Any) -> int:
        count = self._raw.readinto(buffer)
        self._done += count or 0
        self._progress(0.8 * self._done / self._size)
        return count or 0


_ROW = re.compile(r"Row #(\d+): ")
_COLUMN = re.compile(r"In CSV column #(\d+): ")


def _csv_error(
    path: Path, label: str, exc: pa.ArrowInvalid, *, names: list[str] | None = None
) -> SourceError:
    """A SourceError naming the file and, where it can be found, the row and column."""
    text = str(exc)
    if text.startswith("Empty CSV file"):
        return SourceError(f"{label}: the file is empty (a CSV needs at least a header row)")
    if "CSV parse error" in text:
        where = _locate_parse_error(path, text, names)
        return SourceError(f"{label}: malformed CSV: {where}")
    column = _COLUMN.search(text)
    if column and "invalid UTF8" in text and names is not None:
        index = int(column.group(1))
        row = _first_invalid_utf8_row(path, names, index)
        where = f"row {row} (counting the header as row 1)" if row else "a row"
        return SourceError(
            f"{label}: column '{names[index]}' holds text that is not valid UTF-8 at {where}; "
            "save the file as UTF-8"
        )
    return SourceError(f"{label}: cannot read CSV: {text}")


def _locate_parse_error(path: Path, text: str, names: list[str] | None) -> str:
    """Row numbers are known only when reading on one thread: re-read so to find the row."""
    message = text.split("CSV parse error: ", 1)[-1]
    if _ROW.search(message) is None:
        try:
            pacsv.read_csv(
                path,
                read_options=pacsv.ReadOptions(block_size=_BLOCK, use_threads=False),
                parse_options=_PARSE,
                convert_options=pacsv.ConvertOptions(
                    column_types={name: pa.binary() for name in names or ()},
                    include_columns=list(names or ())[:1],
                ),
            )
        except pa.ArrowInvalid as again:
            message = str(again).split("CSV parse error: ", 1)[-1]
    row = _ROW.search(message)
    detail = _ROW.sub("", message)
    detail = re.sub(r"^Expected (\d+) columns, got (\d+)", r"expected \1 fields, found \2", detail)
    if len(detail) > 200:
        detail = detail[:200] + "…"
    if row:
        return f"row {row.group(1)} (counting the header as row 1): {detail}"
    return detail


def _first_invalid_utf8_row(path: Path, names: list[str], index: int) -> int | None:
    """Header-relative row of the first value in column ``index`` that is not UTF-8."""
    try:
        table = pacsv.read_csv(
            path,
            read_options=pacsv.ReadOptions(block_size=_BLOCK),
            parse_options=_PARSE,
            convert_options=pacsv.ConvertOptions(
                column_types={names[index]: pa.binary()}, include_columns=[names[index]]
            ),
        )
    except pa.ArrowInvalid:
        return None
    offset = 0
    for chunk in table.column(0).chunks:
        try:
            chunk.cast(pa.string())  # fast check; only the failing chunk is walked in Python
        except pa.ArrowInvalid:
            for i, value in enumerate(chunk.to_pylist()):
                try:
                    if value is not None:
                        value.decode("utf-8")
                except UnicodeDecodeError:
                    return offset + i + 2
        offset += len(chunk)
    return None
