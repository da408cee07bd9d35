"""Restart the app mid-run: the run still ends in the right state (never "running" forever).

Embedded: the process dies with the run (SIGKILL); on the next start the run is submitted
again and completes. Single mode: the worker keeps going while the app is down; on the next
start the app asks the worker and settles the run.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from test_app_harness import (
    Process,
    app_process,
    client,
    file_recipe,
    invoice_payment_files,
    upload,
    wait_for_run,
    worker_process,
)

# A range join (no equality) makes DataFusion compare every pair: seconds of matching on
# a small file, so there is time to stop the app in the middle of it.
SLOW_SQL = (
    "SELECT i.invoice_id, p.payment_id FROM invoices i JOIN payments p "
    "ON p.amount BETWEEN i.amount - 0.001 AND i.amount + 0.001"
)
ROWS = 30_000
EXPECTED = (ROWS // 2 - 1, ROWS // 2 + 1)  # the first payment is 0.01 off: no match here


def _slow_run(http: httpx.Client, data: Path) -> str:
    invoices, payments = invoice_payment_files(data, ROWS)
    assert http.post("/api/recipes", json=file_recipe("slow", match_sql=SLOW_SQL)).status_code in (
        200,
        201,
    )
    response = upload(http, "slow", {"invoices": invoices, "payments": payments})
    assert response.status_code == 202, response.text
    run_id: str = response.json()["id"]
    return run_id


def _wait_until_matching(http: httpx.Client, run_id: str, timeout: float = 60) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run: dict[str, Any] = http.get(f"/api/runs/{run_id}").json()
        if run["stage"] == "matching" or run["status"] in ("completed", "failed"):
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {run_id} never reached matching")


def _restart(app: Process) -> Process:
    again = Process(app.name, app.args, app.env, app.cwd)
    return again.start()


def test_embedded_run_resumes_after_the_app_is_killed(tmp_path: Path) -> None:
    app = app_process(tmp_path).start()
    try:
        http = client(app.url)
        run_id = _slow_run(http, tmp_path / "data")
        run = _wait_until_matching(http, run_id)
        assert run["status"] == "running", run
        app.kill()
        app = _restart(app)
        http = client(app.url)
        run = wait_for_run(http, run_id, timeout=120)
        assert run["status"] == "completed", run
        assert run["attempts"] == 2
        assert (run["counts"]["matched"], run["counts"]["unmatched_left"]) == EXPECTED
        kinds = [e["kind"] for e in http.get(f"/api/runs/{run_id}/events").json()]
        assert "resubmitted" in kinds
    finally:
        app.stop()


def test_single_mode_run_is_settled_after_the_app_restarts(tmp_path: Path) -> None:
    for sub in ("staging", "runs"):
        (tmp_path / sub).mkdir()
    worker = worker_process(tmp_path).start()
    app = app_process(tmp_path, WORKER_URL=worker.url, KALLA_POLL_INTERVAL="1").start()
    try:
        http = client(app.url)
        run_id = _slow_run(http, tmp_path / "data")
        run = _wait_until_matching(http, run_id)
        assert run["status"] == "running", run
        app.stop()  # SIGTERM: a clean stop while the worker goes on
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:  # the worker finishes while the app is down
            job = httpx.get(f"{worker.url}/api/jobs/{run_id}", trust_env=False).json()
            if job["status"] in ("completed", "failed"):
                break
            time.sleep(0.2)
        assert job["status"] == "completed", job
        app = _restart(app)
        http = client(app.url)
        run = wait_for_run(http, run_id, timeout=60)
        assert run["status"] == "completed", run
        assert run["attempts"] == 1  # settled, not run again
        assert (run["counts"]["matched"], run["counts"]["unmatched_left"]) == EXPECTED
    finally:
        app.stop()
        worker.stop()
