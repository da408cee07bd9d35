"""Benchmark peers and harness on a tiny data set: each peer's counts are the exact ones."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from kalla.bench.generate import expected_counts, write_dataset
from kalla.bench.harness import (
    FAILED,
    OK,
    WRONG,
    Measurement,
    parse_rows,
    parse_summary,
    run_bench,
    size_label,
    summarise,
)
from kalla.bench.schema import COUNT_KEYS, MATCH_COLUMN_NAMES

N = 2000


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("bench-data")
    write_dataset(path, N, seed=42)
    return path


def run_peer(engine: str, data: Path, fmt: str, out: Path, *extra: str) -> dict[str, object]:
    argv = [sys.executable, "-m", "kalla.bench.peers", engine, "--format", fmt]
    argv += ["--left", str(data / f"invoices.{fmt}"), "--right", str(data / f"payments.{fmt}")]
    argv += ["--out", str(out), *extra]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert len(lines) == 1, done.stdout
    result: dict[str, object] = json.loads(lines[0])
    return result


def expected() -> dict[str, int]:
    counts = expected_counts(N, seed=42)
    return {k: counts[k] for k in COUNT_KEYS}


@pytest.mark.parametrize(
    ("engine", "fmt"),
    [
        ("duckdb", "parquet"),
        ("duckdb", "csv"),
        ("floor", "parquet"),
        ("floor", "csv"),
        ("datafusion", "csv"),
        ("polars", "csv"),
        ("pandas", "csv"),
    ],
)
def test_peer_counts_and_outputs(engine: str, fmt: str, data: Path, tmp_path: Path) -> None:
    module = {"floor": "pyarrow"}.get(engine, engine)
    pytest.importorskip(module)
    out = tmp_path / "out"
    result = run_peer(engine, data, fmt, out)
    assert result["engine"] == engine
    assert {k: result[k] for k in COUNT_KEYS} == expected()
    matched = pq.read_table(out / "matched.parquet")
    assert tuple(matched.column_names) == MATCH_COLUMN_NAMES
    assert matched.num_rows == expected()["matched_count"]
    left = pq.read_table(out / "unmatched_left.parquet")
    assert left.num_rows == expected()["unmatched_left_count"]
    assert "description" in left.column_names  # full rows
    right = pq.read_table(out / "unmatched_right.parquet")
    assert right.num_rows == expected()["unmatched_right_count"]
    assert "payer_name" in right.column_names


def test_duckdb_outputs_are_the_right_rows(data: Path, tmp_path: Path) -> None:
    """Not only the counts: every matched pair is within 0.02 and no unmatched row could match."""
    pytest.importorskip("duckdb")
    out = tmp_path / "out"
    run_peer("duckdb", data, "csv", out)
    matched = pq.read_table(out / "matched.parquet").to_pylist()
    from decimal import Decimal

    assert all(abs(r["amount"] - r["paid_amount"]) <= Decimal("0.02") for r in matched)
    assert all(r["invoice_id"] == r["reference_number"] for r in matched)
    matched_ids = {r["invoice_id"] for r in matched}
    left = pq.read_table(out / "unmatched_left.parquet")["invoice_id"].to_pylist()
    assert not matched_ids & set(left)


def test_summarise_marks_wrong_counts_and_pairs_ratios() -> None:
    good = {"matched_count": 1, "unmatched_left_count": 2, "unmatched_right_count": 3}
    bad = {**good, "matched_count": 0}
    runs = {
        "kalla": [Measurement("kalla", i, 2.0 + i, 100, 0, OK, good) for i in range(3)],
        "fast": [Measurement("fast", i, 1.0 + i / 2, 50, 0, OK, good) for i in range(3)],
        "liar": [Measurement("liar", i, 0.1, 10, 0, WRONG, bad) for i in range(3)],
        "broken": [Measurement("broken", i, 0.5, 10, 1, FAILED) for i in range(3)],
    }
    baseline, results = summarise(runs)
    by = {r.engine: r for r in results}
    assert baseline == "kalla"
    assert by["kalla"].ratio == pytest.approx(1.0)
    assert by["fast"].ratio == pytest.approx(0.5)  # median of 1/2, 1.5/3, 2/4
    assert by["fast"].median_s == pytest.approx(1.5)
    assert by["liar"].status == WRONG and by["liar"].differs_from_kalla
    assert by["broken"].status == FAILED and by["broken"].median_s is None


def test_summarise_falls_back_to_another_baseline() -> None:
    good = {"matched_count": 1, "unmatched_left_count": 2, "unmatched_right_count": 3}
    runs = {
        "kalla": [Measurement("kalla", 0, 1.0, 1, 2, FAILED)],
        "datafusion": [Measurement("datafusion", 0, 2.0, 1, 0, OK, good)],
        "duckdb": [Measurement("duckdb", 0, 1.0, 1, 0, OK, good)],
    }
    baseline, results = summarise(runs)
    assert baseline == "datafusion"
    assert {r.engine: r.ratio for r in results}["duckdb"] == pytest.approx(0.5)


def test_sizes_and_summary_parsing() -> None:
    assert [parse_rows(s) for s in ("100k", "1m", "10M", "100m", "2500", "2.5m")] == [
        100_000,
        1_000_000,
        10_000_000,
        100_000_000,
        2500,
        2_500_000,
    ]
    assert [size_label(n) for n in (100_000, 1_000_000, 2500, 2_500_000)] == [
        "100k",
        "1m",
        "2500",
        "2500k",
    ]
    with pytest.raises(ValueError):
        parse_rows("lots")
    assert parse_summary('noise\n{"matched_count": 1}\n') == {"matched_count": 1}
    assert parse_summary('{\n  "a": {"b": 2}\n}') == {"a": {"b": 2}}
    assert parse_summary("no json") is None


def test_run_bench_writes_tables(tmp_path: Path) -> None:
    pytest.importorskip("duckdb")
    logs: list[str] = []
    path = run_bench(
        sizes=["2000"],
        formats=["parquet"],
        runs=1,
        engines=["duckdb", "floor"],
        data_dir=tmp_path / "data",
        results_dir=tmp_path / "results",
        log=logs.append,
    )
    text = path.read_text()
    assert path.name == "latest.md"
    assert "| duckdb |" in text and "| floor |" in text
    assert "| **" not in text  # no engine WRONG / FAILED
    assert "cores" in text and "memory" in text
    report = json.loads((tmp_path / "results" / "latest.json").read_text())
    case = report["cases"][0]
    assert case["baseline"] == "duckdb"
    assert all(e["status"] == OK for e in case["engines"])
    assert any(p.name.endswith("-2k.md") for p in (tmp_path / "results").iterdir())
    assert not (tmp_path / "results" / "tmp").exists()


def test_kalla_runs_the_bench_recipe(data: Path, tmp_path: Path) -> None:
    """The packaged recipe works with ``kalla run`` and gives the exact counts."""
    pytest.importorskip("kalla.cli")
    from kalla.bench.harness import KALLA, measure

    m = measure(
        KALLA,
        0,
        data / "invoices.csv",
        data / "payments.csv",
        tmp_path / "out",
        "csv",
        expected_counts(N, seed=42),
        None,
        120,
    )
    assert m.status == OK, m.note
    assert m.counts == expected()


def test_launcher_reports_the_childs_own_peak_rss() -> None:
    """A child's peak RSS must not include the (large) harness that asked for it."""
    from kalla.bench.harness import Launcher, run_process

    ballast = bytearray(300 * 2**20)
    ballast[::4096] = b"\x01" * len(ballast[::4096])
    code = "x = bytearray(64 * 2**20); x[::4096] = b'1' * len(x[::4096]); print('done')"
    with Launcher() as launcher:
        wall, rss, rc, out, _, timed_out = run_process(
            [sys.executable, "-c", code], {}, 60, launcher
        )
    del ballast
    assert rc == 0 and out.strip() == "done" and not timed_out
    assert 64 * 2**20 < rss < 200 * 2**20
    assert wall > 0


def test_timeout_kills_the_process() -> None:
    from kalla.bench.harness import run_process

    *_, rc, _, _, timed_out = run_process(
        [sys.executable, "-c", "import time; time.sleep(30)"], {}, 0.5
    )
    assert timed_out and rc != 0
