"""Local CSV staging: reading rules, exact typing, errors."""

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


def stage_text(tmp_path: Path, text: str | bytes, name: str = "data.csv"):
    path = tmp_path / name
    path.write_bytes(text.encode("utf-8") if isinstance(text, str) else text)
    return stage_source(str(path), alias="src", settings=SETTINGS, staging_dir=tmp_path / "staging")


def staged_table(tmp_path: Path, text: str | bytes) -> pa.Table:
    staged = stage_text(tmp_path, text)
    table = pq.read_table(staged.path)
    assert table.schema == staged.schema
    return table


# (case, column values as CSV lines after a header "v", expected type, expected values)
TYPING_CASES = [
    ("integers", ["1", "-2", "+3", "0", ""], pa.int64(), [1, -2, 3, 0, None]),
    ("leading zeros stay text", ["00123", "456", ""], pa.string(), ["00123", "456", None]),
    ("19 digits stay text", ["1234567890123456789"], pa.string(), ["1234567890123456789"]),
    (
        "decimals scale 2",
        ["19.99", "20.01"],
        pa.decimal128(4, 2),
        [Decimal("19.99"), Decimal("20.01")],
    ),
    (
        "int mixed with decimal",
        ["20", "19.5"],
        pa.decimal128(3, 1),
        [Decimal("20.0"), Decimal("19.5")],
    ),
    (
        "signs and bare points",
        ["-0.5", ".5", "+1.25", ""],
        pa.decimal128(3, 2),
        [Decimal("-0.50"), Decimal("0.50"), Decimal("1.25"), None],
    ),
    ("exponent stays text", ["1e5", "2.5"], pa.string(), ["1e5", "2.5"]),
    ("float-looking text", ["1.5", "abc"], pa.string(), ["1.5", "abc"]),
    ("padded numbers", [" 1.5", "2.5"], pa.decimal128(2, 1), [Decimal("1.5"), Decimal("2.5")]),
    ("padded text stays text", [" a", "2.5"], pa.string(), [" a", "2.5"]),
    (
        "dates",
        ["2024-01-31", "", "2024-02-29"],
        pa.date32(),
        [dt.date(2024, 1, 31), None, dt.date(2024, 2, 29)],
    ),
    ("impossible date stays text", ["2024-02-30"], pa.string(), ["2024-02-30"]),
    (
        "timestamps",
        ["2024-01-31 10:20:30", "2024-01-31T10:20:30.125", "2024-02-01"],
        pa.timestamp("us"),
        [
            dt.datetime(2024, 1, 31, 10, 20, 30),
            dt.datetime(2024, 1, 31, 10, 20, 30, 125000),
            dt.datetime(2024, 2, 1),
        ],
    ),
    ("booleans", ["true", "FALSE", "True", ""], pa.bool_(), [True, False, True, None]),
    ("yes/no stay text", ["yes", "no"], pa.string(), ["yes", "no"]),
    ("all empty", ["", ""], pa.string(), [None, None]),
    ("empty quoted is null", ['""', "x"], pa.string(), [None, "x"]),
]


@pytest.mark.parametrize(
    ("values", "expected_type", "expected"),
    [pytest.param(v, t, e, id=case) for case, v, t, e in TYPING_CASES],
)
def test_column_typing(tmp_path: Path, values, expected_type, expected) -> None:
    # A second column keeps rows whose only value is empty from being blank lines.
    text = "v,k\n" + "".join(f"{v},{i}\n" for i, v in enumerate(values))
    table = staged_table(tmp_path, text)
    assert table.schema.field("v").type == expected_type
    assert table.column("v").to_pylist() == expected


def test_typing_uses_the_whole_column_not_a_sample(tmp_path: Path) -> None:
    rows = [str(i) for i in range(50_000)] + ["12.345"]
    text = "v\n" + "\n".join(rows) + "\n"
    table = staged_table(tmp_path, text)
    assert table.schema.field("v").type == pa.decimal128(8, 3)
    assert table.column("v")[-1].as_py() == Decimal("12.345")
    assert table.column("v")[7].as_py() == Decimal("7")

    late_text = "v\n" + "\n".join([str(i) for i in range(50_000)] + ["n/a"]) + "\n"
    assert staged_table(tmp_path, late_text).schema.field("v").type == pa.string()


def test_bom_crlf_quotes_and_non_ascii(tmp_path: Path) -> None:
    text = (
        "\ufeffreference,customer,amount\r\n"
        'R1,"Smith, John",10.50\r\n'
        'R2,"He said ""paid""",1\r\n'
        'R3,"two\r\nlines",\r\n'
        ",Zoë Ångström 東京,2.25\r\n"
    )
    table = staged_table(tmp_path, text)
    assert table.column_names == ["reference", "customer", "amount"]
    assert table.column("reference").to_pylist() == ["R1", "R2", "R3", None]
    assert table.column("customer").to_pylist() == [
        "Smith, John",
        'He said "paid"',
        "two\r\nlines",
        "Zoë Ångström 東京",
    ]
    assert table.schema.field("amount").type == pa.decimal128(4, 2)
    assert table.column("amount").to_pylist() == [
        Decimal("10.50"),
        Decimal("1.00"),
        None,
        Decimal("2.25"),
    ]


def test_header_only_gives_empty_text_columns(tmp_path: Path) -> None:
    table = staged_table(tmp_path, "a,b\n")
    assert table.num_rows == 0
    assert table.schema == pa.schema([("a", pa.string()), ("b", pa.string())])


