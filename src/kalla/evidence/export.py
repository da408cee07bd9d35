"""Outputs people open: CSV and XLSX from a run's Parquet outputs, for ``kalla run --format``
and the app's downloads alike (one implementation).

Parquet stays what a run is: the manifest's digests and ``kalla verify`` are about the
Parquet files. Exports are written beside them, inside the same atomic output directory, and
listed in the manifest with their sha256 (``exports``).

Both formats are safe to open:

* **formula injection** (OWASP "CSV injection"): a *text* cell that starts with ``=``, ``+``,
  ``-``, ``@``, a tab or a carriage return is written with a leading ``'`` in CSV, and in
  XLSX as a text cell with Excel's quote prefix (shown as written, never evaluated, even
  when edited). Numbers are numbers: an amount of -45.10 stays -45.10.
* **exact amounts**: CSV writes a decimal as its exact text. XLSX writes a decimal as a
  number formatted by its scale (``#,##0.00`` for scale 2) when Excel holds it exactly (at
  most 15 significant digits), otherwise as text, counted in a note on the summary sheet;
  an integer beyond 15 digits likewise.

XLSX: one sheet per output (named after the recipe's aliases, within Excel's 31 characters
and its forbidden characters), dates as dates, timestamps as date-times, a frozen header row,
an autofilter, and a summary sheet (counts, passes, control totals, breaks by reason, notes).
Rows stream through xlsxwriter's ``constant_memory`` mode. A sheet holds at most
1,048,575 rows under its header: more continue on sheets named ``… (2)``, ``… (3)``, each
with the header, so nothing is cut.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import IO, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from kalla.errors import RecipeError
from kalla.suggest import did_you_mean

XLSX_MAX_ROWS = 1_048_575  # Excel's 1,048,576 rows a sheet, less the header
EXCEL_DIGITS = 15  # significant digits an Excel number holds exactly
_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")
_TRIGGER_PATTERN = r"^[=+\-@\t\r]"
_BATCH = 64 * 1024
_SHEET_FORBIDDEN = re.compile(r"[\[\]:*?/\\]")
WORKBOOK = "results.xlsx"


class ExportFormat(StrEnum):
    PARQUET = "parquet"
    CSV = "csv"
    XLSX = "xlsx"


def parse_formats(values: Sequence[str]) -> tuple[ExportFormat, ...]:
    """``--format`` values (repeated or comma lists) as formats, Parquet always first."""
    chosen: list[ExportFormat] = [ExportFormat.PARQUET]
    known = [f.value for f in ExportFormat]
    for value in values:
        for name in (v.strip().lower() for v in value.split(",")):
            if not name:
                continue
            if name not in known:
                raise RecipeError(
                    f"--format: unknown format '{name}'{did_you_mean(name, known)}; "
                    f"formats: {', '.join(known)}"
                )
            if ExportFormat(name) not in chosen:
                chosen.append(ExportFormat(name))
    return tuple(chosen)


def neutralise(text: str) -> str:
    """``text`` safe for a spreadsheet cell: a leading ``'`` when it would start a formula."""
    return f"'{text}" if text.startswith(_TRIGGERS) else text


def is_formula_like(text: str) -> bool:
    return text.startswith(_TRIGGERS)


# --- CSV -----------------------------------------------------------------------------------


def _is_text(kind: pa.DataType) -> bool:
    return (
        pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind)
    )


def safe_batch(batch: pa.RecordBatch) -> pa.RecordBatch:
    """``batch`` with every text cell that could start a formula given a leading ``'``."""
    columns = []
    fields = []
    for fld, values in zip(batch.schema, batch.columns, strict=True):
        if _is_text(fld.type):
            values = values.cast(pa.string())
            risky = pc.match_substring_regex(values, _TRIGGER_PATTERN)
            values = pc.if_else(risky, pc.binary_join_element_wise("'", values, ""), values)
            fld = fld.with_type(pa.string())
        columns.append(values)
        fields.append(fld)
    return pa.RecordBatch.from_arrays(columns, schema=pa.schema(fields))


