"""How a decimal column travels from the database, and how it becomes an exact decimal128.

Up to 18 digits a decimal travels as its unscaled bigint (``amount * 100``), which readers
decode far faster than a numeric, and which becomes a decimal128 without any arithmetic; up
to 28 digits and scale 10 as the reader's own decimal where it has one (connectorx); anything
larger, or a numeric with no declared scale, as text that Arrow parses exactly.
"""

from __future__ import annotations

import pyarrow as pa

from kalla.connectors.csv_types import exact_decimal
from kalla.connectors.sql.catalog import Column

# connectorx reads numerics through a 28-digit decimal and rescales them to scale 10.
NATIVE_DECIMAL_MAX_PRECISION = 28
NATIVE_DECIMAL_MAX_SCALE = 10
# Up to 18 digits a decimal travels fastest as its unscaled integer (amount * 10^scale as a
# bigint): decoding a bigint costs connectorx far less than decoding a numeric.
SCALED_INT_MAX_PRECISION = 18


def decimal_transport(column: Column, *, native: bool = True) -> str:
    """How a decimal column travels: "scaled" bigint, the reader's "native" decimal (where
    ``native``: connectorx has one), or exact "text"."""
    precision, scale = column.precision, column.scale
    if precision is None or scale is None or scale < 0 or precision > 38:
        return "text"  # no declared scale (or one Arrow cannot hold): parse the text exactly
    if precision <= SCALED_INT_MAX_PRECISION:
        return "scaled"
    if native and precision <= NATIVE_DECIMAL_MAX_PRECISION and scale <= NATIVE_DECIMAL_MAX_SCALE:
        return "native"
    return "text"


def declared_decimal(column: Column) -> pa.DataType | None:
    """The decimal128 a decimal column declares, or None (no scale, or beyond 38 digits)."""
    precision, scale = column.precision, column.scale
    if column.kind == "decimal" and precision is not None and scale is not None:
        return pa.decimal128(precision, scale) if precision <= 38 else None
    return None


def decimal_from_unscaled(values: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """Unscaled integers (19.99 read as 1999) as decimals: the same 128-bit integers with the
    target's scale, so no value is multiplied or rounded."""
    wide = values.cast(pa.decimal128(19, 0))
    chunks = [
        pa.Array.from_buffers(target, len(chunk), chunk.buffers(), chunk.null_count, chunk.offset)
        for chunk in wide.chunks
    ]
    return pa.chunked_array(chunks, type=target)


def decimal_from_text(values: pa.ChunkedArray, target: pa.DataType | None) -> pa.ChunkedArray:
    """Numerics read as text, parsed exactly; NaN or over-long values keep the column text."""
    if target is not None:
        try:
            return values.cast(target)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            pass
    return exact_decimal(values)
