"""The benchmark workload at 1M rows per side, run and then verified by re-running it: the
parallel join writes its rows in another order each time, the digests agree all the same.

Marked ``slow`` (about a minute here): ``make test`` runs it, the default ``pytest`` not.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kalla.bench.generate import expected_counts, write_dataset
from kalla.evidence.verify import Status, Verdict, VerifyReport

RECIPE = Path(__file__).parents[2] / "src" / "kalla" / "bench" / "recipe.json"
ROWS = 1_000_000


def kalla(*args: str, tmp: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STAGING_PATH": str(tmp / "staging")}
    command = [sys.executable, "-m", "kalla.cli", *args]
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=900)


@pytest.mark.slow
def test_the_1m_benchmark_run_is_verified_by_a_second_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_dataset(data, ROWS, formats=("parquet",))
    run = tmp_path / "run"
    sources = ["--source", f"invoices={data / 'invoices.parquet'}"]
    sources += ["--source", f"payments={data / 'payments.parquet'}"]
    done = kalla("run", str(RECIPE), "-o", str(run), *sources, "--json", tmp=tmp_path)
    assert done.returncode == 0, done.stderr
    expected = expected_counts(ROWS)
    assert json.loads(done.stdout)["matched_count"] == expected["matched_count"]

    done = kalla("verify", str(run), "--json", tmp=tmp_path)

    report = VerifyReport.model_validate_json(done.stdout)
    assert done.returncode == 0, "\n".join(report.lines())
    assert report.verdict is Verdict.VERIFIED
    rerun = {c.name: c for c in report.checks if c.name.startswith("re-run ")}
    assert set(rerun) == {"re-run matched", "re-run unmatched_left", "re-run unmatched_right"}
    assert all(check.status is Status.OK for check in rerun.values())
    assert f"{expected['matched_count']:,} rows" in rerun["re-run matched"].detail
