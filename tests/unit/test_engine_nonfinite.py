"""NaN, ±infinity, -0.0, subnormals and 15-digit values in float columns, in every position
of a column and across row groups (batches): NaN and infinity never match (read as NULL,
counted in the manifest), -0.0 equals 0.0, decimals convert exactly up to 15 digits, and
``tolerance_match`` on a float answers false for NaN instead of failing the run."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kalla.engine import EngineOptions, SourceInput, make_executor, reconcile
from kalla.recipe import MatchSpec

NAN, INF = float("nan"), float("inf")
SUBNORMAL = 5e-324
FILLER = [1.5, 2.25, 3.75, 4.5, 5.5]  # row groups of 2 rows: a special value lands on each side

# value on the left, value on the right, whether they match
VALUES = {
    "nan": (NAN, NAN, False),
    "inf": (INF, INF, False),
    "-inf": (-INF, -INF, False),
    "-0.0 and 0.0": (-0.0, 0.0, True),
    "subnormal": (SUBNORMAL, SUBNORMAL, True),
    "15 digits": (1234567890.12345, 1234567890.12345, True),
    "16 digits": (12345678901.23456, 12345678901.23456, True),
}
CONDITIONS = {
    "equal": "l.x = r.x",
    "tolerance": "tolerance_match(l.x, r.x, 0.001)",
}


def _column(value: float, position: int) -> list[float]:
    column = list(FILLER)
    column.insert(position, value)
    return column


def _run(tmp_path: Path, left: list[float], right: list[float], condition: str) -> dict:
    pq.write_table(
        pa.table({"lk": [f"l{i}" for i in range(len(left))], "x": pa.array(left)}),
        tmp_path / "l.parquet",
        row_group_size=2,
    )
    pq.write_table(
        pa.table({"rk": [f"r{i}" for i in range(len(right))], "x": pa.array(right)}),
        tmp_path / "r.parquet",
        row_group_size=2,
    )
    spec = MatchSpec(match_sql=f"SELECT l.lk, r.rk FROM l JOIN r ON {condition}")
    out = tmp_path / "out"
    with make_executor(EngineOptions(memory_limit=512 * 1024**2)) as executor:
        reconcile(
            spec,
            SourceInput("l", tmp_path / "l.parquet", ("lk",)),
            SourceInput("r", tmp_path / "r.parquet", ("rk",)),
            out,
            executor=executor,
        )
    matched = pq.read_table(out / "matched.parquet")
    manifest = json.loads((out / "manifest.json").read_text())
    return {
        "pairs": sorted(zip(matched["lk"].to_pylist(), matched["rk"].to_pylist(), strict=True)),
        "inputs": {i["alias"]: i for i in manifest["inputs"]},
    }


@pytest.mark.parametrize("condition", CONDITIONS)
@pytest.mark.parametrize("position", [0, 3, 5], ids=["first", "middle", "last"])
@pytest.mark.parametrize("case", VALUES)
def test_special_floats_in_every_position(
    tmp_path: Path, case: str, position: int, condition: str
) -> None:
    left_value, right_value, matches = VALUES[case]
    found = _run(
        tmp_path,
        _column(left_value, position),
        _column(right_value, 5 - position),  # elsewhere on the other side
        CONDITIONS[condition],
    )
    # every filler value matches its twin, whatever sits next to it in its row group
    expected = {
        (f"l{_filler_row(i, position)}", f"r{_filler_row(i, 5 - position)}")
        for i in range(len(FILLER))
    }
    if matches:
        expected.add((f"l{position}", f"r{5 - position}"))
    assert set(found["pairs"]) == expected
    non_finite = found["inputs"]["l"]["floats_non_finite_as_null"]
    assert non_finite == ({"x": 1} if case in ("nan", "inf", "-inf") else {})


def _filler_row(i: int, position: int) -> int:
    """Row of filler value ``i`` once the special value sits at ``position``."""
    return i if i < position else i + 1


def test_nan_is_not_read_as_another_rows_value(tmp_path: Path) -> None:
    """[NaN, 5.5] has Parquet statistics min == max == 5.5; it is still [NaN, 5.5]."""
    found = _run(tmp_path, [NAN, 5.5], [5.5], "l.x = r.x")
    assert found["pairs"] == [("l1", "r0")]


def test_tolerance_on_a_nan_literal_answers_false(tmp_path: Path) -> None:
    found = _run(tmp_path, [100.0], [1.0], "tolerance_match(CAST('NaN' AS DOUBLE), 100.0, 0.01)")
    assert found["pairs"] == []


def test_decimals_in_floats_still_convert(tmp_path: Path) -> None:
    found = _run(tmp_path, [19.99, 0.1], [20.0, 0.11], "tolerance_match(l.x, r.x, 0.01)")
    assert found["pairs"] == [("l0", "r0"), ("l1", "r1")]  # exact: 20.00 - 19.99 <= 0.01
    assert found["inputs"]["l"]["floats_as_decimals"] == {"x": "decimal128(4, 2)"}
