"""Builders for the corpus' generated inputs: a case names one in its manifest
(``{fn = "xlsx", rows = [...]}``) instead of committing a binary or a large file.

Each builder takes the path to write and the manifest entry's other keys, and is
deterministic (fixed seeds), so a failing case fails the same way every time.
"""

from __future__ import annotations

import base64
import datetime as dt
import decimal
import io
import json
import random
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

Builder = Callable[..., None]
BUILDERS: dict[str, Builder] = {}


def builder(fn: Builder) -> Builder:
    BUILDERS[fn.__name__] = fn
    return fn


def build(path: Path, spec: str | dict[str, Any]) -> None:
    """Write one input: a manifest string is the file's UTF-8 text; a table names a builder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(spec, str):
        path.write_bytes(spec.encode())
        return
    args = dict(spec)
    name = args.pop("fn")
    if name not in BUILDERS:
        raise KeyError(f"unknown builder '{name}'; known: {', '.join(sorted(BUILDERS))}")
    BUILDERS[name](path, **args)


# --- bytes and text ---------------------------------------------------------------------------


@builder
def encoded(path: Path, text: str, encoding: str, bom: bool = False) -> None:
    """``text`` in another encoding (``bom`` prepends the encoding's byte-order mark)."""
    data = text.encode(encoding)
    if bom:
        data = {"utf-8": b"\xef\xbb\xbf"}.get(encoding, b"") + data
    path.write_bytes(data)


@builder
def raw(path: Path, b64: str = "", hex: str = "", text: str = "", repeat: int = 1) -> None:
    """Exact bytes: base64, hex or latin-1 text, repeated ``repeat`` times."""
    if b64:
        chunk = base64.b64decode(b64)
    elif hex:
        chunk = bytes.fromhex(hex)
    else:
        chunk = text.encode("latin-1")
    path.write_bytes(chunk * repeat)


@builder
def garbage(path: Path, size: int, seed: int = 14) -> None:
    """Random bytes (a binary renamed .csv, say)."""
    path.write_bytes(random.Random(seed).randbytes(size))


@builder
def csv_rows(
    path: Path,
    header: list[str],
    rows: int,
    row: list[str],
    tail: str = "",
    newline: str = "\n",
) -> None:
    """``rows`` rows from a template whose cells may use ``{i}`` (the row number)."""
    lines = [",".join(header)]
    lines += [",".join(cell.format(i=i) for cell in row) for i in range(rows)]
    path.write_text(newline.join(lines) + newline + tail, newline="")


@builder
def wide_csv(path: Path, columns: int, rows: int = 2, key: str = "id") -> None:
    """A CSV with ``columns`` columns (the first the key), small values."""
    header = [key] + [f"c{j}" for j in range(1, columns)]
    body = [[f"K{i}"] + [str(j % 10) for j in range(1, columns)] for i in range(rows)]
    path.write_text("\n".join(",".join(r) for r in [header, *body]) + "\n")


@builder
def big_field(path: Path, size: int, header: str = "id,amount,note", quoted: bool = True) -> None:
    """Three rows, the second with a ``note`` field of ``size`` bytes (quoted, with commas and
    newlines inside when ``quoted``), so that a reader must carry one field across blocks."""
    unit = 'ab,c"" \n' if quoted else "abcdefgh"
    body = (unit * (size // len(unit) + 1))[:size]
    note = f'"{body}"' if quoted else body
    path.write_text(f"{header}\nA1,10.00,small\nA2,20.00,{note}\nA3,30.00,small\n", newline="")


@builder
def ndjson(path: Path, rows: list[Any], bad_line: str | None = None, at: int = 1) -> None:
    lines = [json.dumps(r) for r in rows]
    if bad_line is not None:
        lines.insert(at, bad_line)
    path.write_text("\n".join(lines) + "\n")


@builder
def json_doc(path: Path, value: Any = None, depth: int = 0, number: str = "") -> None:
    """A JSON document: ``value``; or an array of one record nested ``depth`` deep; or a record
    whose amount is the literal ``number`` (too big for any float)."""
    if depth:
        inner = '{"a":' * depth + "1" + "}" * depth
        path.write_text(f'[{{"id": "A1", "amount": 1.0, "deep": {inner}}}]')
    elif number:
        path.write_text(f'[{{"id": "A1", "amount": {number}}}, {{"id": "A2", "amount": 2.0}}]')
    else:
        path.write_text(json.dumps(value))


# --- XLSX -------------------------------------------------------------------------------------


@builder
def xlsx(
    path: Path,
    rows: list[list[Any]] | None = None,
    sheet: str = "Sheet1",
    merge: str = "",
    hidden_rows: list[int] | None = None,
    formulas: dict[str, str] | None = None,
    extra_sheets: list[str] | None = None,
    empty: bool = False,
    dates: bool = False,
) -> None:
    """A workbook written by openpyxl. ``merge`` merges a range (``C1:D1``); ``hidden_rows``
    hides 1-based rows; ``formulas`` puts ``=…`` into cells; ``dates`` turns ISO date strings
    into real date cells."""
    from openpyxl import Workbook

    book = Workbook()
    ws = book.active
    assert ws is not None
    ws.title = sheet
    if not empty:
        for values in rows or []:
            if dates:
                values = [_date_cell(v) for v in values]
            ws.append(values)
    if merge:
        ws.merge_cells(merge)
    for number in hidden_rows or []:
        ws.row_dimensions[number].hidden = True
    for cell, formula in (formulas or {}).items():
        ws[cell] = formula
    for name in extra_sheets or []:
        book.create_sheet(name)
    book.save(path)


def _date_cell(value: Any) -> Any:
    if isinstance(value, str) and len(value) == 10 and value[4] == "-" and value[7] == "-":
        return dt.date.fromisoformat(value)
    return value


@builder
def corrupt_zip(path: Path, keep: int = 200) -> None:
    """A real workbook cut after ``keep`` bytes: a zip without its central directory."""
    buffer = io.BytesIO()
    tmp = path.with_suffix(".tmp.xlsx")
    xlsx(tmp, rows=[["id", "amount"], ["A1", 1.0]])
    buffer.write(tmp.read_bytes()[:keep])
    tmp.unlink()
    path.write_bytes(buffer.getvalue())


@builder
def encrypted_xlsx(path: Path) -> None:
    """What Excel writes for a password-protected workbook: an OLE2 compound file (CFB),
    not a zip. Its magic number is enough for a reader to tell."""
    magic = bytes.fromhex("d0cf11e0a1b11ae1")
    path.write_bytes(magic + b"\x00" * 504 + b"EncryptedPackage" + b"\x00" * 1024)


@builder
def zip_not_xlsx(path: Path) -> None:
    """A valid zip archive holding a text file, named .xlsx."""
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("readme.txt", "not a workbook")


# --- Parquet ----------------------------------------------------------------------------------


_TYPES: dict[str, pa.DataType] = {
    "string": pa.string(),
    "int64": pa.int64(),
    "double": pa.float64(),
    "float": pa.float32(),
    "bool": pa.bool_(),
    "date": pa.date32(),
    "ts": pa.timestamp("us"),
    "ts_utc": pa.timestamp("us", tz="UTC"),
    "ts_paris": pa.timestamp("us", tz="Europe/Paris"),
    "decimal": pa.decimal128(18, 2),
    "decimal256": pa.decimal256(50, 2),
    "dict": pa.dictionary(pa.int32(), pa.string()),
    "list": pa.list_(pa.int64()),
    "struct": pa.struct([("x", pa.int64()), ("y", pa.string())]),
}


def _value(kind: str, value: Any) -> Any:
    if value is None or value == "__null__":  # TOML has no null
        return None
    if kind.startswith("ts"):
        return dt.datetime.fromisoformat(value)
    if kind == "date":
        return dt.date.fromisoformat(value)
    if kind.startswith("decimal"):
        return decimal.Decimal(value)
    if kind in ("double", "float") and isinstance(value, str):
        return float(value)  # "nan", "inf", "-0.0", "5e-324": TOML has no subnormal literal
    return value


@builder
def parquet(
    path: Path,
    columns: dict[str, str],
    rows: list[list[Any]],
    row_group_size: int | None = None,
) -> None:
    """A Parquet file with the named column types (see ``_TYPES``)."""
    arrays = []
    for j, (name, kind) in enumerate(columns.items()):
        values = [_value(kind, r[j]) for r in rows]
        if kind == "dict":
            arrays.append(pa.array(values, pa.string()).dictionary_encode())
        elif kind == "ts_utc" or kind == "ts_paris":
            tz = "UTC" if kind == "ts_utc" else "Europe/Paris"
            naive = pa.array(values, pa.timestamp("us"))
            arrays.append(naive.cast(pa.timestamp("us", tz=tz)))
        else:
            arrays.append(pa.array(values, _TYPES[kind]))
        del name
    table = pa.Table.from_arrays(arrays, names=list(columns))
    pq.write_table(table, path, row_group_size=row_group_size)


@builder
def parquet_dup_columns(path: Path) -> None:
    """Two columns both named ``amount`` (Arrow allows it; Parquet files can carry it)."""
    table = pa.Table.from_arrays(
        [pa.array(["A1", "A2"]), pa.array([1.0, 2.0]), pa.array([3.0, 4.0])],
        names=["id", "amount", "amount"],
    )
    pq.write_table(table, path)


@builder
def parquet_cut(path: Path, drop: int = 8) -> None:
    """A valid Parquet file with its last ``drop`` bytes (footer length and magic) removed."""
    parquet(path, {"id": "string", "amount": "double"}, [["A1", 1.0], ["A2", 2.0]])
    data = path.read_bytes()
    path.write_bytes(data[:-drop])


@builder
def parquet_big_join(path: Path, rows: int, prefix: str) -> None:
    """``rows`` rows that all share one join value: a pass on it has rows² candidates."""
    table = pa.table(
        {
            "id": pa.array([f"{prefix}{i}" for i in range(rows)]),
            "grp": pa.array(["same"] * rows),
            "amount": pa.array([1.0] * rows),
        }
    )
    pq.write_table(table, path)


# --- SQL --------------------------------------------------------------------------------------

_JOIN = "SELECT l.id, r.rid FROM l JOIN r ON l.id = r.ref AND "


def sql_text(fn: str, depth: int = 0, items: int = 0) -> str:
    """A generated ``match_sql``: ``nested_sql`` (parentheses ``depth`` deep) or ``long_sql``
    (an IN list of ``items`` numbers)."""
    if fn == "nested_sql":
        return _JOIN + "(" * depth + "l.amount = r.amount" + ")" * depth
    if fn == "long_sql":
        return _JOIN + "l.amount IN (" + ", ".join(str(i) for i in range(items)) + ")"
    raise KeyError(f"unknown SQL builder '{fn}'")
