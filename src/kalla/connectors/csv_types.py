"""Column typing for text read from files (CSV, text cells of a sheet, JSON strings).

Every value is read as text first; each column's type is then decided from ALL its values,
never a sample (empty fields are NULL and do not vote; values are typed by their text
without surrounding spaces, and a column that stays text keeps its spaces):

- ``format.types`` names the column                          → that type; every value must
  read as it, or the source is refused, naming each value that does not (row, column, text)
- all ``true``/``false`` (any case)                          → bool
- all whole numbers: optional sign, no leading zeros, ≤ 18 digits, nothing else → int64
  (``00123`` keeps the column text: account numbers and ids keep their zeros)
- all amounts (``connectors.numbers``: plain decimals, thousands separators, a decimal
  comma, currency symbols and codes, parentheses, trailing minus, CR/DR) → decimal128(p, s),
  never float: s = most digits after the decimal separator, p = most digits before it + s
- all dates in one pattern (``connectors.dates``; ISO, day-first, month-first, month
  names; ``format.date_format`` first) → date32, or timestamp[us] when values carry a time
  (timestamp[us, UTC] when every value carries a zone offset)
- anything else (exponents such as ``1e5`` included)        → string

A value written ``="00123"`` (Excel's way of keeping a CSV value as text) is read as
``00123``.

Key columns (a recipe ``primary_key`` column, or one its SQL compares with ``=`` to the other
side) are typed the same way on both sides whatever the other rows hold: they never become
integers or booleans (``00123``, ``0042`` and ``42`` are all text), so one row such as
``X-9`` cannot flip a key's type; amounts with decimals and dates in them are still read as
amounts and dates (``a.amount = b.amount`` compares numbers).

A column that MOSTLY reads as amounts with money's marks (a currency, grouping, a decimal
comma, two decimals, a sign form), or mostly as dates, is an amount or date column with bad
values: it is refused with each value that does not read (row, column, text), never made
text or NULL in silence.

Decimal style (point or comma) and date order (day or month first) are settled per column
from its own values; a column whose values read both ways (``1,234``; ``03/04/2024``)
follows the other columns of the file, then a decimal comma elsewhere in the file means
day-first dates; dates still ambiguous are refused with the ``date_format`` to write.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc

from kalla.connectors import dates as dates_
from kalla.connectors import numbers
from kalla.connectors.format import ColumnType, Reading
from kalla.errors import SourceError

_BOOL = r"^(?i:true|false)$"
_INT = r"^[+-]?(?:0|[1-9][0-9]{0,17})$"
_DECIMAL = r"^[+-]?(?:(?:0|[1-9][0-9]*)(?:\.[0-9]*)?|\.[0-9]+)$"
_DIGIT = re.compile(r"[0-9]")
_PADDING = (" ", "\t", "\u00a0", "\r", "\n")
_GROUPED_BY_POINTS = r"^[+-]?[1-9][0-9]{0,2}(?:\.[0-9]{3})+$"  # 1.234 reads as 1234 too

_SAMPLE = 256
_MAX_PRECISION = 38
_SHOWN = 5  # unreadable values listed per column

Where = Callable[[str, int], str]
"""(column, 0-based row of the table) → where a user finds the value ("row 7", "cell C9")."""


def _row(column: str, index: int) -> str:
    return f"row {index + 2}"


@dataclass(frozen=True)
class TypingRules:
    """What typing needs beyond the values: the recipe's format and key columns, and how
    messages name the source and a value's place."""

    key_columns: frozenset[str] = frozenset()
    types: Mapping[str, ColumnType] = field(default_factory=dict)
    decimal: str | None = None
    thousands: str | None = None
    date_format: str | None = None
    credit_negative: bool = True
    label: str = "source"
    where: Where = _row

    @classmethod
    def of(cls, reading: Reading, *, label: str, where: Where = _row) -> TypingRules:
        fmt = reading.format
        return cls(
            key_columns=reading.key_columns,
            types=dict(fmt.types),
            decimal=fmt.decimal,
            thousands=fmt.thousands,
            date_format=fmt.date_format,
            credit_negative=fmt.credit_sign == "negative",
            label=label,
            where=where,
        )

    def number_style(self, decimal: str) -> numbers.Style:
        return numbers.style(decimal, self.thousands)

    def date_patterns(self) -> tuple[dates_.DatePattern, ...]:
        if self.date_format is None:
            return dates_.AUTO
        return (dates_.compile_pattern(self.date_format), *dates_.AUTO)


DEFAULT_RULES = TypingRules()