def test_staged_source_fields(tmp_path: Path) -> None:
    import hashlib

    data = b"id,amount\n1,2.50\n2,3.75\n"
    seen: list[float] = []
    path = tmp_path / "pay.csv"
    path.write_bytes(data)
    staged = stage_source(
        f"file://{path}",
        alias="payments",
        settings=SETTINGS,
        staging_dir=tmp_path / "stg",
        progress=seen.append,
    )
    assert staged.alias == "payments"
    assert staged.row_count == 2
    assert staged.path.parent == tmp_path / "stg"
    assert staged.path.name.startswith("payments-") and staged.path.suffix == ".parquet"
    assert staged.fingerprint == {
        "kind": "file",
        "sha256": hashlib.sha256(data).hexdigest(),
        "bytes": len(data),
    }
    assert staged.filters_applied == ()
    assert seen[0] == 0.0 and seen[-1] == 1.0
    assert seen == sorted(seen)
    assert not [p for p in (tmp_path / "stg").iterdir() if ".tmp-" in p.name]


def test_alias_cannot_escape_the_staging_dir(tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("a\n1\n")
    staged = stage_source(
        str(path), alias="../../etc/evil", settings=SETTINGS, staging_dir=tmp_path / "stg"
    )
    assert staged.path.parent == tmp_path / "stg"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(b"", "the file is empty", id="empty"),
        pytest.param(b"a,b\n1,2\n3,4,5\n", "row 3", id="too-many-fields"),
        pytest.param(b"a,b\n1,2\n3\n", "expected 2 fields, found 1", id="too-few-fields"),
        pytest.param(
            b"a,b\n1,Zo\xc3\xab\n3,caf\xe9\n", "not valid UTF-8 at row 3", id="utf8-damaged"
        ),
        pytest.param(b"id,amount,id\n1,2,3\n", "duplicate column names: 'id'", id="dup-header"),
    ],
)
def test_malformed_csv_names_file_and_row(tmp_path: Path, content: bytes, message: str) -> None:
    with pytest.raises(SourceError) as info:
        stage_text(tmp_path, content)
    assert message in str(info.value)
    assert "data.csv" in str(info.value)
    assert "source 'src'" in str(info.value)


def test_malformed_row_deep_in_a_big_file_is_located(tmp_path: Path) -> None:
    lines = ["id,name"] + [f"{i},n{i}" for i in range(200_000)]
    lines[150_001] = "x,y,z"
    with pytest.raises(SourceError, match=r"row 150002 \(counting the header as row 1\)"):
        stage_text(tmp_path, "\n".join(lines) + "\n")


def test_expected_columns_lists_every_missing_one_with_suggestions(tmp_path: Path) -> None:
    path = tmp_path / "payments.csv"
    path.write_text("payment_id,Amount,paid_on,extra\n1,2.5,2024-01-01,x\n")
    with pytest.raises(SourceError) as info:
        stage_source(
            str(path),
            alias="payments",
            settings=SETTINGS,
            staging_dir=tmp_path / "stg",
            expected_columns=["Payment ID", "amount", "paid_on", "currency"],
        )
    text = str(info.value)
    assert "'Payment ID'" in text and "did you mean 'payment_id'" in text
    assert "'amount'" in text and "did you mean 'Amount'" in text
    assert "'currency'" in text
    assert "'paid_on'" not in text.split("\n")[0].split("column")[-1]
    assert info.value.problems[0].startswith("missing column 'Payment ID'")
    assert len(info.value.problems) == 3
    assert not (tmp_path / "stg").exists() or not list((tmp_path / "stg").iterdir())


def test_expected_columns_allow_extra_columns(tmp_path: Path) -> None:
    path = tmp_path / "p.csv"
    path.write_text("a,b,c\n1,2,3\n")
    staged = stage_source(
        str(path),
        alias="p",
        settings=SETTINGS,
        staging_dir=tmp_path / "s",
        expected_columns=["c", "a"],
    )
    assert staged.schema.names == ["a", "b", "c"]


class Cancelled(Exception):
    pass


def test_an_exception_from_progress_stops_staging(tmp_path: Path) -> None:
    path = tmp_path / "big.csv"
    path.write_text("a,b\n" + "".join(f"{i},x{i}\n" for i in range(300_000)))

    def cancel(fraction: float) -> None:
        if fraction > 0.0:
            raise Cancelled("run cancelled")

    with pytest.raises(Cancelled):
        stage_source(
            str(path), alias="a", settings=SETTINGS, staging_dir=tmp_path / "s", progress=cancel
        )
    assert not (tmp_path / "s").exists() or not list((tmp_path / "s").iterdir())


def test_numbers_padded_with_spaces_are_typed_by_their_trimmed_text(tmp_path: Path) -> None:
    path = tmp_path / "padded.csv"
    path.write_text("id,amount,name\n1, 19.99 , Acme \n2,20.5  ,Globex\n", encoding="utf-8")
    staged = stage_source(str(path), alias="p", settings=SETTINGS, staging_dir=tmp_path / "staging")
    table = pq.read_table(staged.path)
    assert table.schema.field("amount").type == pa.decimal128(4, 2)
    assert table.column("amount").to_pylist() == [Decimal("19.99"), Decimal("20.50")]
    assert table.column("name").to_pylist() == [" Acme ", "Globex"]  # text keeps its spaces
