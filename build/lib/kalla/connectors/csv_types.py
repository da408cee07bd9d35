"""Exact column typing for text read from CSV: the way a finance user means the values.

Every value is read as text first; each column's type is then decided from ALL its values,
not a sample, with these rules (empty fields are NULL and do not vote):

- all ``true``/``false`` (any case)                          → bool
- all integers: optional sign, no leading zeros, ≤ 18 digits → int64
  (``00123`` keeps the column text: account numbers and ids keep their zeros)
- all plain decimals, at least one with a point              → decimal128(p, s), never float:
  s = most digits seen after the point, p = most digits seen before it + s (≤ 38)
- all ``YYYY-MM-DD``                                          → date32
- all ``YYYY-MM-DD[ T]HH:MM:SS[.ffffff]`` (dates may mix in)  → timestamp[us]
- anything else (exponents such as ``1e5`` included)         → string

Checks run with pyarrow.compute over whole columns on a thread per column; a small sample
only decides which rule to try first, so text columns cost almost nothing.
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor

import pyarrow as pa
import pyarrow.compute as pc

_BOOL = r"^(?i:true|false)$"
_INT = r"^[+-]?(?:0|[1-9][0-9]{0,17})$"
_DECIMAL = r"^[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)$"
_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}(?:[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?)?$"

_SAMPLE = 256
_MAX_PRECISION = 38


def infer_table(table: pa.Table) -> pa.Table:
    """Cast every text column of ``table`` to the type its values call for."""
    if table.num_columns == 0:
        return table
    workers = min(table.num_columns, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kalla-csv-type") as pool:
        columns = list(pool.map(infer_column, table.columns))
    return pa.Table.from_arrays(columns, names=table.column_names)


def infer_column(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """The column cast to its inferred type (unchanged when it stays text).

    Values padded with spaces (`` 19.99``, as some exports write them) are typed by their
    trimmed text; a column that stays text keeps its spaces."""
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        return column
    if len(column) == column.null_count:
        return column
    sample = _sample(column)
    typed = _typed(column, sample)
    trimmed_sample = [value.strip() for value in sample]
    if typed is not column or trimmed_sample == sample:
        return typed
    trimmed = pc.utf8_trim_whitespace(column)
    typed = _typed(trimmed, trimmed_sample)
    return column if typed is trimmed else typed


def _typed(column: pa.ChunkedArray, sample: list[str]) -> pa.ChunkedArray:
    if _sample_matches(sample, _BOOL) and _all_match(column, _BOOL):
        return pc.equal(pc.utf8_lower(column), "true")
    if _sample_matches(sample, _DECIMAL):
        if _sample_matches(sample, _INT) and _all_match(column, _INT):
            return _unplus(column).cast(pa.int64())
        if _all_match(column, _DECIMAL):
            decimal = _decimal_type(column)
            if decimal is not None:
                return _cast_or_keep(_unplus(column), decimal, fallback=column)
        return column
    if _sample_matches(sample, _TIMESTAMP):
        if _all_match(column, _DATE):
            return _cast_or_keep(column, pa.date32())
        if _all_match(column, _TIMESTAMP):
            return _cast_or_keep(column, pa.timestamp("us"))
    return column


def exact_decimal(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Decimal text (a database numeric read as text) as the smallest exact decimal128.

    Unlike ``infer_column`` whole numbers become decimal(p, 0), not int64: the source said
    numeric. Values that fit no decimal128 (NaN, over 38 digits) keep the column text.
    """
    if len(column) == column.null_count or not _all_match(column, _DECIMAL):
        return column
    decimal = _decimal_type(column, need_point=False)
    if decimal is None:
        return column
    return _cast_or_keep(_unplus(column), decimal, fallback=column)


def _sample(column: pa.ChunkedArray) -> list[str]:
    values: list[str] = []
    for chunk in column.chunks:
        for value in chunk.drop_null()[:_SAMPLE].to_pylist():
            values.append(value)
            if len(values) >= _SAMPLE:
                return values
    return values


def _sample_matches(values: list[str], pattern: str) -> bool:
    regex = re.compile(pattern)
    return all(regex.match(value) and value[-1:] != "\n" for value in values)


def _all_match(column: pa.ChunkedArray, pattern: str) -> bool:
    # Nulls are skipped: they fit any type.
    matched = pc.match_substring_regex(column, pattern)
    return bool(pc.all(matched, skip_nulls=True, min_count=0).as_py())


def _decimal_type(column: pa.ChunkedArray, *, need_point: bool = True) -> pa.DataType | None:
    """decimal128(p, s) holding every value exactly, or None when it needs more than 38 digits."""
    digits = pc.utf8_ltrim(column, "+-")
    length = pc.utf8_length(digits)
    point = pc.find_substring(digits, ".")
    has_point = pc.greater_equal(point, 0)
    after = pc.if_else(has_point, pc.subtract(pc.subtract(length, point), 1), 0)
    before = pc.if_else(has_point, point, length)
    if need_point and not pc.any(has_point).as_py():
        return None  # integers too long for int64: text, as the rules say
    scale = int(pc.max(after).as_py() or 0)
    integer_digits = int(pc.max(before).as_py() or 0)
    precision = max(integer_digits + scale, 1)
    if precision > _MAX_PRECISION:
        return None
    return pa.decimal128(precision, scale)


def _unplus(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Arrow's number parsers refuse a leading '+'; the rules above allow one."""
    return pc.utf8_ltrim(column, "+")


def _cast_or_keep(
    column: pa.ChunkedArray, target: pa.DataType, *, fallback: pa.ChunkedArray | None = None
) -> pa.ChunkedArray:
    """Cast, or keep the text when a value matched the shape but is no real value (2024-02-30)."""
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return column if fallback is None else fallback
