"""Shared helpers for the app tests (no tests here): real server processes, data, signing.

Every app and worker runs as its own process on a free loopback port, exactly as
``kalla serve`` / ``kalla worker`` start in production; their logs go to ``LOG_DIR`` and every
HTTP response a test receives is kept in ``RESPONSES``, so ``test_app_zz_secrets`` can grep
them all for the test passwords at the end of the session.
"""

from __future__ import annotations

import atexit
import contextlib
import csv
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from callback_receiver import free_port
from processes import wait_until_healthy

ROOT = Path(__file__).resolve().parents[2]
LOG_DIR = Path(tempfile.mkdtemp(prefix="kalla-app-logs-"))
if not os.environ.get("KALLA_KEEP_TEST_LOGS"):  # set it to keep the processes' logs
    atexit.register(shutil.rmtree, LOG_DIR, ignore_errors=True)
RESPONSES: list[bytes] = []
CALLBACK_SECRET = "cb-secret-for-tests-7f3a"
API_TOKEN = "api-token-for-tests-19c2"
# Passwords the tests put in URIs; none may ever appear in a log line or a response.
PG_PASSWORD = "Pw-Kalla-Secret-4b1e9f"
OTHER_PASSWORD = "Hunter2-Kalla-77ad"
PASSWORDS = (PG_PASSWORD, OTHER_PASSWORD)
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/postgres"

_CLEAN_ENV = ("DATABASE_URL", "WORKER_URL", "STAGING_PATH", "NATS_URL")


def _record(response: httpx.Response) -> None:
    response.read()
    RESPONSES.append(response.content)


def client(base_url: str, token: str | None = None, timeout: float = 30.0) -> httpx.Client:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.Client(
        base_url=base_url,
        headers=headers,
        timeout=timeout,
        trust_env=False,
        event_hooks={"response": [_record]},
    )


def base_env(workdir: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("KALLA_") and k not in _CLEAN_ENV and not k.startswith("AWS_")
    }
    env.update(
        {
            "STAGING_PATH": str(workdir / "staging"),
            "KALLA_OUTPUT_ROOT": str(workdir / "runs"),
            "KALLA_MEMORY_LIMIT": "512M",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


class Process:
    """A ``kalla`` subcommand running as a real process, logging to ``LOG_DIR``."""

    def __init__(self, name: str, args: list[str], env: dict[str, str], cwd: Path) -> None:
        self.name = name
        self.args = args
        self.env = env
        self.cwd = cwd
        self.port = int(args[args.index("--port") + 1])
        self.url = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = LOG_DIR / f"{name}-{uuid.uuid4().hex[:8]}.log"

    def start(self, timeout: float = 30.0) -> Process:
        self.cwd.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - the child keeps it open
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "kalla.cli", *self.args],
            env=self.env,
            cwd=self.cwd,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        wait_until_healthy(self.proc, self.url, self.log, what=self.name, timeout=timeout)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def env_path(self, name: str) -> Path:
        return Path(self.env[name])

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30.0) -> int | None:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else None
        self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def kill(self) -> None:
        self.stop(signal.SIGKILL)


def app_process(
    workdir: Path, *, database_url: str | None = None, port: int | None = None, **env: str
) -> Process:
    port = port or free_port()
    extra = {"KALLA_CALLBACK_SECRET": CALLBACK_SECRET, **env}
    extra["DATABASE_URL"] = database_url or f"sqlite:///{workdir / 'kalla.db'}"
    return Process(
        "app", ["serve", "--port", str(port)], base_env(workdir, **extra), workdir / "app-cwd"
    )


def worker_process(workdir: Path, *, port: int | None = None, **env: str) -> Process:
    port = port or free_port()
    extra = {"KALLA_CALLBACK_SECRET": CALLBACK_SECRET, "KALLA_CALLBACK_RETRY_SECONDS": "60"}
    extra.update(env)
    return Process(
        "worker",
        ["worker", "--port", str(port)],
        base_env(workdir, **extra),
        workdir / "worker-cwd",
    )


# --- PostgreSQL -------------------------------------------------------------------------------


