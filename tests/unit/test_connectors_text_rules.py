"""The rules under file typing, one table each: amounts, dates, encodings, dialects, the
recipe's ``format``, and the key columns a recipe's SQL compares."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pyarrow as pa
import pytest
from pydantic import ValidationError
from typer.testing import CliRunner

from kalla.cli import app
from kalla.connectors import dates, numbers
from kalla.connectors.dialect import sniff
from kalla.connectors.encoding import detect
from kalla.connectors.format import FileFormat
from kalla.evidence.verify import Verdict
from kalla.plan.compared import compared_columns
from kalla.recipe.models import MatchSpec, RecipeSource, ResolvedSource
from kalla.replay import verify_run
from kalla.settings import Settings

# (text, decimal style, canonical text it reads as, or None when it does not read)
AMOUNTS = [
    ("19.99", ".", "19.99"),
    ("+3", ".", "3"),
    ("$99.00", ".", "99.00"),
    ("-$1,234.56", ".", "-1234.56"),
    ("$-1,234.56", ".", "-1234.56"),
    ("($45.10)", ".", "-45.10"),
    ("(45.10)", ".", "-45.10"),
    ("45.10-", ".", "-45.10"),
    ("45.10 CR", ".", "-45.10"),
    ("45.10cr", ".", "-45.10"),
    ("12.00 DR", ".", "12.00"),
    ("USD -5", ".", "-5"),
    ("-5 USD", ".", "-5"),
    ("CHF 1'234.50", ".", "1234.50"),
    ("1,23,456.78", ".", "123456.78"),
    ("\u22124.5", ".", "-4.5"),
    ("-", ".", "0"),
    ("$ -", ".", "0"),
    ("EUR 1.234,56", ",", "1234.56"),
    ("1 234,56 €", ",", "1234.56"),
    ("1\u00a0234,56\u00a0€", ",", "1234.56"),
    ("1\u202f234,56", ",", "1234.56"),
    ("1.234,56-", ",", "-1234.56"),
    ("0,50", ",", "0.50"),
    ("R$ 10,00", ",", "10.00"),
    ("1.234", ".", "1.234"),
    ("1.234", ",", "1234"),
    ("1,234", ".", "1234"),
    ("1,234", ",", "1.234"),
    # refused
    ("00123", ".", None),
    ("1e5", ".", None),
    ("abc", ".", None),
    ("-(4)", ".", None),
    ("(5", ".", None),
    ("-45.10 CR", ".", None),
    ("5 EUR USD", ".", None),
    ("INV 123", ".", None),
    ("12,34,5", ".", None),
    ("1,2345.00", ".", None),
    ("$99.00", ",", None),
    ("12.5", ",", None),
]


@pytest.mark.parametrize(("text", "decimal", "canonical"), AMOUNTS)
def test_amount_reads_exactly_or_not_at_all(text: str, decimal: str, canonical: str | None) -> None:
    read = numbers.read_amounts(pa.chunked_array([[text, None]]), numbers.style(decimal))
    assert read.text.to_pylist() == [canonical, None]
    assert read.unread.to_pylist() == [canonical is None, False]


def test_credit_sign_positive_swaps_cr_and_dr() -> None:
    column = pa.chunked_array([["45.10 CR", "12.00 DR"]])
    read = numbers.read_amounts(column, numbers.style("."), credit_negative=False)
    assert read.text.to_pylist() == ["45.10", "-12.00"]


def test_amount_marks_and_currencies() -> None:
    plain = numbers.read_amounts(pa.chunked_array([["1.5", "2.5"]]), numbers.style("."))
    assert not plain.marked and not plain.whole and plain.currencies == ()
    money = numbers.read_amounts(pa.chunked_array([["$1", "US$2", "USD 3"]]), numbers.style("."))
    assert money.marked and money.currencies == ("$", "US$", "USD")
    assert not money.whole  # a currency makes whole numbers amounts


# (text, pattern, the date or timestamp it reads as, or None)
DATES = [
    ("31/12/2024", "%d/%m/%Y", dt.date(2024, 12, 31)),
    ("1/3/2024", "%d/%m/%Y", dt.date(2024, 3, 1)),
    ("12/31/2024", "%m/%d/%Y", dt.date(2024, 12, 31)),
    ("31.12.24", "%d.%m.%y", dt.date(2024, 12, 31)),
    ("01.03.69", "%d.%m.%y", dt.date(1969, 3, 1)),
    ("31-Dec-2024", "%d-%b-%Y", dt.date(2024, 12, 31)),
    ("3 Sept 2024", "%d %b %Y", dt.date(2024, 9, 3)),
    ("January 5, 2024", "%B %d, %Y", dt.date(2024, 1, 5)),
    ("20241231", "%Y%m%d", dt.date(2024, 12, 31)),
    ("31/12/2024 14:05", "%d/%m/%Y", dt.datetime(2024, 12, 31, 14, 5)),
    ("12/31/2024 2:05 PM", "%m/%d/%Y", dt.datetime(2024, 12, 31, 14, 5)),
    ("12/31/2024 12:05 AM", "%m/%d/%Y", dt.datetime(2024, 12, 31, 0, 5)),
    ("2024-01-31T10:20:30.125", "%Y-%m-%d", dt.datetime(2024, 1, 31, 10, 20, 30, 125000)),
    ("30/02/2024", "%d/%m/%Y", None),  # no such day: never the 1st of March
    ("29/02/2023", "%d/%m/%Y", None),
    ("13/13/2024", "%d/%m/%Y", None),
    ("31/12/24", "%d/%m/%Y", None),  # %Y is four digits
    ("31-Dez-2024", "%d-%b-%Y", None),
    ("12/31/2024 13:05 PM", "%m/%d/%Y", None),
    ("2024-12-31 25:00:00", "%Y-%m-%d", None),
]


@pytest.mark.parametrize(("text", "pattern", "value"), DATES)
def test_date_reads_exactly_or_not_at_all(text: str, pattern: str, value: object) -> None:
    read = dates.read_dates(pa.chunked_array([[text]]), dates.compile_pattern(pattern))
    assert read.values.to_pylist() == [value]
    assert read.unread_count == (value is None)


def test_zoned_timestamps_become_utc() -> None:
    column = pa.chunked_array([["2024-01-31T10:20:30Z", "2024-01-31 10:20:30+0100"]])
    read = dates.read_dates(column, dates.compile_pattern("%Y-%m-%d"))
    assert read.values.type == pa.timestamp("us", tz="UTC")
    assert [v.replace(tzinfo=None) for v in read.values.to_pylist()] == [
        dt.datetime(2024, 1, 31, 10, 20, 30),
        dt.datetime(2024, 1, 31, 9, 20, 30),
    ]


@pytest.mark.parametrize(
    ("pattern", "message"),
    [
        ("%Q/%m/%Y", "%Q is not supported"),
        ("%d/%m", "needs a day, a month and a year"),
        ("%d/%d/%Y", "gives %d twice"),
    ],
)
def test_bad_date_pattern_is_named(pattern: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        dates.compile_pattern(pattern)


# (bytes at the start of a file, the encoding detected)
ENCODINGS = [
    (b"a,b\n1,2\n", "utf-8"),
    (b"\xef\xbb\xbfa,b\n", "utf-8"),
    ("a,b\n".encode("utf-16-le"), "utf-16-le"),  # no byte order mark: the NULs say it
    ("a,b\n".encode("utf-16"), "utf-16-le"),
    (b"\xfe\xff" + "a,b\n".encode("utf-16-be"), "utf-16-be"),
    ("a;Café €\n".encode("cp1252"), "cp1252"),
    (b"a;caf\xe9 \x81\n", "latin-1"),  # 0x81 is no Windows-1252 character
    (b"a,Zo\xc3\xab\n2,caf\xe9\n", "utf-8"),  # UTF-8 text with a stray byte: named later
]


@pytest.mark.parametrize(("head", "name"), ENCODINGS)
def test_encoding_detected_by_content(head: bytes, name: str) -> None:
    assert detect(head).name == name


def test_encoding_given_wins_and_skips_its_bom() -> None:
    found = detect(b"\xef\xbb\xbfa,b\n", "utf-8")
    assert (found.name, found.bom, found.given) == ("utf-8", 3, True)
    assert detect(b"a,b\n", "latin-1").name == "iso8859-1"


# (decoded head, delimiter, 1-based line of the header)
DIALECTS = [
    ("a,b,c\n1,2,3\n", ",", 1),
    ("a;b;c\n1;2,5;3\n4;5,5;6\n", ";", 1),
    ("a\tb\n1\t2,5\n", "\t", 1),
    ("a|b\n1|x, y\n", "|", 1),
    ('a,b\n"x;y",1\n"z;w",2\n', ",", 1),
    ("Konto:;123\nZeitraum:;03/2024\n\nDatum;Text;Betrag\n01.03.2024;Miete;-1,00\n", ";", 4),
    ("only\n1\n2\n", ",", 1),
    (",name,amount\n0,Acme,1.50\n1,Globex,2.00\n", ",", 1),  # an unnamed index is no preamble
]


@pytest.mark.parametrize(("text", "delimiter", "header_line"), DIALECTS)
def test_dialect_detected_by_content(text: str, delimiter: str, header_line: int) -> None:
    found = sniff(text, FileFormat(), complete=True)
    assert (found.delimiter, found.header_line) == (delimiter, header_line)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"delimiter": ";;"}, "one character or 'tab'"),
        ({"encoding": "klingon"}, "unknown encoding 'klingon'"),
        ({"thousands": "_"}, "thousands separator must be one of"),
        ({"decimal": ",", "thousands": ","}, "must differ"),
        ({"date_format": "%d/%m"}, "needs a day, a month and a year"),
        ({"skip_rows": -1}, "greater than or equal to 0"),
        ({"types": {"a": "money"}}, "'text'"),
        ({"delimter": ";"}, "Extra inputs are not permitted"),
    ],
)
def test_bad_format_is_refused_with_its_cause(fields: dict[str, object], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        FileFormat.model_validate(fields)


def test_format_normalises_tab_and_encoding_names() -> None:
    fmt = FileFormat(delimiter="tab", encoding="Windows-1252")
    assert (fmt.delimiter, fmt.encoding) == ("\t", "cp1252")


def test_format_belongs_to_file_sources() -> None:
    source = RecipeSource.model_validate(
        {"alias": "p", "type": "file", "primary_key": ["id"], "format": {"decimal": ","}}
    )
    assert source.format == FileFormat(decimal=",")
    with pytest.raises(ValidationError, match="a format applies to files"):
        RecipeSource.model_validate(
            {
                "alias": "p",
                "type": "postgres",
                "uri": "postgres://db/x?table=t",
                "primary_key": ["id"],
                "format": {"decimal": ","},
            }
        )
    resolved = ResolvedSource(alias="p", uri="/data/p.csv", format=FileFormat(skip_rows=2))
    assert resolved.to_dict()["format"] == {"skip_rows": 2, "credit_sign": "negative", "types": {}}


@pytest.mark.parametrize(
    ("sql", "left", "right"),
    [
        (
            "SELECT i.id, p.id FROM inv i JOIN pay p ON i.ref = p.reference",
            {"ref"},
            {"reference"},
        ),
        (
            "SELECT * FROM inv JOIN pay ON TRIM(pay.ref) = inv.ref AND inv.amount = pay.amount "
            "AND tolerance_match(inv.total, pay.total, 0.01)",
            {"ref", "amount"},
            {"ref", "amount"},
        ),
        (
            "WITH m AS (SELECT l.id AS a, r.id AS b FROM inv l JOIN pay r ON l.k = r.k) "
            "SELECT * FROM m",
            {"k"},
            {"k"},
        ),
        ("SELECT * FROM inv i JOIN pay p ON i.a = i.b", set(), set()),  # one side only
        ("SELECT * FROM inv JOIN pay ON ref = reference", set(), set()),  # unqualified
        ("SELECT * FROM inv JOIN pay ON", set(), set()),  # does not parse: the plan says
    ],
)
def test_compared_columns_are_the_join_keys(sql: str, left: set[str], right: set[str]) -> None:
    spec = MatchSpec(match_sql=sql)
    assert compared_columns(spec, ["inv", "pay"]) == {"inv": left, "pay": right}


def _run(tmp_path: Path, recipe: dict[str, object], files: dict[str, str]) -> dict[str, object]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    args = ["run", str(tmp_path / "recipe.json"), "-o", str(tmp_path / "out"), "--json"]
    for alias, text in files.items():
        path = tmp_path / f"{alias}.csv"
        path.write_text(text, encoding="utf-8")
        args += ["--source", f"{alias}={path}"]
    result = CliRunner().invoke(app, [*args, "--overwrite"])
    assert result.exit_code == 0, result.output
    summary: dict[str, object] = json.loads(result.stdout)
    return summary


def _recipe(left_format: dict[str, object] | None = None) -> dict[str, object]:
    left: dict[str, object] = {"alias": "ledger", "type": "file", "primary_key": ["ref"]}
    if left_format is not None:
        left["format"] = left_format
    return {
        "recipe_id": "r",
        "name": "r",
        "sources": {
            "left": left,
            "right": {"alias": "bank", "type": "file", "primary_key": ["id"]},
        },
        "match_sql": "SELECT l.ref, b.id FROM ledger l JOIN bank b ON l.ref = b.ref "
        "AND l.amount = b.amount",
    }


def test_key_typing_does_not_flip_on_an_unrelated_row(tmp_path: Path) -> None:
    # issue 14: 00123/0042 must not meet 123/42 through a cast, with or without X-9
    ledger = "ref,amount\n00123,10.00\n0042,5.00\n777,1.00\n"
    bank = "id,ref,amount\nR3,123,10.00\nR4,42,5.00\nR7,777,1.00\n"
    without = _run(tmp_path / "a", _recipe(), {"ledger": ledger, "bank": bank})
    with_row = _run(tmp_path / "b", _recipe(), {"ledger": ledger, "bank": bank + "R9,X-9,2.00\n"})
    assert without["matched_count"] == with_row["matched_count"] == 1  # 777 alone


def test_recipe_format_applies_to_the_file_given_with_source(tmp_path: Path) -> None:
    ledger = "Report of 2024-03-31\nref:amount\nA:1.234,50\nB:99,00\n"
    bank = "id,ref,amount\n1,A,1234.50\n2,B,99.00\n"
    fmt = {"delimiter": ":", "decimal": ",", "skip_rows": 1}
    summary = _run(tmp_path, _recipe(fmt), {"ledger": ledger, "bank": bank})
    assert summary["matched_count"] == 2
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["recipe"]["sources"]["left"]["format"]["delimiter"] == ":"


def test_a_run_read_with_a_format_verifies(tmp_path: Path) -> None:
    # kalla verify stages each input again: with the run's format and key columns, or the
    # digests would differ
    ledger = "Report of 2024-03-31\nref:amount\n007:1.234,50\nB:99,00\n"
    bank = "id,ref,amount\n1,007,1234.50\n2,B,99.00\n"
    fmt = {"delimiter": ":", "decimal": ",", "skip_rows": 1}
    _run(tmp_path, _recipe(fmt), {"ledger": ledger, "bank": bank})
    resaved = tmp_path / "ledger-crlf.csv"  # other bytes, the same rows: compared by digest
    resaved.write_bytes(ledger.replace("\n", "\r\n").encode())
    report = verify_run(
        tmp_path / "out",
        {"ledger": str(resaved), "bank": str(tmp_path / "bank.csv")},
        settings=Settings(STAGING_PATH=tmp_path / "staging"),
    )
    assert report.verdict is Verdict.VERIFIED, report.lines()
    assert any("the same rows the run read (digest)" in line for line in report.lines())
