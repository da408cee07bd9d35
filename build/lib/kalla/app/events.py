"""In-process notice that a run changed, so a live progress stream wakes at once.

The lifecycle calls :meth:`RunEvents.publish` (from any thread) after it applied an event;
each open stream waits on its own ``asyncio.Event``. A notice carries no data: the stream
reads the run from the store, which stays the one source of truth. A stream also re-reads
on a short timeout, so a run changed by another app instance still shows up.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from contextlib import contextmanager


class RunEvents:
    """Run id → the streams waiting on it."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._waiters: dict[str, set[tuple[asyncio.AbstractEventLoop, asyncio.Event]]] = {}

    def publish(self, run_id: str) -> None:
        """Wake every stream of ``run_id``; safe from worker threads."""
        with self._lock:
            waiters = list(self._waiters.get(run_id, ()))
        for loop, event in waiters:
            if not loop.is_closed():
                loop.call_soon_threadsafe(event.set)

    @contextmanager
    def subscribe(self, run_id: str) -> Iterator[asyncio.Event]:
        """An event set on each change of ``run_id``; the caller clears it after reading."""
        entry = (asyncio.get_running_loop(), asyncio.Event())
        with self._lock:
            self._waiters.setdefault(run_id, set()).add(entry)
        try:
            yield entry[1]
        finally:
            with self._lock:
                waiters = self._waiters.get(run_id)
                if waiters is not None:
                    waiters.discard(entry)
                    if not waiters:
                        del self._waiters[run_id]

    def watched(self) -> int:
        """How many runs have a stream open (for tests and metrics)."""
        with self._lock:
            return len(self._waiters)
