"""Spreadsheets (XLSX and the other formats calamine reads), straight to Arrow by fastexcel.

The sheet is the first one, or the source's ``format.sheet`` (a name or a 0-based
position), or ``?sheet=Name`` on the path. The header is the first row, or the row under
``format.skip_rows`` rows. Date cells stay dates (timestamps when a column's values carry a
time); number cells become the number Excel shows (at most 15 significant digits, as Excel
holds them) and are typed by the same rules as CSV text (``csv_types``), so ``19.99`` in a
sheet stages as an exact decimal, never as the double Excel stores; text cells are typed
like CSV text (``$1,234.50`` is an amount).

Refused, naming the cell: a header cell that is blank (a merged header, a header over two
rows, a title above the header — the message says which ``skip_rows`` finds a complete
header) where the column below holds data (a column with neither a name nor data is
formatting and is left out); two columns with one name; a cell holding an error such as
``#N/A`` or ``#DIV/0!`` (its value is unknown, never NULL).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc

from kalla.connectors.base import (
    Connector,
    FileConnector,
    Filter,
    Progress,
    check_column_count,
    check_unique_columns,
)
from kalla.connectors.csv_types import TypingRules, drop_empty_rows, infer_table
from kalla.errors import SourceError
from kalla.settings import Settings
from kalla.suggest import did_you_mean

if TYPE_CHECKING:
    from kalla.connectors.registry import Location

# fastexcel logs a warning for every column without values; an empty column is no news
logging.getLogger("fastexcel").setLevel(logging.ERROR)

_EXCEL_ERRORS = {
    "NA": "#N/A", "Div0": "#DIV/0!", "Value": "#VALUE!", "Ref": "#REF!", "Name": "#NAME?",
    "Num": "#NUM!", "Null": "#NULL!", "GettingData": "#GETTING_DATA",
}  # fmt: skip
_DIGITS = 15  # significant digits Excel keeps of a number
_LONG = r"[eE]|[0-9.]{17,}"  # shortest-repr texts that may hold more digits than Excel keeps


def column_letter(index: int) -> str:
    """0-based column index → Excel's letters (0 → A, 27 → AB)."""
    letters = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        letters = chr(65 + rest) + letters
    return letters


