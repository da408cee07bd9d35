"""What running each job in a child process of its own costs, and why a forkserver.

    python bench/job_startup.py [runs]

Three measurements, each the median of ``runs`` (default 20), interleaved so that a busy
machine slows them alike:

1. a child that returns at once: forked from Kalla's forkserver (the pipeline preloaded)
   versus a fresh ``spawn`` interpreter that imports what a job needs;
2. the small fixture job (3 + 3 rows matched, outputs and manifest written): ``run_job`` in
   this process versus submitted to a ``JobRunner`` (its own child process), submit to
   final event;
3. the difference of the two in 2: the overhead per job.
"""

from __future__ import annotations

import multiprocessing
import statistics
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

FIXTURES = Path(__file__).resolve().parents[1] / "tests" / "fixtures" / "worker"


def _noop(channel: Any) -> int:
    return 1


def _spawned() -> None:
    import kalla.runner.child  # noqa: F401 - what a spawned job process would import first


class _Done:
    """An EventSink that only notes the end."""

    def __init__(self) -> None:
        self.ended = threading.Event()

    def staging(self, event: Any) -> None:
        pass

    def matching(self, event: Any) -> None:
        pass

    def completed(self, event: Any) -> None:
        self.ended.set()

    def failed(self, event: Any, error: Any) -> None:
        print("failed:", event.error, file=sys.stderr)
        self.ended.set()


def _job(output: str) -> Any:
    from kalla.recipe import Job

    return Job.model_validate(
        {
            "run_id": str(uuid.uuid4()),
            "match_sql": "SELECT l.invoice_id, r.payment_id FROM l JOIN r "
            "ON l.invoice_id = r.reference_number",
            "sources": [
                {"alias": "l", "uri": str(FIXTURES / "invoices.csv")},
                {"alias": "r", "uri": str(FIXTURES / "payments.csv")},
            ],
            "output_path": output,
            "primary_keys": {"l": ["invoice_id"], "r": ["payment_id"]},
        }
    )


def main(runs: int) -> None:
    from kalla.runner import JobRunner, run_job
    from kalla.runner.child import run_in_child, warm_up
    from kalla.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="kalla-job-startup-"))
    settings = Settings(
        STAGING_PATH=root / "staging",
        KALLA_OUTPUT_ROOT=root / "runs",
        KALLA_SOURCE_ROOTS=str(FIXTURES),
        KALLA_MEMORY_LIMIT="1G",
    )
    warm_up()
    spawn = multiprocessing.get_context("spawn")
    runner = JobRunner(settings)
    runner.start()
    times: dict[str, list[float]] = {
        "child, forkserver": [],
        "child, spawn": [],
        "job in-process": [],
        "job in its child": [],
    }
    for _ in range(runs):
        start = time.perf_counter()
        run_in_child(_noop, settings=settings, what="the bench child")
        times["child, forkserver"].append(time.perf_counter() - start)

        start = time.perf_counter()
        process = spawn.Process(target=_spawned)
        process.start()
        process.join()
        times["child, spawn"].append(time.perf_counter() - start)

        done = _Done()
        start = time.perf_counter()
        run_job(_job(f"in-{uuid.uuid4().hex}"), done, settings=settings)
        times["job in-process"].append(time.perf_counter() - start)

        done = _Done()
        start = time.perf_counter()
        runner.submit(_job(f"child-{uuid.uuid4().hex}"), done)
        done.ended.wait(60)
        times["job in its child"].append(time.perf_counter() - start)
    runner.shutdown()
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        low, high = (1000 * f(times[name]) for f in (min, max))
        print(f"{name:<18} median {median * 1000:7.1f} ms  (min {low:.1f}, max {high:.1f})")
    print(
        f"spawn / forkserver = {medians['child, spawn'] / medians['child, forkserver']:.1f}x; "
        f"overhead per job = "
        f"{(medians['job in its child'] - medians['job in-process']) * 1000:.0f} ms"
    )


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 20)
