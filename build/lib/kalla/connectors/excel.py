"""Spreadsheets (XLSX and the other formats calamine reads): first sheet or ``?sheet=Name``.

Cells are turned into the text Excel shows (numbers in plain decimal notation, dates in ISO
form) and typed by the same rules as CSV, so ``19.99`` in a sheet stages as an exact
decimal, never as the double Excel stores.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from kalla.connectors.base import (
    Connector,
    FileConnector,
    Filter,
    Progress,
    check_unique_columns,
)
from kalla.connectors.csv_types import infer_table
from kalla.errors import SourceError
from kalla.settings import Settings
from kalla.suggest import did_you_mean

if TYPE_CHECKING:
    from kalla.connectors.registry import Location


class ExcelConnector(FileConnector):
    kind = "xlsx"
    _rows: list[list[Any]] | None = None

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

    def _read_rows(self) -> list[list[Any]]:
        if self._rows is None:
            import python_calamine  # the registry checked that the 'xlsx' extra is installed

            try:
                workbook = python_calamine.CalamineWorkbook.from_path(str(self.path))
                names = list(workbook.sheet_names)
                if not names:
                    raise SourceError(f"{self.label}: the workbook has no sheets")
                name = self.sheet if self.sheet is not None else names[0]
                if name not in names:
                    raise SourceError(
                        f"{self.label}: no sheet named '{name}'{did_you_mean(name, names)} "
                        f"(sheets: {', '.join(repr(n) for n in names)})"
                    )
                self._rows = workbook.get_sheet_by_name(name).to_python()
            except SourceError:
                raise
            except Exception as exc:  # calamine raises its own error types per format
                raise SourceError(f"{self.label}: cannot read the spreadsheet: {exc}") from exc
        return self._rows

    def columns(self) -> list[str]:
        rows = self._read_rows()
        if not rows:
            raise SourceError(f"{self.label}: the sheet is empty (it needs a header row)")
        names = [_cell_text(cell) or "" for cell in rows[0]]
        while names and not names[-1]:
            names.pop()  # trailing unnamed columns are formatting, not data
        check_unique_columns(names, alias=self.alias, uri=self.shown)
        return names

    def read(self, progress: Progress, filters: Sequence[Filter] = ()) -> pa.Table:
        names = self.columns()
        rows = self._read_rows()[1:]
        width = len(names)
        progress(0.3)
        columns: list[list[str | None]] = [[] for _ in range(width)]
        for row in rows:
            cells = list(row[:width]) + [""] * (width - len(row))
            for column, cell in zip(columns, cells, strict=True):
                column.append(_cell_text(cell))
        progress(0.7)
        table = pa.table({n: pa.array(c, pa.string()) for n, c in zip(names, columns, strict=True)})
        return infer_table(table)


def _cell_text(cell: Any) -> str | None:
    """The cell as the text a user sees; empty cells are NULL."""
    if cell is None or cell == "":
        return None
    if isinstance(cell, bool):
        return "true" if cell else "false"
    if isinstance(cell, float):
        if cell.is_integer() and abs(cell) < 1e18:
            return str(int(cell))
        # repr is the shortest text that reads back as the same double: what Excel shows.
        return format(Decimal(repr(cell)), "f")
    if isinstance(cell, dt.datetime):
        return cell.isoformat(sep=" ")
    if isinstance(cell, dt.date):
        return cell.isoformat()
    return str(cell)
