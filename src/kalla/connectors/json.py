"""JSON files: an array of objects (``.json``) or one object per line (``.ndjson``/``.jsonl``).

UTF-8 (with or without a byte order mark) or UTF-16/32 with one, or the encoding the
source's ``format`` names. Numbers are kept as the text written in the file and typed by the
CSV rules (``csv_types``, key columns and ``format.types`` included), so ``19.99`` stages as
an exact decimal; nested objects and arrays stay JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from kalla.connectors.base import FileConnector, Filter, Progress, check_column_count
from kalla.connectors.csv_types import TypingRules, infer_table
from kalla.connectors.encoding import Encoding, detect, read_head
from kalla.errors import SourceError


class _Number(str):
    """A JSON number kept as written, told apart from a JSON string."""


class JsonConnector(FileConnector):
    kind = "json"
    _records: list[dict[str, Any]] | None = None
    _names: list[str] | None = None
    _places: tuple[str, ...] = ()  # where each record is ("element 3", "line 7")

    def _load(self) -> tuple[list[dict[str, Any]], list[str]]:
        if self._records is None or self._names is None:
            records = self._parse()
            names: dict[str, None] = {}
            for record in records:
                names.update(dict.fromkeys(record))
            check_column_count(len(names), label=self.label, settings=self.settings)
            self._records, self._names = records, list(names)
        return self._records, self._names

    def _parse(self) -> list[dict[str, Any]]:
        encoding = detect(read_head(self.path, 4096), self.reading.format.encoding)
        if encoding.name in ("cp1252", "latin-1") and not encoding.given:
            encoding = Encoding("utf-8")  # JSON is Unicode: no guessing a code page
        try:
            raw = self.path.read_bytes()[encoding.bom :]
            text = raw.decode(encoding.name)
        except UnicodeDecodeError as exc:
            raise SourceError(
                f"{self.label}: the file is not valid {encoding.shown} (byte {exc.start}); "
                "save it as UTF-8 or give the source's format its encoding"
            ) from None
        stripped = text.lstrip()
        if not stripped:
            raise SourceError(f"{self.label}: the file is empty")
        if stripped.startswith("["):
            records = self._loads(text, line=None)
            if not isinstance(records, list):
                raise SourceError(f"{self.label}: expected an array of objects")
            items = list(enumerate(records, start=1))
            where = "element"
            self._places = tuple(f"element {n}" for n, _ in items)
        else:
            items = [
                (number, self._loads(line, line=number))
                for number, line in enumerate(text.splitlines(), start=1)
                if line.strip()
            ]
            where = "line"
            self._places = tuple(f"line {n}" for n, _ in items)
        for number, record in items:
            if not isinstance(record, dict):
                raise SourceError(
                    f"{self.label}: {where} {number} is not a JSON object "
                    f'(each record must be {{"column": value, ...}})'
                )
        return [record for _, record in items]

    def _loads(self, text: str, *, line: int | None) -> Any:
        try:
            return json.loads(text, parse_float=_Number, parse_int=_Number)
        except json.JSONDecodeError as exc:
            at = f"line {line}" if line is not None else f"line {exc.lineno} column {exc.colno}"
            raise SourceError(f"{self.label}: malformed JSON at {at}: {exc.msg}") from exc
        except RecursionError:
            # json's C decoder recurses once per level; a record this deep is not tabular
            at = f" at line {line}" if line is not None else ""
            raise SourceError(
                f"{self.label}: JSON nested too deeply{at} (more levels than a record can hold)"
            ) from None

    def columns(self) -> list[str]:
        return self._load()[1]

    def read(self, progress: Progress, filters: Sequence[Filter] = ()) -> pa.Table:
        records, names = self._load()
        progress(0.5)
        columns = {
            name: pa.array([_text(record.get(name)) for record in records], pa.string())
            for name in names
        }
        places = self._places
        rules = TypingRules.of(
            self.reading, label=self.label, where=lambda _column, index: places[index]
        )
        return infer_table(pa.table(columns), rules)


def _text(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, _Number):
        return _plain_number(str(value))
    if isinstance(value, str):
        return value if value != "" else None
    return json.dumps(value, ensure_ascii=False)  # nested object or array: keep it as JSON


def _plain_number(text: str) -> str:
    """JSON numbers as written; exponents are written out when that is exact (1e2 → 100)."""
    if "e" not in text and "E" not in text:
        return text
    from decimal import Decimal, InvalidOperation

    try:
        return format(Decimal(text), "f")
    except InvalidOperation:
        return text
