"""The worker as a real process on loopback (``kalla worker --port``), reporting to a real
HTTP receiver: seed 002's runner API end to end.

One worker serves most tests (module scope); queue-full/cancel and the two SIGTERM tests
start their own. Retry budgets and grace periods are short so the module stays quick.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from callback_receiver import Call, Receiver, free_port
from processes import wait_until_healthy

from kalla.recipe.models import (
    CompletionCallback,
    ErrorCallback,
    MatchingProgress,
    StagingProgress,
)
from kalla.worker.callbacks import CallbackSender, verify_signature

FIXTURES = Path(__file__).parents[1] / "fixtures" / "worker"
SECRET = "worker-test-secret"
START_TIMEOUT = 60.0


# --- the callback receiver ------------------------------------------------------------------


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


# --- the worker process ---------------------------------------------------------------------


class Worker:
    def __init__(self, root: Path, port: int | None = None, **env: str) -> None:
        self.root = root
        self.output_root = root / "runs"
        self.staging = root / "staging"
        self.port = port or free_port()
        root.mkdir(parents=True, exist_ok=True)
        self.url = f"http://127.0.0.1:{self.port}"
        self.log_path = root / "worker.log"
        environ = {
            **os.environ,
            "KALLA_OUTPUT_ROOT": str(self.output_root),
            "STAGING_PATH": str(self.staging),
            "KALLA_CALLBACK_SECRET": SECRET,
            "KALLA_CALLBACK_RETRY_SECONDS": "8",
            "KALLA_CALLBACK_TIMEOUT": "5",
            "KALLA_MEMORY_LIMIT": "1G",
            "KALLA_SOURCE_ROOTS": f"{FIXTURES},{tempfile.gettempdir()}",
            **env,
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kalla.cli", "worker", "--port", str(self.port)],
                env=environ,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        self.http = httpx.Client(base_url=self.url, timeout=30, trust_env=False)
        wait_until_healthy(self.proc, self.url, self.log, what="worker", timeout=START_TIMEOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def submit(self, body: dict[str, Any]) -> httpx.Response:
        return self.http.post("/api/jobs", json=body)

    def status(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/jobs/{run_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def wait_status(self, run_id: str, *states: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while True:
            view = self.status(run_id)
            if view["status"] in states:
                return view
            assert time.monotonic() < deadline, f"{run_id} stuck in {view}"
            time.sleep(0.05)

    def terminate(self, timeout: float = 60.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        finally:
            self.http.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self.http.close()


@pytest.fixture(scope="module")
def worker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Worker]:
    # KALLA_TEST_PG_USER spells part of the unset placeholder's name (see _unset_placeholder)
    w = Worker(
        tmp_path_factory.mktemp("worker"), KALLA_WORKER_CONCURRENCY="2", KALLA_TEST_PG_USER="UNSET"
    )
    yield w
    rc = w.terminate()
    assert rc == 0, w.log()


def job(receiver: Receiver, **overrides: Any) -> dict[str, Any]:
    """The seed 002 curl example on local files, with a fresh run_id and output_path."""
    body = json.loads((FIXTURES / "job.json").read_text())
    run_id = str(uuid.uuid4())
    body["run_id"] = run_id
    body["output_path"] = f"run-{run_id}"
    body["callback_url"] = receiver.url()
    for source in body["sources"]:
        source["uri"] = str(FIXTURES / source["uri"])
    body.update(overrides)
    return body


def slow_job(receiver: Receiver, folder: Path, passes: int = 6) -> dict[str, Any]:
    """A waterfall whose every pass is a costly nested-loop join matching nothing (~0.5 s
    each here): long enough to act mid-job, with a checkpoint between passes."""
    rows = 2000
    folder.mkdir(parents=True, exist_ok=True)
    for name, key in (("left", "lid"), ("right", "rid")):
        lines = [f"{key},v"] + [f"{name[0].upper()}{i},{i}" for i in range(rows)]
        (folder / f"{name}.csv").write_text("\n".join(lines) + "\n")
    sql = "SELECT l.lid, r.rid FROM l JOIN r ON sha256(concat(l.lid, r.rid)) = sha256('x')"
    return job(
        receiver,
        match_sql=None,
        passes=[{"name": f"p{i}", "match_sql": sql} for i in range(passes)],
        sources=[
            {"alias": "l", "uri": str(folder / "left.csv")},
            {"alias": "r", "uri": str(folder / "right.csv")},
        ],
        primary_keys={"l": ["lid"], "r": ["rid"]},
    )


def rows(path: str) -> int:
    return int(pq.read_metadata(path).num_rows)


def assert_signed_and_ordered(calls: list[Call]) -> None:
    assert [c.sequence for c in calls] == list(range(1, len(calls) + 1)), calls
    for call in calls:
        assert verify_signature(
            SECRET,
            call.body,
            call.headers["x-kalla-timestamp"],
            call.headers["x-kalla-signature"],
            max_age=300,
        ), call
    assert [c.event for c in calls].count("complete") + [c.event for c in calls].count("error") == 1
    assert calls[-1].event in ("complete", "error")


# --- happy paths ----------------------------------------------------------------------------


def test_health_ready_metrics(worker: Worker) -> None:
    health = worker.http.get("/health")
    assert health.status_code == 200 and health.headers["content-type"].startswith("text/plain")
    assert worker.http.get("/ready").status_code == 200
    metrics = worker.http.get("/metrics")
    assert metrics.status_code == 200
    for name in (
        "kalla_worker_jobs_total",
        "kalla_worker_job_duration_seconds_bucket",
        "kalla_worker_stage_duration_seconds_bucket",
        "kalla_worker_rows_staged_total",
        "kalla_worker_rows_matched_total",
        "kalla_worker_queue_depth",
        "kalla_worker_jobs_in_flight",
        "kalla_worker_callback_attempts_total",
        "kalla_worker_callback_failures_total",
    ):
        assert name in metrics.text, name


def check_completed(worker: Worker, receiver: Receiver, body: dict[str, Any]) -> Call:
    """Accepted → staging (left, right) → matching → complete, all signed, counts on disk."""
    run_id = body["run_id"]
    final = receiver.final(run_id)
    calls = receiver.for_run(run_id)
    assert_signed_and_ordered(calls)
    assert final.event == "complete", final.json
    left, right = (s["alias"] for s in body["sources"])
    staging = [
        StagingProgress.model_validate(c.json) for c in calls if c.json.get("stage") == "staging"
    ]
    matching = [
        MatchingProgress.model_validate(c.json) for c in calls if c.json.get("stage") == "matching"
    ]
    sources = [s.source for s in staging]
    assert sources[0] == left and sources[-1] == right
    assert sources == sorted(sources, key=[left, right].index)
    assert {(s.source, s.progress) for s in staging} >= {(left, 1.0), (right, 1.0)}
    kinds = [c.json.get("stage", c.event) for c in calls]
    assert kinds == sorted(kinds, key=["staging", "matching", "complete"].index), kinds
    done = CompletionCallback.model_validate(final.json)
    assert matching[-1].progress == 1.0 and matching[-1].matched_count == done.matched_count
    paths = done.output_paths
    assert rows(paths.matched) == done.matched_count
    assert rows(paths.unmatched_left) == done.unmatched_left_count
    assert rows(paths.unmatched_right) == done.unmatched_right_count
    assert paths.manifest is not None and Path(paths.manifest).is_file()
    assert Path(paths.matched).parent == (worker.output_root / body["output_path"]).resolve()
    view = worker.status(run_id)
    assert view["status"] == "completed" and view["result"] == final.json
    return final


def test_seed_example_local_files(worker: Worker, receiver: Receiver) -> None:
    body = job(receiver)
    response = worker.submit(body)
    assert response.status_code == 200
    assert response.json() == {"run_id": body["run_id"], "status": "accepted"}
    final = check_completed(worker, receiver, body)
    done = final.json
    assert (done["matched_count"], done["unmatched_left_count"], done["unmatched_right_count"]) == (
        3,
        3,
        2,
    )
    assert done["ambiguous_left_count"] == 0 and done["ambiguous_right_count"] == 0
    assert {c.path for c in receiver.for_run(body["run_id"])} == {"/api/runs/callback"}


def test_seed000_callback_paths(worker: Worker, receiver: Receiver) -> None:
    """A callback_url ending in /api/worker gets seed 000's /progress, /complete, /error."""
    body = job(receiver, callback_url=receiver.url("/api/worker"))
    assert worker.submit(body).status_code == 200
    receiver.final(body["run_id"])
    paths = {c.event: c.path for c in receiver.for_run(body["run_id"])}
    assert paths == {"progress": "/api/worker/progress", "complete": "/api/worker/complete"}
    bad = job(receiver, callback_url=receiver.url("/api/worker/"), match_sql="SELECT 1 FROM nope")
    assert worker.submit(bad).status_code == 200
    assert receiver.final(bad["run_id"]).path == "/api/worker/error"


