"""Amounts as finance exports write them, read to exact decimals.

Accepted, around the digits: a currency symbol or ISO 4217 code before or after
(``$99.00``, ``EUR 1.234,56``, ``1 234,56 €``), thousands separators (``,`` ``.`` space,
no-break space, ``'``; Indian grouping ``1,23,456.78`` too), a decimal point or comma, and
one sign: a leading or trailing minus (``-45.10``, ``45.10-``), parentheses (``(45.10)``),
or a ``CR``/``DR`` suffix (``45.10 CR``; CR is negative and DR positive by default, the
sign of a statement's credits, ``format.credit_sign: positive`` swaps them). A lone dash
(``-``, ``$ -``) is zero, as Excel's accounting format writes it.

Two styles are read: decimal point (``1,234.56``) and decimal comma (``1.234,56``). A
value such as ``1,234`` reads in both; ``connectors.typing`` settles the style per column
from its values, then from the file, then from ``format.decimal``.

Everything runs over whole columns with Arrow (RE2 regular expressions); Python sees no value.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc

POINT, COMMA = ".", ","

_SPACES = " \u00a0\u202f\u2009"  # space, no-break space, narrow no-break space, thin space
_WS = f"[\\s{_SPACES[1:]}]*"
_MINUS = "-\u2212"  # hyphen-minus and the minus sign
_SYMBOLS = (
    "US$", "C$", "CA$", "A$", "AU$", "NZ$", "HK$", "S$", "R$", "Mex$", "$",
    "€", "£", "¥", "₹", "₽", "₩", "₪", "₫", "₴", "₦", "₱", "฿", "₺", "₡", "₲", "₵", "₸",
    "₼", "₾", "¢", "zł", "Kč", "Ft", "kr.", "kr", "Kr", "Fr.", "Rs.", "Rs", "lei", "лв",
)  # fmt: skip


@lru_cache(maxsize=1)
def _currencies() -> pa.Array:
    import iso4217  # ISO 4217's own table, kept current by its package

    return pa.array(sorted({c.code for c in iso4217.Currency} | set(_SYMBOLS)), pa.string())


# A currency mark's shape: three capitals, a symbol written with letters, or one or two
# other signs; whether it is a currency is checked against the known ones afterwards (a
# regex holding every code costs Arrow ten times more per value).
_LETTERED = [re.escape(s) for s in _SYMBOLS if re.search(r"[A-Za-z]", s)]
_CURRENCY = (
    "[A-Z]{3}|"
    + "|".join(sorted(_LETTERED, key=len, reverse=True))
    + f"|[^A-Za-z{_MINUS}\\s{_SPACES[1:]}0-9.,()+]{{1,2}}"
)


@dataclass(frozen=True)
class Style:
    """One way of writing numbers: the decimal separator and the thousands separators."""

    decimal: str  # POINT or COMMA
    thousands: str  # characters that group digits ("" for none)

    @property
    def number(self) -> str:
        dec = re.escape(self.decimal)
        plain = rf"(?:0|[1-9][0-9]*)(?:{dec}[0-9]*)?|{dec}[0-9]+"
        if not self.thousands:
            return plain
        group = "[" + "".join(re.escape(c) for c in self.thousands) + "]"
        grouped = rf"[1-9][0-9]{{0,2}}(?:{group}[0-9]{{3}})+"
        if "," in self.thousands:  # Indian grouping: 1,23,45,678
            grouped += r"|[1-9][0-9]?(?:,[0-9]{2})+,[0-9]{3}"
        return rf"(?:{grouped})(?:{dec}[0-9]*)?|{plain}"

    @property
    def regex(self) -> str:
        return _amount_regex(self.number)


def style(decimal: str, thousands: str | None = None) -> Style:
    """The style with ``decimal``; ``thousands`` None means every separator but the decimal."""
    if thousands is None:
        thousands = ("," if decimal == POINT else ".") + _SPACES + "'’"
    return Style(decimal, thousands)


@lru_cache(maxsize=32)
def _amount_regex(number: str) -> str:
    cur = _CURRENCY
    sign = f"[{_MINUS}+]"
    return (
        f"^{_WS}(?P<s1>{sign})?{_WS}(?P<c0>{cur})?{_WS}(?P<po>\\()?{_WS}(?P<c1>{cur})?{_WS}"
        f"(?P<s2>{sign})?{_WS}(?P<num>{number}){_WS}(?P<c2>{cur})?{_WS}(?P<pc>\\))?{_WS}"
        f"(?P<t>[{_MINUS}]|[CcDd][Rr]\\.?)?{_WS}(?P<c3>{cur})?{_WS}$"
    )


@lru_cache(maxsize=1)
def _dash_regex() -> str:
    cur = _CURRENCY
    return f"^{_WS}(?:{cur})?{_WS}[{_MINUS}–—]{_WS}(?:{cur})?{_WS}$"


def looks_like_amount(column: pa.Array | pa.ChunkedArray, number_style: Style) -> pa.Array:
    """Per value: does it read as an amount in ``number_style`` (sign rules aside)?"""
    return pc.or_(
        pc.match_substring_regex(column, number_style.regex),
        pc.match_substring_regex(column, _dash_regex()),
    )


@dataclass(frozen=True)
class AmountRead:
    """A text column read as amounts in one style."""

    style: Style
    text: pa.ChunkedArray  # canonical decimal text ("-1234.56"); null where not read
    unread: pa.ChunkedArray  # bool: a value is present and does not read
    marked: bool  # some value has money's marks: currency, grouping, decimal comma, sign
    # forms, or exactly two decimals
    currencies: tuple[str, ...]  # the distinct currency marks written
    whole: bool  # no value has a fractional part (and none a currency)

    @property
    def unread_count(self) -> int:
        return int(pc.sum(self.unread).as_py() or 0)


def read_amounts(
    column: pa.ChunkedArray, number_style: Style, *, credit_negative: bool = True
) -> AmountRead:
    """``column`` read as amounts in ``number_style``; canonical text, ready to cast."""
    plain = _plain(column, number_style)
    if plain is not None:
        return plain
    parts = pc.extract_regex(column, number_style.regex)

    def field(name: str) -> pa.ChunkedArray:
        return pc.fill_null(pc.struct_field(parts, name), "")

    def given(name: str) -> pa.ChunkedArray:
        return pc.not_equal(field(name), "")

    def as_int(flags: pa.ChunkedArray) -> pa.ChunkedArray:
        return pc.cast(flags, pa.int8())

    s1, s2, tail = field("s1"), field("s2"), field("t")
    minus = f"^[{_MINUS}]$"
    negatives = pc.add(
        pc.add(
            as_int(pc.match_substring_regex(s1, minus)), as_int(pc.match_substring_regex(s2, minus))
        ),
        pc.add(as_int(given("po")), as_int(pc.match_substring_regex(tail, minus))),
    )
    credit = pc.match_substring_regex(tail, "^[Cc]")
    debit = pc.match_substring_regex(tail, "^[Dd]")
    signs = pc.add(
        pc.add(as_int(given("s1")), as_int(given("s2"))),
        pc.add(as_int(given("po")), as_int(given("t"))),
    )
    currencies = pc.add(
        pc.add(as_int(given("c0")), as_int(given("c1"))),
        pc.add(as_int(given("c2")), as_int(given("c3"))),
    )
    written = pc.binary_join_element_wise(field("c0"), field("c1"), field("c2"), field("c3"), "")
    known = pc.or_(pc.equal(written, ""), pc.is_in(written, value_set=_currencies()))
    consistent = pc.and_(
        pc.and_(pc.equal(given("po"), given("pc")), pc.less_equal(signs, 1)),
        pc.and_(pc.less_equal(currencies, 1), known),
    )
    read = pc.fill_null(pc.and_(pc.is_valid(parts), consistent), False)
    negative = pc.or_(pc.greater(negatives, 0), credit if credit_negative else debit)

    number = field("num")
    grouping = number_style.thousands
    if grouping:
        digits = pc.replace_substring_regex(
            number, "[" + "".join(re.escape(c) for c in grouping) + "]", ""
        )
    else:
        digits = number
    if number_style.decimal == COMMA:
        digits = pc.replace_substring(digits, ",", ".")
    digits = pc.replace_substring_regex(digits, r"\.$", "")
    signed = pc.if_else(negative, pc.binary_join_element_wise("-", digits, ""), digits)

    dash = pc.fill_null(pc.match_substring_regex(column, _dash_regex()), False)
    text = pc.if_else(read, signed, pa.scalar(None, pa.string()))
    text = pc.if_else(dash, "0", text)
    read = pc.or_(read, dash)
    present = pc.is_valid(column)
    unread = pc.fill_null(pc.and_(present, pc.invert(read)), False)

    found = pc.unique(pc.filter(written, pc.and_(read, pc.not_equal(written, "")))).to_pylist()
    fraction = pc.match_substring(number, number_style.decimal)
    two_places = pc.match_substring_regex(number, re.escape(number_style.decimal) + "[0-9]{2}$")
    grouped = (
        pc.match_substring_regex(number, "[" + "".join(re.escape(c) for c in grouping) + "]")
        if grouping
        else pc.equal(number, "\0")
    )
    marks = pc.or_(
        pc.or_(pc.greater(signs, 0), pc.greater(currencies, 0)),
        pc.or_(
            pc.or_(two_places, grouped), pc.and_(fraction, pa.scalar(number_style.decimal == COMMA))
        ),
    )
    marked = bool(pc.any(pc.and_(read, marks)).as_py())
    whole = not bool(pc.any(pc.and_(read, fraction)).as_py()) and not found
    return AmountRead(
        style=number_style,
        text=text,
        unread=unread,
        marked=marked,
        currencies=tuple(sorted(str(c) for c in found)),
        whole=whole,
    )


def _plain(column: pa.ChunkedArray, number_style: Style) -> AmountRead | None:
    """The common case without a regex extraction (costly in Arrow): every value a plain
    number, ``-1234.56`` (or ``-1234,56`` in the comma style)."""
    dec = re.escape(number_style.decimal)
    shape = rf"^[{_MINUS}+]?(?:(?:0|[1-9][0-9]*)(?:{dec}[0-9]*)?|{dec}[0-9]+)$"
    if not bool(
        pc.all(pc.match_substring_regex(column, shape), skip_nulls=True, min_count=0).as_py()
    ):
        return None
    return read_plain(column, number_style)


def read_plain(column: pa.ChunkedArray, number_style: Style) -> AmountRead:
    """``column``, known to hold plain numbers only (``-1234.56``), read as amounts."""
    dec = re.escape(number_style.decimal)
    text = pc.utf8_rtrim(pc.utf8_ltrim(column, "+"), number_style.decimal)  # +5 · 5. → 5
    if pc.any(pc.match_substring(text, "\u2212")).as_py():
        text = pc.replace_substring(text, "\u2212", "-")
    if number_style.decimal == COMMA:
        text = pc.replace_substring(text, ",", ".")
    # what the amount rule asks of a column, found on a few values: one is enough
    whole = not bool(pc.any(pc.match_substring(column, number_style.decimal)).as_py())
    marked = number_style.decimal == COMMA and not whole
    if not marked:
        marked = bool(pc.any(pc.match_substring_regex(column, dec + "[0-9]{2}$")).as_py())
    if not marked:
        marked = bool(pc.any(pc.match_substring_regex(column, f"^[{_MINUS}+]")).as_py())
    return AmountRead(
        style=number_style,
        text=text,
        unread=pc.and_(pc.is_valid(column), pa.scalar(False)),  # every value reads
        marked=marked,
        currencies=(),
        whole=whole,
    )