def _plain_schema(schema: pa.Schema) -> pa.Schema:
    return pa.schema([f.with_type(pa.string()) if _is_text(f.type) else f for f in schema])


def csv_chunks(schema: pa.Schema, batches: Iterable[pa.RecordBatch]) -> Iterator[bytes]:
    """Rows as CSV, one batch at a time, the header first (also when there are no rows);
    decimals as their exact text, formula-like text neutralised."""
    header = True
    for batch in batches:
        if batch.num_rows == 0:
            continue
        sink = io.BytesIO()
        pacsv.write_csv(safe_batch(batch), sink, pacsv.WriteOptions(include_header=header))
        header = False
        yield sink.getvalue()
    if header:
        sink = io.BytesIO()
        pacsv.write_csv(_plain_schema(schema).empty_table(), sink)
        yield sink.getvalue()


def parquet_batches(path: Path) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    parquet = pq.ParquetFile(path)
    return parquet.schema_arrow, parquet.iter_batches(batch_size=_BATCH)


def write_csv(path: Path, target: Path | IO[bytes]) -> None:
    """A Parquet output as a CSV file."""
    schema, batches = parquet_batches(path)
    if isinstance(target, Path):
        with target.open("wb") as handle:
            for chunk in csv_chunks(schema, batches):
                handle.write(chunk)
        return
    for chunk in csv_chunks(schema, batches):
        target.write(chunk)


# --- XLSX ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class SheetSource:
    """One output for a workbook: the sheet's name and its rows."""

    name: str
    schema: pa.Schema
    batches: Iterable[pa.RecordBatch]


@dataclass
class _Notes:
    """Cells written as text because Excel cannot hold them exactly: (sheet, column) -> n."""

    as_text: dict[tuple[str, str], int] = field(default_factory=dict)
    continued: list[str] = field(default_factory=list)


def sheet_name(name: str, taken: Iterable[str] = ()) -> str:
    """``name`` as Excel allows a sheet name (no ``[]:*?/\\``, at most 31 characters, not
    blank), unique among ``taken`` (case-insensitively, as Excel compares them)."""
    clean = _SHEET_FORBIDDEN.sub("_", name).strip("'") or "sheet"
    used = {t.lower() for t in taken}
    candidate, n = clean[:31], 1
    while candidate.lower() in used:
        n += 1
        suffix = f" ({n})"
        candidate = clean[: 31 - len(suffix)] + suffix
    return candidate


def _number_format(kind: pa.DataType) -> str | None:
    if pa.types.is_decimal(kind):
        scale = max(kind.scale, 0)
        return "#,##0" + ("." + "0" * scale if scale else "")
    if pa.types.is_date(kind):
        return "yyyy-mm-dd"
    if pa.types.is_timestamp(kind):
        return "yyyy-mm-dd hh:mm:ss"
    return None


def fits_excel(value: Decimal | int) -> bool:
    """Whether Excel's double holds ``value`` exactly as written (15 significant digits)."""
    if isinstance(value, int):
        return abs(value) < 10**EXCEL_DIGITS
    if not value.is_finite():
        return False
    digits = value.normalize().as_tuple().digits
    return len(digits) <= EXCEL_DIGITS


