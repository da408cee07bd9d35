"""Waiting for a Kalla process the tests started (``kalla serve``, ``kalla worker``) to answer:
one loop for every suite that starts one."""

from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable
from typing import Any

import httpx


def wait_until_healthy(
    proc: subprocess.Popen[Any],
    url: str,
    log: Callable[[], str],
    *,
    what: str,
    timeout: float = 60.0,
) -> None:
    """Poll ``url``/health until it answers 200. AssertionError with the process's ``log()``
    when the process exits first or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        assert proc.poll() is None, f"{what} exited at start:\n{log()}"
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/health", timeout=5, trust_env=False).status_code == 200:
                return
        assert time.monotonic() < deadline, f"{what} did not start:\n{log()}"
        time.sleep(0.1)
