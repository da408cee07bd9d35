"""Delimited text files (``.csv``, ``.tsv``, ``.txt``): read by pyarrow (multithreaded) as
text, typed by ``csv_types``.

Reading rules: the encoding (``connectors.encoding``) and the dialect — delimiter, quoting,
lines above the header (``connectors.dialect``) — come from the content unless the source's
``format`` names them; CRLF or LF; quoted fields with embedded delimiters, doubled quotes
and newlines. An empty field is NULL for every type, quoted (``""``) or not: a blank
reference is "no value", never an empty string.

Refused with a named error, before or while reading: more columns than
``KALLA_MAX_COLUMNS`` (read from the header alone); a quoted field that never closes (it
would swallow the rows after it), with the line it opens on; a field, or a row, longer than
``KALLA_MAX_FIELD_SIZE`` (64 MiB by default; anything up to it reads); text that is not in
the file's encoding, with its row; a row with more or fewer fields than the header.
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv

from kalla.connectors import dialect as dialects
from kalla.connectors.base import (
    FileConnector,
    Filter,
    Progress,
    check_column_count,
    check_unique_columns,
)
from kalla.connectors.csv_types import TypingRules, drop_empty_rows, infer_table
from kalla.connectors.encoding import HEAD, Encoding, TextSource, decode_head, detect, read_head
from kalla.connectors.format import FileFormat
from kalla.errors import SourceError
from kalla.settings import Settings, format_size

_BLOCK = 4 << 20  # bytes per parse block; big blocks keep both cores busy
_TAB_SUFFIXES = (".tsv", ".tab")
TEXT_SUFFIXES = (".csv", ".txt", *_TAB_SUFFIXES)


@dataclass(frozen=True)
class Layout:
    """What the head of a file says about reading it."""

    encoding: Encoding
    dialect: dialects.Dialect
    fields: list[str]  # every header field, trimmed; a blank one as "" (a trailing ";")
    hint: int | None  # the skip_rows that finds a complete header, if one is near

    @property
    def names(self) -> list[str]:
        """The columns: the header's named fields."""
        return [name for name in self.fields if name]

    @property
    def parsed(self) -> list[str]:
        """Names for the parser: a blank field gets a stand-in, to be checked and dropped."""
        return [name or f"\0blank {i + 1}" for i, name in enumerate(self.fields)]

    @property
    def first_row(self) -> int:
        """The 1-based row of the first data row (the header's row + 1)."""
        return self.dialect.header_line + 1

    def row_note(self) -> str:
        if self.dialect.header_line == 1:
            return "counting the header as row 1"
        return "counting the file's first line as row 1"


class CsvConnector(FileConnector):
    kind = "csv"
    _layout: Layout | None = None

    def layout(self) -> Layout:
        if self._layout is None:
            self._layout = read_layout(
                self.path, self.reading.format, label=self.label, settings=self.settings
            )
            check_unique_columns(self._layout.names, alias=self.alias, uri=self.shown)
        return self._layout

    def columns(self) -> list[str]:
        return self.layout().names

    def read(self, progress: Progress, filters: Sequence[Filter] = ()) -> pa.Table:
        layout = self.layout()
        rules = TypingRules.of(
            self.reading,
            label=self.label,
            where=lambda _column, index: f"row {layout.first_row + index}",
        )
        return read_csv_typed(
            self.path, layout, rules=rules, settings=self.settings, progress=progress
        )


def read_layout(path: Path, fmt: FileFormat, *, label: str, settings: Settings) -> Layout:
    """Encoding, dialect and column names from the first MiB; the column count is checked
    here, before anything else is read."""
    head = read_head(path)
    if not head:
        raise SourceError(f"{label}: the file is empty (a CSV needs at least a header row)")
    encoding = detect(head, fmt.encoding)
    text = decode_head(head, encoding)
    complete = len(head) < HEAD
    dialect = dialects.sniff(
        text, fmt, complete=complete, prefer_tab=path.suffix.lower() in _TAB_SUFFIXES
    )
    check_column_count(dialect.width, label=label, settings=settings)
    fields = [name.strip() for name in dialect.header]
    if not any(fields):
        if not text.strip():
            raise SourceError(f"{label}: the file is empty (a CSV needs at least a header row)")
        skipped = f" after skipping {fmt.skip_rows} lines" if fmt.skip_rows else ""
        raise SourceError(f"{label}: no header row{skipped}")
    hint = dialects.header_hint(text, dialect, complete=complete) if "" in fields else None
    return Layout(encoding, dialect, fields, hint)


