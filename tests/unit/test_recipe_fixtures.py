"""Every case in tests/fixtures/recipes/<case>/ through `kalla run`, on every engine.

A case holds its sources, ``recipe.json`` and ``expected.json``: either the counts, the
matched key pairs and unmatched keys the run must produce, or the error (exit code and
message fragments) it must fail with. Each case runs once per engine (``KALLA_ENGINE``).
"""

from __future__ import annotations

import json
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kalla.cli import app
from kalla.settings import get_settings

CASES_DIR = Path(__file__).parent.parent / "fixtures" / "recipes"
CASES = sorted(p.name for p in CASES_DIR.iterdir() if p.is_dir() and not p.name.startswith("_"))


def _key_column(table: pa.Table, alias: str, key: str) -> str:
    for name in (f"{alias}.{key}", f"{alias}_{key}", key):
        if name in table.column_names:
            return name
    raise AssertionError(f"no column for {alias}.{key} in {table.column_names}")


def _keys(table: pa.Table, alias: str, keys: list[str], *, plain: bool = False) -> list[Any]:
    columns = [
        table.column(key if plain else _key_column(table, alias, key)).to_pylist() for key in keys
    ]
    rows = list(zip(*columns, strict=True)) if columns else []
    return [list(r) if len(keys) > 1 else r[0] for r in rows]


def _plain(value: Any) -> Any:
    """A value as JSON writes it: decimals as their exact text."""
    return str(value) if isinstance(value, Decimal) else value


def _sorted(values: list[Any]) -> list[Any]:
    return sorted(values, key=json.dumps)


def run_case(
    case: str, tmp_path: Path, engine: str
) -> tuple[Any, dict[str, Any], Path, dict[str, Any]]:
    folder = CASES_DIR / case
    expected = json.loads((folder / "expected.json").read_text())
    out = tmp_path / "out"
    args = ["run", str(folder / "recipe.json"), "--output", str(out), "--json"]
    for alias, file in expected["sources"].items():
        args += ["--source", f"{alias}={folder / file}"]
    env = {"STAGING_PATH": str(tmp_path / "staging"), "KALLA_ENGINE": engine}
    get_settings.cache_clear()  # the settings are read once per process: read these
    try:
        result = CliRunner().invoke(app, args, env=env)
    finally:
        get_settings.cache_clear()
    return result, expected, out, json.loads((folder / "recipe.json").read_text())


@pytest.mark.parametrize("case", CASES)
def test_recipe_case(case: str, engine: str, tmp_path: Path) -> None:
    result, expected, out, recipe = run_case(case, tmp_path, engine)

    if "error" in expected:
        assert result.exit_code == expected["error"]["exit_code"], result.output
        message = result.stderr
        for fragment in expected["error"]["contains"]:
            assert fragment in message, f"{fragment!r} not in {message!r}"
        assert "Traceback" not in message
        assert not out.exists(), "a failed run must leave no output directory"
        return

    assert result.exit_code == 0, result.stderr
    summary = json.loads(result.stdout)
    for name, value in expected["counts"].items():
        assert summary[name] == value, f"{name}: {summary[name]} != {value}"

    left, right = recipe["sources"]["left"], recipe["sources"]["right"]
    matched = pq.read_table(out / "matched.parquet")
    assert matched.num_rows == summary["matched_count"]
    pairs = [
        [lk, rk]
        for lk, rk in zip(
            _keys(matched, left["alias"], left["primary_key"]),
            _keys(matched, right["alias"], right["primary_key"]),
            strict=True,
        )
    ]
    assert _sorted(pairs) == _sorted(expected["matched_pairs"])
    if "matched_columns" in expected:
        assert matched.column_names == expected["matched_columns"]
    if "matched_passes" in expected:
        assert dict(Counter(matched.column("match_pass").to_pylist())) == expected["matched_passes"]
    for column, values in expected.get("matched_values", {}).items():
        order = sorted(range(matched.num_rows), key=lambda i: json.dumps(pairs[i]))
        got = matched.column(column).to_pylist()
        assert [_plain(got[i]) for i in order] == values

    for side, recipe_side in (("left", left), ("right", right)):
        table = pq.read_table(out / f"unmatched_{side}.parquet")
        assert table.num_rows == summary[f"unmatched_{side}_count"]
        if f"unmatched_{side}" in expected:
            keys = _keys(table, recipe_side["alias"], recipe_side["primary_key"], plain=True)
            assert _sorted(keys) == _sorted(expected[f"unmatched_{side}"])
        for column, values in expected.get(f"unmatched_{side}_values", {}).items():
            assert table.column(column).to_pylist() == values
        if f"unmatched_{side}_breaks" in expected:  # the nearest record and why it missed
            keys = _keys(table, recipe_side["alias"], recipe_side["primary_key"], plain=True)
            explained = zip(
                table.column("nearest_key").to_pylist(),
                table.column("nearest_reason").to_pylist(),
                strict=True,
            )
            found = {str(k): list(e) for k, e in zip(keys, explained, strict=True)}
            assert found == expected[f"unmatched_{side}_breaks"]
    if "break_reasons" in expected:
        assert {
            b["alias"]: {r["reason"]: r["count"] for r in b["reasons"]} for b in summary["breaks"]
        } == expected["break_reasons"]

    if "ambiguous_pairs" in expected:
        lost = pq.read_table(out / "ambiguous.parquet")
        lost_pairs = [
            [lk, rk]
            for lk, rk in zip(
                _keys(lost, left["alias"], left["primary_key"]),
                _keys(lost, right["alias"], right["primary_key"]),
                strict=True,
            )
        ]
        assert _sorted(lost_pairs) == _sorted(expected["ambiguous_pairs"])
        assert recipe["rank_by"] in lost.column_names

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["executor"]["name"] == engine
    if "floats_as_decimals" in expected:
        converted = {i["alias"]: i["floats_as_decimals"] for i in manifest["inputs"]}
        assert converted == expected["floats_as_decimals"]
    assert {
        c["alias"]: c["input_rows"] - c["matched_keys"] - c["unmatched_rows"]
        for c in manifest["control_totals"]
    } == {left["alias"]: 0, right["alias"]: 0}
    assert manifest["outputs"]["matched"]["rows"] == summary["matched_count"]
    assert not list(out.glob(".work*")), "scratch files must not be left in the output"