# --- bad input ------------------------------------------------------------------------------


def _postgres_down(receiver: Receiver) -> dict[str, Any]:
    pytest.importorskip("kalla.connectors.postgres", reason="the PostgreSQL connector")
    body = job(receiver)
    body["sources"][1]["uri"] = "postgres://kalla:hunter2secret@127.0.0.1:1/books?table=payments"
    return body


def _wrong_schema(receiver: Receiver) -> dict[str, Any]:
    body = job(receiver)
    body["sources"][1]["uri"] = str(FIXTURES / "payments_wrong_schema.csv")
    return body


def _missing_file(receiver: Receiver) -> dict[str, Any]:
    body = job(receiver)
    body["sources"][0]["uri"] = str(FIXTURES / "no-such-invoices.csv")
    return body


def _unset_placeholder(receiver: Receiver) -> dict[str, Any]:
    """A password placeholder the worker's environment lacks, beside a user placeholder
    whose value (UNSET) spells part of its name: the error still names it whole."""
    pytest.importorskip("kalla.connectors.postgres", reason="the PostgreSQL connector")
    body = job(receiver)
    body["sources"][1]["uri"] = (
        "postgres://${KALLA_TEST_PG_USER}:${KALLA_TEST_UNSET_PW}@127.0.0.1:1/books?table=p"
    )
    return body


