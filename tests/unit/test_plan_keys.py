"""The key steps on every engine: records no pass matched (NULL-safe anti joins over every
earlier pass), distinct and repeated keys, and the duplicate keys that explain totals."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kalla.engine import EngineOptions, make_executor
from kalla.engine.executor import Executor
from kalla.plan import keys

BASE = {"a": ["x", "x", "y", None, None, "z"], "b": [1, 2, 1, 1, None, 3]}

UNMATCHED = [
    # (base key columns, matched passes: (table, {output name: values}), unmatched rows)
    (["a"], [], [0, 1, 2, 3, 4, 5]),
    (["a"], [("p0", {"a": ["x"]})], [2, 3, 4, 5]),
    (["a"], [("p0", {"a": [None]})], [0, 1, 2, 5]),  # a NULL key matches NULL keys
    (["a", "b"], [("p0", {"l.a": ["x", None], "l.b": [2, None]})], [0, 2, 3, 5]),
    (
        ["a", "b"],
        [("p0", {"a": ["x"], "b": [1]}), ("p1", {"ka": [None, "z"], "kb": [1, 3]})],
        [1, 2, 4],
    ),
]


def _executor(engine: str, tmp_path: Path, tables: dict[str, dict[str, list[Any]]]) -> Executor:
    executor = make_executor(EngineOptions(memory_limit=256 * 1024**2, engine=engine))
    for name, data in tables.items():
        pq.write_table(pa.table(data), tmp_path / f"{name}.parquet")
        executor.register_parquet(name, tmp_path / f"{name}.parquet", what=name)
    return executor


@pytest.mark.parametrize(("key", "passes", "expected"), UNMATCHED)
def test_unmatched_rows_are_those_whose_key_no_pass_matched(
    engine: str,
    tmp_path: Path,
    key: list[str],
    passes: list[tuple[str, dict[str, list[Any]]]],
    expected: list[int],
) -> None:
    base = {**BASE, "row": list(range(len(BASE["a"])))}
    tables = {"base": base, **dict(passes)}
    matched = [(name, tuple(columns)) for name, columns in passes]
    with _executor(engine, tmp_path, tables) as executor:
        found = executor.fetch(keys.unmatched("base", key, matched), what="unmatched")
    assert sorted(found.column("row").to_pylist()) == expected
    assert found.column_names == ["a", "b", "row"]  # full source rows


def test_key_stats_count_repeated_keys_and_their_rows(engine: str, tmp_path: Path) -> None:
    candidates = {"k": ["a", "a", "b", None, None, "c", "c", "c"], "other": list(range(8))}
    with _executor(engine, tmp_path, {"cand": candidates}) as executor:
        row = executor.fetch(keys.key_stats("cand", ["k"]), what="stats").to_pylist()[0]
    assert row == {"repeated": 3, "repeated_rows": 7}  # a, NULL, c; distinct = 8 - 7 + 3


def test_duplicate_keys_are_listed_most_repeated_first(engine: str, tmp_path: Path) -> None:
    data = {"a": ["x", "x", "y", "y", "y", "z"], "b": [1, 1, 2, 2, 2, 3]}
    with _executor(engine, tmp_path, {"base": data}) as executor:
        rows = executor.fetch(keys.duplicate_keys("base", ["a", "b"]), what="totals").to_pylist()
    assert rows == [{"a": "y", "b": 2, "n": 3}, {"a": "x", "b": 1, "n": 2}]
