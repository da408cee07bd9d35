"""Each normalisation means the same in pyarrow (where the builder measures it) and in the
engine (where the recipe runs it): the pairs a join on it produces are the pairs predicted."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sqlglot import exp
from typer.testing import CliRunner

from kalla.agent.columns import Kind
from kalla.agent.normalize import LADDER, Normalisation
from kalla.cli import app

LEFT = [
    "INV-000123",
    " inv-123 ",
    "INV-2024-000123",
    "123",
    "0",
    "N/A",
    "",
    "ab-12",
    "AB 12",
    "Äbc-7",
    "x 0012 y 34",
    "Ref: 00042.",
    "042",
    None,
]
RIGHT_TEXT = ["123", "INV-123", "inv-000123", "AB12", "ab-12", "34", "42", "N/A", "0", "ÄBC-7", ""]
RIGHT_INT = [123, 12, 42, 34, 7, 0, 2024000123]


def _predicted(norm: Normalisation, left: pa.Array, right: pa.Array) -> set[tuple[int, int]]:
    lv = norm.apply(pa.chunked_array([left])).to_pylist()
    rv = norm.apply(pa.chunked_array([right])).to_pylist()
    return {(i, j) for i, a in enumerate(lv) for j, b in enumerate(rv) if a is not None and a == b}


def _matched(
    norm: Normalisation, left: pa.Array, right: pa.Array, kind: Kind, tmp: Path
) -> set[tuple[int, int]]:
    lpath, rpath = tmp / "l.parquet", tmp / "r.parquet"
    pq.write_table(pa.table({"lid": range(len(left)), "v": left}), lpath)
    pq.write_table(pa.table({"rid": range(len(right)), "w": right}), rpath)
    condition = exp.EQ(
        this=norm.sql(exp.column("v", table="l", quoted=True), Kind.TEXT),
        expression=norm.sql(exp.column("w", table="r", quoted=True), kind),
    )
    sql = (
        exp.select(
            exp.column("lid", table="l", quoted=True), exp.column("rid", table="r", quoted=True)
        )
        .from_(exp.to_table("l"))
        .join(exp.to_table("r"), on=condition)
        .sql(dialect="postgres")
    )
    recipe = {
        "recipe_id": "parity",
        "name": "parity",
        "match_sql": sql,
        "sources": {
            "left": {"alias": "l", "type": "file", "primary_key": ["lid"]},
            "right": {"alias": "r", "type": "file", "primary_key": ["rid"]},
        },
    }
    (tmp / "recipe.json").write_text(json.dumps(recipe))
    result = CliRunner().invoke(
        app,
        [
            "run",
            str(tmp / "recipe.json"),
            "-s",
            f"l={lpath}",
            "-s",
            f"r={rpath}",
            "-o",
            str(tmp / "out"),
        ],
        env={"STAGING_PATH": str(tmp / "staging")},
    )
    assert result.exit_code == 0, result.output
    matched = pq.read_table(tmp / "out" / "matched.parquet")
    return set(zip(matched["lid"].to_pylist(), matched["rid"].to_pylist(), strict=True))


@pytest.mark.parametrize("norm", LADDER, ids=[n.name for n in LADDER])
def test_text_keys_match_in_the_engine_as_predicted(norm: Normalisation, tmp_path: Path) -> None:
    left, right = pa.array(LEFT, pa.string()), pa.array(RIGHT_TEXT, pa.string())
    predicted = _predicted(norm, left, right)
    assert _matched(norm, left, right, Kind.TEXT, tmp_path) == predicted


@pytest.mark.parametrize("norm", LADDER[2:], ids=[n.name for n in LADDER[2:]])
def test_integer_keys_match_text_keys_as_predicted(norm: Normalisation, tmp_path: Path) -> None:
    left, right = pa.array(LEFT, pa.string()), pa.array(RIGHT_INT, pa.int64())
    predicted = _predicted(norm, left, right)
    assert predicted, "the case must produce pairs to be a test"
    assert _matched(norm, left, right, Kind.INTEGER, tmp_path) == predicted


def test_empty_results_never_match_each_other() -> None:
    digits = LADDER[3]
    values = digits.apply(pa.chunked_array([pa.array(["N/A", "", "---"])])).to_pylist()
    assert values == [None, None, None]