def _sql(sql: str) -> Callable[[Receiver], dict[str, Any]]:
    return lambda receiver: job(receiver, match_sql=sql)


BAD_JOBS: dict[str, tuple[Callable[[Receiver], dict[str, Any]], tuple[str, ...]]] = {
    "unknown_alias": (
        _sql("SELECT i.invoice_id, r.payment_id FROM invoices i JOIN right_src r ON true"),
        ("unknown table 'invoices'", "left_src"),
    ),
    "missing_file": (_missing_file, ("file not found", "no-such-invoices.csv")),
    "wrong_file_schema": (_wrong_schema, ("reference_number",)),
    "drop": (_sql("DROP TABLE left_src"), ("DROP",)),
    "copy": (_sql("COPY left_src TO '/tmp/stolen.csv'"), ("COPY",)),
    "two_statements": (
        _sql("SELECT * FROM left_src; DELETE FROM right_src"),
        ("single statement",),
    ),
    "postgres_unreachable": (_postgres_down, ("cannot reach PostgreSQL", "127.0.0.1:1")),
    "unset_placeholder": (_unset_placeholder, ("'right_src': ${KALLA_TEST_UNSET_PW} is not set",)),
}


@pytest.mark.parametrize("case", sorted(BAD_JOBS))
def test_bad_job_error_callback(worker: Worker, receiver: Receiver, case: str) -> None:
    make, fragments = BAD_JOBS[case]
    body = make(receiver)
    assert worker.submit(body).status_code == 200
    final = receiver.final(body["run_id"])
    assert final.event == "error"
    error = ErrorCallback.model_validate(final.json).error
    for fragment in fragments:
        assert fragment in error, error
    assert "Traceback" not in error and "hunter2secret" not in error
    assert_signed_and_ordered(receiver.for_run(body["run_id"]))
    view = worker.status(body["run_id"])
    assert view["status"] == "failed" and view["error"] == error
    assert not (worker.output_root / body["output_path"]).exists()
    assert "hunter2secret" not in worker.log()
    # the worker stays up and serves the next job
    good = job(receiver)
    assert worker.submit(good).status_code == 200
    assert receiver.final(good["run_id"]).event == "complete"


