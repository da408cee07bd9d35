"""``kalla suggest LEFT RIGHT --output recipe.json [--json]`` as a user runs it."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from kalla.cli import app

CASE = Path(__file__).parent.parent / "fixtures" / "builder" / "xlsx_vendor_bills"


def _suggest(tmp_path: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["suggest", *args], env={"STAGING_PATH": str(tmp_path / "st")})
    return result.exit_code, result.stdout, result.stderr


def test_suggest_writes_the_recipe_and_prints_the_rule_and_the_preview(tmp_path: Path) -> None:
    out = tmp_path / "recipe.json"
    code, stdout, stderr = _suggest(
        tmp_path,
        str(CASE / "vendor_statement.xlsx"),
        str(CASE / "purchase_ledger.csv"),
        "-o",
        str(out),
    )
    assert code == 0, stderr
    recipe = json.loads(out.read_text())
    assert recipe["sources"]["left"]["alias"] == "vendor_statement"
    assert recipe["sources"]["left"]["type"] == "file"
    for words in (
        "What the data shows",
        "The rule",
        "Preview on the whole files",
        "Run it yourself",
    ):
        assert words in stdout
    assert not list((tmp_path / "st").glob("suggest-*")), "the scratch directory is removed"


def test_suggest_json_carries_recipe_findings_preview_and_the_run_command(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    code, stdout, stderr = _suggest(
        tmp_path,
        str(CASE / "vendor_statement.xlsx"),
        str(CASE / "purchase_ledger.csv"),
        "-o",
        str(out),
        "--json",
    )
    assert code == 0, stderr
    answer = json.loads(stdout)
    assert set(answer) == {"recipe_path", "recipe", "findings", "preview", "run"}
    assert answer["preview"]["counts"]["matched_rows"] == 226
    assert answer["run"].startswith(f"kalla run {out} --source vendor_statement=")


def test_an_existing_recipe_file_is_kept_unless_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "recipe.json"
    out.write_text("{}")
    files = [str(CASE / "vendor_statement.xlsx"), str(CASE / "purchase_ledger.csv")]
    code, _, stderr = _suggest(tmp_path, *files, "-o", str(out))
    assert code == 5
    assert "already exists" in stderr and "--overwrite" in stderr
    assert out.read_text() == "{}"
    code, _, _ = _suggest(tmp_path, *files, "-o", str(out), "--overwrite")
    assert code == 0
    assert json.loads(out.read_text())["recipe_id"]


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    code, _, stderr = _suggest(
        tmp_path, str(tmp_path / "nope.csv"), str(CASE / "purchase_ledger.csv")
    )
    assert code == 3
    assert "file not found" in stderr and "nope.csv" in stderr


def test_files_with_nothing_in_common_say_why(tmp_path: Path) -> None:
    left = tmp_path / "colours.csv"
    right = tmp_path / "sizes.csv"
    left.write_text("id,colour\na,red\nb,green\nc,blue\n")
    right.write_text("code,size\nx,s\ny,m\nz,l\n")
    code, _, stderr = _suggest(tmp_path, str(left), str(right), "-o", str(tmp_path / "r.json"))
    assert code == 2
    assert "share no key column and no amounts" in stderr
    assert "Traceback" not in stderr
    assert not (tmp_path / "r.json").exists()


def test_parquet_files_are_read_where_they_lie(tmp_path: Path) -> None:
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    case = CASE.parent / "bank_tolerance"
    for name in ("ledger", "bank"):
        pq.write_table(pacsv.read_csv(case / f"{name}.csv"), tmp_path / f"{name}.parquet")
    code, stdout, stderr = _suggest(
        tmp_path,
        str(tmp_path / "ledger.parquet"),
        str(tmp_path / "bank.parquet"),
        "-o",
        str(tmp_path / "r.json"),
        "--json",
    )
    assert code == 0, stderr
    assert json.loads(stdout)["preview"]["counts"]["matched_rows"] == 360
