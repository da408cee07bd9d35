"""What every peer shares: the job, output paths, reading with exact types. Stdlib at import."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kalla.bench.schema import (
    COUNT_KEYS,
    EXPECTED_FILE,
    INVOICE_COLUMNS,
    MATCHED_FILE,
    PAYMENT_COLUMNS,
    UNMATCHED_LEFT_FILE,
    UNMATCHED_RIGHT_FILE,
)

if TYPE_CHECKING:
    import pyarrow as pa

_UNITS = {"": 1, "K": 1024, "M": 1024**2, "G": 1024**3, "T": 1024**4}


def parse_size(text: str) -> int:
    """``"16G"``, ``"512MiB"`` or a number of bytes → bytes (stdlib twin of kalla.settings)."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:I?B)?\s*", text.upper())
    if not match:
        raise ValueError(f"not a size: {text!r} (use e.g. 16G, 512M or a number of bytes)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


@dataclass(frozen=True)
class PeerJob:
    """One run of the workload."""

    left: Path
    right: Path
    out: Path
    fmt: str  # "parquet" or "csv"
    memory_limit: int | None = None  # bytes; engines that support a limit get it
    counts: tuple[int, int, int] | None = None  # only the floor needs them

    @property
    def matched_path(self) -> Path:
        return self.out / MATCHED_FILE

    @property
    def unmatched_left_path(self) -> Path:
        return self.out / UNMATCHED_LEFT_FILE

    @property
    def unmatched_right_path(self) -> Path:
        return self.out / UNMATCHED_RIGHT_FILE

    def output_counts(self) -> dict[str, int]:
        """Row counts of the three written outputs, read from their Parquet footers."""
        paths = (self.matched_path, self.unmatched_left_path, self.unmatched_right_path)
        return {key: parquet_rows(p) for key, p in zip(COUNT_KEYS, paths, strict=True)}

    def expected_counts(self) -> tuple[int, int, int]:
        """``counts`` or those in ``expected.json`` next to the left input."""
        if self.counts is not None:
            return self.counts
        info = json.loads((self.left.parent / EXPECTED_FILE).read_text())
        expected = info["expected"]
        return tuple(int(expected[k]) for k in COUNT_KEYS)  # type: ignore[return-value]


def counts(matched: int, unmatched_left: int, unmatched_right: int) -> dict[str, int]:
    return dict(zip(COUNT_KEYS, (matched, unmatched_left, unmatched_right), strict=True))


def parquet_rows(path: Path) -> int:
    """Rows in a Parquet file, or in all Parquet files under a directory."""
    import pyarrow.parquet as pq

    files = sorted(path.rglob("*.parquet")) if path.is_dir() else [path]
    return sum(pq.read_metadata(f).num_rows for f in files)


def arrow_type(logical: str) -> pa.DataType:
    import pyarrow as pa

    if logical == "string":
        return pa.string()
    if logical == "date":
        return pa.date32()
    match = re.fullmatch(r"decimal\((\d+),(\d+)\)", logical)
    if match:
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    raise ValueError(f"unknown logical type {logical!r}")


def columns(side: str) -> dict[str, str]:
    return INVOICE_COLUMNS if side == "invoices" else PAYMENT_COLUMNS


def arrow_schema(side: str) -> pa.Schema:
    import pyarrow as pa

    return pa.schema([(name, arrow_type(t)) for name, t in columns(side).items()])


def read_arrow(path: Path, side: str, fmt: str) -> pa.Table:
    """Read one input with pyarrow: CSV amounts as decimal128(12,2), dates as date32."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        # ParquetFile.read: the same threaded reader as read_table, without the import of
        # pyarrow.dataset (~0.3 s), so the floor stays a floor.
        return pq.ParquetFile(path).read()
    import pyarrow.csv as pacsv

    schema = arrow_schema(side)
    convert = pacsv.ConvertOptions(
        column_types=schema, strings_can_be_null=True, include_columns=schema.names
    )
    return pacsv.read_csv(path, convert_options=convert)


def emit(payload: dict[str, Any]) -> None:
    print(json.dumps(payload, sort_keys=False), flush=True)
