"""The same job tests over every transport that feeds ``kalla.runner.JobRunner``: the app's
embedded dispatcher (``kalla serve``) and the HTTP worker (``kalla worker``), each a real
process; a NATS transport joins by adding an adapter to ``TRANSPORTS``.

Each job runs in a child process of its own: SQL that crashes DataFusion's parser, an
allocation past the OS memory cap or a hang ends that job with an error naming the cause,
and the service goes on to serve the next job. Cancel (queued and running), the time limit,
SIGTERM's drain and SIGKILL leave no job process and no partial outputs behind.
"""

from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
import psutil
import pytest
from test_app_harness import Process, app_process, client, worker_process, write_csv

FIXTURES = Path(__file__).parents[1] / "fixtures" / "worker"
SMALL_SQL = (
    "SELECT l.invoice_id, r.payment_id FROM left_src l JOIN right_src r "
    "ON l.invoice_id = r.reference_number AND tolerance_match(l.amount, r.paid_amount, 0.02)"
)
# A nested-loop join hashing every pair: minutes of native work with no checkpoint in it.
LONG_SQL = "SELECT l.lid, r.rid FROM l JOIN r ON sha256(concat(l.lid, r.rid)) = sha256('x')"
LONG_ROWS = 20_000
STOPPED_WITHIN = 20.0  # seconds for a stopped job's process to be gone (3 s grace + slack)
ENV = {
    "KALLA_MEMORY_LIMIT": "256M",
    "KALLA_JOB_MEMORY_HEADROOM": "1G",  # the OS cap: 1.25 GiB
    "KALLA_WORKER_CONCURRENCY": "1",
    "KALLA_CALLBACK_RETRY_SECONDS": "1",
}


@dataclass(frozen=True)
class Case:
    """A job: SQL over two files (the first is the left side) and their primary keys."""

    sql: str
    files: dict[str, Path]
    keys: dict[str, list[str]]


def small(sql: str = SMALL_SQL) -> Case:
    return Case(
        sql=sql,
        files={"left_src": FIXTURES / "invoices.csv", "right_src": FIXTURES / "payments.csv"},
        keys={"left_src": ["invoice_id"], "right_src": ["payment_id"]},
    )


def long_case(data: Path) -> Case:
    files = {}
    for alias, key in (("l", "lid"), ("r", "rid")):
        path = data / f"{alias}.csv"
        if not path.exists():
            write_csv(path, [key, "v"], [[f"{alias}{i}", i] for i in range(LONG_ROWS)])
        files[alias] = path
    return Case(sql=LONG_SQL, files=files, keys={"l": ["lid"], "r": ["rid"]})


class Transport(Protocol):
    """How the tests drive one transport; a run is known by its run id."""

    process: Process
    output_root: Path
    data: Path  # where a test may write the files of its jobs

    def submit(self, case: Case) -> str: ...

    def state(self, run_id: str) -> dict[str, Any]:
        """``{"status", "error", …}`` in the runner's vocabulary."""
        ...

    def cancel(self, run_id: str) -> int:
        """The HTTP status of the cancel request."""
        ...

    def stopped_cleanly(self, code: int | None) -> bool:
        """Whether the service's exit status after SIGTERM says it drained."""
        ...