class ExcelConnector(FileConnector):
    kind = "xlsx"
    _loaded: tuple[pa.RecordBatch, list[Any], int, str] | None = None

    def __init__(
        self, uri: str, *, alias: str, settings: Settings, path: Path, sheet: str | None = None
    ) -> None:
        super().__init__(uri, alias=alias, settings=settings, path=path)
        self.sheet = sheet

    @classmethod
    def open(cls, location: Location, *, settings: Settings) -> Connector:
        assert location.path is not None
        return cls(
            location.uri,
            alias=location.alias,
            settings=settings,
            path=location.path,
            sheet=location.options.get("sheet"),
        )

    # ---- reading the sheet ------------------------------------------------------------

    def _reader(self) -> Any:
        import fastexcel  # the registry checked that the 'xlsx' extra is installed

        try:
            return fastexcel.read_excel(self.path)
        except Exception as exc:  # fastexcel raises its own types per format
            raise SourceError(f"{self.label}: cannot read the spreadsheet: {exc}") from None

    def _sheet_name(self, reader: Any) -> str:
        names = list(reader.sheet_names)
        if not names:
            raise SourceError(f"{self.label}: the workbook has no sheets")
        wanted = self.reading.format.sheet if self.reading.format.sheet is not None else self.sheet
        listed = ", ".join(repr(n) for n in names)
        if wanted is None:
            return str(names[0])
        if isinstance(wanted, int):
            if not 0 <= wanted < len(names):
                raise SourceError(
                    f"{self.label}: no sheet at position {wanted} (sheets, from 0: {listed})"
                )
            return str(names[wanted])
        if wanted not in names:
            raise SourceError(
                f"{self.label}: no sheet named '{wanted}'{did_you_mean(wanted, names)} "
                f"(sheets: {listed})"
            )
        return wanted

    def _load(self) -> tuple[pa.RecordBatch, list[Any], int, str]:
        """(data, columns kept, header row (0-based), sheet name), checked by cell."""
        if self._loaded is not None:
            return self._loaded
        reader = self._reader()
        name = self._sheet_name(reader)
        header = self.reading.format.skip_rows
        try:
            sheet = reader.load_sheet(name, header_row=header, schema_sample_rows=None)
            data, errors = sheet.to_arrow_with_errors()
        except Exception as exc:
            kind = type(exc).__name__
            if kind != "UnsupportedColumnTypeCombinationError":
                raise SourceError(f"{self.label}: cannot read sheet '{name}': {exc}") from None
            # a column mixing durations with text: read every cell as the text Excel shows
            sheet = reader.load_sheet(
                name, header_row=header, schema_sample_rows=None, dtypes="string"
            )
            data, errors = sheet.to_arrow_with_errors()
        columns = list(sheet.available_columns())
        mixed = _mixed_columns(errors, columns)
        if mixed:
            # a column whose cells are of several kinds (dates and a 'n/a'): fastexcel would
            # leave the odd ones out, so it is read as the text Excel shows and typed by it
            sheet = reader.load_sheet(
                name,
                header_row=header,
                schema_sample_rows=None,
                dtypes={column: "string" for column in mixed},
            )
            data, errors = sheet.to_arrow_with_errors()
            columns = list(sheet.available_columns())
        if not columns:
            where = f"under its first {header} rows" if header else ""
            raise SourceError(
                f"{self.label}: sheet '{name}' is empty{where} (it needs a header row)"
            )
        check_column_count(len(columns), label=self.label, settings=self.settings)
        if errors is not None and errors.errors:
            self._refuse_error_cells(errors.errors, name)
        kept = self._check_header(data, columns, header, name, reader)
        self._loaded = (data, kept, header, name)
        return self._loaded

    def _refuse_error_cells(self, errors: Sequence[Any], sheet: str) -> None:
        shown = []
        for error in errors[:5]:
            row, column = error.position
            found = re.search(r"Error\((\w+)\)", str(error.detail))
            shown_as = _EXCEL_ERRORS.get(found.group(1), found.group(1)) if found else "an error"
            shown.append(f"cell {column_letter(column)}{row + 1} holds {shown_as}")
        more = f" and {len(errors) - 5} more" if len(errors) > 5 else ""
        raise SourceError(
            f"{self.label}: sheet '{sheet}' has cells whose value is an error{more}; fix "
            "the formulas (or paste the values)",
            problems=shown,
        )

    def _check_header(
        self, data: pa.RecordBatch, columns: list[Any], header: int, sheet: str, reader: Any
    ) -> list[Any]:
        kept: list[Any] = []
        blank: list[Any] = []
        for info in columns:
            column = data.column(info.index)
            unnamed = info.column_name_from == "generated"
            if unnamed and column.null_count == len(column):
                continue  # neither a name nor data: formatting
            (blank if unnamed else kept).append(info)
        if blank:
            cells = [f"{column_letter(info.absolute_index)}{header + 1}" for info in blank]
            merged = self._merged(sheet, cells)
            hint = self._header_hint(reader, sheet, header, len(kept) + len(blank))
            raise SourceError(
                f"{self.label}: sheet '{sheet}': header cell{'s' if len(cells) > 1 else ''} "
                f"{', '.join(cells)} {'are' if len(cells) > 1 else 'is'} blank while the "
                f"column below holds data{merged}; {hint}"
            )
        names = [str(info.name).strip() for info in kept]
        self._check_duplicates(names, reader, sheet, header)
        return kept

    def _check_duplicates(self, names: list[str], reader: Any, sheet: str, header: int) -> None:
        # fastexcel renames a repeated header "id" to "id_1": read the header cells to know
        renamed = [n for n in names if re.fullmatch(r".+_\d+", n) and n.rsplit("_", 1)[0] in names]
        if renamed:
            cells = reader.load_sheet(
                sheet, header_row=None, skip_rows=header, n_rows=1, dtypes="string"
            ).to_arrow()
            written = (
                [c for c in cells.to_pylist()[0].values() if c is not None] if len(cells) else []
            )
            check_unique_columns([str(c) for c in written], alias=self.alias, uri=self.shown)
        check_unique_columns(names, alias=self.alias, uri=self.shown)

    def _merged(self, sheet: str, cells: list[str]) -> str:
        """ " (merged cells A1:B1)" when calamine sees merges among ``cells``; the header is
        broken already, so reading the sheet a second time costs nothing that matters."""
        try:
            import python_calamine

            book = python_calamine.CalamineWorkbook.from_path(str(self.path))
            ranges = book.get_sheet_by_name(sheet).merged_cell_ranges or []
        except Exception:  # merges are a nicety of the message, never its cause
            return ""
        found = []
        for (top, left), (bottom, right) in ranges:
            span = f"{column_letter(left)}{top + 1}:{column_letter(right)}{bottom + 1}"
            for cell in cells:
                match = re.fullmatch(r"([A-Z]+)(\d+)", cell)
                assert match is not None
                col = _column_index(match.group(1))
                row = int(match.group(2)) - 1
                if top <= row <= bottom and left <= col <= right:
                    found.append(span)
                    break
        return f" (merged cells {', '.join(found)})" if found else ""

    def _header_hint(self, reader: Any, sheet: str, header: int, width: int) -> str:
        """Which skip_rows finds a complete header (every cell text), if one is near."""
        try:
            rows = reader.load_sheet(
                sheet, header_row=None, n_rows=header + 30, dtypes="string"
            ).to_arrow()
        except Exception:
            rows = None
        if rows is not None:
            for index, row in enumerate(rows.to_pylist()):
                if index <= header:
                    continue
                cells = [str(v).strip() for v in row.values() if v is not None and str(v).strip()]
                if len(cells) >= max(width, 2) and not any(_numberish(c) for c in cells):
                    return (
                        f"a complete header is on row {index + 1}: set the source's format "
                        f'"skip_rows": {index} (one header row: a header over two rows '
                        "needs its names in one)"
                    )
        return "give every column with data a name, in one header row"

    # ---- hooks ---------------------------------------------------------------------------

    def columns(self) -> list[str]:
        _, kept, _, _ = self._load()
        return [str(info.name).strip() for info in kept]

    def read(self, progress: Progress, filters: Sequence[Filter] = ()) -> pa.Table:
        data, kept, header, _ = self._load()
        progress(0.5)
        names = [str(info.name).strip() for info in kept]
        letters = {
            name: column_letter(info.absolute_index) for name, info in zip(names, kept, strict=True)
        }
        columns = [_as_text_or_typed(data.column(info.index)) for info in kept]
        table = pa.Table.from_arrays(columns, names=names)
        rules = TypingRules.of(
            self.reading,
            label=self.label,
            where=lambda column, index: f"cell {letters[column]}{header + 2 + index}",
        )
        return drop_empty_rows(infer_table(table, rules))


