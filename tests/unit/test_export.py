"""CSV and XLSX exports (``kalla.evidence.export``): read back with openpyxl and pyarrow."""

from __future__ import annotations

import datetime as dt
import io
from decimal import Decimal
from pathlib import Path
from typing import Any

import openpyxl
import pyarrow as pa
import pyarrow.csv as pacsv
import pytest

from kalla.errors import RecipeError
from kalla.evidence import export
from kalla.evidence.export import ExportFormat, SheetSource, parse_formats, write_workbook

# (cell text, what the CSV must hold): OWASP's formula triggers, and text that is safe
INJECTION = [
    ('=HYPERLINK("http://evil.example","click")', '\'=HYPERLINK("http://evil.example","click")'),
    ("+1+2", "'+1+2"),
    ("-2+3", "'-2+3"),
    ("@SUM(A1:A2)", "'@SUM(A1:A2)"),
    ("\tTabbed", "'\tTabbed"),
    ("\rReturn", "'\rReturn"),
    ("Acme = Ltd", "Acme = Ltd"),
    ("", ""),
]


def table() -> pa.Table:
    n = len(INJECTION)
    return pa.table(
        {
            "text": pa.array([t for t, _ in INJECTION], pa.string()),
            "amount": pa.array([Decimal("-45.10")] * n, pa.decimal128(12, 2)),
            "rate": pa.array([Decimal("1.125")] * n, pa.decimal128(9, 3)),
            "big": pa.array([Decimal("12345678901234567.89")] * n, pa.decimal128(20, 2)),
            "count": pa.array(list(range(n)), pa.int64()),
            "day": pa.array([dt.date(2024, 1, 31)] * n, pa.date32()),
            "at": pa.array([dt.datetime(2024, 1, 31, 13, 5, 9)] * n, pa.timestamp("us")),
            "ok": pa.array([True] * n),
        }
    )


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        ([], ("parquet",)),
        (["csv"], ("parquet", "csv")),
        (["csv,xlsx"], ("parquet", "csv", "xlsx")),
        (["xlsx", "CSV", "parquet", "xlsx"], ("parquet", "xlsx", "csv")),
    ],
)
def test_formats(values: list[str], expected: tuple[str, ...]) -> None:
    assert tuple(f.value for f in parse_formats(values)) == expected


def test_an_unknown_format_is_named_with_the_closest() -> None:
    with pytest.raises(RecipeError, match=r"unknown format 'xslx'.*did you mean 'xlsx'"):
        parse_formats(["csv,xslx"])


def test_csv_neutralises_formula_text_and_keeps_numbers_exact() -> None:
    data = b"".join(export.csv_chunks(table().schema, table().to_batches()))
    back = pacsv.read_csv(
        io.BytesIO(data),
        convert_options=pacsv.ConvertOptions(
            column_types={"text": pa.string(), "big": pa.string()}
        ),
    )
    assert back.column("text").to_pylist()[:-1] == [csv for _, csv in INJECTION][:-1]
    lines = data.decode().splitlines()
    assert ",-45.10,1.125,12345678901234567.89," in lines[1]  # numbers as numbers, exact


def test_csv_of_no_rows_is_the_header() -> None:
    assert b"".join(export.csv_chunks(table().schema, [])).startswith(b'"text","amount"')


def read(path: Path) -> openpyxl.Workbook:
    return openpyxl.load_workbook(path)


def workbook(tmp_path: Path, **kwargs: Any) -> Path:
    target = tmp_path / "out.xlsx"
    summary = kwargs.pop("summary", None)
    sheets = kwargs.pop("sheets", None) or [SheetSource("unmatched invoices", table().schema,
                                                        table().to_batches())]  # fmt: skip
    write_workbook(target, sheets, summary, **kwargs)
    return target


def test_xlsx_types_formats_header_and_filter(tmp_path: Path) -> None:
    sheet = read(workbook(tmp_path))["unmatched invoices"]
    header = [c.value for c in sheet[1]]
    assert header == table().column_names
    assert sheet.freeze_panes == "A2"
    assert sheet.auto_filter.ref == f"A1:H{len(INJECTION) + 1}"
    row = {name: cell for name, cell in zip(header, sheet[2], strict=True)}
    assert row["amount"].value == -45.1 and row["amount"].number_format == "#,##0.00"
    assert row["rate"].value == 1.125 and row["rate"].number_format == "#,##0.000"
    assert row["count"].value == 0
    assert row["day"].value == dt.datetime(2024, 1, 31) and row["day"].is_date
    assert row["day"].number_format == "yyyy-mm-dd"
    assert row["at"].value == dt.datetime(2024, 1, 31, 13, 5, 9)
    assert row["at"].number_format == "yyyy-mm-dd hh:mm:ss"
    assert row["ok"].value is True
    # more digits than Excel holds: the exact text, never 1.234567890123457E+16
    assert row["big"].data_type == "s" and row["big"].value == "12345678901234567.89"