@dataclass
class Embedded:
    """``kalla serve`` without WORKER_URL: recipes with file sources, runs with uploads."""

    process: Process
    output_root: Path
    data: Path
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = client(self.process.url, timeout=120)

    def submit(self, case: Case) -> str:
        left, right = case.files
        recipe_id = f"case-{uuid.uuid4().hex[:10]}"
        recipe = {
            "recipe_id": recipe_id,
            "name": recipe_id,
            "match_sql": case.sql,
            "sources": {
                side: {"alias": alias, "type": "file", "primary_key": case.keys[alias]}
                for side, alias in (("left", left), ("right", right))
            },
        }
        saved = self.http.post("/api/recipes", json=recipe)
        assert saved.status_code == 201, saved.text
        files = {
            alias: (path.name, path.read_bytes(), "text/csv") for alias, path in case.files.items()
        }
        created = self.http.post("/api/runs", data={"recipe_id": recipe_id}, files=files)
        assert created.status_code == 202, created.text
        return str(created.json()["id"])

    def state(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/runs/{run_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def cancel(self, run_id: str) -> int:
        return self.http.post(f"/api/runs/{run_id}/cancel").status_code

    def stopped_cleanly(self, code: int | None) -> bool:
        # uvicorn raises the signal again once its shutdown is complete
        return code == -signal.SIGTERM and "Application shutdown complete" in self.process.log()


@dataclass
class Http:
    """``kalla worker``: seed 002 JobRequests; callbacks go to a port nobody listens on (their
    delivery has tests of its own); the state comes from ``GET /api/jobs/{run_id}``."""

    process: Process
    output_root: Path
    data: Path
    http: httpx.Client = field(init=False)

    def __post_init__(self) -> None:
        self.http = client(self.process.url, timeout=60)

    def submit(self, case: Case) -> str:
        run_id = str(uuid.uuid4())
        body = {
            "run_id": run_id,
            "callback_url": "http://127.0.0.1:9/callback",
            "match_sql": case.sql,
            "sources": [{"alias": a, "uri": str(p)} for a, p in case.files.items()],
            "output_path": f"run-{run_id}",
            "primary_keys": case.keys,
        }
        response = self.http.post("/api/jobs", json=body)
        assert response.status_code == 200, response.text
        return run_id

    def state(self, run_id: str) -> dict[str, Any]:
        response = self.http.get(f"/api/jobs/{run_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def cancel(self, run_id: str) -> int:
        return self.http.delete(f"/api/jobs/{run_id}").status_code

    def stopped_cleanly(self, code: int | None) -> bool:
        return code == 0


def _start_embedded(workdir: Path, **env: str) -> Transport:
    process = app_process(workdir, **{**ENV, **env}).start()
    return Embedded(process, workdir / "runs", workdir / "data")


def _start_http(workdir: Path, **env: str) -> Transport:
    roots = f"{FIXTURES},{workdir / 'data'}"
    process = worker_process(workdir, **{**ENV, "KALLA_SOURCE_ROOTS": roots, **env}).start()
    return Http(process, workdir / "runs", workdir / "data")


TRANSPORTS: dict[str, Callable[..., Transport]] = {
    "embedded": _start_embedded,
    "http": _start_http,
}


@pytest.fixture(scope="module", params=sorted(TRANSPORTS))
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Transport]:
    """One long-lived service per transport, shared by the tests that leave it running."""
    workdir = tmp_path_factory.mktemp(f"transport-{request.param}")
    transport = TRANSPORTS[request.param](workdir)
    yield transport
    assert transport.stopped_cleanly(transport.process.stop()), transport.process.log()


@pytest.fixture(params=sorted(TRANSPORTS))
def starter(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Callable[..., Transport]]:
    """Starts a service of its own for a test that times it out, stops or kills it."""
    started: list[Transport] = []

    def start(**env: str) -> Transport:
        started.append(TRANSPORTS[request.param](tmp_path, **env))
        return started[-1]

    yield start
    for transport in started:
        transport.process.kill()


def wait_for(
    transport: Transport, run_id: str, statuses: tuple[str, ...], timeout: float = 90.0
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        state = transport.state(run_id)
        if state["status"] in statuses:
            return state
        assert time.monotonic() < deadline, f"{run_id} still {state}"
        time.sleep(0.1)


def ends(transport: Transport, run_id: str) -> dict[str, Any]:
    return wait_for(transport, run_id, ("completed", "failed", "cancelled"))


def job_processes(service: Process) -> list[psutil.Process]:
    """The service's job processes: the forkserver's children."""
    assert service.proc is not None
    found = []
    for child in psutil.Process(service.proc.pid).children():
        if "forkserver" in " ".join(child.cmdline()):
            found += child.children()
    return found


def wait_gone(processes: list[psutil.Process], timeout: float = STOPPED_WITHIN) -> None:
    """Every one of ``processes`` has ended (a zombie has: only its reaping is left)."""
    deadline = time.monotonic() + timeout
    while alive := [p for p in processes if _running(p)]:
        assert time.monotonic() < deadline, f"job processes still running: {alive}"
        time.sleep(0.05)


def _running(process: psutil.Process) -> bool:
    try:
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def running_job(transport: Transport, case: Case) -> tuple[str, list[psutil.Process]]:
    """Submit ``case``; once it runs, its run id and its process."""
    run_id = transport.submit(case)
    wait_for(transport, run_id, ("running",))
    deadline = time.monotonic() + 30
    while not (processes := job_processes(transport.process)):
        assert time.monotonic() < deadline, "the running job has no process"
        time.sleep(0.05)
    return run_id, processes


def no_partial_outputs(transport: Transport) -> None:
    root = transport.output_root
    leftovers = [p.name for p in root.iterdir() if ".tmp-" in p.name] if root.exists() else []
    assert not leftovers, leftovers


def serves_the_next_job(transport: Transport) -> None:
    state = ends(transport, transport.submit(small()))
    assert state["status"] == "completed", state


# --- one service per transport ---------------------------------------------------------------


def test_a_job_completes(service: Transport) -> None:
    state = ends(service, service.submit(small()))
    assert state["status"] == "completed", state


def test_sql_that_crashed_the_sql_parser_fails_that_job_alone(service: Transport) -> None:
    """10,000 ORs (210k characters, now past KALLA_MAX_SQL_LENGTH) overflowed the stack of
    DataFusion's recursive-descent parser (the job's process died of SIGSEGV): the plan now
    refuses SQL nested that deep,
    naming the cause, and the service goes on. (A child that does die is named by its signal:
    tests/unit/test_runner_child.py.)"""
    ors = " OR ".join(f"l.amount = {i}" for i in range(4_500))
    sql = f"{SMALL_SQL} AND ({ors})"
    assert len(sql) < 100_000  # within KALLA_MAX_SQL_LENGTH (tests/unit/test_sql_limits.py)
    state = ends(service, service.submit(small(sql)))
    assert state["status"] == "failed", state
    assert "nests 4,509 levels deep" in state["error"], state
    no_partial_outputs(service)
    serves_the_next_job(service)


def test_allocation_past_the_memory_cap_fails_naming_the_limit(service: Transport) -> None:
    """A 2 GB string, over the 1.25 GiB cap: the allocation fails in the job's process."""
    sql = f"{SMALL_SQL} AND length(repeat('x', 2000000000)) > 0"
    state = ends(service, service.submit(small(sql)))
    assert state["status"] == "failed", state
    error = state["error"]
    assert "exceeded the memory limit of 1.2 GiB" in error, error
    assert "KALLA_MEMORY_LIMIT 256 MiB + KALLA_JOB_MEMORY_HEADROOM 1 GiB" in error, error
    assert "an allocation of 1.9 GiB failed" in error, error
    serves_the_next_job(service)


def test_cancel_a_queued_and_a_running_job(service: Transport) -> None:
    """The running job is in native code with no checkpoint ahead: its process ends at once
    (or is killed after the grace period), leaving nothing; the queued one never starts."""
    running, processes = running_job(service, long_case(service.data))
    queued = service.submit(small())
    assert service.state(queued)["status"] == "queued"

    assert service.cancel(queued) == 200
    state = ends(service, queued)
    assert state["status"] == "cancelled" and "cancelled" in state["error"], state

    assert service.cancel(running) in (200, 202)
    wait_gone(processes)
    state = ends(service, running)
    assert state["status"] == "cancelled" and "cancelled" in state["error"], state
    assert service.state(queued)["status"] == "cancelled"
    no_partial_outputs(service)
    serves_the_next_job(service)


# --- a service of its own ---------------------------------------------------------------------


def test_a_hung_job_is_stopped_at_the_time_limit(
    starter: Callable[..., Transport],
) -> None:
    transport = starter(KALLA_JOB_TIMEOUT="2")
    run_id, processes = running_job(transport, long_case(transport.data))
    state = ends(transport, run_id)
    assert state["status"] == "failed", state
    assert "ran past its time limit of 2s (KALLA_JOB_TIMEOUT) while matching" in state["error"]
    wait_gone(processes)
    no_partial_outputs(transport)
    serves_the_next_job(transport)


def test_sigterm_drains_and_leaves_no_job_behind(
    starter: Callable[..., Transport],
) -> None:
    transport = starter(KALLA_WORKER_SHUTDOWN_GRACE="1")
    _, processes = running_job(transport, long_case(transport.data))
    transport.submit(small())  # queued: it never starts
    started = time.monotonic()
    code = transport.process.stop(signal.SIGTERM, timeout=60)
    assert transport.stopped_cleanly(code), transport.process.log()
    assert time.monotonic() - started < 1 + STOPPED_WITHIN
    wait_gone(processes, timeout=1)
    no_partial_outputs(transport)


def test_a_killed_service_takes_its_jobs_along(
    starter: Callable[..., Transport],
) -> None:
    """SIGKILL leaves no time to stop anything: each job's process notices its parent is
    gone and ends itself, so a restarted service never races an orphan for the outputs."""
    transport = starter()
    _, processes = running_job(transport, long_case(transport.data))
    transport.process.kill()
    wait_gone(processes, timeout=10)
