"""The callback receiver the worker tests post to: a real loopback HTTP server that records
every POST (path, headers, body) and answers a chosen status. One copy for every suite that
watches a worker's callbacks (``pythonpath`` in pyproject.toml puts this folder on the path).
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass(frozen=True)
class Call:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def json(self) -> dict[str, Any]:
        return dict(json.loads(self.body))

    @property
    def event(self) -> str:
        return self.headers["x-kalla-event"]

    @property
    def sequence(self) -> int:
        return int(self.headers["x-kalla-sequence"])

    @property
    def run_id(self) -> str:
        return self.headers["x-kalla-run-id"]


class Receiver:
    """Records every POST and answers ``status``. The port is chosen at once, so a test can
    hand out its URL before the server starts (a receiver that is down, then up)."""

    def __init__(self, port: int | None = None, status: int = 200) -> None:
        self.port = port or free_port()
        self.status = status
        self.calls: list[Call] = []
        self.cond = threading.Condition()
        self.server: ThreadingHTTPServer | None = None

    def url(self, path: str = "/api/runs/callback") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def start(self) -> Receiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                call = Call(
                    self.path, {k.lower(): v for k, v in self.headers.items()}, body, time.time()
                )
                with receiver.cond:
                    receiver.calls.append(call)
                    receiver.cond.notify_all()
                self.send_response(receiver.status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()

    @property
    def paths(self) -> list[str]:
        with self.cond:
            return [c.path for c in self.calls]

    def paths_for(self, marker: str) -> list[str]:
        """The paths of the calls whose body mentions ``marker`` (a run id)."""
        with self.cond:
            return [c.path for c in self.calls if marker.encode() in c.body]

    def for_run(self, run_id: str) -> list[Call]:
        with self.cond:
            return [c for c in self.calls if c.run_id == run_id]

    def wait(self, predicate: Callable[[], bool], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self.cond:
            while not predicate():
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self.cond.wait(left)
        return True

    def wait_for(self, path: str, timeout: float = 60) -> list[str]:
        """Every path posted so far, once ``path`` is among them."""
        assert self.wait(lambda: any(c.path == path for c in self.calls), timeout), self.paths
        return self.paths

    def final(self, run_id: str, timeout: float = 60.0) -> Call:
        def done() -> bool:
            return any(c.event in ("complete", "error") for c in self.calls if c.run_id == run_id)

        assert self.wait(done, timeout), f"no final callback for {run_id}: {self.for_run(run_id)}"
        return next(c for c in self.for_run(run_id) if c.event in ("complete", "error"))
