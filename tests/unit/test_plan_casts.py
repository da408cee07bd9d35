"""No implicit cast in a comparison (``plan/casts.py``): text against numbers or dates,
zoned against zone-less timestamps, is a TypeMismatchError naming both operands and the CAST
to write; explicit CASTs, like kinds and literals pass."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kalla.errors import TypeMismatchError
from kalla.plan import PlanInput, build_plan
from kalla.recipe import MatchSpec

LEFT = pa.schema(
    [
        ("id", pa.int64()),
        ("ref", pa.string()),
        ("amount", pa.decimal128(12, 2)),
        ("rate", pa.float64()),
        ("day", pa.date32()),
        ("at", pa.timestamp("us")),
        ("flag", pa.bool_()),
    ]
)
RIGHT = pa.schema(
    [
        ("pid", pa.string()),
        ("ref", pa.string()),
        ("n", pa.int32()),
        ("paid", pa.decimal128(12, 2)),
        ("when", pa.timestamp("us", tz="Europe/Berlin")),
        ("day", pa.date32()),
        ("stamp", pa.timestamp("ms")),
        ("txt_day", pa.string()),
    ]
)
SELECT = "SELECT i.id, p.pid FROM invoices i JOIN payments p ON "

REFUSED = {
    "text = bigint": (
        "p.ref = i.id",
        ["p.ref (VARCHAR)", "i.id (BIGINT)", "CAST(p.ref AS BIGINT)"],
    ),
    "bigint = text": ("i.id = p.pid", ["CAST(p.pid AS BIGINT)", "CAST(i.id AS VARCHAR)"]),
    "text <> int": ("i.ref = p.ref AND p.ref <> p.n", ["p.ref (VARCHAR)", "p.n (INT)"]),
    "text < decimal": ("p.ref < i.amount", ["CAST(p.ref AS DECIMAL(12, 2))"]),
    "tolerance on text": ("tolerance_match(i.amount, p.ref, 0.02)", ["i.amount", "p.ref"]),
    "between text": ("i.id BETWEEN p.ref AND p.n", ["p.ref (VARCHAR)"]),
    "in with text": ("i.id IN (p.ref, p.n)", ["i.id (BIGINT)", "p.ref (VARCHAR)"]),
    "text = date": ("p.txt_day = i.day", ["CAST(p.txt_day AS DATE)"]),
    "naive = zoned": ("i.at = p.when", ["i.at (TIMESTAMP)", "p.when (TIMESTAMPTZ)"]),
    "zoned >= naive": ("p.when >= i.at", ["CAST(p.when AS TIMESTAMP)"]),
    "bool = text": ("i.flag = p.ref", ["CAST(p.ref AS BOOLEAN)"]),
    "through a CTE": (
        "WITH q AS (SELECT id FROM invoices) "
        "SELECT q.id, p.pid FROM q JOIN payments p ON q.id = p.pid",
        ["q.id (BIGINT)", "p.pid (VARCHAR)"],
    ),
    "format.types named": ("p.ref = i.id", ["format.types"]),
}

ALLOWED = {
    "like kinds": "i.ref = p.ref",
    "int and decimal": "i.id = p.n AND tolerance_match(i.amount, p.paid, 0.02)",
    "float and decimal": "abs(i.rate - p.paid) <= 0.5 AND i.ref = p.ref",
    "explicit cast": "CAST(p.ref AS BIGINT) = i.id",
    "cast the other way": "p.pid = CAST(i.id AS VARCHAR)",
    "cast zoned to naive": "i.at = CAST(p.when AS TIMESTAMP)",
    "date and naive timestamp": "i.day = p.stamp",
    "dates": "i.day BETWEEN p.day AND p.day + INTERVAL '3 days'",
    "literal": "i.ref = p.ref AND p.ref <> 'X' AND i.id > 0",
    "a function over text": "TRIM(p.ref) = i.ref",
}


def _plan(condition: str, sql: str | None = None) -> None:
    spec = MatchSpec(match_sql=sql or SELECT + condition)
    build_plan(
        spec,
        PlanInput("invoices", LEFT, 1, ("id",)),
        PlanInput("payments", RIGHT, 1, ("pid",)),
    )


@pytest.mark.parametrize("case", REFUSED)
def test_implicit_casts_are_refused(case: str) -> None:
    condition, fragments = REFUSED[case]
    sql = condition if condition.startswith("WITH") else None
    with pytest.raises(TypeMismatchError) as caught:
        _plan(condition, sql)
    message = caught.value.message
    assert "match_sql compares columns of different types" in message
    for fragment in fragments:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert caught.value.status == 422 and caught.value.exit_code == 2


@pytest.mark.parametrize("case", ALLOWED)
def test_explicit_and_like_comparisons_pass(case: str) -> None:
    _plan(ALLOWED[case])


def test_every_mismatch_is_named_at_once() -> None:
    with pytest.raises(TypeMismatchError) as caught:
        _plan("p.ref = i.id AND i.at = p.when")
    assert len(caught.value.problems) == 2


def _write(folder: Path, recipe_sql: str) -> Path:
    """A zone-less 08:00 and 09:00 on the left; 08:00Z held in a Europe/Berlin column."""
    naive = [dt.datetime(2025, 1, 1, 8), dt.datetime(2025, 1, 1, 9)]
    pq.write_table(
        pa.table({"id": ["n8", "n9"], "t": pa.array(naive, pa.timestamp("us"))}),
        folder / "naive.parquet",
    )
    zoned = dt.datetime(2025, 1, 1, 8, tzinfo=dt.UTC)
    pq.write_table(
        pa.table({"zid": ["z"], "t": pa.array([zoned], pa.timestamp("us", tz="Europe/Berlin"))}),
        folder / "zoned.parquet",
    )
    recipe = {
        "recipe_id": "tz",
        "name": "zones",
        "match_sql": recipe_sql,
        "sources": {
            "left": {"alias": "n", "type": "file", "primary_key": ["id"]},
            "right": {"alias": "z", "type": "file", "primary_key": ["zid"]},
        },
    }
    path = folder / "recipe.json"
    path.write_text(json.dumps(recipe))
    return path


def _run(folder: Path, recipe: Path) -> subprocess.CompletedProcess[str]:
    """``kalla run`` in a child process whose machine zone is Europe/Berlin."""
    env = {**os.environ, "TZ": "Europe/Berlin", "STAGING_PATH": str(folder / "staging")}
    args = [sys.executable, "-m", "kalla", "run", str(recipe), "-o", str(folder / "out")]
    args += ["--source", f"n={folder / 'naive.parquet'}"]
    args += ["--source", f"z={folder / 'zoned.parquet'}", "--json"]
    return subprocess.run(args, env=env, capture_output=True, text=True, timeout=120, check=False)


def test_zone_less_against_zoned_is_refused_in_any_machine_zone(tmp_path: Path) -> None:
    recipe = _write(tmp_path, "SELECT n.id, z.zid FROM n JOIN z ON n.t = z.t")
    done = _run(tmp_path, recipe)
    assert done.returncode == 2, done.stderr
    assert "n.t (TIMESTAMP) is compared with z.t (TIMESTAMPTZ)" in done.stderr
    assert "CAST(z.t AS TIMESTAMP)" in done.stderr
    assert not (tmp_path / "out").exists()


def test_the_cast_compares_utc_time(tmp_path: Path) -> None:
    recipe = _write(tmp_path, "SELECT n.id, z.zid FROM n JOIN z ON n.t = CAST(z.t AS TIMESTAMP)")
    done = _run(tmp_path, recipe)
    assert done.returncode == 0, done.stderr
    matched = pq.read_table(tmp_path / "out" / "matched.parquet")
    assert matched.column("id").to_pylist() == ["n8"]  # 08:00Z is 08:00 UTC, not 09:00 Berlin
