"""A pass that yields more candidate pairs than the cap (``KALLA_MAX_CANDIDATES``, else
proportional to the inputs) ends in a CandidateLimitError naming the pass, having written
at most cap + 1 pairs: a join without an effective condition ends quickly."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kalla.cli import app
from kalla.errors import CandidateLimitError
from kalla.plan.reconciliation import candidate_cap
from kalla.settings import get_settings


def _inputs(folder: Path, rows: int) -> None:
    pq.write_table(
        pa.table({"id": [f"L{i}" for i in range(rows)], "amount": pa.array(range(rows))}),
        folder / "l.parquet",
    )
    pq.write_table(
        pa.table({"pid": [f"R{i}" for i in range(rows)], "amount": pa.array(range(rows))}),
        folder / "r.parquet",
    )


def _run(folder: Path, condition: str, env: dict[str, str] | None = None) -> object:
    recipe = {
        "recipe_id": "cap",
        "name": "cap",
        "passes": [
            {"name": "exact", "match_sql": "SELECT l.id, r.pid FROM l JOIN r ON l.id = r.pid"},
            {"name": "loose", "match_sql": f"SELECT l.id, r.pid FROM l JOIN r ON {condition}"},
        ],
        "sources": {
            "left": {"alias": "l", "type": "file", "primary_key": ["id"]},
            "right": {"alias": "r", "type": "file", "primary_key": ["pid"]},
        },
    }
    (folder / "recipe.json").write_text(json.dumps(recipe))
    args = ["run", str(folder / "recipe.json"), "-o", str(folder / "out"), "--json"]
    args += ["--source", f"l={folder / 'l.parquet'}", "--source", f"r={folder / 'r.parquet'}"]
    get_settings.cache_clear()
    try:
        return CliRunner().invoke(
            app, args, env={"STAGING_PATH": str(folder / "staging"), **(env or {})}
        )
    finally:
        get_settings.cache_clear()


@pytest.mark.parametrize(
    "condition",
    [
        "true",
        "1 = 1",
        "tolerance_match(l.amount, r.amount, 1000000)",
        "l.amount >= r.amount",
    ],
)
def test_a_join_without_an_effective_condition_ends_in_the_cap(
    tmp_path: Path, condition: str
) -> None:
    _inputs(tmp_path, 100_000)  # 10^10 pairs; the cap is 10 × 200,000
    result = _run(tmp_path, condition)
    assert result.exit_code == CandidateLimitError.exit_code, result.output
    assert "pass 'loose' yields more than 2,000,000 candidate pairs" in result.stderr
    assert "100,000 and 100,000 rows" in result.stderr
    assert "KALLA_MAX_CANDIDATES" in result.stderr
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(("cap", "refused"), [(3, True), (4, False)])
def test_the_cap_is_a_setting(tmp_path: Path, cap: int, refused: bool) -> None:
    _inputs(tmp_path, 2)  # no id matches; then every one of the 2 × 2 pairs: 4 candidates
    result = _run(tmp_path, "l.amount + 1 >= r.amount", {"KALLA_MAX_CANDIDATES": str(cap)})
    if refused:
        assert result.exit_code == 2, result.output
        assert f"yields more than {cap} candidate pairs" in result.stderr
    else:
        assert result.exit_code == 0, result.stderr
        assert json.loads(result.stdout)["passes"][1]["candidate_count"] == 4


@pytest.mark.parametrize(
    ("left", "right", "setting", "expected"),
    [
        (10, 10, 0, 1_000_000),  # the floor
        (100_000, 100_000, 0, 2_000_000),
        (1_000_000, 3_000_000, 0, 40_000_000),
        (10, 10, 7, 7),
    ],
)
def test_cap_is_proportional_to_the_inputs(
    left: int, right: int, setting: int, expected: int
) -> None:
    assert candidate_cap(left, right, setting) == expected
