"""Content digests of tables that do not depend on row order, file layout or engine.

The construction (``kalla-multiset-sha256/1``, specified for auditors in docs/audit.md):

1. Each column has a *canonical type* derived from its Arrow type (all integer widths are
   ``int``, every string type is ``string``, a decimal is ``decimal(<scale>)`` whatever its
   precision or width, …); a type without one (list, struct, map, …) has no digest.
2. Each row is encoded as bytes: per column a presence byte (0 NULL, 1 value) and a
   fixed-width field (zeros for NULL; for strings and binaries the byte length), then the
   bytes of every string/binary value in column order. NULL and "" therefore differ, and
   so do 1.5 and 1.50 (the scale is part of the type).
3. Each row's hash is SHA-256 of its encoding, read as a 256-bit little-endian integer; the
   table's sum is the sum of its rows' hashes modulo 2^256. Addition commutes, so the sum
   is the same in any row order and over any split into files, batches or partitions.
4. The digest is SHA-256 of a short text naming the algorithm, the columns (names and
   canonical types), the row count and the sum.

This module holds the construction twice: a vectorised encoder (``encode_fixed`` and
``encode_rows``, numpy and pyarrow over whole batches) that an engine pairs with its own
SHA-256 and ``sum_hashes``, and ``reference_digest``, a value-by-value implementation
written straight from the specification, which the property tests hold the fast path to.
"""

from __future__ import annotations

import hashlib
import math
import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kalla.errors import EvidenceError

ALGORITHM = "kalla-multiset-sha256/1"
MODULUS = 1 << 256
CANONICAL_NAN = 0x7FF8000000000000
_EMPTY = pa.scalar(b"", pa.binary())
_TIME_UNITS = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}


@dataclass(frozen=True)
class Column:
    """One column as the digest sees it: its name, canonical type and fixed field width."""

    name: str
    type: str  # canonical type, e.g. "int", "decimal(2)", "string"
    width: int  # bytes of the fixed field after the presence byte

    @property
    def variable(self) -> bool:
        """Whether the value's bytes follow the fixed fields (strings and binaries)."""
        return self.type in ("string", "binary")


def _storage(t: pa.DataType) -> pa.DataType:
    """The type whose values a column holds: dictionaries decoded, extensions unwrapped."""
    while True:
        if isinstance(t, pa.ExtensionType):
            t = t.storage_type
        elif pa.types.is_dictionary(t):
            t = t.value_type
        else:
            return t


def canonical_type(t: pa.DataType) -> tuple[str, int]:
    """(canonical type, fixed field width) of an Arrow type; EvidenceError when it has none."""
    t = _storage(t)
    if pa.types.is_null(t):
        return "null", 0
    if pa.types.is_boolean(t):
        return "bool", 1
    if pa.types.is_uint64(t):
        return "uint64", 8
    if pa.types.is_integer(t):
        return "int", 8
    if pa.types.is_floating(t):
        return "float", 8
    if pa.types.is_decimal(t):
        return f"decimal({t.scale})", 16
    if pa.types.is_date(t):
        return "date", 4
    if pa.types.is_timestamp(t):
        return ("timestamp_tz" if t.tz else "timestamp"), 12
    if pa.types.is_duration(t):
        return "duration", 12
    if pa.types.is_time(t):
        return "time", 8
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return "string", 4
    if (
        pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
        or pa.types.is_fixed_size_binary(t)
    ):
        return "binary", 4
    raise EvidenceError(f"type {t} has no canonical digest encoding")


def canonical_columns(schema: pa.Schema) -> tuple[Column, ...]:
    """The digest's view of a schema; names every column whose type has no encoding."""
    columns, problems = [], []
    for field in schema:
        try:
            kind, width = canonical_type(field.type)
        except EvidenceError:
            problems.append(f"column '{field.name}' has type {field.type}")
            continue
        columns.append(Column(field.name, kind, width))
    if problems:
        raise EvidenceError(
            "the table has no content digest: these column types have no canonical encoding "
            "(docs/audit.md lists those that do)",
            problems=problems,
        )
    return tuple(columns)


# ---- the digest value -------------------------------------------------------------------