def infer_table(table: pa.Table, rules: TypingRules = DEFAULT_RULES) -> pa.Table:
    """Cast every text column of ``table`` to the type its values call for (module doc);
    a SourceError lists every value that makes a column unreadable."""
    if table.num_columns == 0:
        return table
    unknown = [name for name in rules.types if name not in table.column_names]
    if unknown:
        from kalla.suggest import did_you_mean

        raise SourceError(
            f"{rules.label}: format.types names columns the file does not have",
            problems=[f"'{n}'{did_you_mean(n, table.column_names)}" for n in unknown],
        )
    workers = min(table.num_columns, os.cpu_count() or 1)
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="kalla-types") as pool:
        outcomes = list(
            pool.map(
                lambda item: _analyse(item[0], item[1], rules),
                zip(table.column_names, table.columns, strict=True),
            )
        )
    columns = _settle(outcomes, rules)
    return pa.Table.from_arrays(columns, names=table.column_names)


def infer_column(column: pa.ChunkedArray, rules: TypingRules = DEFAULT_RULES) -> pa.ChunkedArray:
    """One column typed alone (no other column to settle an ambiguous style or order)."""
    return infer_table(pa.table({"v": column}), rules).column(0)


# ---- one column ------------------------------------------------------------------------------


@dataclass
class _Outcome:
    name: str
    column: pa.ChunkedArray  # the typed column once decided; the text otherwise
    amounts: dict[str, numbers.AmountRead] | None = None  # both styles read every value
    dates: dict[str, dates_.DateRead] | None = None  # day- and month-first read every value
    style: str | None = None  # decimal style this column shows by itself
    order: str | None = None  # date order this column shows by itself
    problems: list[str] = field(default_factory=list)


def _analyse(name: str, column: pa.ChunkedArray, rules: TypingRules) -> _Outcome:
    outcome = _Outcome(name, column)
    if not pa.types.is_string(column.type) and not pa.types.is_large_string(column.type):
        return outcome
    if len(column) == column.null_count:
        return outcome
    if any(value.startswith('="') for value in _sample(column)):
        # ="00123": how Excel is told to keep a value as text; the value is what it means
        column = pc.replace_substring_regex(column, r'^="(.*)"$', r"\1")
        outcome.column = column
    declared = rules.types.get(name)
    if declared is not None:
        _declared(outcome, _trimmed(column), declared, rules)
        return outcome
    key = name in rules.key_columns
    sample = [value for value in (v.strip() for v in _sample(column)) if value]
    if not sample:
        return outcome
    # The first values say which rules may hold; a column none may hold is text at once,
    # without a pass over all its values.
    may_bool = not key and _sample_matches(sample, _BOOL)
    may_int = not key and _sample_matches(sample, _INT)
    styles = _amount_styles(sample, rules) if not (may_bool or may_int) else []
    may_date = not (may_bool or may_int or styles) and _dates_possible(sample, rules)
    if not (may_bool or may_int or styles or may_date):
        return outcome
    text = _trimmed(column)
    if may_bool and _all_match(text, _BOOL):
        outcome.column = pc.equal(pc.utf8_lower(text), "true")
        return outcome
    if may_int and _all_match(text, _INT):
        outcome.column = pc.utf8_ltrim(text, "+").cast(pa.int64())
        return outcome
    if may_int:
        styles = _amount_styles(sample, rules)
    if styles and _amounts(outcome, text, styles, rules, key=key):
        return outcome
    if may_date or _dates_possible(sample, rules):
        _dates(outcome, text, sample, rules)
    return outcome


def _amount_styles(sample: list[str], rules: TypingRules) -> list[str]:
    """The decimal styles in which most of the first values look like amounts."""
    if not any(_DIGIT.search(value) for value in sample):
        return []
    styles = [rules.decimal] if rules.decimal else [numbers.POINT, numbers.COMMA]
    probe = pa.array(sample, pa.string())
    return [
        s
        for s in styles
        if 2 * int(pc.sum(numbers.looks_like_amount(probe, rules.number_style(s))).as_py() or 0)
        > len(probe)
    ]


def _dates_possible(sample: list[str], rules: TypingRules) -> bool:
    if not any(_DIGIT.search(value) for value in sample):
        return False
    return any(dates_.sample_share(p, sample) > 0.5 for p in rules.date_patterns())


