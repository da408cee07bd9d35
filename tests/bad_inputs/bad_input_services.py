"""Services for the bad-input corpus: ``kalla serve`` (embedded, SQLite), ``kalla worker``
and a callback receiver, each a real process on loopback; nothing is mocked. The fixtures
in conftest.py start each once per module, only when a case needs it.

Every process gets canary credentials in its environment; the test asserts that none of
them ever shows up in an answer, a log line or an output.
"""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from callback_receiver import free_port
from processes import wait_until_healthy

CANARIES = {
    "AWS_SECRET_ACCESS_KEY": "canary-aws-5ecret-do-not-print",
    "KALLA_CALLBACK_SECRET": "canary-callback-5ecret-do-not-print",
    "KALLA_TEST_CANARY_PASSWORD": "canary-pg-5ecret-do-not-print",
}
START_TIMEOUT = 60.0


def clean_env(root: Path, **extra: str) -> dict[str, str]:
    """The environment without the developer's KALLA_*/AWS_* settings, plus the canaries."""
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("KALLA_", "AWS_", "DATABASE_URL", "WORKER_URL", "NATS_URL"))
    }
    env.update(CANARIES)
    env.update(
        {
            "STAGING_PATH": str(root / "staging"),
            "KALLA_OUTPUT_ROOT": str(root / "runs"),
            "KALLA_MEMORY_LIMIT": "512M",
            "KALLA_JOB_MEMORY_HEADROOM": "1G",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra)
    return env


@dataclass
class Service:
    """``kalla serve`` or ``kalla worker`` as a real process, its output in ``log_path``."""

    command: str
    root: Path
    env: dict[str, str]
    port: int = field(default_factory=free_port)
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.root / f"{self.command}.log"

    def start(self) -> Service:
        self.root.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "kalla.cli", self.command, "--port", str(self.port)],
                env=self.env,
                cwd=self.root,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        wait_until_healthy(self.proc, self.url, self.log, what=self.command, timeout=START_TIMEOUT)
        return self

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=60, trust_env=False)

    def stop(self) -> int | None:
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.terminate()
        try:
            return self.proc.wait(30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()