def test_refused_at_submission(worker: Worker, receiver: Receiver, tmp_path: Path) -> None:
    """Malformed JSON, path escapes and disallowed callback hosts: 422, nothing runs."""
    malformed = worker.http.post(
        "/api/jobs", content=b'{"run_id": "x",', headers={"Content-Type": "application/json"}
    )
    assert malformed.status_code == 422
    assert "not valid JSON" in malformed.json()["error"]

    empty = worker.submit({})
    assert empty.status_code == 422
    problems = empty.json()["problems"]
    for field in ("run_id", "callback_url", "sources", "output_path", "primary_keys"):
        assert any(p.startswith(field) for p in problems), problems

    outside = tmp_path / "outside"
    outside.mkdir()
    worker.output_root.mkdir(parents=True, exist_ok=True)
    link = worker.output_root / f"link-{uuid.uuid4().hex[:6]}"
    link.symlink_to(outside, target_is_directory=True)
    for path in ("../escaped", "a/../../escaped", str(outside / "x"), f"{link.name}/x", "."):
        body = job(receiver, output_path=path)
        response = worker.submit(body)
        assert response.status_code == 422, (path, response.text)
        assert "output root" in response.json()["error"], response.json()
    assert not any(outside.iterdir())

    for url in (
        "http://example.com/cb",
        "http://10.1.2.3/cb",
        "http://169.254.169.254/",
        "ftp://127.0.0.1/x",
    ):
        response = worker.submit(job(receiver, callback_url=url))
        assert response.status_code == 422, (url, response.text)
        assert "callback_url" in response.json()["error"]

    for uri in ("/etc/passwd", "file:///etc/hostname", "../../../../etc/passwd"):
        body = job(receiver)
        body["sources"][0]["uri"] = uri
        response = worker.submit(body)
        assert response.status_code == 422, (uri, response.text)
        assert "outside the directories jobs may read" in response.json()["error"], uri

    two = worker.submit(job(receiver, callback_url="http://evil.example/cb", output_path="../x"))
    assert two.status_code == 422 and len(two.json()["problems"]) == 2

    time.sleep(0.3)
    with receiver.cond:
        assert not [c for c in receiver.calls if c.run_id == "x"]
    assert worker.http.get("/ready").status_code == 200


def test_duplicate_run_id_runs_once(worker: Worker, receiver: Receiver) -> None:
    body = job(receiver)
    with ThreadPoolExecutor(8) as pool:
        responses = list(pool.map(lambda _: worker.submit(body), range(8)))
    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    assert all(r.json()["run_id"] == body["run_id"] for r in responses)
    assert receiver.final(body["run_id"]).event == "complete"
    again = worker.submit(body)
    assert again.status_code == 200 and again.json()["status"] == "completed"
    time.sleep(0.3)
    calls = receiver.for_run(body["run_id"])
    assert [c.event for c in calls].count("complete") == 1
    assert (
        sum(1 for c in calls if c.json.get("stage") == "staging" and c.json["progress"] == 0.0) == 2
    )


# --- callbacks: retries, receiver down ------------------------------------------------------


def test_receiver_down_then_up(worker: Worker) -> None:
    late = Receiver()
    body = job(late)
    assert worker.submit(body).status_code == 200
    time.sleep(1.5)  # well inside the retry budget (8 s), long enough for a few retries
    late.start()
    try:
        final = late.final(body["run_id"], timeout=30)
        assert final.event == "complete"
        assert_signed_and_ordered(late.for_run(body["run_id"]))
        assert worker.status(body["run_id"])["callbacks"]["failed"] == 0
    finally:
        late.stop()
    retries = [
        line
        for line in worker.http.get("/metrics").text.splitlines()
        if line.startswith('kalla_worker_callback_attempts_total{event="progress",result="retry"}')
    ]
    assert retries and float(retries[0].split()[-1]) > 0


def test_receiver_never_up_status_still_readable(worker: Worker) -> None:
    nobody = Receiver()  # never started
    body = job(nobody)
    assert worker.submit(body).status_code == 200
    view = worker.wait_status(body["run_id"], "completed", timeout=30)
    assert view["result"]["matched_count"] == 3
    assert view["callbacks"]["delivered"] == 0
    assert rows(view["result"]["output_paths"]["matched"]) == 3


def test_sender_gives_up_on_4xx_without_retrying() -> None:
    refusing = Receiver(status=401).start()
    try:
        sender = CallbackSender(secret=SECRET, retry_seconds=5, timeout=5)
        channel = sender.channel(uuid.uuid4(), refusing.url())
        run_id = channel.run_id
        channel.send("error", ErrorCallback(run_id=run_id, error="x"), final=True)
        assert refusing.wait(lambda: len(refusing.calls) == 1, 5)
        time.sleep(0.5)
        assert len(refusing.calls) == 1
        assert channel.stats() == {"delivered": 0, "failed": 1, "pending": 0}
        sender.close(wait=1)
    finally:
        refusing.stop()


# --- load -----------------------------------------------------------------------------------


