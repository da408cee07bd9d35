"""Arrow types as SQL types, for the casts and typed literals the plan writes."""

from __future__ import annotations

import pyarrow as pa
from sqlglot import exp

_INTEGERS = {
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INT",
    pa.int64(): "BIGINT",
    pa.uint8(): "SMALLINT",
    pa.uint16(): "INT",
    pa.uint32(): "BIGINT",
    pa.uint64(): "DECIMAL(20, 0)",
}


def sql_type(kind: pa.DataType) -> exp.DataType:
    """The SQL type that holds ``kind``'s values exactly; ValueError when there is none."""
    if pa.types.is_dictionary(kind):
        return sql_type(kind.value_type)
    if kind in _INTEGERS:
        return exp.DataType.build(_INTEGERS[kind])
    if pa.types.is_decimal(kind):
        return exp.DataType.build(f"DECIMAL({kind.precision}, {kind.scale})")
    if pa.types.is_float16(kind) or pa.types.is_float32(kind):
        return exp.DataType.build("REAL")
    if pa.types.is_float64(kind):
        return exp.DataType.build("DOUBLE")
    if pa.types.is_boolean(kind):
        return exp.DataType.build("BOOLEAN")
    if pa.types.is_string(kind) or pa.types.is_large_string(kind):
        return exp.DataType.build("VARCHAR")
    if pa.types.is_date(kind):
        return exp.DataType.build("DATE")
    if pa.types.is_timestamp(kind):
        return exp.DataType.build("TIMESTAMP")
    if pa.types.is_time(kind):
        return exp.DataType.build("TIME")
    raise ValueError(f"no SQL type for {kind}")
