"""Run outputs read straight from their Parquet files: pages as JSON, whole-file downloads.

Pages go through ``kalla.engine.open_parquet`` (DataFusion's DataFrame API: expressions,
never SQL text), so a sort or a filter on a big output streams and uses top-k instead of
loading the file.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import math
import os
import tempfile
from collections.abc import Iterator
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pacsv
import pyarrow.parquet as pq

from kalla.app.errors import BadRequestError
from kalla.engine import open_parquet
from kalla.suggest import did_you_mean

XLSX_MAX_ROWS = 1_048_575  # Excel's sheet limit, less the header row
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


def read_page(
    path: Path,
    *,
    offset: int,
    limit: int,
    sort: str | None,
    descending: bool,
    filter_column: str | None,
    filter_op: FilterOperator,
    filter_value: str | None,
) -> dict[str, Any]:
    """``{columns, rows, total, offset, limit}`` for one page of one output."""
    view = open_parquet(path)
    schema = view.schema
    if filter_column is not None:
        if filter_value is None:
            raise BadRequestError("filter_column needs a filter_value")
        field = _check_column(filter_column, schema, "filter_column")
        if filter_op is FilterOperator.CONTAINS:
            view = view.contains(filter_column, filter_value)
        else:
            view = view.where(filter_column, filter_op.value, _typed_value(filter_value, field))
    total = view.count()
    if sort is not None:
        _check_column(sort, schema, "sort")
        view = view.sort(sort, descending=descending)
    table = view.page(offset, limit)
    return {
        "columns": [{"name": fld.name, "type": str(fld.type)} for fld in schema],
        "rows": [_json_row(row) for row in table.to_pylist()],
        "total": total,
        "offset": offset,
        "limit": limit,
    }


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


# --- downloads ------------------------------------------------------------------------------


def csv_chunks(path: Path) -> Iterator[bytes]:
    """The whole output as CSV, one batch at a time (header first)."""
    parquet = pq.ParquetFile(path)
    header = True
    for batch in parquet.iter_batches(batch_size=_BATCH):
        sink = io.BytesIO()
        pacsv.write_csv(
            pa.Table.from_batches([batch]), sink, pacsv.WriteOptions(include_header=header)
        )
        header = False
        yield sink.getvalue()
    if header:  # no rows: still give the header
        sink = io.BytesIO()
        pacsv.write_csv(parquet.schema_arrow.empty_table(), sink)
        yield sink.getvalue()


def _xlsx_value(value: Any) -> Any:
    if isinstance(value, Decimal):
        return float(value)
    if isinstance(value, dt.datetime) and value.tzinfo is not None:
        return value.astimezone(dt.UTC).replace(tzinfo=None)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if isinstance(value, dict | list | tuple):
        return str(value)
    return value


def write_xlsx(path: Path, sheet: str) -> Path:
    """The whole output as an XLSX file in a temp file (deleted by the caller once sent)."""
    import xlsxwriter

    parquet = pq.ParquetFile(path)
    rows = parquet.metadata.num_rows
    if rows > XLSX_MAX_ROWS:
        raise BadRequestError(
            f"{rows:,} rows do not fit an Excel sheet ({XLSX_MAX_ROWS:,} at most); "
            "download it as csv or parquet"
        )
    handle, name = tempfile.mkstemp(prefix="kalla-", suffix=".xlsx")
    os.close(handle)
    target = Path(name)
    try:
        workbook = xlsxwriter.Workbook(
            str(target),
            {"constant_memory": True, "strings_to_numbers": False, "strings_to_formulas": False},
        )
        worksheet = workbook.add_worksheet(sheet[:31])
        bold = workbook.add_format({"bold": True})
        date_format = workbook.add_format({"num_format": "yyyy-mm-dd"})
        datetime_format = workbook.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
        names = parquet.schema_arrow.names
        for c, name_ in enumerate(names):
            worksheet.write_string(0, c, name_, bold)
        r = 1
        for batch in parquet.iter_batches(batch_size=_BATCH):
            for row in batch.to_pylist():
                for c, name_ in enumerate(names):
                    value = _xlsx_value(row[name_])
                    if value is None:
                        continue
                    if isinstance(value, dt.datetime):
                        worksheet.write_datetime(r, c, value, datetime_format)
                    elif isinstance(value, dt.date):
                        worksheet.write_datetime(
                            r, c, dt.datetime.combine(value, dt.time()), date_format
                        )
                    elif isinstance(value, bool):
                        worksheet.write_boolean(r, c, value)
                    elif isinstance(value, int | float):
                        worksheet.write_number(r, c, value)
                    else:
                        worksheet.write_string(r, c, str(value))
                r += 1
        workbook.close()
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return target