def test_fifty_concurrent_jobs(worker: Worker, receiver: Receiver) -> None:
    bodies = [job(receiver) for _ in range(50)]
    start = time.perf_counter()
    with ThreadPoolExecutor(50) as pool:
        responses = list(pool.map(worker.submit, bodies))
    submitted = time.perf_counter() - start
    assert [r.status_code for r in responses] == [200] * 50, [r.text for r in responses]
    for body in bodies:
        receiver.final(body["run_id"], timeout=120)
    elapsed = time.perf_counter() - start
    for body in bodies:
        calls = receiver.for_run(body["run_id"])
        assert_signed_and_ordered(calls)
        assert calls[-1].event == "complete"
        assert worker.status(body["run_id"])["callbacks"] == {
            "delivered": len(calls),
            "failed": 0,
            "pending": 0,
        }
    callbacks = sum(len(receiver.for_run(b["run_id"])) for b in bodies)
    print(
        f"\n50 jobs: submitted in {submitted:.2f} s, all complete in {elapsed:.2f} s "
        f"({50 / elapsed:.1f} jobs/s, {callbacks} callbacks delivered)"
    )


# --- PostgreSQL -----------------------------------------------------------------------------


@pytest.fixture
def books_db() -> Iterator[str]:
    psycopg = pytest.importorskip("psycopg")
    name = f"kalla_worker_{uuid.uuid4().hex[:10]}"
    admin = "host=127.0.0.1 port=5432 user=postgres dbname=postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(f"host=127.0.0.1 port=5432 user=postgres dbname={name}") as conn:
            conn.execute(
                "CREATE TABLE invoices (invoice_id text PRIMARY KEY, customer text, "
                "amount numeric(12, 2))"
            )
            conn.execute(
                "CREATE TABLE payments (payment_id text PRIMARY KEY, reference_number text, "
                "paid_amount numeric(12, 2))"
            )
            for table in ("invoices", "payments"):
                lines = (FIXTURES / f"{table}.csv").read_text().splitlines()[1:]
                with conn.cursor().copy(f"COPY {table} FROM STDIN WITH (FORMAT csv)") as copy:
                    copy.write("\n".join(lines) + "\n")
        yield name
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.mark.postgres
def test_seed_example_postgres(worker: Worker, receiver: Receiver, books_db: str) -> None:
    pytest.importorskip("kalla.connectors.postgres", reason="the PostgreSQL connector")
    body = job(receiver)
    body["sources"] = [
        {
            "alias": "left_src",
            "uri": f"postgres://postgres@127.0.0.1:5432/{books_db}?table=invoices",
        },
        {
            "alias": "right_src",
            "uri": f"postgres://postgres@127.0.0.1:5432/{books_db}?table=payments",
        },
    ]
    assert worker.submit(body).status_code == 200
    done = check_completed(worker, receiver, body).json
    assert (done["matched_count"], done["unmatched_left_count"], done["unmatched_right_count"]) == (
        3,
        3,
        2,
    )


# --- queue full, cancel, SIGTERM (a worker each) ----------------------------------------------


