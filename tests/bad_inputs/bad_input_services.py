"""Services for the bad-input corpus: ``kalla serve`` (embedded, SQLite), ``kalla worker``
and a callback receiver, each a real process on loopback; nothing is mocked. The fixtures
in conftest.py start each once per module, only when a case needs it.

Every process gets canary credentials in its environment; the test asserts that none of
them ever shows up in an answer, a log line or an output.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx

CANARIES = {
    "AWS_SECRET_ACCESS_KEY": "canary-aws-5ecret-do-not-print",
    "KALLA_CALLBACK_SECRET": "canary-callback-5ecret-do-not-print",
    "KALLA_TEST_CANARY_PASSWORD": "canary-pg-5ecret-do-not-print",
}
START_TIMEOUT = 60.0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


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
class Receiver:
    """Records every callback POST (path and body) and answers 200."""

    port: int = field(default_factory=free_port)
    calls: list[tuple[str, bytes]] = field(default_factory=list)
    server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/api/runs/callback") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                receiver.calls.append((self.path, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def paths_for(self, marker: str) -> list[str]:
        return [path for path, body in list(self.calls) if marker.encode() in body]

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()


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
        deadline = time.monotonic() + START_TIMEOUT
        with httpx.Client(base_url=self.url, timeout=5, trust_env=False) as http:
            while True:
                assert self.proc.poll() is None, f"{self.command} exited:\n{self.log()}"
                try:
                    if http.get("/health").status_code == 200:
                        return self
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, f"{self.command} did not start:\n{self.log()}"
                time.sleep(0.1)

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
