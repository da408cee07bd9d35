"""The README's newcomer journey, from a copy of the repository and a fresh virtualenv:
``make demo``, then every command the README shows, with nothing but what ``make demo``
installed (not the dev extras this suite runs with).

Marked ``install`` (pip fetches the packages: PyPI or its local mirror) and ``slow`` (about
20 s of install from pip's cache, a few seconds per command); ``make test`` runs it.
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from callback_receiver import free_port
from kalla_test_services import PG_SERVER
from processes import wait_until_healthy

from kalla import __version__

pytestmark = [pytest.mark.slow, pytest.mark.install]

REPO = Path(__file__).parents[2]


@dataclass
class Newcomer:
    home: Path  # the copy of the repository, where every command runs
    demo_output: str

    @property
    def bin(self) -> Path:
        return self.home / ".venv" / "bin"

    def env(self, **extra: str) -> dict[str, str]:
        """The environment of a shell that has not activated this suite's venv."""
        path = [p for p in os.environ.get("PATH", "").split(os.pathsep) if str(REPO) not in p]
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "PGPASSWORD")
            and not k.startswith(("KALLA_", "PYTEST_"))
        }
        return {**env, "PATH": os.pathsep.join(path), **extra}

    def run(self, *args: str, timeout: float = 300, **env: str) -> subprocess.CompletedProcess[str]:
        """``args[0]`` from the fresh venv's bin (``kalla``, ``python``), in the copy."""
        return subprocess.run(
            [str(self.bin / args[0]), *args[1:]],
            cwd=self.home,
            env=self.env(**env),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )

    def start(self, *args: str, **env: str) -> Service:
        port = free_port()
        log = self.home / f"{args[0]}-{port}.log"
        with log.open("wb") as handle:
            proc = subprocess.Popen(
                [str(self.bin / "kalla"), *args, "--port", str(port)],
                cwd=self.home,
                env=self.env(**env),
                stdout=handle,
                stderr=subprocess.STDOUT,
            )
        service = Service(proc, f"http://127.0.0.1:{port}", log)
        service.wait_healthy()
        return service


