"""Single mode: ``kalla serve`` with ``WORKER_URL`` + a real ``kalla worker`` process.

The app POSTs the JobRequest (with its own callback URL) to the worker; the worker stages,
matches and calls back with signed callbacks; the app settles the run from them. An API
token is set, which the callbacks (signed instead) do not need.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import ClassVar

import httpx
import pytest
from callback_receiver import free_port
from test_app_harness import (
    API_TOKEN,
    CALLBACK_SECRET,
    Process,
    app_process,
    client,
    file_recipe,
    invoice_payment_files,
    pg_url,
    postgres_database,
    signed,
    slow_recipe,
    upload,
    wait_for_run,
    worker_process,
)


class Stack:
    def __init__(self, app: Process, worker: Process, data: Path) -> None:
        self.app = app
        self.worker = worker
        self.data = data
        self.http = client(app.url, token=API_TOKEN)
        self.files = {"invoices": data / "invoices.csv", "payments": data / "payments.csv"}


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def stack(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp(f"single-{request.param}")
    data = workdir / "data"
    invoice_payment_files(data)
    for sub in ("staging", "runs"):
        (workdir / sub).mkdir()
    with contextlib.ExitStack() as cleanup:
        worker = worker_process(workdir).start()
        cleanup.callback(worker.stop)
        database_url = None
        if request.param == "postgres":
            database_url = pg_url(cleanup.enter_context(postgres_database()))
        app = app_process(
            workdir, database_url=database_url, WORKER_URL=worker.url, KALLA_API_TOKEN=API_TOKEN
        ).start()
        cleanup.callback(app.stop)
        yield Stack(app, worker, data)


def test_round_trip_through_the_worker(stack: Stack) -> None:
    assert stack.http.post("/api/recipes", json=file_recipe("single")).status_code in (200, 201)
    created = upload(stack.http, "single", stack.files)
    assert created.status_code == 202, created.text
    run = wait_for_run(stack.http, created.json()["id"])
    assert run["status"] == "completed", run
    assert run["mode"] == "worker"
    assert (run["counts"]["matched"], run["counts"]["unmatched_right"]) == (20, 2)
    assert run["manifest"]["counts"]["unmatched_left_count"] == 20
    page = stack.http.get(f"/api/runs/{run['id']}/results/matched", params={"limit": 5})
    assert page.status_code == 200 and page.json()["total"] == 20

    events = stack.http.get(f"/api/runs/{run['id']}/events").json()
    kinds = [e["kind"] for e in events]
    assert kinds[:2] == ["created", "dispatched"]
    assert "staging" in kinds and "matching" in kinds and kinds[-1] == "completed"
    # the worker saw the same run to the end
    job = httpx.get(f"{stack.worker.url}/api/jobs/{run['id']}", trust_env=False).json()
    assert job["status"] == "completed"
    assert job["callbacks"]["failed"] == 0


@pytest.mark.postgres
def test_cancel_reaches_the_worker(stack: Stack) -> None:
    with postgres_database("kalla_slow") as db:
        recipe = slow_recipe(db, f"slow-{db}", seconds=3)
        assert stack.http.post("/api/recipes", json=recipe).status_code == 201
        created = stack.http.post("/api/runs", json={"recipe_id": recipe["recipe_id"]})
        run_id = created.json()["id"]
        wait_for_run(stack.http, run_id, statuses=("running",))
        cancelled = stack.http.post(f"/api/runs/{run_id}/cancel")
        assert cancelled.status_code == 200, cancelled.text
        assert cancelled.json()["status"] == "cancelled"
        # the worker was told: its job ends cancelled, and its error callback changes nothing
        deadline = time.monotonic() + 30
        job: dict[str, object] = {}
        while time.monotonic() < deadline and job.get("status") != "cancelled":
            time.sleep(0.2)
            job = httpx.get(f"{stack.worker.url}/api/jobs/{run_id}", trust_env=False).json()
        assert job["status"] == "cancelled", job
        run = wait_for_run(stack.http, run_id)
        assert run["status"] == "cancelled" and run["error"] == "cancelled on request"


def test_api_token_guards_the_api_but_not_the_signed_callbacks(stack: Stack) -> None:
    anonymous = client(stack.app.url)
    for path in ("/api/sources", "/api/recipes", "/api/runs"):
        response = anonymous.get(path)
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
    assert client(stack.app.url, token="wrong").get("/api/runs").status_code == 401
    assert stack.http.get("/api/runs").status_code == 200
    assert anonymous.get("/health").status_code == 200
    # a callback without a bearer token is judged by its signature alone
    body = {"run_id": "11111111-2222-3333-4444-555555555555", "error": "x"}
    raw, headers = signed(body)
    assert anonymous.post("/api/worker/error", content=raw, headers=headers).status_code == 404
    assert anonymous.post("/api/worker/error", json=body).status_code == 401


def test_forged_and_replayed_callbacks_are_rejected(stack: Stack) -> None:
    stack.http.post("/api/recipes", json=file_recipe("single"))
    run = wait_for_run(stack.http, upload(stack.http, "single", stack.files).json()["id"])
    assert run["status"] == "completed"
    anonymous = client(stack.app.url)
    forged_error = {"run_id": run["id"], "error": "forged: the run failed"}
    url = f"/api/runs/{run['id']}/callback"

    raw, headers = signed(forged_error, secret="guessed-" + CALLBACK_SECRET)
    assert (
        anonymous.post(url, content=raw, headers={**headers, "X-Kalla-Event": "error"}).status_code
        == 401
    )
    # a captured request replayed after the freshness window
    raw, headers = signed(forged_error, timestamp=int(time.time()) - 10 * 60)
    assert anonymous.post(url, content=raw, headers=headers).status_code == 401
    # the same request sent twice within the window: recorded once, then a duplicate
    late_progress = {"stage": "matching", "run_id": run["id"], "progress": 0.5}
    raw, headers = signed(late_progress)
    first = anonymous.post(url, content=raw, headers=headers).json()
    second = anonymous.post(url, content=raw, headers=headers).json()
    assert (first["outcome"], second["outcome"]) == ("ignored", "duplicate")
    after = stack.http.get(f"/api/runs/{run['id']}").json()
    assert (after["status"], after["progress"], after["error"]) == ("completed", 1.0, None)


def test_unreachable_worker_fails_the_run_with_the_cause(tmp_path: Path) -> None:
    data = tmp_path / "data"
    invoice_payment_files(data)
    app = app_process(tmp_path, WORKER_URL=f"http://127.0.0.1:{free_port()}").start()
    try:
        http = client(app.url)
        http.post("/api/recipes", json=file_recipe("nowhere"))
        files = {"invoices": data / "invoices.csv", "payments": data / "payments.csv"}
        run = wait_for_run(http, upload(http, "nowhere", files).json()["id"])
        assert run["status"] == "failed" and "cannot reach the worker" in run["error"]
    finally:
        app.stop()


class _AcceptingWorker(BaseHTTPRequestHandler):
    """Takes every job and runs none: the test itself plays the worker's callbacks."""

    jobs: ClassVar[list[dict[str, object]]] = []

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        self.jobs.append(body)
        self._answer({"run_id": body["run_id"], "status": "accepted"})

    def do_GET(self) -> None:
        self._answer({"run_id": self.path.rsplit("/", 1)[-1], "status": "running"})

    def _answer(self, data: dict[str, object]) -> None:
        raw = json.dumps(data).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, *args: object) -> None:
        pass