@dataclass(frozen=True)
class TableDigest:
    """A table's row count and sum of row hashes; digests of parts add up to the whole's."""

    columns: tuple[tuple[str, str], ...]  # (name, canonical type) per column
    rows: int = 0
    total: int = 0  # sum of the rows' hashes modulo 2^256

    @classmethod
    def empty(cls, columns: Sequence[Column]) -> TableDigest:
        return cls(tuple((c.name, c.type) for c in columns))

    def __add__(self, other: TableDigest) -> TableDigest:
        if other.columns != self.columns:
            raise EvidenceError(
                "cannot combine digests of tables with different columns: "
                f"{_describe(self.columns)} and {_describe(other.columns)}"
            )
        return TableDigest(
            self.columns, self.rows + other.rows, (self.total + other.total) % MODULUS
        )

    def preimage(self) -> bytes:
        """The text whose SHA-256 is the digest (docs/audit.md, step 4)."""
        lines = [ALGORITHM, f"columns {len(self.columns)}"]
        lines += [f"{len(name.encode())}:{name} {kind}" for name, kind in self.columns]
        lines += [f"rows {self.rows}", f"sum {self.total:064x}", ""]
        return "\n".join(lines).encode()

    @property
    def hexdigest(self) -> str:
        return hashlib.sha256(self.preimage()).hexdigest()


def _describe(columns: Sequence[tuple[str, str]]) -> str:
    return "(" + ", ".join(f"{n} {t}" for n, t in columns) + ")"


def combine(digests: Iterable[TableDigest]) -> TableDigest:
    """The digest of the union (as a multiset) of tables with the same columns."""
    parts = list(digests)
    if not parts:
        raise ValueError("combine() needs at least one digest")
    total = parts[0]
    for part in parts[1:]:
        total = total + part
    return total


# ---- the fast path: encode a batch's rows at once, sum a batch's row hashes --------------


def sum_hashes(hashes: pa.Array) -> int:
    """Sum (not yet reduced mod 2^256) of a column of 32-byte SHA-256 row hashes, each read
    as a little-endian integer: eight 32-bit limbs summed column-wise in numpy, then carried
    once in Python."""
    if not pa.types.is_binary(hashes.type):
        hashes = hashes.cast(pa.binary())
    n = len(hashes)
    if n == 0:
        return 0
    if hashes.null_count:
        raise ValueError("row hashes must not be NULL")
    offsets = np.frombuffer(
        hashes.buffers()[1], dtype=np.int32, count=n + 1, offset=4 * hashes.offset
    )
    start, end = int(offsets[0]), int(offsets[-1])
    if end - start != 32 * n:
        raise ValueError("row hashes must be 32 bytes each (SHA-256)")
    limbs = np.frombuffer(hashes.buffers()[2], dtype="<u4", count=8 * n, offset=start)
    sums = limbs.reshape(n, 8).sum(axis=0, dtype=np.uint64)  # exact below 2^32 rows
    return sum(int(s) << (32 * j) for j, s in enumerate(sums))


def _plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array of the storage type (decoded, unwrapped, no view types)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    if isinstance(arr.type, pa.ExtensionType):
        arr = arr.storage
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if pa.types.is_string_view(arr.type):
        arr = arr.cast(pa.string())
    elif pa.types.is_binary_view(arr.type):
        arr = arr.cast(pa.binary())
    return arr


def _values(arr: pa.Array, dtype: str) -> np.ndarray[Any, Any]:
    """The value buffer of a fixed-width array as numpy (slots under NULL hold anything)."""
    width = np.dtype(dtype).itemsize
    return np.frombuffer(arr.buffers()[1], dtype=dtype, count=len(arr), offset=width * arr.offset)


def _put(field: np.ndarray[Any, Any], dtype: str, values: np.ndarray[Any, Any]) -> None:
    """Store ``values`` (one or more per row) little-endian into a byte field of each row:
    one typed store per value instead of one per byte."""
    if not len(field):  # an empty batch (an engine may hand one over): -1 cannot be solved
        return
    field.view(dtype)[:] = values.reshape(len(field), -1)


