"""Cancelling a job stops it inside a long SQL pass at once: DataFusion 55 checks neither a
cancel flag nor Python signals while a query runs, so the job's child process, asked to stop
while its engine runs a statement, exits (rather than waiting ``STOP_GRACE`` to be killed);
the status is ``cancelled`` and no output or staged file is left."""

from __future__ import annotations

import time
import uuid
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kalla.recipe.models import Job
from kalla.runner import JobRunner
from kalla.runner.child import STOP_GRACE
from kalla.settings import Settings

ROWS = 20_000  # 4 × 10^8 pairs, each hashed: minutes of one query, whatever the machine


class _Sink:
    def __init__(self) -> None:
        self.stages: list[str] = []
        self.error: Any = None
        self.done = False

    def staging(self, event: object) -> None:
        self.stages.append("staging")

    def matching(self, event: object) -> None:
        self.stages.append("matching")

    def completed(self, event: object) -> None:
        self.done = True

    def failed(self, event: object, error: object) -> None:
        self.error = error
        self.done = True


def _job(folder: Path) -> Job:
    for side in ("l", "r"):
        pq.write_table(
            pa.table({"id": [f"{side}{i}" for i in range(ROWS)]}), folder / f"{side}.parquet"
        )
    return Job.model_validate(
        {
            "run_id": str(uuid.uuid4()),
            # nothing matches, so no candidate cap stops it: every pair is hashed and refused
            "match_sql": "SELECT l.id, r.id FROM l JOIN r ON sha256(l.id || r.id) = 'x'",
            "sources": [
                {"alias": "l", "uri": str(folder / "l.parquet")},
                {"alias": "r", "uri": str(folder / "r.parquet")},
            ],
            "output_path": "out",
            "primary_keys": {"l": ["id"], "r": ["id"]},
        }
    )


def test_cancel_stops_a_long_pass(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(
        STAGING_PATH=tmp_path / "staging",
        KALLA_OUTPUT_ROOT=tmp_path / "runs",
        KALLA_MEMORY_LIMIT="512M",
        KALLA_SOURCE_ROOTS=str(tmp_path),
    )
    job = _job(tmp_path)
    runner = JobRunner(settings)
    runner.start()
    sink = _Sink()
    try:
        runner.submit(job, sink)
        deadline = time.monotonic() + 60
        # matching has begun: the pass is running (it reports nothing more until it ends)
        while "matching" not in sink.stages:
            assert time.monotonic() < deadline and not sink.done, sink.error
            time.sleep(0.05)
        time.sleep(1.0)
        assert not sink.done
        asked = time.monotonic()
        runner.cancel(job.run_id)
        while not sink.done:
            assert time.monotonic() < asked + 30, "the pass was not stopped"
            time.sleep(0.05)
        stopped_in = time.monotonic() - asked
    finally:
        runner.shutdown(grace=5)
    view = runner.get(job.run_id)
    assert view["status"] == "cancelled", view
    assert sink.error is not None and sink.error.kind == "cancelled"
    # the child left the engine's statement at once: no grace period, no kill
    assert stopped_in < STOP_GRACE, stopped_in
    assert not any("killing it" in r.getMessage() for r in caplog.records)
    runs = tmp_path / "runs"
    assert not runs.exists() or not any(runs.rglob("*")), list(runs.rglob("*"))
    staging = tmp_path / "staging"
    assert not staging.exists() or not any(staging.rglob("*.parquet"))