def test_xlsx_text_that_could_be_a_formula_is_text_with_a_quote_prefix(tmp_path: Path) -> None:
    sheet = read(workbook(tmp_path))["unmatched invoices"]
    for r, (text, _) in enumerate(INJECTION, start=2):
        cell = sheet.cell(r, 1)
        if not text:
            assert not cell.value
            continue
        value = cell.value.replace("_x000D_", "\r")  # OOXML's escape, which openpyxl keeps
        assert cell.data_type == "s" and value == text  # never a formula ("f")
        assert cell.quotePrefix is export.is_formula_like(text), text


def test_xlsx_summary_sheet(tmp_path: Path) -> None:
    summary = {
        "left_alias": "invoices",
        "right_alias": "payments",
        "left_rows": 10,
        "right_rows": 9,
        "matched_count": 7,
        "unmatched_left_count": 3,
        "unmatched_right_count": 2,
        "ambiguous_left_count": 0,
        "ambiguous_right_count": 0,
        "passes": [{"name": "exact", "candidate_count": 7, "matched_count": 7}],
        "control_totals": [
            {"alias": "invoices", "input_rows": 10, "matched_keys": 7, "unmatched_rows": 3},
            {"alias": "payments", "input_rows": 9, "matched_keys": 7, "unmatched_rows": 2},
        ],
        "breaks": [
            {"alias": "invoices", "output": "unmatched_left",
             "reasons": [{"reason": "same invoice_id, amount differs", "count": 3}]},
        ],
    }  # fmt: skip
    book = read(workbook(tmp_path, summary=summary))
    assert book.sheetnames == ["Summary", "unmatched invoices"]
    rows = [
        tuple(c for c in r if c is not None) for r in book["Summary"].iter_rows(values_only=True)
    ]
    assert ("input rows", 10, 9) in rows
    assert ("unmatched rows", 3, 2) in rows
    assert ("exact", 7, 7) in rows
    assert ("invoices", 10, 7, 3, True) in rows
    assert ("same invoice_id, amount differs", "invoices", 3) in rows
    notes = [r[0] for r in rows if r and isinstance(r[0], str) and "significant digits" in r[0]]
    assert notes == [
        f"{len(INJECTION)} value(s) of column 'big' on sheet 'unmatched invoices' are written "
        "as text: they have more than 15 significant digits, which an Excel number cannot "
        "hold exactly"
    ]


def test_rows_beyond_the_sheet_limit_continue_on_more_sheets(tmp_path: Path) -> None:
    rows = pa.table({"n": list(range(7))})
    sheets = [SheetSource("matched", rows.schema, rows.to_batches(max_chunksize=2))]
    book = read(workbook(tmp_path, sheets=sheets, max_rows=3, summary={}))
    assert book.sheetnames == ["Summary", "matched", "matched (2)", "matched (3)"]
    got = [
        [r[0] for r in book[name].iter_rows(min_row=2, values_only=True)]
        for name in book.sheetnames[1:]
    ]
    assert got == [[0, 1, 2], [3, 4, 5], [6]]
    assert all(book[name].freeze_panes == "A2" for name in book.sheetnames[1:])
    assert export.XLSX_MAX_ROWS == 1_048_576 - 1


@pytest.mark.parametrize(
    ("name", "taken", "expected"),
    [
        ("unmatched invoices", [], "unmatched invoices"),
        ("unmatched a/b:c*d?e[f]g\\h", [], "unmatched a_b_c_d_e_f_g_h"),
        ("unmatched " + "x" * 40, [], "unmatched " + "x" * 21),
        ("matched", ["Matched"], "matched (2)"),
        ("'quoted'", [], "quoted"),
    ],
)
def test_sheet_names(name: str, taken: list[str], expected: str) -> None:
    assert export.sheet_name(name, taken) == expected
    assert len(expected) <= 31