def test_queue_full_and_cancel(tmp_path: Path, receiver: Receiver) -> None:
    w = Worker(tmp_path, KALLA_WORKER_CONCURRENCY="1", KALLA_WORKER_QUEUE_SIZE="1")
    try:
        running = slow_job(receiver, tmp_path / "data")
        assert w.submit(running).status_code == 200
        w.wait_status(running["run_id"], "running")
        queued = job(receiver)
        assert w.submit(queued).status_code == 200
        assert w.status(queued["run_id"])["status"] == "queued"

        full = w.submit(job(receiver))
        assert full.status_code == 503
        assert int(full.headers["Retry-After"]) >= 1
        assert "queue is full" in full.json()["error"]
        ready = w.http.get("/ready")
        assert ready.status_code == 503 and "queue is full" in ready.text

        cancelled = w.http.delete(f"/api/jobs/{queued['run_id']}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        assert "cancelled" in receiver.final(queued["run_id"]).json["error"]

        stopping = w.http.delete(f"/api/jobs/{running['run_id']}")
        assert stopping.status_code == 202 and stopping.json()["cancel_requested"] is True
        final = receiver.final(running["run_id"], timeout=30)
        assert final.event == "error" and "cancelled" in final.json["error"]
        assert w.status(running["run_id"])["status"] == "cancelled"
        assert not any(w.output_root.iterdir()), list(w.output_root.iterdir())
        assert w.http.delete(f"/api/jobs/{uuid.uuid4()}").status_code == 404

        after = job(receiver)
        assert w.submit(after).status_code == 200
        assert receiver.final(after["run_id"]).event == "complete"
        assert w.http.delete(f"/api/jobs/{after['run_id']}").status_code == 409
        assert w.terminate() == 0
    finally:
        w.kill()


def test_sigterm_lets_the_running_job_finish(tmp_path: Path, receiver: Receiver) -> None:
    w = Worker(tmp_path, KALLA_WORKER_SHUTDOWN_GRACE="60")
    try:
        body = slow_job(receiver, tmp_path / "data", passes=4)
        assert w.submit(body).status_code == 200
        w.wait_status(body["run_id"], "running")
        w.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        refused = w.submit(job(receiver))
        assert refused.status_code == 503 and "shutting down" in refused.json()["error"]
        assert w.http.get("/ready").status_code == 503
        assert w.proc.wait(60) == 0, w.log()
        final = receiver.final(body["run_id"], timeout=1)  # delivered before the exit
        assert final.event == "complete"
        assert rows(final.json["output_paths"]["matched"]) == 0
        assert rows(final.json["output_paths"]["unmatched_left"]) == 2000
    finally:
        w.kill()


def test_sigterm_past_grace_cancels_cleanly(tmp_path: Path, receiver: Receiver) -> None:
    w = Worker(tmp_path, KALLA_WORKER_SHUTDOWN_GRACE="0.2")
    try:
        body = slow_job(receiver, tmp_path / "data")
        queued = job(receiver)
        assert w.submit(body).status_code == 200
        assert w.submit(queued).status_code == 200
        w.wait_status(body["run_id"], "running")
        assert w.terminate() == 0, w.log()
        final = receiver.final(body["run_id"], timeout=1)
        assert final.event == "error" and "shut down" in final.json["error"]
        assert "submit it again" in receiver.final(queued["run_id"], timeout=1).json["error"]
        assert not w.output_root.exists() or not any(w.output_root.iterdir())
        assert not any(w.staging.iterdir())
    finally:
        w.kill()


def test_sigterm_gives_up_callbacks_within_grace_and_frees_the_port(
    tmp_path: Path, receiver: Receiver
) -> None:
    """A callback receiver that accepts and never answers, a generous retry budget: after
    SIGTERM the worker gives the callback what is left of its 1 s grace, exits, and a new
    worker starts on the same port. Its log is one JSON object per line, the run's lines
    naming the run."""
    hole = socket.socket()  # accepts connections, never answers
    hole.bind(("127.0.0.1", 0))
    hole.listen(16)
    first = Worker(
        tmp_path / "first",
        KALLA_WORKER_SHUTDOWN_GRACE="1",
        KALLA_CALLBACK_RETRY_SECONDS="600",
        KALLA_CALLBACK_TIMEOUT="30",
        KALLA_CALLBACK_ALLOWED_HOSTS="127.0.0.1",
        KALLA_LOG_FORMAT="json",
    )
    second: Worker | None = None
    try:
        body = job(receiver, callback_url=f"http://127.0.0.1:{hole.getsockname()[1]}/cb")
        assert first.submit(body).status_code == 200
        view = first.wait_status(body["run_id"], "completed")
        assert view["callbacks"]["pending"] >= 1 and view["callbacks"]["delivered"] == 0
        began = time.monotonic()
        first.proc.send_signal(signal.SIGTERM)
        assert first.proc.wait(60) == 0, first.log()
        # the grace (1 s) and the process's exit: far from the 30 s attempt in flight and
        # the 600 s retry budget that held the port before
        assert time.monotonic() - began < 6, first.log()
        second = Worker(tmp_path / "second", port=first.port)
        assert second.http.get("/ready").status_code == 200
    finally:
        hole.close()
        first.kill()
        if second is not None:
            second.kill()
    entries = [json.loads(line) for line in first.log().splitlines()]
    run_lines = [e for e in entries if body["run_id"] in e["message"]]
    assert run_lines and all(e.get("run_id") == body["run_id"] for e in run_lines), run_lines
    assert any("the worker shut down" in e["message"] for e in run_lines), run_lines
    assert {"uvicorn.error", "kalla.runner"} <= {e["logger"] for e in entries}
