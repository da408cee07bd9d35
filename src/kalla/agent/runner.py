"""Where tools run: in this process (the CLI, tests) or in a child process (the app).

User files and user SQL are parsed and run by the tools; a service must never do that in
its own process, so the app runs each tool call in a pool of "spawn" child processes. A
child that dies (a crash in a reader, the OS ending it for memory) ends that call with a
named error; the pool is rebuilt and the app stays up.
"""

from __future__ import annotations

import multiprocessing
import threading
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from concurrent.futures.process import BrokenProcessPool
from typing import Any, Protocol

from kalla.agent.context import ToolContext
from kalla.agent.tools import run_tool


class ToolRunner(Protocol):
    def run(self, name: str, arguments: Any, context: ToolContext) -> dict[str, Any]: ...


class InProcessTools:
    """Tools in the calling process: for the CLI, which reads the user's own files."""

    def run(self, name: str, arguments: Any, context: ToolContext) -> dict[str, Any]:
        return run_tool(name, arguments, context)


def _in_child(name: str, arguments: Any, context: dict[str, Any]) -> dict[str, Any]:
    return run_tool(name, arguments, context)


class ChildProcessTools:
    """Each tool call in a spawned child process, at most ``timeout`` seconds."""

    def __init__(self, workers: int = 2, timeout: float = 900.0) -> None:
        self.workers = workers
        self.timeout = timeout
        self._pool: ProcessPoolExecutor | None = None
        self._lock = threading.Lock()

    def _executor(self) -> ProcessPoolExecutor:
        with self._lock:
            if self._pool is None:
                self._pool = ProcessPoolExecutor(
                    max_workers=self.workers, mp_context=multiprocessing.get_context("spawn")
                )
            return self._pool

    def _reset(self, pool: ProcessPoolExecutor) -> None:
        with self._lock:
            if self._pool is pool:
                self._pool = None
        # A pool has no public way to stop a running task: end its processes.
        for process in list(getattr(pool, "_processes", {}).values()):
            process.kill()
        pool.shutdown(wait=False, cancel_futures=True)

    def run(self, name: str, arguments: Any, context: ToolContext) -> dict[str, Any]:
        pool = self._executor()
        try:
            future = pool.submit(_in_child, name, arguments, context.to_dict())
            return future.result(timeout=self.timeout)
        except FutureTimeout:
            self._reset(pool)
            return {
                "error": f"{name} took longer than {self.timeout:.0f} s and was stopped",
                "problems": [],
            }
        except BrokenProcessPool:
            self._reset(pool)
            return {
                "error": f"{name} ended abruptly (its process crashed or ran out of memory); "
                "the data may be too large or malformed",
                "problems": [],
            }

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
