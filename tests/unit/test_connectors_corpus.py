"""The file corpus (tests/fixtures/files/<case>/): real-world-shaped exports through staging.

Each case holds an input file and ``expected.json``: the recipe ``format`` and key columns
to read it with (optional), and either the typed table it must stage as (``columns``: name
→ Arrow type, in order; ``rows``: values as JSON, decimals and dates as text) or the
fragments of the error it must be refused with (``error``). A case whose input would be
too big to keep (20,000 columns, a 64 MiB field) says how to ``make`` it instead.
"""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from kalla.connectors import stage_source
from kalla.connectors.format import FileFormat, Reading
from kalla.errors import SourceError
from kalla.settings import Settings

CASES_DIR = Path(__file__).parent.parent / "fixtures" / "files"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if (p / "expected.json").exists())


def _make(spec: dict[str, Any], path: Path) -> None:
    """Inputs too big to keep in the repository, written as the case describes."""
    if spec["kind"] == "wide":
        count = int(spec["columns"])
        header = ",".join(f"c{i}" for i in range(count))
        row = ",".join(str(i) for i in range(count))
        path.write_text(f"{header}\n{row}\n{row}\n")
    elif spec["kind"] == "long_field":
        with open(path, "w") as handle:
            handle.write('id,note,amount\n1,short,1.5\n2,"')
            handle.write("x" * int(spec["bytes"]))
            handle.write('",2.5\n3,after,3.5\n')
    else:
        raise AssertionError(f"unknown make kind {spec['kind']!r}")


def _plain(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime | dt.date):
        return value.isoformat()
    return value


def _expected(value: Any) -> Any:
    if isinstance(value, dict) and "repeat" in value:
        return value["repeat"] * int(value["times"])
    return value


def stage_case(case: str, tmp_path: Path) -> tuple[dict[str, Any], Any]:
    folder = CASES_DIR / case
    expected = json.loads((folder / "expected.json").read_text(encoding="utf-8"))
    path = folder / expected["file"]
    if "make" in expected:
        path = tmp_path / expected["file"]
        _make(expected["make"], path)
    reading = Reading(
        format=FileFormat.model_validate(expected.get("format", {})),
        key_columns=frozenset(expected.get("keys", [])),
    )
    settings = Settings(**expected.get("settings", {}))
    try:
        staged = stage_source(
            str(path),
            alias="src",
            settings=settings,
            staging_dir=tmp_path / "staging",
            reading=reading,
        )
    except SourceError as exc:
        return expected, exc
    return expected, pq.read_table(staged.path)


@pytest.mark.parametrize("case", CASES)
def test_file_case(case: str, tmp_path: Path) -> None:
    expected, result = stage_case(case, tmp_path)
    if "error" in expected:
        assert isinstance(result, SourceError), f"{case} was staged, not refused"
        message = str(result)
        for fragment in expected["error"]:
            assert fragment in message, f"{fragment!r} not in {message!r}"
        assert "source 'src'" in message  # the error names the source
        return
    assert not isinstance(result, Exception), f"{case} was refused: {result}"
    types = {field.name: str(field.type) for field in result.schema}
    assert types == expected["columns"]
    assert list(types) == list(expected["columns"])  # in the file's order
    rows = [[_plain(v) for v in row.values()] for row in result.to_pylist()]
    wanted = [[_expected(v) for v in row] for row in expected["rows"]]
    assert len(rows) == len(wanted)
    for got, want in zip(rows, wanted, strict=True):
        assert got == want


def test_every_case_has_its_input() -> None:
    for case in CASES:
        expected = json.loads((CASES_DIR / case / "expected.json").read_text(encoding="utf-8"))
        assert "make" in expected or (CASES_DIR / case / expected["file"]).exists(), case
        assert ("error" in expected) != ("rows" in expected), case