def test_seed_000_callbacks_drive_a_run(tmp_path: Path) -> None:
    data = tmp_path / "data"
    invoice_payment_files(data)
    server = ThreadingHTTPServer(("127.0.0.1", 0), _AcceptingWorker)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    app = app_process(tmp_path, WORKER_URL=f"http://127.0.0.1:{server.server_port}").start()
    try:
        http = client(app.url)
        http.post("/api/recipes", json=file_recipe("seed000"))
        files = {"invoices": data / "invoices.csv", "payments": data / "payments.csv"}
        run_id = upload(http, "seed000", files).json()["id"]
        job = next(j for j in _AcceptingWorker.jobs if j["run_id"] == run_id)
        assert job["callback_url"] == f"{app.url}/api/runs/{run_id}/callback"
        assert [s["alias"] for s in job["sources"]] == ["invoices", "payments"]

        def send(path: str, body: dict[str, object]) -> dict[str, object]:
            raw, headers = signed(body)
            response = http.post(path, content=raw, headers=headers)
            assert response.status_code == 200, response.text
            ack: dict[str, object] = response.json()
            return ack

        staging = {"stage": "staging", "run_id": run_id, "progress": 0.5, "source": "invoices"}
        assert send("/api/worker/progress", staging)["outcome"] == "applied"
        run = http.get(f"/api/runs/{run_id}").json()
        assert (run["status"], run["stage"], run["progress"]) == ("running", "staging", 0.15)
        matching = {"stage": "matching", "run_id": run_id, "progress": 0.5}
        send("/api/worker/progress", matching)
        send("/api/worker/progress", staging)  # late and out of order: progress holds
        run = http.get(f"/api/runs/{run_id}").json()
        assert run["stage"] == "matching" and run["progress"] > 0.6
        done = {
            "run_id": run_id,
            "matched_count": 3,
            "unmatched_left_count": 1,
            "unmatched_right_count": 2,
            "output_paths": {"matched": "m", "unmatched_left": "l", "unmatched_right": "r"},
        }
        assert send("/api/worker/complete", done)["status"] == "completed"
        late_error = {"run_id": run_id, "error": "too late"}
        assert send("/api/worker/error", late_error)["outcome"] == "ignored"
        run = http.get(f"/api/runs/{run_id}").json()
        assert run["status"] == "completed" and run["error"] is None
        assert (run["counts"]["matched"], run["counts"]["unmatched_right"]) == (3, 2)
    finally:
        app.stop()
        server.shutdown()
