"""A small process that starts the measured engines, so each one's peak RSS is its own.

On Linux a child's ``ru_maxrss`` is at least the RSS of the process that forked it (the old
memory map's high-water mark is kept across ``exec``). The harness holds generated data and
pyarrow, hundreds of MiB, so it does not start engines itself: this stdlib-only launcher,
started fresh, does, and reports wall time and peak RSS per job. One JSON job per line on
stdin, one JSON result per line on stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from typing import IO, Any


def run_one(
    argv: list[str],
    env: dict[str, str] | None,
    timeout_s: float,
    stdout: IO[bytes] | int | None,
    stderr: IO[bytes] | int | None,
    cwd: str | None = None,
) -> dict[str, Any]:
    """Run one process to its end: wall seconds, peak RSS bytes, return code, timed out."""
    started = time.perf_counter()
    proc = subprocess.Popen(argv, stdout=stdout, stderr=stderr, env=env, cwd=cwd)
    timed_out = threading.Event()

    def _kill() -> None:
        timed_out.set()
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGKILL)

    timer = threading.Timer(timeout_s, _kill)
    timer.start()
    try:
        _, status, usage = os.wait4(proc.pid, 0)
    finally:
        timer.cancel()
    wall = time.perf_counter() - started
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {
        "wall_s": wall,
        "peak_rss_bytes": usage.ru_maxrss * 1024,
        "cpu_s": usage.ru_utime + usage.ru_stime,
        "returncode": proc.returncode,
        "timed_out": timed_out.is_set(),
    }


def serve(jobs: IO[str], results: IO[str]) -> None:
    for line in jobs:
        if not line.strip():
            continue
        job = json.loads(line)
        with open(job["stdout"], "wb") as out, open(job["stderr"], "wb") as err:
            result = run_one(
                job["argv"], job.get("env"), job["timeout_s"], out, err, job.get("cwd")
            )
        results.write(json.dumps(result) + "\n")
        results.flush()


if __name__ == "__main__":
    serve(sys.stdin, sys.stdout)
