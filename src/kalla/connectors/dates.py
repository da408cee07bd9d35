"""Dates and timestamps written the many ways exports write them, read exactly.

A pattern is strftime-like (``%d/%m/%Y``, ``%d-%b-%y``, ``%b %d, %Y``); it is compiled to
one regular expression with a named group per field, run over the whole column by Arrow
(RE2), and each match is rebuilt as ISO text that Arrow casts exactly: a value that is no
real date (``30/02/2024``) reads as nothing, never as a neighbouring day. Any date pattern
also takes a time after the date (``14:05``, ``14:05:09.5``, ``2:05 PM``) and a zone offset
(``Z``, ``+01:00``); a column whose values carry a time becomes a timestamp, one whose
values all carry a zone becomes a UTC timestamp.

``AUTO`` lists the patterns tried when the recipe gives no ``date_format``. Day-first and
month-first patterns (``%d/%m/%Y`` against ``%m/%d/%Y``) are told apart by the values (a
day over 12); a column whose values fit both is settled by the rest of the file (see
``connectors.typing``). Month names are English (``Jan``, ``January``, ``Sept``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

import pyarrow as pa
import pyarrow.compute as pc

_FIELDS: dict[str, str] = {
    "d": r"(?P<d>\d{1,2})",
    "e": r"(?P<d>\d{1,2})",
    "m": r"(?P<m>\d{1,2})",
    "Y": r"(?P<Y>\d{4})",
    "y": r"(?P<y>\d{2})",
    "b": r"(?P<b>[A-Za-z]{3,4})\.?",
    "h": r"(?P<b>[A-Za-z]{3,4})\.?",
    "B": r"(?P<b>[A-Za-z]{3,9})",
    "H": r"(?P<H>\d{1,2})",
    "I": r"(?P<H>\d{1,2})",
    "M": r"(?P<M>\d{2})",
    "S": r"(?P<S>\d{2})(?:[.,](?P<f>\d{1,6}))?",
    "f": r"(?P<f>\d{1,6})",
    "p": r"(?P<p>[AaPp]\.?[Mm]\.?)",
    "z": r"(?P<z>Z|[+-]\d{2}(?::?\d{2})?)",
    "Z": r"(?P<z>Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?)",
}
_TIME = (
    r"(?:(?:[ T]+|,\s*)(?P<H>\d{1,2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:[.,](?P<f>\d{1,6}))?)?"
    r"(?:\s*(?P<p>[AaPp]\.?[Mm]\.?))?)?"
    r"(?:\s*(?P<z>Z|UTC|GMT|[+-]\d{2}(?::?\d{2})?))?"
)
_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}


def check_pattern(pattern: str) -> None:
    """A ValueError naming the problem when ``pattern`` is no date pattern Kalla reads."""
    compile_pattern(pattern)


@dataclass(frozen=True)
class DatePattern:
    """A strftime-like pattern compiled to a regular expression over the whole value."""

    pattern: str
    regex: str  # RE2 and Python ``re`` read it alike
    order: str | None  # "dmy" / "mdy" for numeric day-month patterns that have a twin

    @property
    def python(self) -> re.Pattern[str]:
        return _python_regex(self.regex)


@lru_cache(maxsize=128)
def _python_regex(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


@lru_cache(maxsize=128)
def compile_pattern(pattern: str) -> DatePattern:
    parts: list[str] = []
    seen: set[str] = set()
    i = 0
    while i < len(pattern):
        char = pattern[i]
        if char == "%":
            directive = pattern[i + 1 : i + 2]
            if directive == "-":  # %-d: no padding, which every field accepts anyway
                directive = pattern[i + 2 : i + 3]
                i += 1
            if directive == "%":
                parts.append("%")
            elif directive in _FIELDS:
                group = re.search(r"\?P<(\w+)>", _FIELDS[directive])
                name = group.group(1) if group else directive
                if name in seen:
                    raise ValueError(f"date_format {pattern!r} gives %{directive} twice")
                seen.add(name)
                parts.append(_FIELDS[directive])
            else:
                raise ValueError(
                    f"date_format {pattern!r}: %{directive} is not supported (use %d %m %Y "
                    "%y %b %B %H %I %M %S %f %p %z)"
                )
            i += 2
        elif char.isspace():
            parts.append(r"\s+")
            i += 1
        else:
            parts.append(re.escape(char))
            i += 1
    if not {"Y", "y"} & seen or "d" not in seen or not {"m", "b"} & seen:
        raise ValueError(f"date_format {pattern!r} needs a day, a month and a year")
    body = "".join(parts)
    if "H" not in seen:
        body += _TIME  # a date pattern also reads the date of a date and time
    order = None
    numeric = "m" in seen and "d" in seen
    if numeric and not pattern.lstrip("%-").startswith(("Y", "y")):
        order = "dmy" if pattern.index("d") < pattern.index("m") else "mdy"
    return DatePattern(pattern=pattern, regex=f"^\\s*{body}\\s*$", order=order)


def _twins(*separators: str) -> list[str]:
    found = []
    for sep in separators:
        for year in ("%Y", "%y"):
            found.append(f"%d{sep}%m{sep}{year}")
            if sep != ".":  # no one writes month-first with dots
                found.append(f"%m{sep}%d{sep}{year}")
    return found


AUTO: tuple[DatePattern, ...] = tuple(
    compile_pattern(p)
    for p in (
        "%Y-%m-%d",
        "%Y/%m/%d",
        "%Y.%m.%d",
        *_twins("/", ".", "-"),
        "%d-%b-%Y",
        "%d-%b-%y",
        "%d %b %Y",
        "%d %b %y",
        "%d/%b/%Y",
        "%d.%b.%Y",
        "%b %d, %Y",
        "%b %d %Y",
        "%d %B %Y",
        "%B %d, %Y",
        "%d-%B-%Y",
    )
)


# ---- reading a column -----------------------------------------------------------------------


@dataclass(frozen=True)
class DateRead:
    """A pattern applied to a column: the typed values and which values it could not read."""

    pattern: DatePattern
    values: pa.ChunkedArray  # date32 / timestamp[us] / timestamp[us, UTC]; null where unread
    unread: pa.ChunkedArray  # bool: a value is present and the pattern does not read it

    @property
    def unread_count(self) -> int:
        return int(pc.sum(self.unread).as_py() or 0)


def sample_fits(pattern: DatePattern, sample: list[str]) -> bool:
    """Every sample value has the pattern's shape and a possible day and month."""
    regex = pattern.python
    for value in sample:
        match = regex.match(value)
        if match is None:
            return False
        fields = match.groupdict()
        if not _plausible(fields):
            return False
    return True


