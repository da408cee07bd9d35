"""XLSX and JSON files: sheet choice, exact numbers, errors."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kalla.connectors import stage_source
from kalla.errors import SourceError
from kalla.settings import Settings

SETTINGS = Settings()

openpyxl = pytest.importorskip("openpyxl")


def workbook(path: Path, sheets: dict[str, list[list[object]]]) -> Path:
    book = openpyxl.Workbook()
    book.remove(book.active)
    for title, rows in sheets.items():
        sheet = book.create_sheet(title)
        for row in rows:
            sheet.append(row)
    book.save(path)
    return path


def test_xlsx_first_sheet_by_default_and_sheet_option(tmp_path: Path) -> None:
    path = workbook(
        tmp_path / "book.xlsx",
        {
            "January": [["ref", "amount"], ["A1", 19.99], ["A2", 20]],
            "February": [["ref", "paid", "on"], ["B1", 0.1, dt.date(2024, 2, 29)]],
        },
    )
    first = stage_source(str(path), alias="x", settings=SETTINGS, staging_dir=tmp_path / "s")
    table = pq.read_table(first.path)
    assert table.schema.field("amount").type == pa.decimal128(4, 2)
    assert table.column("amount").to_pylist() == [Decimal("19.99"), Decimal("20.00")]

    second = stage_source(
        f"{path}?sheet=February", alias="x", settings=SETTINGS, staging_dir=tmp_path / "s"
    )
    assert second.schema.names == ["ref", "paid", "on"]
    assert pq.read_table(second.path).to_pylist() == [
        {"ref": "B1", "paid": Decimal("0.1"), "on": dt.date(2024, 2, 29)}
    ]


def test_xlsx_unknown_sheet_suggests(tmp_path: Path) -> None:
    path = workbook(tmp_path / "book.xlsx", {"February": [["a"], [1]]})
    with pytest.raises(SourceError, match=r"no sheet named 'february' \(did you mean 'February'"):
        stage_source(f"{path}?sheet=february", alias="x", settings=SETTINGS, staging_dir=tmp_path)
    with pytest.raises(SourceError, match=r"unknown URI option 'sheat' \(did you mean 'sheet'"):
        stage_source(f"{path}?sheat=February", alias="x", settings=SETTINGS, staging_dir=tmp_path)


def test_xlsx_expected_columns(tmp_path: Path) -> None:
    path = workbook(tmp_path / "book.xlsx", {"S": [["Payment ID", "amount"], ["p", 1]]})
    with pytest.raises(SourceError, match=r"'payment_id' \(did you mean 'Payment ID'"):
        stage_source(
            str(path),
            alias="x",
            settings=SETTINGS,
            staging_dir=tmp_path,
            expected_columns=["payment_id"],
        )


def test_json_array_and_ndjson_keep_numbers_exact(tmp_path: Path) -> None:
    array = tmp_path / "a.json"
    array.write_text(
        '[{"id": 1, "amount": 0.10, "when": "2024-01-02", "tags": ["x"]},\n'
        ' {"id": 2, "amount": 1e2, "name": "Zoë", "when": null, "ok": true}]'
    )
    table = pq.read_table(
        stage_source(str(array), alias="a", settings=SETTINGS, staging_dir=tmp_path).path
    )
    assert table.schema == pa.schema(
        [
            ("id", pa.int64()),
            ("amount", pa.decimal128(5, 2)),
            ("when", pa.date32()),
            ("tags", pa.string()),
            ("name", pa.string()),
            ("ok", pa.bool_()),
        ]
    )
    assert table.column("amount").to_pylist() == [Decimal("0.10"), Decimal("100.00")]
    assert table.column("tags").to_pylist() == ['["x"]', None]

    lines = tmp_path / "a.ndjson"
    lines.write_text('{"id": 1, "amount": 19.99}\n\n{"id": 2, "amount": -5}\n')
    table = pq.read_table(
        stage_source(str(lines), alias="b", settings=SETTINGS, staging_dir=tmp_path).path
    )
    assert table.column("amount").to_pylist() == [Decimal("19.99"), Decimal("-5.00")]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.ndjson", '{"id": 1}\n{"id": 2\n', "malformed JSON at line 2"),
        ("bad.json", '[{"id": 1}, 5]', "element 2 is not a JSON object"),
        ("bad.jsonl", "", "the file is empty"),
    ],
)
def test_bad_json_names_the_place(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(SourceError, match=message):
        stage_source(str(path), alias="j", settings=SETTINGS, staging_dir=tmp_path)
