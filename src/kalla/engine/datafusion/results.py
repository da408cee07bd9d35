"""One Parquet file filtered, sorted and paged in place, for the app's result pages.

DataFusion's DataFrame API (expressions, never SQL text): a filter or a sort on a big output
streams and a sorted page uses top-k, instead of loading the file.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from datafusion import DataFrame, SessionContext, col, lit
from datafusion import functions as f

COMPARISONS = ("eq", "neq", "gt", "gte", "lt", "lte")


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class ParquetView:
    """A view of one Parquet file; each method returns a new view (the file is not read
    until ``count``, ``page`` or ``batches``)."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self.schema: pa.Schema = pq.read_schema(self.path)
        self._frame: DataFrame = SessionContext().read_parquet(str(path))

    def _with(self, frame: DataFrame) -> ParquetView:
        view = object.__new__(ParquetView)
        view.path, view.schema, view._frame = self.path, self.schema, frame
        return view

    def where(self, column: str, op: str, value: Any) -> ParquetView:
        """Rows where ``column <op> value`` (``op`` one of ``COMPARISONS``); ``value`` a
        Python or Arrow scalar of the column's type."""
        if op not in COMPARISONS:
            raise ValueError(f"unknown comparison '{op}' (one of {', '.join(COMPARISONS)})")
        target, literal = col(_quoted(column)), lit(value)
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
        found = f.strpos(col(_quoted(column)).cast(pa.string()), lit(text)) > lit(0)
        return self._with(self._frame.filter(found))

    def sort(self, column: str, *, descending: bool = False) -> ParquetView:
        """Sorted by ``column``, NULLs last."""
        order = col(_quoted(column)).sort(ascending=not descending, nulls_first=False)
        return self._with(self._frame.sort(order))

    def count(self) -> int:
        return int(self._frame.count())

    def page(self, offset: int, limit: int) -> pa.Table:
        return self._frame.limit(limit, offset=offset).to_arrow_table()

    def batches(self) -> Iterator[pa.RecordBatch]:
        """Every row of the view, streamed batch by batch."""
        for batch in self._frame.execute_stream():
            yield batch.to_pyarrow()
