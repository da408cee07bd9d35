"""A delimited text file's dialect, from its first records unless the recipe's format says.

The delimiter is the one of ``,`` ``;`` tab ``|`` that splits the first records (up to 200,
from the first MiB) into the same number of fields, more than one, on the most records;
ties go to that order (a ``.tsv`` file prefers tab). Quotes are ``"``, doubled inside a
quoted field (RFC 4180), unless ``format.quote``/``format.escape`` say otherwise.

Lines above the header are skipped when they have fewer fields than the table under them
and the first line with the table's width is a header (names, none blank, none a number):
a bank export's account number and period. ``format.skip_rows`` says how many lines to
skip instead. A header with blank names followed by a complete header gives
``header_hint``: the ``skip_rows`` to write. Excel's ``sep=;`` first line names the delimiter.
"""

from __future__ import annotations

import csv
import io
import re
from collections import Counter
from dataclasses import dataclass

from kalla.connectors.format import FileFormat

CANDIDATES = (",", ";", "\t", "|")
_RECORDS = 200
_SEP_LINE = re.compile(r"(?i)^sep=(.)\r?\n")
_NUMBERISH = re.compile(r"^[\s$€£(+-]*[0-9][0-9.,:/\s-]*\)?$")


@dataclass(frozen=True)
class Record:
    fields: list[str]
    first_line: int  # 1-based physical line where the record starts
    last_line: int  # and where it ends (a quoted field may hold newlines)


@dataclass(frozen=True)
class Dialect:
    delimiter: str
    quote: str | None  # None: quotes are plain characters
    escape: str | None
    header: tuple[str, ...]  # the header's names, as the sample read them
    width: int  # fields in the header (a lower bound when the sample ends inside it)
    header_line: int  # 1-based physical line of the header
    header_end: int  # physical lines up to the end of the header (what the parser skips)

    @property
    def shown(self) -> str:
        return {"\t": "tab", " ": "space"}.get(self.delimiter, repr(self.delimiter))


def records(
    text: str, delimiter: str, quote: str | None, escape: str | None, *, complete: bool
) -> list[Record]:
    """The sample's complete records with their lines; blank lines are not records, and a
    record cut by the end of an incomplete sample is left out."""
    reader = csv.reader(
        io.StringIO(text, newline=""),  # as csv wants: \r, \n and \r\n all end a line
        delimiter=delimiter,
        quotechar=quote or '"',
        quoting=csv.QUOTE_MINIMAL if quote else csv.QUOTE_NONE,
        escapechar=escape,
        doublequote=True,
        strict=False,
    )
    found: list[Record] = []
    limit = csv.field_size_limit()
    csv.field_size_limit(max(limit, len(text) + 1))
    previous = 0
    try:
        for row in reader:
            if row and row != [""]:
                found.append(Record(row, previous + 1, reader.line_num))
            previous = reader.line_num
            if len(found) > _RECORDS:
                break
    except csv.Error:
        pass
    finally:
        csv.field_size_limit(limit)
    if not complete and len(found) <= _RECORDS and found:
        found.pop()  # the sample's end cut the last record
    return found[:_RECORDS]


def sniff(text: str, fmt: FileFormat, *, complete: bool, prefer_tab: bool = False) -> Dialect:
    """The dialect of a file whose decoded head is ``text`` (the whole file when
    ``complete``); see the module doc."""
    quote = fmt.quote if fmt.quote is not None else '"'
    escape = fmt.escape
    hinted = _SEP_LINE.match(text)
    if hinted and fmt.delimiter is None and not fmt.skip_rows:
        # Excel's "sep=;" first line names the delimiter and is no record
        fmt = fmt.model_copy(update={"delimiter": hinted.group(1), "skip_rows": 1})
    if fmt.delimiter is not None:
        delimiters: tuple[str, ...] = (fmt.delimiter,)
    elif prefer_tab:
        delimiters = ("\t", *(c for c in CANDIDATES if c != "\t"))
    else:
        delimiters = CANDIDATES
    best: tuple[tuple[float, int, int, int], str, list[Record], int] | None = None
    for rank, delimiter in enumerate(delimiters):
        found = [r for r in records(text, delimiter, quote, escape, complete=complete)]
        if fmt.skip_rows:
            found = [r for r in found if r.first_line > fmt.skip_rows]
        if not found:
            continue
        skip, width, consistency = _table([r.fields for r in found], bool(fmt.skip_rows))
        body = len(found) - skip  # records the table keeps: a delimiter that needs fewer
        # lines skipped explains more of the file
        score = (consistency if width > 1 else 0.0, body, width if width > 1 else 0, -rank)
        if best is None or score > best[0]:
            best = (score, delimiter, found, skip)
    if best is None:  # not one complete record in the sample: a very long header
        delimiter = delimiters[0]
        width = _partial_width(text, delimiter)
        line = fmt.skip_rows + 1
        return Dialect(delimiter, quote, escape, (), width, line, line)
    _, delimiter, found, skip = best
    header = found[skip]
    return Dialect(
        delimiter,
        quote,
        escape,
        tuple(header.fields),
        len(header.fields),
        header.first_line,
        header.last_line,
    )


def _table(rows: list[list[str]], given: bool) -> tuple[int, int, float]:
    """(records above the header, fields per record, share of records below that agree)."""
    counts = [len(r) for r in rows]
    if given:
        width = counts[0]
        return 0, width, sum(c == width for c in counts) / len(counts)
    # the most frequent width; a tie (two preamble lines over a one-row table) to the wider
    width = max(Counter(counts).items(), key=lambda item: (item[1], item[0]))[0]
    first = counts.index(width)
    if first and (any(c > width for c in counts[:first]) or not _header_like(rows[first])):
        first = 0  # not a preamble: the parser will say what is wrong
    body = counts[first:]
    return first, width, sum(c == width for c in body) / len(body)


def _header_like(record: list[str]) -> bool:
    names = [name.strip() for name in record]
    return all(names) and not any(_NUMBERISH.match(name) for name in names)


def header_hint(text: str, dialect: Dialect, *, complete: bool) -> int | None:
    """The ``skip_rows`` that puts a complete header (every name given, none a number) on
    top, when the current header has blank names; None if no record fits."""
    found = records(text, dialect.delimiter, dialect.quote, dialect.escape, complete=complete)
    for record in found[:50]:
        later = record.first_line > dialect.header_line and len(record.fields) >= 2
        if later and _header_like(record.fields):
            return record.first_line - 1
    return None


def _partial_width(text: str, delimiter: str) -> int:
    """Fields seen so far in a first record longer than the sample (a very wide header)."""
    line = text.split("\n", 1)[0]
    return line.count(delimiter) + 1