def _drop_blank_fields(table: pa.Table, layout: Layout, label: str) -> pa.Table:
    """A field without a name and without values (a trailing delimiter on every line) is
    formatting: dropped. One that holds values is refused: they would have no column."""
    with_data = [
        i + 1
        for i, name in enumerate(layout.fields)
        if not name and table.column(i).null_count < table.num_rows
    ]
    if with_data:
        positions = ", ".join(str(i) for i in with_data)
        advice = (
            f"; the header seems to be on line {layout.hint + 1}: set the source's format "
            f'"skip_rows": {layout.hint}'
            if layout.hint is not None
            else "; give every column a header"
        )
        raise SourceError(
            f"{label}: the header (line {layout.dialect.header_line}) has columns without a "
            f"name (position {positions}) that hold values{advice}"
        )
    keep = [i for i, name in enumerate(layout.fields) if name]
    return table.select(keep) if len(keep) < table.num_columns else table


def read_csv_typed(
    path: Path,
    layout: Layout,
    *,
    rules: TypingRules,
    settings: Settings,
    progress: Progress | None = None,
) -> pa.Table:
    """The whole file as a typed Arrow table (see ``csv_types`` for the typing rules)."""
    label = rules.label
    limit = settings.max_field_size
    table, quotes, encoding = _read_text(path, layout, label, limit, progress)
    if quotes % 2 and layout.dialect.quote and not layout.dialect.escape:
        _raise_unterminated(path, layout, encoding, label)
    _check_field_sizes(table, layout, limit, label)
    table = _drop_blank_fields(table, layout, label)
    if progress:
        progress(0.8)
    typed = drop_empty_rows(infer_table(table, rules))
    if progress:
        progress(1.0)
    return typed


def _read_text(
    path: Path, layout: Layout, label: str, limit: int, progress: Progress | None
) -> tuple[pa.Table, int, Encoding]:
    """The file parsed as text: (table, quote characters seen, the encoding it read as);
    retried with larger blocks for long rows, and as Windows-1252 or Latin-1 where the
    bytes say so."""
    encoding = layout.encoding
    block = _BLOCK
    while True:
        try:
            table, quotes = _parse(path, layout, encoding, block, progress)
            return table, quotes, encoding
        except pa.ArrowInvalid as exc:
            text = str(exc)
            if "straddl" in text:
                if block <= limit:
                    block = limit + (1 << 20)  # any row up to the limit fits in a block
                    continue
                _raise_unterminated(path, layout, encoding, label)
                raise SourceError(
                    f"{label}: a row is longer than {format_size(limit)}; fields up to "
                    f"{format_size(limit)} are read (KALLA_MAX_FIELD_SIZE)"
                ) from None
            fallback = encoding.fallback()
            if "UTF8" in text and fallback is not None:
                encoding = fallback  # plain ASCII at the start, Windows-1252 further on
                continue
            if "CSV parse error" in text:
                _raise_unterminated(path, layout, encoding, label)
            raise _csv_error(path, layout, encoding, label, exc) from exc
        except UnicodeDecodeError as exc:
            if encoding.name == "cp1252" and not encoding.given:
                encoding = Encoding("latin-1")
                continue
            raise SourceError(
                f"{label}: the file is not valid {encoding.shown} text (byte "
                f"{exc.object[exc.start : exc.start + 1]!r}); give the source's format its "
                "encoding"
            ) from None


def _options(
    layout: Layout, block: int, *, threads: bool = True, types: pa.DataType | None = None
) -> dict[str, object]:
    d = layout.dialect
    kind = types or pa.string()
    return {
        "read_options": pacsv.ReadOptions(
            block_size=block,
            use_threads=threads,
            column_names=layout.parsed,
            skip_rows=d.header_end,
        ),
        "parse_options": pacsv.ParseOptions(
            delimiter=d.delimiter,
            quote_char=d.quote or False,
            escape_char=d.escape or False,
            double_quote=True,
            newlines_in_values=True,
        ),
        "convert_options": pacsv.ConvertOptions(
            column_types={name: kind for name in layout.parsed},
            null_values=[""],
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    }


def _parse(
    path: Path,
    layout: Layout,
    encoding: Encoding,
    block: int,
    progress: Progress | None,
) -> tuple[pa.Table, int]:
    source = TextSource(path, encoding, quote=layout.dialect.quote, progress=progress, share=0.8)
    with source:
        table = pacsv.read_csv(source, **_options(layout, block))
        return table, source.quotes


def _check_field_sizes(table: pa.Table, layout: Layout, limit: int, label: str) -> None:
    for name, column in zip(table.column_names, table.columns, strict=True):
        if len(column) == column.null_count:
            continue
        lengths = pc.binary_length(column)
        if (pc.max(lengths).as_py() or 0) > limit:
            index = pc.index(pc.greater(lengths, limit), True).as_py()
            raise SourceError(
                f"{label}: row {layout.first_row + index}, column '{name}' holds a field "
                f"longer than {format_size(limit)}; fields up to {format_size(limit)} are "
                "read (KALLA_MAX_FIELD_SIZE)"
            )


# ---- errors --------------------------------------------------------------------------------


def _raise_unterminated(path: Path, layout: Layout, encoding: Encoding, label: str) -> None:
    """A SourceError naming where a quoted field opens and never closes, if one does."""
    d = layout.dialect
    if not d.quote:
        return
    limit = csv.field_size_limit()
    csv.field_size_limit((1 << 31) - 1)
    try:

        def lines() -> io.TextIOWrapper:
            raw = io.BufferedReader(TextSource(path, encoding, quote=None))
            return io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="")

        last_start, previous, fields = 1, 0, 0
        with lines() as stream:
            reader = _python_reader(stream, d, strict=False)
            for row in reader:
                last_start, previous, fields = previous + 1, reader.line_num, len(row)
        with lines() as stream:
            strict = _python_reader(itertools.islice(stream, last_start - 1, None), d, strict=True)
            try:
                for _ in strict:
                    pass
                return
            except csv.Error as exc:
                if "unexpected end of data" not in str(exc):
                    return
    finally:
        csv.field_size_limit(limit)
    column = fields - 1
    named = f" (column '{layout.fields[column]}')" if 0 <= column < len(layout.fields) else ""
    raise SourceError(
        f"{label}: malformed CSV: a quoted field that starts on line {last_start}{named} is "
        "never closed, so it would swallow every line after it; close the quote, or double a "
        'quote inside a quoted field ("")'
    )