def sample_share(pattern: DatePattern, sample: list[str]) -> float:
    if not sample:
        return 0.0
    regex = pattern.python
    hits = 0
    for value in sample:
        match = regex.match(value)
        if match is not None and _plausible(match.groupdict()):
            hits += 1
    return hits / len(sample)


def _plausible(fields: dict[str, str | None]) -> bool:
    month = fields.get("m")
    if month and not 1 <= int(month) <= 12:
        return False
    name = fields.get("b")
    if name and name.lower().rstrip(".") not in _MONTHS:
        return False
    day = fields.get("d")
    return not (day and not 1 <= int(day) <= 31)


_ISO_DATE = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}$"
_ISO_TIMESTAMP = r"^[0-9]{4}-[0-9]{2}-[0-9]{2}[T ][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]{1,6})?$"


def _iso(column: pa.ChunkedArray, pattern: DatePattern) -> DateRead | None:
    """ISO dates or timestamps (no zone) cast at once, without extracting their parts."""
    if pattern.pattern != "%Y-%m-%d":
        return None
    for shape, target in ((_ISO_DATE, pa.date32()), (_ISO_TIMESTAMP, pa.timestamp("us"))):
        matched = pc.match_substring_regex(column, shape)
        if bool(pc.all(matched, skip_nulls=True, min_count=0).as_py()):
            try:
                values = column.cast(target)
            except pa.ArrowInvalid:
                return None  # a 30th of February: the general path names it
            unread = pc.and_(pc.is_valid(column), pa.scalar(False))
            return DateRead(pattern=pattern, values=values, unread=unread)
    return None


