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
# An amount written as text the way spreadsheets export it: thousands separators, a currency
# sign, a minus or parentheses for negatives (``$1,234.50``, ``(1,234.50)``, ``-12.00``).
_GROUPED_NUMBER = (
    r"^\s*\(?\s*[-+]?\s*[$€£]?\s*[-+]?\s*(?:[0-9]{1,3}(?:,[0-9]{3})+|[0-9]+)(?:\.[0-9]+)?\s*\)?\s*$"
)
_NOT_DIGITS = r"[^0-9.]"
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
    number_scale: int | None = None  # an amount written as text: its digits after the point

    @property
    def is_date(self) -> bool:
        return self.kind in (Kind.DATE, Kind.TIMESTAMP) or self.date_format is not None

    @property
    def is_measure(self) -> bool:
        """Amount-like: decimals and floats, and integers whose name says amount."""
        if self.kind in (Kind.DECIMAL, Kind.FLOAT) or self.number_scale is not None:
            return True
        return self.kind is Kind.INTEGER and bool(_AMOUNT_NAME.search(self.name))

    @property
    def is_keyable(self) -> bool:
        """Could identify a record: text and integers that are not amounts."""
        if self.date_format is not None or self.number_scale is not None:
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
    scale = number_scale(column) if kind is Kind.TEXT and fmt is None else None
    return ColumnInfo(
        name=name, arrow_type=str(column.type), kind=kind, date_format=fmt, number_scale=scale
    )


def number_scale(column: pa.ChunkedArray) -> int | None:
    """The digits after the point when every value is an amount written as text with
    thousands separators, a currency sign or parentheses (plain numbers are typed as
    numbers when staged, so only those formats reach here); None otherwise."""
    values = column.drop_null()
    if len(values) == 0:
        return None
    if not pc.all(pc.match_substring_regex(values, _GROUPED_NUMBER)).as_py():
        return None
    if not pc.any(pc.match_substring_regex(values, r"[,$€£()]")).as_py():
        return None
    digits = pc.replace_substring_regex(values, _NOT_DIGITS, "")
    point = pc.find_substring(digits, ".")
    after = pc.if_else(
        pc.greater_equal(point, 0), pc.subtract(pc.subtract(pc.utf8_length(digits), point), 1), 0
    )
    return int(pc.max(after).as_py() or 0)


def _text_number(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """An amount written as text, as float64 (negative with a minus or parentheses)."""
    magnitude = pc.cast(pc.replace_substring_regex(column, _NOT_DIGITS, ""), pa.float64())
    negative = pc.match_substring_regex(column, r"[-(]")
    return pc.if_else(negative, pc.negate(magnitude), magnitude)


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
    """Numbers (or amounts written as text) as float64, for statistics and distances
    (never for the match itself)."""
    if pa.types.is_string(column.type) or pa.types.is_large_string(column.type):
        return _text_number(column)
    return pc.cast(column, pa.float64(), safe=False)


def as_days(column: pa.ChunkedArray, info: ColumnInfo) -> pa.ChunkedArray:
    """Days since 1970-01-01 as int64 (dates, timestamps, text dates in their layout)."""
    if info.date_format is not None:
        parsed = pc.strptime(pc.utf8_trim_whitespace(column), info.date_format, "s")
        column = pc.cast(parsed, pa.date32())
    elif pa.types.is_timestamp(column.type):
        column = pc.cast(column, pa.date32())
    return pc.cast(pc.cast(column, pa.int32()), pa.int64())
