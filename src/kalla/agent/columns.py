"""What a staged column holds, and the same column as text, numbers or days.

The builder and the tools look at columns through these few views: text (for keys), float
(for amounts: statistics only, the recipe compares exact decimals), and days since the
epoch (for dates, including dates written as text in a common layout, which the recipe
then reads with ``to_date``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import StrEnum

import pyarrow as pa
import pyarrow.compute as pc


class Kind(StrEnum):
    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"
    FLOAT = "float"
    DATE = "date"
    TIMESTAMP = "timestamp"
    BOOL = "bool"
    OTHER = "other"


# Layouts a date written as text often takes (chrono and strptime share these codes, so the
# recipe's ``to_date(col, fmt)`` reads exactly what the profile parsed). Day-first before
# month-first: a column that fits both (every day ≤ 12) is read day-first, and says so.
DATE_FORMATS = (
    "%d/%m/%Y",
    "%m/%d/%Y",
    "%d.%m.%Y",
    "%Y/%m/%d",
    "%d-%m-%Y",
    "%Y%m%d",
    "%d %b %Y",
    "%d-%b-%Y",
    "%b %d %Y",
    "%b %d, %Y",
    "%d %B %Y",
    "%B %d, %Y",
    "%d/%m/%y",
    "%m/%d/%y",
)
_AMOUNT_NAME = re.compile(
    r"amount|amt|total|value|sum|debit|credit|net|gross|paid|balance|price|fee|charge",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class ColumnInfo:
    """One column's name, Arrow type and kind; ``date_format`` when it is a date in text."""

    name: str
    arrow_type: str
    kind: Kind
    date_format: str | None = None
    parts: tuple[str, str] | None = None  # an amount split in two columns: first minus second

    @property
    def is_date(self) -> bool:
        return self.kind in (Kind.DATE, Kind.TIMESTAMP) or self.date_format is not None

    @property
    def is_measure(self) -> bool:
        """Amount-like: decimals and floats, and integers whose name says amount."""
        if self.kind in (Kind.DECIMAL, Kind.FLOAT):
            return True
        return self.kind is Kind.INTEGER and bool(_AMOUNT_NAME.search(self.name))

    @property
    def is_keyable(self) -> bool:
        """Could identify a record: text and integers that are not amounts."""
        if self.date_format is not None:
            return False
        return self.kind is Kind.TEXT or (self.kind is Kind.INTEGER and not self.is_measure)


def kind_of(data_type: pa.DataType) -> Kind:
    if pa.types.is_string(data_type) or pa.types.is_large_string(data_type):
        return Kind.TEXT
    if pa.types.is_integer(data_type):
        return Kind.INTEGER
    if pa.types.is_decimal(data_type):
        return Kind.DECIMAL
    if pa.types.is_floating(data_type):
        return Kind.FLOAT
    if pa.types.is_date(data_type):
        return Kind.DATE
    if pa.types.is_timestamp(data_type):
        return Kind.TIMESTAMP
    if pa.types.is_boolean(data_type):
        return Kind.BOOL
    return Kind.OTHER


def column_info(name: str, column: pa.ChunkedArray) -> ColumnInfo:
    kind = kind_of(column.type)
    fmt = date_format(column) if kind is Kind.TEXT else None
    return ColumnInfo(name=name, arrow_type=str(column.type), kind=kind, date_format=fmt)


def date_format(column: pa.ChunkedArray) -> str | None:
    """The first layout in ``DATE_FORMATS`` that reads every non-empty value, if any."""
    values = pc.utf8_trim_whitespace(column.drop_null())
    if len(values) == 0:
        return None
    head = values.slice(0, 200)
    for fmt in DATE_FORMATS:
        try:
            pc.strptime(head, fmt, "s")
            pc.strptime(values, fmt, "s")
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            continue
        return fmt
    return None


def as_text(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Text as the engine's ``CAST(x AS VARCHAR)`` writes it (integers, dates, text)."""
    if pa.types.is_string(column.type):
        return column
    if pa.types.is_large_string(column.type):
        return column.cast(pa.string())
    return pc.cast(column, pa.string())


def as_float(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Numbers as float64, for statistics and distances (never for the match itself)."""
    return pc.cast(column, pa.float64(), safe=False)


def as_days(column: pa.ChunkedArray, info: ColumnInfo) -> pa.ChunkedArray:
    """Days since 1970-01-01 as int64 (dates, timestamps, text dates in their layout)."""
    if info.date_format is not None:
        parsed = pc.strptime(pc.utf8_trim_whitespace(column), info.date_format, "s")
        column = pc.cast(parsed, pa.date32())
    elif pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.date32())
    return pc.cast(pc.cast(column, pa.int32()), pa.int64())