def _mixed_columns(errors: Any, columns: list[Any]) -> list[str]:
    """Columns with cells of another kind than the column's (not error cells)."""
    if errors is None or not errors.errors:
        return []
    by_position = {info.absolute_index: str(info.name) for info in columns}
    found = {
        by_position[error.position[1]]
        for error in errors.errors
        if "Error(" not in str(error.detail) and error.position[1] in by_position
    }
    return sorted(found)


def _column_index(letters: str) -> int:
    index = 0
    for char in letters:
        index = index * 26 + ord(char) - 64
    return index - 1


def _numberish(text: str) -> bool:
    return bool(re.fullmatch(r"[\s$€£(+-]*[0-9][0-9.,:/\s-]*\)?", text))


def _as_text_or_typed(column: pa.Array) -> pa.ChunkedArray:
    """A sheet column as staging types it: dates and booleans as they are (a date column
    whose times are all midnight as dates), numbers as the text Excel shows, for the typing
    rules; anything else as text."""
    kind = column.type
    chunked = pa.chunked_array([column], type=kind)
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return chunked
    if pa.types.is_null(kind):
        return pa.chunked_array([pa.nulls(len(column), pa.string())])
    if pa.types.is_boolean(kind) or pa.types.is_date(kind):
        return chunked
    if pa.types.is_timestamp(kind):
        micros = chunked.cast(pa.timestamp("us", tz=kind.tz))
        day = pc.floor_temporal(micros, unit="day")
        if bool(pc.all(pc.equal(day, micros), skip_nulls=True, min_count=0).as_py()):
            return micros.cast(pa.timestamp("us")).cast(pa.date32())
        return micros
    if pa.types.is_floating(kind) or pa.types.is_integer(kind):
        return _numbers_as_text(chunked)
    return pa.chunked_array([pa.array([_text(v) for v in column.to_pylist()], pa.string())])


def _numbers_as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Numbers as the plain text Excel shows: the shortest text of the double, cut to 15
    significant digits where a fraction holds more (0.1 + 0.2 is 0.3), never an exponent."""
    text = column.cast(pa.string())
    if not pa.types.is_floating(column.type):
        return text
    long = pc.fill_null(pc.match_substring_regex(text, _LONG), False)
    if not pc.any(long).as_py():
        return text
    values = column.to_pylist()
    fixed = text.to_pylist()
    for i in pc.indices_nonzero(long.combine_chunks()).to_pylist():
        fixed[i] = _excel_text(values[i])
    return pa.chunked_array([pa.array(fixed, pa.string())])


def _excel_text(value: float) -> str:
    if value.is_integer() and abs(value) < 2**53:
        return str(int(value))  # a whole number the double holds exactly: all its digits
    try:
        number = Decimal(f"{value:.{_DIGITS}g}")
    except InvalidOperation:  # inf / nan cannot be in a cell; keep whatever they are
        return str(value)
    text = format(number, "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return str(value)