def _amounts(
    outcome: _Outcome, text: pa.ChunkedArray, styles: list[str], rules: TypingRules, *, key: bool
) -> bool:
    """Try the amount rule in ``styles`` (where most first values look like amounts); True
    when it decided (typed, deferred or refused)."""
    present = len(text) - text.null_count
    if (
        rules.decimal in (None, numbers.POINT)
        and numbers.POINT in styles
        and _all_match(text, _DECIMAL)
        and (rules.decimal or not _all_match(text, _GROUPED_BY_POINTS))
    ):
        # plain decimals such as 19.99, the common case: read at once
        plain = numbers.read_plain(text, rules.number_style(numbers.POINT))
        return _decide(outcome, {numbers.POINT: plain}, [numbers.POINT], key=key)
    shaped = {
        s: int(pc.sum(numbers.looks_like_amount(text, rules.number_style(s))).as_py() or 0)
        for s in styles
    }  # a regex match is cheap; reading (extracting the parts) is not: only where it may pay
    reads = {
        s: numbers.read_amounts(text, rules.number_style(s), credit_negative=rules.credit_negative)
        for s in styles
        if shaped[s] == present
    }
    full = [s for s, read in reads.items() if read.unread_count == 0]
    if full:
        return _decide(outcome, reads, full, key=key)
    likeliest = max(styles, key=lambda s: shaped[s])
    if 2 * shaped[likeliest] <= present:
        return False
    best = reads.get(likeliest) or numbers.read_amounts(
        text, rules.number_style(likeliest), credit_negative=rules.credit_negative
    )
    readable = present - best.unread_count
    if best.marked and readable > best.unread_count and not _mixed_currencies(best):
        outcome.problems += _unread(outcome.name, text, best.unread, rules, "an amount")
        return True
    return False


def _decide(
    outcome: _Outcome, reads: dict[str, numbers.AmountRead], full: list[str], *, key: bool
) -> bool:
    """Every value reads as an amount in the ``full`` styles: the column's type, or False
    when it stays text after all."""
    chosen = {s: reads[s] for s in full}
    if any(_mixed_currencies(read) for read in chosen.values()):
        return False  # several currencies in one column: not one amount, left as text
    if all(read.whole and (key or not read.marked) for read in chosen.values()):
        # whole numbers: a key, or digits no int64 holds (a card or account number)
        return False
    if len(full) == 2:
        outcome.amounts = chosen
        return True
    outcome.style = full[0]
    outcome.column = _as_decimal(chosen[full[0]].text, fallback=outcome.column)
    return True


def _dates(outcome: _Outcome, text: pa.ChunkedArray, sample: list[str], rules: TypingRules) -> None:
    patterns = rules.date_patterns()
    fitting = [p for p in patterns if dates_.sample_fits(p, sample)]
    reads: dict[dates_.DatePattern, dates_.DateRead] = {}
    for pattern in fitting:
        read = dates_.read_dates(text, pattern)
        if read.unread_count == 0:
            reads[pattern] = read
    if reads:
        orders = {p.order: r for p, r in reads.items()}
        if "dmy" in orders and "mdy" in orders:
            outcome.dates = {"dmy": orders["dmy"], "mdy": orders["mdy"]}
            return
        pattern, read = next(iter(reads.items()))
        outcome.order = pattern.order
        outcome.column = read.values
        return
    shares = sorted(((dates_.sample_share(p, sample), p) for p in patterns), key=lambda x: -x[0])
    if shares and shares[0][0] > 0.5:
        best = dates_.read_dates(text, shares[0][1])
        readable = len(text) - text.null_count - best.unread_count
        if readable > best.unread_count:
            outcome.problems += _unread(outcome.name, text, best.unread, rules, "a date")