def _python_reader(lines: Iterable[str], d: dialects.Dialect, *, strict: bool) -> Any:
    return csv.reader(
        lines,
        delimiter=d.delimiter,
        quotechar=d.quote or '"',
        escapechar=d.escape,
        doublequote=True,
        strict=strict,
    )


_ROW = re.compile(r"Row #(\d+): ")
_COLUMN = re.compile(r"In CSV column #(\d+): ")


def _csv_error(
    path: Path, layout: Layout, encoding: Encoding, label: str, exc: pa.ArrowInvalid
) -> SourceError:
    """A SourceError naming the file and, where it can be found, the row and column."""
    text = str(exc)
    if text.startswith("Empty CSV file"):
        return SourceError(f"{label}: the file is empty (a CSV needs at least a header row)")
    if "CSV parse error" in text:
        where = _locate_parse_error(path, layout, encoding, text)
        return SourceError(f"{label}: malformed CSV: {where}")
    column = _COLUMN.search(text)
    if column and "UTF8" in text:
        index = int(column.group(1))
        row = _first_invalid_row(path, layout, encoding, index)
        where = f"row {row} ({layout.row_note()})" if row else "a row"
        return SourceError(
            f"{label}: column '{layout.fields[index]}' holds text that is not valid "
            f"{encoding.shown} at {where}; save the file as UTF-8, or give the source's "
            'format its encoding (e.g. "encoding": "windows-1252")'
        )
    return SourceError(f"{label}: cannot read CSV: {text}")


def _locate_parse_error(path: Path, layout: Layout, encoding: Encoding, text: str) -> str:
    """Row numbers are known only when reading on one thread: re-read so to find the row."""
    message = text.split("CSV parse error: ", 1)[-1]
    if _ROW.search(message) is None:
        try:
            options = _options(layout, _BLOCK, threads=False, types=pa.binary())
            with TextSource(path, encoding, quote=None) as source:
                pacsv.read_csv(source, **options)
        except pa.ArrowInvalid as again:
            message = str(again).split("CSV parse error: ", 1)[-1]
    row = _ROW.search(message)
    detail = _ROW.sub("", message)
    detail = re.sub(
        r"^Expected (\d+) columns, got (\d+)",
        rf"expected \1 fields, found \2 (delimiter {layout.dialect.shown})",
        detail,
    )
    if len(detail) > 200:
        detail = detail[:200] + "…"
    if row:
        return f"row {row.group(1)} ({layout.row_note()}): {detail}"
    return detail


def _first_invalid_row(path: Path, layout: Layout, encoding: Encoding, index: int) -> int | None:
    """Row of the first value in column ``index`` that is not valid text."""
    try:
        with TextSource(path, encoding, quote=None) as source:
            table = pacsv.read_csv(
                source,
                **_options(layout, _BLOCK, types=pa.binary()),
            )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    offset = 0
    for chunk in table.column(index).chunks:
        try:
            chunk.cast(pa.string())  # fast check; only the failing chunk is walked in Python
        except pa.ArrowInvalid:
            for i, value in enumerate(chunk.to_pylist()):
                try:
                    if value is not None:
                        value.decode("utf-8")
                except UnicodeDecodeError:
                    return layout.first_row + offset + i
        offset += len(chunk)
    return None
