"""How a file source is read: the recipe's per-source ``format`` and the key columns.

Every field of ``FileFormat`` is optional: what is left out is detected from the file's
content (encoding, delimiter, quoting, decimal and thousands separators, date order, the
lines above the header). A recipe writes it on a file source::

    "format": {"delimiter": ";", "decimal": ",", "date_format": "%d.%m.%Y",
               "skip_rows": 3, "types": {"Belegnr": "text", "Betrag": "decimal"}}

``Reading`` is what staging hands a connector: the format and the columns that must be
typed as keys (a recipe ``primary_key`` column, or one the SQL compares with ``=`` to the
other side), which never become integers (see ``connectors.typing``).
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

DELIMITERS = {",": ",", ";": ";", "\t": "\t", "|": "|", "tab": "\t", "\\t": "\t"}
"""Delimiters detected by content; ``format.delimiter`` takes any single character."""

THOUSANDS = (",", ".", " ", "'", "’", "\u00a0", "\u202f", "")
"""Thousands separators ``format.thousands`` accepts ("" for none)."""


class ColumnType(StrEnum):
    """What ``format.types`` may declare for a column."""

    TEXT = "text"
    INTEGER = "integer"
    DECIMAL = "decimal"  # plain or formatted amounts: 1.234,56 · $99.00 · (45.10) · 45.10 CR
    DATE = "date"
    TIMESTAMP = "timestamp"
    BOOLEAN = "boolean"


class FileFormat(BaseModel):
    """Overrides for reading one file source; None means "detect from the content"."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    delimiter: str | None = Field(
        default=None, description="field separator: one character, or 'tab'"
    )
    quote: str | None = Field(default=None, description="quote character (default '\"')")
    escape: str | None = Field(
        default=None, description="escape character inside quoted fields (none by default)"
    )
    encoding: str | None = Field(
        default=None, description="text encoding: utf-8, utf-16, windows-1252, latin-1, …"
    )
    decimal: Literal[".", ","] | None = Field(default=None, description="decimal separator")
    thousands: str | None = Field(
        default=None, description="thousands separator: ',', '.', ' ', \"'\" or '' for none"
    )
    date_format: str | None = Field(
        default=None, description="strftime pattern of the file's dates, e.g. '%d/%m/%Y'"
    )
    skip_rows: int = Field(default=0, ge=0, description="rows above the header to skip")
    sheet: str | int | None = Field(
        default=None, description="spreadsheet sheet: its name or 0-based position"
    )
    credit_sign: Literal["negative", "positive"] = Field(
        default="negative",
        description="sign of an amount written with a CR suffix (DR takes the other sign)",
    )
    types: dict[str, ColumnType] = Field(
        default_factory=dict, description="column name → type, instead of detecting it"
    )

    @field_validator("delimiter")
    @classmethod
    def _one_character(cls, value: str | None) -> str | None:
        if value is None:
            return None
        value = DELIMITERS.get(value.lower(), value)
        if len(value) != 1 or value in '\r\n"':
            raise ValueError(f"delimiter must be one character or 'tab', not {value!r}")
        return value

    @field_validator("quote", "escape")
    @classmethod
    def _quote_character(cls, value: str | None) -> str | None:
        if value is not None and (len(value) != 1 or value in "\r\n"):
            raise ValueError(f"must be one character, not {value!r}")
        return value

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str | None) -> str | None:
        if value is None:
            return None
        try:
            return codecs.lookup(value).name
        except LookupError:
            raise ValueError(
                f"unknown encoding {value!r} (e.g. utf-8, utf-16, windows-1252, latin-1)"
            ) from None

    @field_validator("thousands")
    @classmethod
    def _known_thousands(cls, value: str | None) -> str | None:
        if value is not None and value not in THOUSANDS:
            shown = ", ".join(repr(t) for t in THOUSANDS)
            raise ValueError(f"thousands separator must be one of {shown}, not {value!r}")
        return value

    @field_validator("date_format")
    @classmethod
    def _date_directives(cls, value: str | None) -> str | None:
        if value is None:
            return None
        from kalla.connectors.dates import check_pattern

        check_pattern(value)
        return value

    @model_validator(mode="after")
    def _separators_differ(self) -> FileFormat:
        if self.decimal is not None and self.thousands == self.decimal:
            raise ValueError("decimal and thousands separators must differ")
        if self.delimiter is not None and self.delimiter == self.quote:
            raise ValueError("delimiter and quote must differ")
        return self

    @property
    def is_default(self) -> bool:
        return self == _DEFAULT


_DEFAULT = FileFormat()


@dataclass(frozen=True)
class Reading:
    """What staging tells a connector about reading its source."""

    format: FileFormat = _DEFAULT
    key_columns: frozenset[str] = field(default_factory=frozenset)


DEFAULT_READING = Reading()