def _declared(
    outcome: _Outcome, text: pa.ChunkedArray, declared: ColumnType, rules: TypingRules
) -> None:
    name = outcome.name
    if declared is ColumnType.TEXT:
        return
    if declared is ColumnType.BOOLEAN:
        lowered = pc.utf8_lower(text)
        truthy = pc.is_in(lowered, value_set=pa.array(["true", "yes", "y", "1"]))
        falsy = pc.is_in(lowered, value_set=pa.array(["false", "no", "n", "0"]))
        unread = pc.and_(pc.is_valid(text), pc.invert(pc.or_(truthy, falsy)))
        outcome.problems += _unread(name, text, unread, rules, "a boolean (true/false)")
        outcome.column = pc.if_else(pc.is_valid(text), truthy, pa.scalar(None, pa.bool_()))
        return
    if declared in (ColumnType.DATE, ColumnType.TIMESTAMP):
        sample = _sample(text)
        patterns = rules.date_patterns()
        fitting = [p for p in patterns if dates_.sample_fits(p, sample)] or list(patterns[:1])
        best: dates_.DateRead | None = None
        for pattern in fitting:
            read = dates_.read_dates(text, pattern)
            if best is None or read.unread_count < best.unread_count:
                best = read
            if read.unread_count == 0:
                break
        assert best is not None
        what = "a date" if declared is ColumnType.DATE else "a timestamp"
        outcome.problems += _unread(name, text, best.unread, rules, what)
        values = best.values
        if declared is ColumnType.DATE and not pa.types.is_date(values.type):
            day = pc.floor_temporal(values, unit="day")
            timed = pc.fill_null(pc.not_equal(day, values), False)
            outcome.problems += _unread(name, text, timed, rules, "a date without a time")
            values = values.cast(pa.timestamp("us")).cast(pa.date32())
        elif declared is ColumnType.TIMESTAMP and pa.types.is_date(values.type):
            values = values.cast(pa.timestamp("us"))
        outcome.column = values
        return
    styles = [rules.decimal] if rules.decimal else [numbers.POINT, numbers.COMMA]
    reads = [
        numbers.read_amounts(text, rules.number_style(s), credit_negative=rules.credit_negative)
        for s in styles
    ]
    if declared is ColumnType.INTEGER:
        # the style in which the values are whole: 1.200 is twelve hundred where it reads so
        chosen = min(reads, key=lambda read: (read.unread_count, _fractions(read)))
    else:
        chosen = min(reads, key=lambda read: read.unread_count)
        if len(reads) == 2 and reads[0].unread_count == reads[1].unread_count == 0:
            outcome.amounts = {numbers.POINT: reads[0], numbers.COMMA: reads[1]}
            return  # the file settles the style (``_settle``)
    outcome.problems += _unread(name, text, chosen.unread, rules, _what(declared))
    if declared is ColumnType.INTEGER:
        fractional = pc.fill_null(pc.match_substring_regex(chosen.text, _FRACTION), False)
        outcome.problems += _unread(name, text, fractional, rules, "a whole number")
        whole = pc.replace_substring_regex(chosen.text, r"\.[0-9]*$", "")
        try:
            outcome.column = whole.cast(pa.int64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            outcome.problems.append(f"column '{name}': a value is too large for a 64-bit integer")
        return
    outcome.column = _as_decimal(chosen.text, fallback=outcome.column)
    if not pa.types.is_decimal(outcome.column.type) and not outcome.problems:
        outcome.problems.append(f"column '{name}': its values need more than 38 digits")


_FRACTION = r"\.[0-9]*[1-9]"


def _fractions(read: numbers.AmountRead) -> int:
    found = pc.match_substring_regex(read.text, _FRACTION)
    return int(pc.sum(pc.fill_null(found, False)).as_py() or 0)


def _what(declared: ColumnType) -> str:
    return "a whole number" if declared is ColumnType.INTEGER else "an amount"


# ---- the file: settle what one column could not ------------------------------------------------


def _settle(outcomes: list[_Outcome], rules: TypingRules) -> list[pa.ChunkedArray]:
    styles = {o.style for o in outcomes if o.style}
    shown = rules.decimal or (next(iter(styles)) if len(styles) == 1 else None)
    style = shown or numbers.POINT
    orders = {o.order for o in outcomes if o.order}
    if rules.date_format is not None:
        stated = dates_.compile_pattern(rules.date_format).order
        orders = {stated} if stated else orders
    order: str | None = next(iter(orders)) if len(orders) == 1 else None
    if order is None and not orders and shown == numbers.COMMA:
        order = "dmy"  # a decimal comma is written where days come first
    problems: list[str] = []
    columns: list[pa.ChunkedArray] = []
    for outcome in outcomes:
        problems += outcome.problems
        if outcome.amounts is not None:
            read = outcome.amounts[style]
            outcome.column = _as_decimal(read.text, fallback=outcome.column)
        if outcome.dates is not None:
            if order is None:
                example = _first_ambiguous(outcome)
                problems.append(
                    f"column '{outcome.name}' holds dates such as '{example}' that read both "
                    "day-first and month-first: give the source's format a date_format, such "
                    "as '%d/%m/%Y' or '%m/%d/%Y'"
                )
            else:
                outcome.column = outcome.dates[order].values
        columns.append(outcome.column)
    if problems:
        raise SourceError(
            f"{rules.label}: some values do not read as their column's type; correct them, or "
            "declare the column's type in the source's format.types (e.g. \"text\")",
            problems=problems,
        )
    return columns


def _first_ambiguous(outcome: _Outcome) -> str:
    for value in outcome.column.drop_null().to_pylist()[:_SAMPLE]:
        digits = re.findall(r"\d+", str(value))
        if len(digits) >= 2 and int(digits[0]) <= 12 and int(digits[1]) <= 12:
            return str(value).strip()
    return str(outcome.column.drop_null()[0])


# ---- helpers --------------------------------------------------------------------------------


def drop_empty_rows(table: pa.Table) -> pa.Table:
    """Rows whose every field is empty (a line of delimiters, a blank sheet row) carry no
    record: left out."""
    if table.num_columns == 0 or table.num_rows == 0:
        return table
    present = pc.is_valid(table.column(0))
    for column in table.columns[1:]:
        present = pc.or_(present, pc.is_valid(column))
    if bool(pc.all(present).as_py()):
        return table
    return table.filter(present)


def _unread(
    name: str, text: pa.ChunkedArray, unread: pa.ChunkedArray, rules: TypingRules, what: str
) -> list[str]:
    """One line per value that does not read (the first few), naming its place and text."""
    flags = unread.combine_chunks() if isinstance(unread, pa.ChunkedArray) else unread
    flags = pc.fill_null(flags, False)
    count = int(pc.sum(flags).as_py() or 0)
    if count == 0:
        return []
    positions = pc.indices_nonzero(flags)[:_SHOWN].to_pylist()
    values = text.take(positions).to_pylist()
    lines = [
        f"{rules.where(name, i)}, column '{name}': {value!r} is not {what}"
        for i, value in zip(positions, values, strict=True)
    ]
    if count > _SHOWN:
        lines.append(f"column '{name}': {count - _SHOWN} more values are not {what}")
    return lines


_SAME_CURRENCY = {
    "$": "USD", "US$": "USD", "€": "EUR", "£": "GBP", "¥": "JPY", "₹": "INR", "Rs": "INR",
    "Rs.": "INR", "C$": "CAD", "CA$": "CAD", "A$": "AUD", "AU$": "AUD", "NZ$": "NZD",
    "HK$": "HKD", "S$": "SGD", "R$": "BRL", "Fr.": "CHF", "zł": "PLN", "Kč": "CZK",
    "Ft": "HUF", "₽": "RUB", "₩": "KRW", "₪": "ILS", "₺": "TRY",
}  # fmt: skip


def _mixed_currencies(read: numbers.AmountRead) -> bool:
    return len({_SAME_CURRENCY.get(c, c) for c in read.currencies}) > 1


def _trimmed(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Values without surrounding spaces; one of spaces only is NULL (a match costs far less
    than a trim, so the trim runs only where a value has spaces to lose)."""
    padded = [pc.starts_with(column, c) for c in _PADDING] + [
        pc.ends_with(column, c) for c in _PADDING
    ]
    if not any(bool(pc.any(flags).as_py()) for flags in padded):
        return column
    trimmed = pc.utf8_trim_whitespace(column)
    return pc.if_else(pc.equal(trimmed, ""), pa.scalar(None, pa.string()), trimmed)


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


def _as_decimal(canonical: pa.ChunkedArray, *, fallback: pa.ChunkedArray) -> pa.ChunkedArray:
    """Canonical decimal text ("-1234.5") as the smallest decimal128 holding every value."""
    decimal = _decimal_type(canonical, need_point=False)
    if decimal is None:
        return fallback
    return _cast_or_keep(canonical, decimal, fallback=fallback)


def exact_decimal(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """Decimal text (a database numeric read as text) as the smallest exact decimal128.

    Whole numbers become decimal(p, 0), not int64: the source said numeric. Values that fit
    no decimal128 (NaN, over 38 digits) keep the column text.
    """
    if len(column) == column.null_count or not _all_match(column, _DECIMAL):
        return column
    decimal = _decimal_type(column, need_point=False)
    if decimal is None:
        return column
    return _cast_or_keep(_unplus(column), decimal, fallback=column)


def _decimal_type(column: pa.ChunkedArray, *, need_point: bool = True) -> pa.DataType | None:
    """decimal128(p, s) holding every value exactly, or None when it needs more than 38 digits."""
    digits = pc.utf8_ltrim(column, "+-")
    length = pc.utf8_length(digits)
    point = pc.find_substring(digits, ".")
    has_point = pc.greater_equal(point, 0)
    after = pc.if_else(has_point, pc.subtract(pc.subtract(length, point), 1), 0)
    before = pc.if_else(has_point, point, length)
    if need_point and not pc.any(has_point).as_py():
        return None
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
    """Cast, or keep the text when a value matched the shape but is no real value."""
    try:
        return column.cast(target)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
        return column if fallback is None else fallback