class _Writer:
    """One workbook, written row by row (constant memory)."""

    def __init__(self, target: Path, max_rows: int) -> None:
        import xlsxwriter  # the xlsx extra (and the server extra, for the app)

        self.book = xlsxwriter.Workbook(
            str(target),
            {
                "constant_memory": True,
                "strings_to_numbers": False,
                "strings_to_formulas": False,
                "strings_to_urls": False,
                "default_date_format": "yyyy-mm-dd",
            },
        )
        self.max_rows = max_rows
        self.names: list[str] = []
        self.notes = _Notes()
        self.bold = self.book.add_format({"bold": True})
        self.quoted = self.book.add_format({"quote_prefix": True})
        self.text_number = self.book.add_format({"align": "right"})
        self._formats: dict[str, Any] = {}

    def fmt(self, pattern: str | None) -> Any:
        if pattern is None:
            return None
        if pattern not in self._formats:
            self._formats[pattern] = self.book.add_format({"num_format": pattern})
        return self._formats[pattern]

    def new_sheet(self, name: str) -> Any:
        chosen = sheet_name(name, self.names)
        self.names.append(chosen)
        return self.book.add_worksheet(chosen)

    def header(self, sheet: Any, schema: pa.Schema) -> None:
        for c, fld in enumerate(schema):
            sheet.write_string(0, c, fld.name, self.bold)
            sheet.set_column(c, c, min(max(len(fld.name) + 2, 10), 40))
        sheet.freeze_panes(1, 0)

    def close_sheet(self, sheet: Any, schema: pa.Schema, rows: int) -> None:
        if len(schema):
            sheet.autofilter(0, 0, max(rows, 1), len(schema) - 1)

    def data(self, source: SheetSource) -> None:
        formats = [self.fmt(_number_format(f.type)) for f in source.schema]
        sheet = self.new_sheet(source.name)
        first = self.names[-1]
        self.header(sheet, source.schema)
        r = 0
        part = 1
        for batch in source.batches:
            for row in batch.to_pylist():
                if r == self.max_rows:  # Excel's limit: the rows go on in a new sheet
                    self.close_sheet(sheet, source.schema, r)
                    part += 1
                    sheet = self.new_sheet(f"{first} ({part})")
                    self.notes.continued.append(self.names[-1])
                    self.header(sheet, source.schema)
                    r = 0
                r += 1
                for c, fld in enumerate(source.schema):
                    self.cell(sheet, r, c, row[fld.name], formats[c], first, fld.name)
        self.close_sheet(sheet, source.schema, r)

    def cell(
        self, sheet: Any, r: int, c: int, value: Any, fmt: Any, name: str, column: str
    ) -> None:
        if value is None:
            return
        if isinstance(value, bool):
            sheet.write_boolean(r, c, value)
        elif isinstance(value, Decimal | int):
            if fits_excel(value):
                sheet.write_number(r, c, value, fmt)
            else:
                key = (name, column)
                self.notes.as_text[key] = self.notes.as_text.get(key, 0) + 1
                sheet.write_string(r, c, str(value), self.text_number)
        elif isinstance(value, float):
            if math.isfinite(value):
                sheet.write_number(r, c, value)
            else:
                sheet.write_string(r, c, str(value))
        elif isinstance(value, dt.datetime):
            if value.tzinfo is not None:
                value = value.astimezone(dt.UTC).replace(tzinfo=None)
            sheet.write_datetime(r, c, value, fmt)
        elif isinstance(value, dt.date):
            sheet.write_datetime(r, c, dt.datetime.combine(value, dt.time()), fmt)
        elif isinstance(value, bytes):
            sheet.write_string(r, c, base64.b64encode(value).decode("ascii"))
        else:
            text = str(value)
            if is_formula_like(text):
                sheet.write_string(r, c, text, self.quoted)
            else:
                sheet.write_string(r, c, text)

    def summary(self, sheet: Any, summary: Mapping[str, Any] | None) -> None:
        rows: list[Sequence[Any]] = []
        if summary and "control_totals" in summary:  # a run's summary (to_dict())
            left, right = summary["left_alias"], summary["right_alias"]
            totals = {t["alias"]: t for t in summary["control_totals"]}
            rows += [
                ("Counts", left, right),
                ("input rows", summary["left_rows"], summary["right_rows"]),
                ("matched keys", totals[left]["matched_keys"], totals[right]["matched_keys"]),
                (
                    "unmatched rows",
                    summary["unmatched_left_count"],
                    summary["unmatched_right_count"],
                ),
                (
                    "ambiguous keys",
                    summary["ambiguous_left_count"],
                    summary["ambiguous_right_count"],
                ),
                ("matched rows", summary["matched_count"]),
                (),
                ("Passes", "candidates", "matched"),
                *((p["name"], p["candidate_count"], p["matched_count"]) for p in summary["passes"]),
                (),
                ("Control totals", "input rows", "matched keys", "unmatched rows", "hold"),
                *(
                    (
                        t["alias"],
                        t["input_rows"],
                        t["matched_keys"],
                        t["unmatched_rows"],
                        t["input_rows"] == t["matched_keys"] + t["unmatched_rows"],
                    )
                    for t in summary["control_totals"]
                ),
            ]
            breaks = summary.get("breaks") or []
            if breaks:
                rows += [(), ("Breaks by reason", "source", "rows")]
                rows += [
                    (r["reason"], b["alias"], r["count"]) for b in breaks for r in b["reasons"]
                ]
        notes = [
            f"{n:,} value(s) of column '{column}' on sheet '{name}' are written as text: they "
            f"have more than {EXCEL_DIGITS} significant digits, which an Excel number cannot "
            "hold exactly"
            for (name, column), n in self.notes.as_text.items()
        ]
        if self.notes.continued:
            notes.append(
                f"more rows than an Excel sheet holds ({self.max_rows:,}) continue on: "
                + ", ".join(self.notes.continued)
            )
        if notes:
            rows += [(), ("Notes",), *((note,) for note in notes)]
        sheet.set_column(0, 0, 48)
        for r, row in enumerate(rows):
            style = self.bold if row and row[0] in _HEADINGS else None
            for c, value in enumerate(row):
                self.cell(sheet, r, c, value, style, "Summary", "")

    def close(self) -> None:
        self.book.close()


