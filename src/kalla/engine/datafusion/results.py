"""One Parquet file filtered, sorted and paged in place, for the app's result pages.

DataFusion's DataFrame API (expressions, never SQL text): a filter or a sort on a big output
streams and a sorted page uses top-k, instead of loading the file.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datafusion import DataFrame, SessionContext, col, lit
from datafusion import functions as f

from kalla.engine.datafusion.session import location

COMPARISONS = ("eq", "neq", "gt", "gte", "lt", "lte")


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ParquetView:
    """A view of one Parquet file; each method returns a new view (the file is not read
    until ``count``, ``page`` or ``batches``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.schema: pa.Schema = pq.read_schema(self.path)
        self._frame: DataFrame = SessionContext().read_parquet(location(path))

    def _with(self, frame: DataFrame, schema: pa.Schema | None = None) -> ParquetView:
        view = object.__new__(ParquetView)
        view.path, view._frame = self.path, frame
        view.schema = self.schema if schema is None else schema
        return view

    def where(self, column: str, op: str, value: Any) -> ParquetView:
        """Rows where ``column <op> value`` (``op`` one of ``COMPARISONS``); ``value`` a
        Python or Arrow scalar of the column's type."""
        if op not in COMPARISONS:
            raise ValueError(f"unknown comparison '{op}' (one of {', '.join(COMPARISONS)})")
        target, literal = col(quote_ident(column)), lit(value)
        condition = {
            "eq": target == literal,
            "neq": target != literal,
            "gt": target > literal,
            "gte": target >= literal,
            "lt": target < literal,
            "lte": target <= literal,
        }[op]
        return self._with(self._frame.filter(condition))

    def contains(self, column: str, text: str) -> ParquetView:
        """Rows whose ``column``, as text, contains ``text``."""
        found = f.strpos(col(quote_ident(column)).cast(pa.string()), lit(text)) > lit(0)
        return self._with(self._frame.filter(found))

    def sort(self, column: str, *, descending: bool = False) -> ParquetView:
        """Sorted by ``column``, NULLs last."""
        order = col(quote_ident(column)).sort(ascending=not descending, nulls_first=False)
        return self._with(self._frame.sort(order))

    def with_days_since(self, name: str, column: str, today: dt.date) -> ParquetView:
        """A column ``name``: whole days from ``column`` (a date or timestamp) to ``today``."""
        epoch_days = (today - dt.date(1970, 1, 1)).days
        days = col(quote_ident(column)).cast(pa.date32()).cast(pa.int32())
        frame = self._frame.with_column(name, (lit(epoch_days) - days).cast(pa.int32()))
        return self._with(frame, self.schema.append(pa.field(name, pa.int32())))

    def select(self, columns: Sequence[str]) -> ParquetView:
        """Only ``columns``, in that order."""
        frame = self._frame.select(*[col(quote_ident(name)) for name in columns])
        return self._with(frame, pa.schema([self.schema.field(name) for name in columns]))

    def count(self) -> int:
        return int(self._frame.count())

    def page(self, offset: int, limit: int) -> pa.Table:
        return self._frame.limit(limit, offset=offset).to_arrow_table()

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every row of the view, streamed batch by batch, in ``schema``'s types (DataFusion
        may read strings as string views)."""
        for batch in self._frame.execute_stream():
            yield batch.to_pyarrow().cast(self.schema)
