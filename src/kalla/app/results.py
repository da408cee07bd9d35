"""Run outputs read straight from their Parquet files: pages as JSON, and downloads of the
whole output or of a filtered, sorted view of it.

Pages go through ``kalla.engine.open_parquet`` (DataFusion's DataFrame API: expressions,
never SQL text), so a sort or a filter on a big output streams and uses top-k instead of
loading the file.
"""

from __future__ import annotations

import base64
import datetime as dt
import math
import os
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kalla.app.errors import BadRequestError
from kalla.engine import open_parquet
from kalla.evidence import export
from kalla.suggest import did_you_mean

if TYPE_CHECKING:
    from kalla.engine.datafusion.results import ParquetView

_BATCH = 64 * 1024


class FilterOperator(StrEnum):
    EQ = "eq"
    NEQ = "neq"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    CONTAINS = "contains"


class DownloadFormat(StrEnum):
    CSV = "csv"
    XLSX = "xlsx"
    PARQUET = "parquet"


def _check_column(name: str, schema: pa.Schema, what: str) -> pa.Field:
    if name not in schema.names:
        raise BadRequestError(
            f"{what}: unknown column '{name}'{did_you_mean(name, schema.names)}; "
            f"columns: {', '.join(schema.names)}"
        )
    return schema.field(name)


def _typed_value(text: str, field: pa.Field) -> Any:
    """The filter value as the column's type, or a 422 naming the type expected."""
    kind = field.type
    if pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_string_view(kind):
        return text
    try:
        if pa.types.is_boolean(kind):
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "1", "0"):
                raise ValueError(text)
            return lowered in ("true", "1")
        value = pc.cast(pa.array([text]), kind)[0]
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, ValueError):
        raise BadRequestError(
            f"filter value '{text[:80]}' is not a valid {kind} for column '{field.name}'"
        ) from None
    return value


@dataclass(frozen=True)
class ResultFilter:
    """One per-column filter of a results view (``op`` applied to the column's typed value)."""

    column: str
    op: FilterOperator
    value: str


@dataclass(frozen=True)
class ResultView:
    """What a results page or a filtered download shows: filters, sort, the age column."""

    filters: tuple[ResultFilter, ...] = ()
    sort: str | None = None
    descending: bool = False
    age_from: str | None = None  # a date column: adds ``age_days`` (days from it to today)
    columns: tuple[str, ...] = ()  # the columns to give, in this order (none: all)

    @property
    def whole(self) -> bool:
        """The output as written: no filter, no sort, no added or left-out column."""
        return not self.filters and self.sort is None and self.age_from is None and not self.columns


AGE_COLUMN = "age_days"


def _view_frame(path: Path, view: ResultView) -> tuple[ParquetView, pa.Schema]:
    """The engine's view of ``view`` over the output, with the schema it yields."""
    frame = open_parquet(path)
    schema = frame.schema
    if view.age_from is not None:
        field = _check_column(view.age_from, schema, "age_from")
        if not (pa.types.is_date(field.type) or pa.types.is_timestamp(field.type)):
            raise BadRequestError(
                f"age_from: column '{view.age_from}' is {field.type}, not a date or timestamp"
            )
        if AGE_COLUMN in schema.names:
            raise BadRequestError(f"age_from: the output already has a column '{AGE_COLUMN}'")
        frame = frame.with_days_since(AGE_COLUMN, view.age_from, dt.date.today())
        schema = frame.schema
    for condition in view.filters:
        field = _check_column(condition.column, schema, "filter_column")
        if condition.op is FilterOperator.CONTAINS:
            frame = frame.contains(condition.column, condition.value)
        else:
            value = _typed_value(condition.value, field)
            frame = frame.where(condition.column, condition.op.value, value)
    if view.sort is not None:
        _check_column(view.sort, schema, "sort")
        frame = frame.sort(view.sort, descending=view.descending)
    if view.columns:
        fields = [_check_column(name, schema, "columns") for name in dict.fromkeys(view.columns)]
        frame = frame.select([fld.name for fld in fields])
        schema = frame.schema
    return frame, schema


def read_page(path: Path, view: ResultView, *, offset: int, limit: int) -> dict[str, Any]:
    """``{columns, rows, total, offset, limit}`` for one page of one output."""
    frame, schema = _view_frame(path, view)
    total = frame.count()
    table = frame.page(offset, limit)
    return {
        "columns": [{"name": fld.name, "type": str(fld.type)} for fld in schema],
        "rows": [_json_row(row) for row in table.to_pylist()],
        "total": total,
        "offset": offset,
        "limit": limit,
    }


def view_batches(path: Path, view: ResultView) -> tuple[pa.Schema, Iterator[pa.RecordBatch]]:
    """The rows of ``view`` as Arrow batches, streamed (a download of the filtered view).

    Batches carry the output's own types (DataFusion reads strings as ``string_view``,
    which the CSV and Parquet writers take as plain strings)."""
    frame, schema = _view_frame(path, view)
    return schema, frame.batches()


def empty_page(offset: int, limit: int) -> dict[str, Any]:
    return {"columns": [], "rows": [], "total": 0, "offset": offset, "limit": limit}


def _json_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact: a JSON number would round it
    if isinstance(value, float) and not math.isfinite(value):
        return None if math.isnan(value) else str(value)
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return value.total_seconds()
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_value(v) for v in value]
    return value


def _json_row(row: dict[str, Any]) -> dict[str, Any]:
    return {k: _json_value(v) for k, v in row.items()}


# --- downloads (kalla.evidence.export: the one CSV/XLSX implementation, CLI and app) --------


def _rows(path: Path, view: ResultView | None) -> tuple[pa.Schema, Iterable[pa.RecordBatch]]:
    if view is None or view.whole:
        parquet = pq.ParquetFile(path)
        return parquet.schema_arrow, parquet.iter_batches(batch_size=_BATCH)
    return view_batches(path, view)


def csv_chunks(path: Path, view: ResultView | None = None) -> Iterator[bytes]:
    """The output (or ``view`` of it) as CSV, one batch at a time (header first); text that
    could start a formula neutralised, decimals as their exact text."""
    schema, batches = _rows(path, view)
    return export.csv_chunks(schema, batches)


def write_parquet_view(path: Path, view: ResultView) -> Path:
    """``view`` of the output as a Parquet temp file (deleted by the caller once sent)."""
    schema, batches = view_batches(path, view)
    target = _temp_file(".parquet")
    try:
        with pq.ParquetWriter(str(target), schema, compression="zstd") as writer:
            for batch in batches:
                writer.write_batch(batch)
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target


def _temp_file(suffix: str) -> Path:
    handle, name = tempfile.mkstemp(prefix="kalla-", suffix=suffix)
    os.close(handle)
    return Path(name)


def write_xlsx(path: Path, sheet: str, view: ResultView | None = None) -> Path:
    """The output (or ``view`` of it) as an XLSX temp file (deleted by the caller once sent):
    one sheet, continued on more when Excel's row limit is reached."""
    schema, batches = _rows(path, view)
    target = _temp_file(".xlsx")
    try:
        export.write_workbook(target, [export.SheetSource(sheet, schema, batches)])
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target