_HEADINGS = {"Counts", "Passes", "Control totals", "Breaks by reason", "Notes"}


def write_workbook(
    target: Path,
    sheets: Sequence[SheetSource],
    summary: Mapping[str, Any] | None = None,
    *,
    max_rows: int = XLSX_MAX_ROWS,
) -> None:
    """``sheets`` (and, with a run's ``summary`` as its ``to_dict()``, a first sheet
    "Summary") as one XLSX file."""
    writer = _Writer(target, max_rows)
    try:
        front = writer.new_sheet("Summary") if summary is not None else None
        for source in sheets:
            writer.data(source)
        if front is not None:
            writer.summary(front, summary)
    finally:
        writer.close()


# --- a run's exports --------------------------------------------------------------------------


def _sheet_titles(summary: Mapping[str, Any]) -> dict[str, str]:
    left, right = summary.get("left_alias", "left"), summary.get("right_alias", "right")
    return {
        "matched": "matched",
        "unmatched_left": f"unmatched {left}",
        "unmatched_right": f"unmatched {right}",
        "ambiguous": "ambiguous",
    }


def export_names(formats: Sequence[ExportFormat], outputs: Iterable[str]) -> list[str]:
    """The files ``export_run`` writes for ``outputs`` (by name) in ``formats``."""
    names = [f"{name}.csv" for name in outputs] if ExportFormat.CSV in formats else []
    return names + ([WORKBOOK] if ExportFormat.XLSX in formats else [])


def export_run(
    directory: Path,
    outputs: Mapping[str, Path],
    formats: Sequence[ExportFormat],
    summary: Mapping[str, Any],
) -> dict[str, Path]:
    """The exports of a run's outputs (``name -> Parquet file``) into ``directory``: a CSV
    per output (``matched.csv`` …) and one workbook (``results.xlsx``); file name -> path."""
    written: dict[str, Path] = {}
    if ExportFormat.CSV in formats:
        for name, path in outputs.items():
            target = directory / f"{name}.csv"
            write_csv(path, target)
            written[target.name] = target
    if ExportFormat.XLSX in formats:
        titles = _sheet_titles(summary)
        sheets = []
        for name, path in outputs.items():
            schema, batches = parquet_batches(path)
            sheets.append(SheetSource(titles.get(name, name), schema, batches))
        target = directory / WORKBOOK
        write_workbook(target, sheets, summary)
        written[target.name] = target
    return written
