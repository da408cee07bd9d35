"""Where tools run: in this process (the CLI, tests) or in a child process (the app).

User files and user SQL are parsed and run by the tools; a service must never do that in
its own process, so the app runs each tool call in a child process of the job runner's
(``kalla.runner.child.run_in_child``: forked from a preloaded server, its memory capped by
the OS like a job's). A child that dies (a crash in a reader, the memory cap) or runs past
``timeout`` ends that call with a named error; the app stays up.
"""

from __future__ import annotations

import time
from typing import Any, Protocol

from kalla.agent.context import ToolContext
from kalla.agent.tools import run_tool
from kalla.errors import JobTimeoutError, KallaError
from kalla.settings import Settings, get_settings


class ToolRunner(Protocol):
    def run(self, name: str, arguments: Any, context: ToolContext) -> dict[str, Any]: ...


class InProcessTools:
    """Tools in the calling process: for the CLI, which reads the user's own files."""

    def run(self, name: str, arguments: Any, context: ToolContext) -> dict[str, Any]:
        return run_tool(name, arguments, context)


def _in_child(channel: Any, name: str, arguments: Any, context: dict[str, Any]) -> dict[str, Any]:
    return run_tool(name, arguments, context)


class ChildProcessTools:
    """Each tool call in a child process, at most ``timeout`` seconds."""

    def __init__(self, settings: Settings | None = None, timeout: float = 900.0) -> None:
        self.settings = settings or get_settings()
        self.timeout = timeout

    def run(self, name: str, arguments: Any, context: ToolContext) -> dict[str, Any]:
        from kalla.runner.child import run_in_child  # the forkserver is the runner's

        deadline = time.monotonic() + self.timeout

        def too_long() -> KallaError | None:
            if time.monotonic() < deadline:
                return None
            return JobTimeoutError(f"{name} took longer than {self.timeout:.0f} s and was stopped")

        try:
            result: dict[str, Any] = run_in_child(
                _in_child,
                name,
                arguments,
                context.to_dict(),
                settings=self.settings,
                what=f"the process running {name}",
                should_stop=too_long,
            )
        except KallaError as exc:  # a crash, the memory cap or the time limit, named
            return {"error": exc.message, "problems": list(exc.problems)}
        return result

    def close(self) -> None:
        """Nothing to release: each call's process ends with it."""