@contextlib.contextmanager
def postgres_database(prefix: str = "kalla_app_test") -> Iterator[str]:
    """A fresh database on the local server (trust auth); its name. Dropped afterwards."""
    psycopg = pytest.importorskip("psycopg")
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        admin = psycopg.connect(PG_ADMIN, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        pytest.fail(f"PostgreSQL is not reachable on 127.0.0.1:5432: {exc}")
    with admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        with psycopg.connect(PG_ADMIN, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def pg_url(database: str, *, password: str | None = None, driver: str = "postgres") -> str:
    auth = f"postgres:{password}" if password else "postgres"
    return f"{driver}://{auth}@127.0.0.1:5432/{database}"


def pg_execute(database: str, *statements: str) -> None:
    import psycopg

    with psycopg.connect(pg_url(database, driver="postgresql"), autocommit=True) as conn:
        for statement in statements:
            conn.execute(statement)


# --- data and recipes -------------------------------------------------------------------------


def write_csv(path: Path, header: list[str], rows: list[list[Any]]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def invoice_payment_files(directory: Path, n: int = 40) -> tuple[Path, Path]:
    """``n`` invoices; payments for the even ones (one 1 cent off), plus two strays.

    Matched: n/2 pairs; unmatched left: the n/2 odd invoices; unmatched right: 2 strays.
    """
    invoices = [[f"INV-{i:05d}", f"Customer {i % 7}", f"{100 + i}.{i % 100:02d}"] for i in range(n)]
    payments = [
        [f"PAY-{i:05d}", f"INV-{i:05d}", f"{100 + i}.{i % 100:02d}", f"2024-01-{1 + i % 28:02d}"]
        for i in range(0, n, 2)
    ]
    payments[0][2] = f"{100:d}.01"  # within tolerance
    payments += [["PAY-X1", "INV-NOPE", "5.00", "2024-02-01"], ["PAY-X2", "", "6.00", "2024-02-02"]]
    return (
        write_csv(directory / "invoices.csv", ["invoice_id", "customer", "amount"], invoices),
        write_csv(
            directory / "payments.csv",
            ["payment_id", "reference_number", "amount", "date"],
            payments,
        ),
    )


def file_recipe(recipe_id: str = "inv-pay", **changes: Any) -> dict[str, Any]:
    recipe: dict[str, Any] = {
        "recipe_id": recipe_id,
        "name": "Invoices to payments",
        "description": "Match invoices to payments by reference, amounts within 0.02",
        "match_sql": (
            "SELECT i.invoice_id, p.payment_id, i.amount, p.amount FROM invoices i "
            "JOIN payments p ON i.invoice_id = p.reference_number "
            "AND tolerance_match(i.amount, p.amount, 0.02)"
        ),
        "match_description": "reference equal, amount within 0.02",
        "sources": {
            "left": {
                "alias": "invoices",
                "type": "file",
                "schema": ["invoice_id", "amount"],
                "primary_key": ["invoice_id"],
            },
            "right": {
                "alias": "payments",
                "type": "file",
                "schema": ["payment_id", "reference_number", "amount"],
                "primary_key": ["payment_id"],
            },
        },
    }
    recipe.update(changes)
    return recipe


def slow_recipe(database: str, recipe_id: str, *, seconds: float) -> dict[str, Any]:
    """A recipe over two PostgreSQL tables whose left side is a view that takes ``seconds``
    to read: a run of it stays in staging long enough to be cancelled."""
    pg_execute(
        database,
        "CREATE TABLE IF NOT EXISTS invoices (invoice_id text primary key, amount numeric(10,2))",
        "CREATE TABLE IF NOT EXISTS payments (payment_id text primary key,"
        " reference_number text, amount numeric(10,2))",
        f"CREATE OR REPLACE VIEW slow_invoices AS SELECT i.* FROM invoices i,"
        f" pg_sleep({seconds}) AS s",
    )
    recipe = file_recipe(recipe_id)
    recipe["sources"] = {
        "left": {
            "alias": "invoices",
            "type": "postgres",
            "uri": pg_url(database) + "?table=slow_invoices",
            "primary_key": ["invoice_id"],
        },
        "right": {
            "alias": "payments",
            "type": "postgres",
            "uri": pg_url(database) + "?table=payments",
            "primary_key": ["payment_id"],
        },
    }
    return recipe


def upload(
    http: httpx.Client,
    recipe_id: str,
    files: dict[str, Path],
    *,
    version: int | None = None,
) -> httpx.Response:
    data = {"recipe_id": recipe_id}
    if version is not None:
        data["version"] = str(version)
    handles = {alias: (path.name, path.read_bytes(), "text/csv") for alias, path in files.items()}
    return http.post("/api/runs", data=data, files=handles)


def wait_for_run(
    http: httpx.Client,
    run_id: str,
    *,
    statuses: tuple[str, ...] = ("completed", "failed", "cancelled"),
    timeout: float = 60.0,
) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    run: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = http.get(f"/api/runs/{run_id}")
        assert response.status_code == 200, response.text
        run = response.json()
        if run["status"] in statuses:
            return run
        time.sleep(0.1)
    raise AssertionError(f"run {run_id} still {run.get('status')} after {timeout}s: {run}")


# --- callbacks --------------------------------------------------------------------------------


def signed(
    body: dict[str, Any], *, secret: str = CALLBACK_SECRET, timestamp: int | None = None
) -> tuple[bytes, dict[str, str]]:
    from kalla.worker.callbacks import sign

    raw = json.dumps(body, separators=(",", ":")).encode()
    ts = int(time.time()) if timestamp is None else timestamp
    return raw, {
        "Content-Type": "application/json",
        "X-Kalla-Timestamp": str(ts),
        "X-Kalla-Signature": sign(secret, raw, ts),
    }