@dataclass
class Service:
    proc: subprocess.Popen[bytes]
    url: str
    log: Path

    def __post_init__(self) -> None:
        self.http = httpx.Client(base_url=self.url, timeout=30, trust_env=False)

    def wait_healthy(self) -> None:
        wait_until_healthy(self.proc, self.url, self.log.read_text, what="kalla", timeout=120)

    def stop(self) -> None:
        self.http.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def _copy_repository(target: Path) -> None:
    """The working tree as a fresh clone would have it (tracked and unignored files)."""
    listed = subprocess.run(
        ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
        cwd=REPO,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for raw in filter(None, listed):
        source = REPO / raw.decode()
        if source.is_file():
            (target / raw.decode()).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / raw.decode())


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory: pytest.TempPathFactory) -> Newcomer:
    home = tmp_path_factory.mktemp("newcomer") / "kalla"
    _copy_repository(home)
    fresh = Newcomer(home, "")
    result = subprocess.run(
        ["make", "demo"],
        cwd=home,
        env=fresh.env(),
        capture_output=True,
        text=True,
        timeout=1800,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    fresh.demo_output = result.stdout
    return fresh


def test_make_demo_reconciles_the_sample(newcomer: Newcomer) -> None:
    assert "control totals hold for both sides" in newcomer.demo_output
    manifest = json.loads((newcomer.home / "kalla-demo" / "run" / "manifest.json").read_text())
    assert manifest["outputs"]["matched"]["rows"] > 0
    # the install is the demo's, not the dev one: the test tools are not there
    assert not (newcomer.bin / "pytest").exists()


def test_version_and_python_dash_m(newcomer: Newcomer) -> None:
    for args in (("kalla", "--version"), ("python", "-m", "kalla", "--version")):
        result = newcomer.run(*args)
        assert (result.returncode, result.stdout) == (0, f"kalla {__version__}\n"), result.stderr


def _printed_command(newcomer: Newcomer) -> list[str]:
    """The command ``kalla demo`` tells the newcomer to run next."""
    line = next(
        line for line in newcomer.demo_output.splitlines() if line.startswith("Run it yourself:")
    )
    return line.partition(":")[2].split()


def test_kalla_run_on_the_demos_csv(newcomer: Newcomer) -> None:
    command = _printed_command(newcomer)
    assert command[:2] == ["kalla", "run"]
    result = newcomer.run(*command, "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["matched_count"] > 0
    assert (newcomer.home / "my-run" / "manifest.json").is_file()


def test_kalla_run_on_xlsx(newcomer: Newcomer) -> None:
    """An Excel workbook in place of the demo's invoices CSV (the ``xlsx`` extra)."""
    openpyxl = pytest.importorskip("openpyxl")  # this suite's tool to write the workbook
    data = newcomer.home / "kalla-demo" / "data"
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    with (data / "invoices.csv").open(newline="") as handle:
        for row in csv.reader(handle):
            sheet.append(row)
    workbook.save(data / "invoices.xlsx")
    result = newcomer.run(
        "kalla",
        "run",
        "kalla-demo/recipe.json",
        "--source",
        "invoices=kalla-demo/data/invoices.xlsx",
        "--source",
        "payments=kalla-demo/data/payments.csv",
        "--output",
        "xlsx-run",
        "--format",
        "xlsx",
        "--json",
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["matched_count"] > 0 and summary["breaks"]
    assert (newcomer.home / "xlsx-run" / "results.xlsx").is_file()  # Excel in, Excel out


@pytest.fixture
def served(newcomer: Newcomer) -> Iterator[Service]:
    service = newcomer.start("serve")
    yield service
    service.stop()


def test_kalla_serve_answers_the_readmes_calls(newcomer: Newcomer, served: Service) -> None:
    """README, "The services": register the demo's recipe, run it with its two files, read
    its results, download them as Excel."""
    recipe = json.loads((newcomer.home / "kalla-demo" / "recipe.json").read_text())
    recipe["recipe_id"] = f"demo-{uuid.uuid4().hex[:6]}"
    assert served.http.post("/api/recipes", json=recipe).status_code == 201
    data = newcomer.home / "kalla-demo" / "data"
    files = {
        alias: (f"{alias}.csv", (data / f"{alias}.csv").read_bytes(), "text/csv")
        for alias in ("invoices", "payments")
    }
    created = served.http.post("/api/runs", data={"recipe_id": recipe["recipe_id"]}, files=files)
    assert created.status_code == 202, created.text
    run_id = created.json()["id"]
    deadline = time.monotonic() + 120
    while (run := served.http.get(f"/api/runs/{run_id}").json())["status"] != "completed":
        assert run["status"] in ("queued", "running"), run
        assert time.monotonic() < deadline, run
        time.sleep(0.2)
    page = served.http.get(f"/api/runs/{run_id}/results/unmatched_right", params={"limit": 50})
    assert page.status_code == 200 and page.json()["rows"], page.text
    excel = served.http.get(f"/api/runs/{run_id}/results/matched", params={"format": "xlsx"})
    assert excel.status_code == 200 and excel.content[:2] == b"PK"


def test_kalla_worker_answers_the_readmes_job(newcomer: Newcomer) -> None:
    """README, "kalla worker": its job, with the demo's files in ``runs/inbox/`` for the
    left and right sources; the outputs land where the README says."""
    readme = (newcomer.home / "README.md").read_text()
    example = readme[readme.index("curl -X POST localhost:50050/api/jobs") :]
    body: dict[str, Any] = json.loads(example[example.index("-d '") + 4 : example.index("}'") + 1])
    inbox = newcomer.home / "runs" / "inbox"
    inbox.mkdir(parents=True, exist_ok=True)
    for name in ("invoices.csv", "payments.csv"):
        shutil.copy(newcomer.home / "kalla-demo" / "data" / name, inbox / name)
    body["sources"][0]["uri"] = "runs/inbox/invoices.csv"
    assert body["sources"][1]["uri"] == "runs/inbox/payments.csv"
    landed = re.search(r"The outputs land in `KALLA_OUTPUT_ROOT/[^`]+` \(`([^`]+)`", readme)
    assert landed is not None
    worker = newcomer.start("worker")
    try:
        assert worker.http.get("/ready").status_code == 200
        response = worker.http.post("/api/jobs", json=body)
        assert response.json() == {"run_id": body["run_id"], "status": "accepted"}
        deadline = time.monotonic() + 120
        while (view := worker.http.get(f"/api/jobs/{body['run_id']}").json())["status"] in (
            "queued",
            "running",
        ):
            assert time.monotonic() < deadline, view
            time.sleep(0.2)
        assert view["status"] == "completed", view
    finally:
        worker.stop()
    assert (newcomer.home / landed.group(1) / "manifest.json").is_file()


@pytest.mark.postgres
def test_kalla_run_with_a_postgresql_source(newcomer: Newcomer) -> None:
    """The README's recipe shape: invoices in PostgreSQL (the ``postgres`` extra), with the
    password as a placeholder; unset, the error names it."""
    psycopg = pytest.importorskip("psycopg")
    name = f"kalla_newcomer_{uuid.uuid4().hex[:8]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(f"{PG_SERVER}/{name}") as conn:
            conn.execute(
                "CREATE TABLE invoices (invoice_id text PRIMARY KEY, customer_id text, "
                "amount numeric(12, 2), currency text, issue_date date, description text)"
            )
            lines = (newcomer.home / "kalla-demo" / "data" / "invoices.csv").read_text()
            with conn.cursor().copy("COPY invoices FROM STDIN WITH (FORMAT csv, HEADER)") as copy:
                copy.write(lines)
        recipe = json.loads((newcomer.home / "kalla-demo" / "recipe.json").read_text())
        user_host = PG_SERVER.partition("://")[2]
        recipe["sources"]["left"] = {
            "alias": "invoices",
            "type": "postgres",
            "uri": f"postgres://{user_host.replace('@', ':${PGPASSWORD}@', 1)}/{name}"
            "?table=invoices",
            "primary_key": ["invoice_id"],
        }
        (newcomer.home / "pg-recipe.json").write_text(json.dumps(recipe))
        args = (
            "kalla",
            "run",
            "pg-recipe.json",
            "--source",
            "payments=kalla-demo/data/payments.csv",
        )
        unset = newcomer.run(*args, "--output", "pg-run-unset")
        assert unset.returncode == 3
        assert "error: source 'invoices': ${PGPASSWORD} is not set" in unset.stderr
        done = newcomer.run(*args, "--output", "pg-run", "--json", PGPASSWORD="not-checked-x")
        assert done.returncode == 0, done.stderr
        assert json.loads(done.stdout)["matched_count"] > 0
        assert "not-checked-x" not in (newcomer.home / "pg-run" / "manifest.json").read_text()
    finally:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
