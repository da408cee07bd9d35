"""JSON files: an array of objects (``.json``) or one object per line (``.ndjson``/``.jsonl``).

Numbers are kept as the text written in the file and typed by the CSV rules, so ``19.99``
stages as an exact decimal; nested objects and arrays stay JSON text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from kalla.connectors.base import FileConnector, Filter, Progress
from kalla.connectors.csv_types import infer_table
from kalla.errors import SourceError


class _Number(str):
    """A JSON number kept as written, told apart from a JSON string."""


class JsonConnector(FileConnector):
    kind = "json"
    _records: list[dict[str, Any]] | None = None
    _names: list[str] | None = None

    def _load(self) -> tuple[list[dict[str, Any]], list[str]]:
        if self._records is None or self._names is None:
            records = self._parse()
            names: dict[str, None] = {}
            for record in records:
                names.update(dict.fromkeys(record))
            self._records, self._names = records, list(names)
        return self._records, self._names

    def _parse(self) -> list[dict[str, Any]]:
        try:
            text = self.path.read_text(encoding="utf-8-sig")
        except UnicodeDecodeError as exc:
            raise SourceError(f"{self.label}: the file is not valid UTF-8") from exc
        stripped = text.lstrip()
        if not stripped:
            raise SourceError(f"{self.label}: the file is empty")
        if stripped.startswith("["):
            records = self._loads(text, line=None)
            if not isinstance(records, list):
                raise SourceError(f"{self.label}: expected an array of objects")
            items = list(enumerate(records, start=1))
            where = "element"
        else:
            items = [
                (number, self._loads(line, line=number))
                for number, line in enumerate(text.splitlines(), start=1)
                if line.strip()
            ]
            where = "line"
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

    def columns(self) -> list[str]:
        return self._load()[1]

    def read(self, progress: Progress, filters: Sequence[Filter] = ()) -> pa.Table:
        records, names = self._load()
        progress(0.5)
        columns = {
            name: pa.array([_text(record.get(name)) for record in records], pa.string())
            for name in names
        }
        return infer_table(pa.table(columns))


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
