"""The README's "Excel in, Excel out, breaks explained" run, as the README writes it: the
demo's invoices saved as a workbook, the README's command, the break reasons it prints and
the workbook it writes."""

from __future__ import annotations

import datetime as dt
import re
import shlex
from decimal import Decimal
from pathlib import Path

import openpyxl
import pyarrow.csv as pacsv
import pytest
from typer.testing import CliRunner

from kalla.cli import app
from kalla.settings import get_settings

README = Path(__file__).parents[2] / "README.md"


def readme_blocks() -> tuple[list[str], list[str]]:
    """The command after the ``readme-excel-run`` marker, and the output shown after it."""
    text = README.read_text()
    start = text.index("<!-- readme-excel-run")
    command, output = re.findall(r"```(?:bash)?\n(.*?)```", text[start:], re.S)[:2]
    return shlex.split(command.strip()), output.strip().splitlines()


def save_as_workbook(csv_path: Path, target: Path) -> None:
    """What Excel's "Save as .xlsx" gives: numbers as numbers, dates as dates."""
    table = pacsv.read_csv(csv_path)
    book = openpyxl.Workbook()
    sheet = book.active
    sheet.append(table.column_names)
    for row in table.to_pylist():
        sheet.append(
            [
                float(v) if isinstance(v, Decimal)
                else dt.datetime.combine(v, dt.time()) if isinstance(v, dt.date) else v
                for v in row.values()
            ]
        )  # fmt: skip
    book.save(target)


@pytest.fixture
def in_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("STAGING_PATH", str(tmp_path / "staging"))
    get_settings.cache_clear()
    yield tmp_path
    get_settings.cache_clear()


def test_the_readmes_excel_run(in_tmp: Path) -> None:
    runner = CliRunner()
    demo = runner.invoke(app, ["demo", "--dir", "kalla-demo"])
    assert demo.exit_code == 0, demo.output
    data = in_tmp / "kalla-demo" / "data"
    save_as_workbook(data / "invoices.csv", data / "invoices.xlsx")

    command, shown = readme_blocks()
    assert command[:2] == ["kalla", "run"] and "xlsx" in command
    result = runner.invoke(app, command[1:])
    assert result.exit_code == 0, result.output
    printed = result.stdout.splitlines()
    reasons = shown[shown.index("Top break reasons:") :]
    start = printed.index("Top break reasons:")
    assert printed[start : start + len(reasons)] == reasons  # the README's reasons, as printed
    assert any(line.startswith(shown[0].split(";")[0]) for line in printed)  # matched rows

    book = openpyxl.load_workbook(in_tmp / "excel-run" / "results.xlsx", read_only=False)
    assert book.sheetnames == [
        "Summary",
        "matched",
        "unmatched invoices",
        "unmatched payments",
        "ambiguous",
    ]
    unmatched = book["unmatched invoices"]
    header = [c.value for c in unmatched[1]]
    assert header[-2:] == ["nearest_key", "nearest_reason"]
    first = dict(zip(header, unmatched[2], strict=True))
    assert first["amount"].number_format == "#,##0.00"
    assert first["issue_date"].is_date
    assert unmatched.freeze_panes == "A2" and unmatched.auto_filter.ref
    summary = [
        tuple(v for v in r if v is not None) for r in book["Summary"].iter_rows(values_only=True)
    ]
    assert ("Breaks by reason", "source", "rows") in summary
    assert ("no row with this invoice_id", "invoices", 150) in summary
