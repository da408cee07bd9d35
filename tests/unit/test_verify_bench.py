"""The benchmark workload at 1M rows per side: the parallel join writes its rows in another
order on every run, yet the run is verified by re-running it (the digests agree); with
``--sorted-outputs`` two runs write the same bytes.

Marked ``slow`` (about a minute here): ``make test`` runs them, the default ``pytest`` not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from kalla.bench.generate import expected_counts, write_dataset
from kalla.evidence.verify import Status, Verdict, VerifyReport

RECIPE = Path(__file__).parents[2] / "src" / "kalla" / "bench" / "recipe.json"
ROWS = 1_000_000

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("bench-1m")
    write_dataset(folder, ROWS, formats=("parquet",))
    return folder


def kalla(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STAGING_PATH": str(tmp / "staging")}
    command = [sys.executable, "-m", "kalla.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


def run(data: Path, out: Path, *flags: str) -> dict[str, Any]:
    sources = ["--source", f"invoices={data / 'invoices.parquet'}"]
    sources += ["--source", f"payments={data / 'payments.parquet'}"]
    done = kalla("run", str(RECIPE), "-o", str(out), *sources, *flags, "--json", tmp=out.parent)
    assert done.returncode == 0, done.stderr
    manifest: dict[str, Any] = json.loads((out / "manifest.json").read_text())
    return manifest


def test_the_1m_benchmark_run_is_verified_by_a_second_run(data: Path, tmp_path: Path) -> None:
    manifest = run(data, tmp_path / "run")
    expected = expected_counts(ROWS)
    assert manifest["counts"]["matched_count"] == expected["matched_count"]

    done = kalla("verify", str(tmp_path / "run"), "--json", tmp=tmp_path)

    report = VerifyReport.model_validate_json(done.stdout)
    assert done.returncode == 0, "\n".join(report.lines())
    assert report.verdict is Verdict.VERIFIED
    rerun = {c.name: c for c in report.checks if c.name.startswith("re-run ")}
    assert set(rerun) == {"re-run matched", "re-run unmatched_left", "re-run unmatched_right"}
    assert all(check.status is Status.OK for check in rerun.values())
    assert f"{expected['matched_count']:,} rows" in rerun["re-run matched"].detail


def test_sorted_outputs_at_1m_repeat_their_bytes(data: Path, tmp_path: Path) -> None:
    first = run(data, tmp_path / "a", "--sorted-outputs")
    second = run(data, tmp_path / "b", "--sorted-outputs")
    for name, entry in first["outputs"].items():
        assert entry["sha256"] == second["outputs"][name]["sha256"], name
        assert entry["digest"] == second["outputs"][name]["digest"], name