def read_dates(column: pa.ChunkedArray, pattern: DatePattern) -> DateRead:
    """``column`` (text) read with ``pattern``; values it cannot read are flagged, not lost."""
    fast = _iso(column, pattern)
    if fast is not None:
        return fast
    parts = pc.extract_regex(column, pattern.regex)
    names = {parts.type.field(i).name for i in range(parts.type.num_fields)}

    def field(name: str) -> pa.ChunkedArray | None:
        return pc.struct_field(parts, name) if name in names else None

    day = _int(field("d"))
    month = _int(field("m")) if field("m") is not None else _month_number(field("b"))
    if field("Y") is not None:
        year = _int(field("Y"))
    else:
        short = _int(field("y"))  # POSIX pivot, as strptime: 69-99 → 19xx, 00-68 → 20xx
        year = pc.add(short, pc.if_else(pc.less(short, 69), 2000, 1900))
    valid = pc.and_(
        pc.and_(pc.greater_equal(month, 1), pc.less_equal(month, 12)),
        pc.and_(pc.greater_equal(day, 1), pc.less_equal(day, 31)),
    )
    hour = _int(field("H"), empty=0)
    minute = _int(field("M"), empty=0)
    second = _int(field("S"), empty=0)
    meridiem = field("p")
    if meridiem is not None:
        marker = pc.utf8_lower(pc.replace_substring(meridiem, ".", ""))
        pm, am = pc.equal(marker, "pm"), pc.equal(marker, "am")
        has_marker = pc.or_(pm, am)
        valid = pc.and_(
            valid,
            pc.or_(
                pc.invert(has_marker), pc.and_(pc.greater_equal(hour, 1), pc.less_equal(hour, 12))
            ),
        )
        hour = pc.if_else(pc.and_(pm, pc.less(hour, 12)), pc.add(hour, 12), hour)
        hour = pc.if_else(pc.and_(am, pc.equal(hour, 12)), 0, hour)
    valid = pc.and_(
        valid,
        pc.and_(
            pc.and_(pc.less_equal(hour, 23), pc.less_equal(minute, 59)),
            pc.less_equal(second, 59),
        ),
    )
    timed = _nonempty(field("H"))
    zone = field("z")
    zoned = _nonempty(zone)

    iso_date = pc.binary_join_element_wise(
        _padded(year, 4), _padded(month, 2), _padded(day, 2), "-"
    )
    present = pc.is_valid(column)
    read = pc.and_(pc.and_(present, pc.is_valid(parts)), pc.fill_null(valid, False))
    read = pc.fill_null(read, False)
    any_time = timed is not None and bool(pc.any(pc.and_(read, timed)).as_py())
    all_zoned = (
        zoned is not None
        and bool(pc.any(read).as_py())
        and bool(pc.all(pc.filter(zoned, read)).as_py())
    )
    if zoned is not None and not all_zoned:
        read = pc.and_(read, pc.invert(zoned))  # a zone on some values only: no common type
        any_time = timed is not None and bool(pc.any(pc.and_(read, timed)).as_py())
    if any_time or all_zoned:
        fraction = field("f")
        clock = pc.binary_join_element_wise(
            _padded(hour, 2), _padded(minute, 2), _padded(second, 2), ":"
        )
        if fraction is not None:
            micros = pc.utf8_rpad(fraction, width=6, padding="0")
            clock = pc.binary_join_element_wise(clock, micros, ".")
            clock = pc.replace_substring_regex(clock, r"\.$", "")
        text = pc.binary_join_element_wise(iso_date, clock, "T")
        target: pa.DataType = pa.timestamp("us")
        if all_zoned:
            assert zone is not None
            offset = pc.replace_substring_regex(zone, r"^(?:Z|UTC|GMT)$", "+00:00")
            offset = pc.replace_substring_regex(offset, r"^([+-]\d{2})(\d{2})$", r"\1:\2")
            offset = pc.replace_substring_regex(offset, r"^([+-]\d{2})$", r"\1:00")
            text = pc.binary_join_element_wise(text, offset, "")
            target = pa.timestamp("us", tz="UTC")
    else:
        text = iso_date
        target = pa.date32()
    text = pc.if_else(read, text, pa.scalar(None, pa.string()))
    values, read = _cast_valid(text, read, target)
    unread = pc.and_(present, pc.invert(read))
    return DateRead(pattern=pattern, values=values, unread=unread)


def _cast_valid(
    text: pa.ChunkedArray, read: pa.ChunkedArray, target: pa.DataType
) -> tuple[pa.ChunkedArray, pa.ChunkedArray]:
    """Cast ISO text; a value that is no real date (the 30th of February) is not read."""
    try:
        return text.cast(target), read
    except pa.ArrowInvalid:
        pass
    import datetime as dt

    ok: list[bool] = []
    for value in text.to_pylist():
        if value is None:
            ok.append(False)
            continue
        try:
            dt.datetime.fromisoformat(value)
            ok.append(True)
        except ValueError:
            ok.append(False)
    mask = pa.chunked_array([pa.array(ok, pa.bool_())])
    kept = pc.if_else(mask, text, pa.scalar(None, pa.string()))
    return kept.cast(target), pc.and_(read, mask)


def _nonempty(column: pa.ChunkedArray | None) -> pa.ChunkedArray | None:
    return None if column is None else pc.fill_null(pc.not_equal(column, ""), False)


def _int(column: pa.ChunkedArray | None, empty: int | None = None) -> pa.ChunkedArray | pa.Scalar:
    if column is None:
        return pa.scalar(empty if empty is not None else 0, pa.int32())
    if empty is not None:
        column = pc.if_else(pc.equal(column, ""), str(empty), column)
    return pc.cast(
        pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column), pa.int32()
    )


def _month_number(names: pa.ChunkedArray | None) -> pa.ChunkedArray | pa.Scalar:
    if names is None:
        return pa.scalar(0, pa.int32())
    keys = pa.array(list(_MONTHS), pa.string())
    numbers = pa.array(list(_MONTHS.values()), pa.int32())
    index = pc.index_in(pc.utf8_lower(pc.replace_substring(names, ".", "")), value_set=keys)
    return pc.take(numbers, index)


def _padded(values: pa.ChunkedArray | pa.Scalar, width: int) -> pa.ChunkedArray | pa.Scalar:
    return pc.utf8_lpad(pc.cast(values, pa.string()), width=width, padding="0")