@pytest.mark.parametrize(
    ("value", "fits"),
    [
        (Decimal("-45.10"), True),
        (Decimal("1234567890123.45"), True),
        (Decimal("12345678901234567.89"), False),
        (Decimal("100000000000000000000.00"), True),  # one significant digit
        (999_999_999_999_999, True),
        (1_000_000_000_000_000, False),
    ],
)
def test_what_excel_holds_exactly(value: Decimal | int, fits: bool) -> None:
    assert export.fits_excel(value) is fits


def test_export_names_match_what_is_written(tmp_path: Path) -> None:
    import pyarrow.parquet as pq

    outputs = {}
    for name in ("matched", "unmatched_left"):
        outputs[name] = tmp_path / f"{name}.parquet"
        pq.write_table(table(), outputs[name])
    formats = (ExportFormat.PARQUET, ExportFormat.CSV, ExportFormat.XLSX)
    written = export.export_run(tmp_path, outputs, formats, {"left_alias": "inv"})
    assert sorted(written) == sorted(export.export_names(formats, outputs))
    assert read(written["results.xlsx"]).sheetnames == ["Summary", "matched", "unmatched inv"]


def test_kalla_run_format_csv_xlsx(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The CLI's exports: formula-like text neutralised, amounts exact, listed in the
    manifest with their sha256; the Parquet outputs as ever."""
    import hashlib
    import json

    from typer.testing import CliRunner

    from kalla.cli import app
    from kalla.settings import get_settings

    names = [text for text, _ in INJECTION if text and "\r" not in text]
    (tmp_path / "invoices.csv").write_text(
        "invoice_id,customer,amount\n"
        + "".join(f'I{i},"{n.replace(chr(34), chr(34) * 2)}",-45.10\n' for i, n in enumerate(names))
        + "I99,Big,12345678901234567.89\n"
    )
    (tmp_path / "payments.csv").write_text("payment_id,ref,paid\nP1,I99,1.00\n")
    recipe = {
        "recipe_id": "formulas",
        "name": "formulas",
        "match_sql": "SELECT i.invoice_id, p.payment_id FROM invoices i JOIN payments p "
        "ON i.invoice_id = p.ref AND i.amount = p.paid",
        "sources": {
            "left": {"alias": "invoices", "type": "file", "primary_key": ["invoice_id"]},
            "right": {"alias": "payments", "type": "file", "primary_key": ["payment_id"]},
        },
    }
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    monkeypatch.setenv("STAGING_PATH", str(tmp_path / "staging"))
    get_settings.cache_clear()
    out = tmp_path / "out"
    args = ["run", str(tmp_path / "recipe.json"), "-o", str(out), "--format", "csv",
            "-f", "xlsx", "-s", f"invoices={tmp_path / 'invoices.csv'}",
            "-s", f"payments={tmp_path / 'payments.csv'}"]  # fmt: skip
    try:
        result = CliRunner().invoke(app, args)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output

    csv_rows = pacsv.read_csv(
        out / "unmatched_left.csv",
        convert_options=pacsv.ConvertOptions(column_types={"customer": pa.string(),
                                                           "amount": pa.string()}),
    ).to_pylist()  # fmt: skip
    by_id = {r["invoice_id"]: r for r in csv_rows}
    assert [by_id[f"I{i}"]["customer"] for i in range(len(names))] == [
        export.neutralise(n) for n in names
    ]
    assert by_id["I0"]["amount"] == "-45.10"
    assert by_id["I99"]["amount"] == "12345678901234567.89"
    assert (
        by_id["I99"]["nearest_reason"] == "same invoice_id, amount differs by 12345678901234566.89"
    )

    sheet = read(out / "results.xlsx")["unmatched invoices"]
    header = [c.value for c in sheet[1]]
    cells = {
        row[0].value: dict(zip(header, row, strict=True)) for row in sheet.iter_rows(min_row=2)
    }
    for i, name in enumerate(names):
        cell = cells[f"I{i}"]["customer"]
        assert (cell.value, cell.data_type, cell.quotePrefix) == (name, "s", name[0] in "=+-@\t")
        assert cells[f"I{i}"]["amount"].value == -45.1
    assert cells["I99"]["amount"].value == "12345678901234567.89"

    manifest = json.loads((out / "manifest.json").read_text())
    assert set(manifest["exports"]) == {
        "matched.csv", "unmatched_left.csv", "unmatched_right.csv", "results.xlsx"
    }  # fmt: skip
    for name, entry in manifest["exports"].items():
        assert entry["sha256"] == hashlib.sha256((out / name).read_bytes()).hexdigest()
    assert set(manifest["outputs"]) == {"matched", "unmatched_left", "unmatched_right"}