def _seconds_nanos(values: np.ndarray[Any, Any], unit: str, field: np.ndarray[Any, Any]) -> None:
    seconds, nanos = np.divmod(values, 1_000_000_000 // _TIME_UNITS[unit])
    _put(field[:, :8], "<i8", seconds)
    _put(field[:, 8:], "<u4", (nanos * _TIME_UNITS[unit]).astype("<u4"))


def _decimal(arr: pa.Array, column: Column, field: np.ndarray[Any, Any]) -> None:
    """The unscaled integer as 16 bytes (two's complement), whatever the type's width."""
    width = arr.type.byte_width
    n = len(arr)
    words = field.view("<i8")  # 2 words per row
    if width < 16:  # decimal32 / decimal64: widen, then repeat the sign
        small = _values(arr, "<i4" if width == 4 else "<i8").astype("<i8")
        words[:, 0] = small
        words[:, 1] = small >> 63
        return
    raw = np.frombuffer(arr.buffers()[1], "<i8", count=width // 8 * n, offset=width * arr.offset)
    raw = raw.reshape(n, width // 8)
    if width > 16:  # decimal256: every value must fit in 128 bits
        extension = raw[:, 2:] != (raw[:, 1:2] >> 63)
        if arr.null_count:
            extension &= np.asarray(arr.is_valid(), dtype=bool)[:, None]
        if extension.any():
            raise EvidenceError(
                f"column '{column.name}' holds a decimal beyond 128 bits, which has no "
                "canonical digest encoding"
            )
    words[:] = raw[:, :2]


def _days(arr: pa.Array, column: Column) -> np.ndarray[Any, Any]:
    days = _values(arr, "<i8") // 86_400_000
    valid = days if not arr.null_count else days[np.asarray(arr.is_valid(), dtype=bool)]
    if len(valid) and (valid.min() < -(2**31) or valid.max() >= 2**31):
        raise EvidenceError(f"column '{column.name}' holds a date beyond 32-bit days")
    return days.astype("<i4")


def _fixed(arr: pa.Array, column: Column, field: np.ndarray[Any, Any]) -> pa.Array | None:
    """Write the fixed fields of one column into ``field`` (rows x width bytes); return the
    array of value bytes for a string/binary column. Fields under NULL are zeroed later."""
    t, kind = arr.type, column.type
    if kind == "null":
        return None
    if kind == "bool":
        field[:, 0] = np.asarray(arr.fill_null(False), dtype=np.uint8)
    elif kind == "int":
        _put(field, "<i8", np.asarray(arr.cast(pa.int64()).fill_null(0), "<i8"))
    elif kind == "uint64":
        _put(field, "<u8", _values(arr, "<u8"))
    elif kind == "float":
        doubles = np.asarray(arr.cast(pa.float64()).fill_null(0.0), dtype="<f8")
        bits = doubles.view("<i8").copy()
        bits[np.isnan(doubles)] = CANONICAL_NAN
        _put(field, "<i8", bits)
    elif kind.startswith("decimal"):
        _decimal(arr, column, field)
    elif kind == "date":
        days = _values(arr, "<i4") if pa.types.is_date32(t) else _days(arr, column)
        _put(field, "<i4", days)
    elif kind in ("timestamp", "timestamp_tz", "duration"):
        _seconds_nanos(_values(arr, "<i8"), t.unit, field)
    elif kind == "time":
        dtype = "<i4" if pa.types.is_time32(t) else "<i8"
        _put(field, "<i8", _values(arr, dtype).astype("<i8") * _TIME_UNITS[t.unit])
    else:  # string / binary: the byte length here, the bytes after the fixed fields
        data = arr.cast(pa.binary()) if kind == "binary" else arr.cast(pa.string())
        offsets = np.frombuffer(
            data.buffers()[1], dtype="<i4", count=len(data) + 1, offset=4 * data.offset
        )
        _put(field, "<u4", np.diff(offsets).astype("<u4"))
        return data if kind == "binary" else data.view(pa.binary())
    return None


def encode_fixed(
    arrays: Sequence[pa.Array], columns: Sequence[Column]
) -> tuple[pa.Array, list[pa.Array]]:
    """The fixed part of every row's encoding (docs/audit.md, step 2: presence bytes and
    fixed fields), as a binary array, and the string/binary columns whose bytes follow it.

    Vectorised: the fields are written column by column into one (rows x width) buffer.
    """
    arrays = [_plain(a) for a in arrays]
    n = len(arrays[0]) if arrays else 0
    width = sum(1 + c.width for c in columns)
    if n * width >= 2**31:
        raise ValueError("encode_fixed: batch too large for 32-bit offsets; pass smaller batches")
    fixed = np.empty((n, width), dtype=np.uint8)  # every byte is written below
    tails: list[pa.Array] = []
    position = 0
    for arr, column in zip(arrays, columns, strict=True):
        if pa.types.is_null(arr.type):
            present = np.zeros(n, dtype=bool)
        elif arr.null_count:
            present = np.asarray(arr.is_valid(), dtype=bool)
        else:
            present = None
        fixed[:, position] = 1 if present is None else present
        field = fixed[:, position + 1 : position + 1 + column.width]
        tail = _fixed(arr, column, field)
        if present is not None and column.width:
            field[~present] = 0
        if tail is not None:
            tails.append(tail)
        position += 1 + column.width
    offsets = np.arange(0, (n + 1) * width, width, dtype=np.int32)
    encoded = pa.Array.from_buffers(
        pa.binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(fixed)]
    )
    return encoded, tails


def encode_rows(arrays: Sequence[pa.Array], columns: Sequence[Column]) -> pa.Array:
    """The canonical encoding of every row of one batch (docs/audit.md, step 2), as binary:
    the fixed part, then the string bytes appended by one element-wise join."""
    fixed, tails = encode_fixed(arrays, columns)
    if not tails:
        return fixed
    return pc.binary_join_element_wise(fixed, *tails, _EMPTY, null_handling="replace")


def digest_batches(batches: Iterable[pa.RecordBatch], schema: pa.Schema) -> TableDigest:
    """Digest of record batches with hashlib, one row at a time after vectorised encoding:
    for small tables and for engines without a vectorised SHA-256."""
    columns = canonical_columns(schema)
    rows, total = 0, 0
    for batch in batches:
        for row in encode_rows(batch.columns, columns).to_pylist():
            total += int.from_bytes(hashlib.sha256(row).digest(), "little")
        rows += batch.num_rows
    return TableDigest(tuple((c.name, c.type) for c in columns), rows, total % MODULUS)


# ---- the reference: the specification, one value at a time -------------------------------


def _reference_field(value: Any, raw: Any, column: Column, t: pa.DataType) -> tuple[bytes, bytes]:
    """(fixed field, tail bytes) of one non-NULL value; ``raw`` is its integer form for
    temporal types."""
    kind = column.type
    if kind == "bool":
        return bytes([1 if value else 0]), b""
    if kind == "int":
        return struct.pack("<q", value), b""
    if kind == "uint64":
        return struct.pack("<Q", value), b""
    if kind == "float":
        number = float(value)
        if math.isnan(number):
            return struct.pack("<Q", CANONICAL_NAN), b""
        return struct.pack("<d", number), b""
    if kind.startswith("decimal"):
        sign, digits, exponent = Decimal(value).as_tuple()
        assert isinstance(exponent, int)
        unscaled = int("".join(map(str, digits)) or "0") * 10 ** (exponent + t.scale)
        if not -(2**127) <= unscaled < 2**127:
            raise EvidenceError(
                f"column '{column.name}' holds a decimal beyond 128 bits, which has no "
                "canonical digest encoding"
            )
        return (-unscaled if sign else unscaled).to_bytes(16, "little", signed=True), b""
    if kind == "date":
        days = raw if pa.types.is_date32(t) else raw // 86_400_000
        if not -(2**31) <= days < 2**31:
            raise EvidenceError(f"column '{column.name}' holds a date beyond 32-bit days")
        return struct.pack("<i", days), b""
    if kind in ("timestamp", "timestamp_tz", "duration"):
        seconds, rest = divmod(raw * _TIME_UNITS[t.unit], 1_000_000_000)
        return struct.pack("<qI", seconds, rest), b""
    if kind == "time":
        return struct.pack("<q", raw * _TIME_UNITS[t.unit]), b""
    data = value.encode("utf-8") if kind == "string" else bytes(value)
    return struct.pack("<I", len(data)), data


def reference_row(
    values: Sequence[Any],
    raws: Sequence[Any],
    columns: Sequence[Column],
    types: Sequence[pa.DataType],
) -> bytes:
    """One row's canonical encoding (docs/audit.md, step 2), built value by value."""
    head, tail = b"", b""
    for value, raw, column, t in zip(values, raws, columns, types, strict=True):
        if value is None:
            head += b"\x00" + bytes(column.width)
            continue
        field, data = _reference_field(value, raw, column, t)
        head += b"\x01" + field
        tail += data
    return head + tail


def reference_digest(table: pa.Table) -> TableDigest:
    """The digest computed straight from the specification, value by value (slow)."""
    columns = canonical_columns(table.schema)
    types = [_storage(f.type) for f in table.schema]
    values, raws = [], []
    for index, t in enumerate(types):
        data = table.column(index)
        if pa.types.is_dictionary(data.type) or isinstance(data.type, pa.ExtensionType):
            data = pa.chunked_array([_plain(chunk) for chunk in data.chunks], type=t)
        values.append(data.to_pylist())
        temporal = pa.types.is_temporal(t) and not pa.types.is_null(t)
        integer = pa.int32() if pa.types.is_date32(t) or pa.types.is_time32(t) else pa.int64()
        raws.append(data.cast(integer).to_pylist() if temporal else [None] * len(data))
    total = 0
    for i in range(table.num_rows):
        row = reference_row([v[i] for v in values], [r[i] for r in raws], columns, types)
        total += int.from_bytes(hashlib.sha256(row).digest(), "little")
    return TableDigest(tuple((c.name, c.type) for c in columns), table.num_rows, total % MODULUS)
