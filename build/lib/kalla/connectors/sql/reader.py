"""The parallel, cancellable reader: partition queries on a pool, handed over in order.

Each query runs on a connection of its own through the dialect's Arrow reader (``Fetch``),
which releases the GIL while it reads. At most ``window`` queries run at a time; results are
handed over in query order, so the staged rows, and their hash, are the same on every run.
While a caller waits, a heartbeat every half second gives a cancelled job (or Ctrl-C) its
chance; the queries in flight are then cancelled on the server (``Interrupts``) instead of
being waited for.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager, suppress

import pyarrow as pa

from kalla.connectors.base import Progress
from kalla.errors import KallaError, SourceError

# How often a partitioned read checks, between batches, whether it should stop.
HEARTBEAT_SECONDS = 0.5


class Interrupts:
    """What stops the queries in flight: each reader registers its cancel while it runs."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cancels: dict[int, Callable[[], None]] = {}
        self._stopped = False

    @contextmanager
    def registered(self, cancel: Callable[[], None]) -> Iterator[None]:
        with self._lock:
            if self._stopped:
                raise SourceError("the read was interrupted")
            self._cancels[id(cancel)] = cancel
        try:
            yield
        finally:
            with self._lock:
                self._cancels.pop(id(cancel), None)

    def interrupt(self) -> None:
        with self._lock:
            self._stopped = True
            cancels = list(self._cancels.values())
        for cancel in cancels:
            with suppress(Exception):  # the query may have just ended
                cancel()


Fetch = Callable[[str, str, Callable[[int], None], Interrupts], pa.Table]
"""``(url, query, rows_read, running) -> rows``: one query on a connection of its own."""


class OrderedReads:
    """Queries run by a pool, at most ``window`` at a time, handed over in query order.

    Progress counts rows against ``expected`` (the catalog's estimate). A driver's error
    becomes ``read_error(exc)`` (the dialect's message, without the password); a KallaError
    raised in a progress callback (a cancelled job) or a KeyboardInterrupt passes through.
    """

    def __init__(
        self,
        fetch: Fetch,
        url: str,
        queries: Sequence[str],
        *,
        window: int,
        progress: Progress,
        expected: int,
        read_error: Callable[[Exception], KallaError],
    ) -> None:
        self.fetch = fetch
        self.url = url
        self.queries = list(queries)
        self.window = max(window, 1)
        self.progress = progress
        self.expected = max(expected, 1)
        self.read_error = read_error
        self.running = Interrupts()
        self.pool = ThreadPoolExecutor(max_workers=self.window)
        self.pending: deque[Future[pa.Table]] = deque()
        self.submitted = 0
        self.rows = 0
        self.lock = threading.Lock()
        self._fill()

    def __enter__(self) -> OrderedReads:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def next(self) -> pa.Table:
        """The next query's rows, in order."""
        future = self.pending.popleft()
        try:
            self._await([future, *self.pending])
            table = future.result()
        except BaseException as exc:
            self.close()
            if isinstance(exc, KallaError) or not isinstance(exc, Exception):
                raise  # a cancelled job, Ctrl-C, or our own error
            raise self.read_error(exc) from None
        self._fill()
        return table

    def all(self) -> list[pa.Table]:
        return [self.next() for _ in self.queries]

    def close(self) -> None:
        self.running.interrupt()  # a no-op once every query has ended
        self.pool.shutdown(wait=True, cancel_futures=True)

    def _fill(self) -> None:
        while self.submitted < len(self.queries) and len(self.pending) < self.window:
            query = self.queries[self.submitted]
            self.pending.append(
                self.pool.submit(self.fetch, self.url, query, self._rows_read, self.running)
            )
            self.submitted += 1

    def _rows_read(self, count: int) -> None:
        with self.lock:
            self.rows += count
            self.progress(self.rows / self.expected)

    def _await(self, futures: list[Future[pa.Table]]) -> None:
        """Until the first future is done; an error in any of them is raised at once."""
        first, watching = futures[0], set(futures)
        while not first.done():
            finished, watching = wait(watching, HEARTBEAT_SECONDS, return_when=FIRST_COMPLETED)
            for future in finished:
                if (error := future.exception()) is not None:
                    raise error
            if not finished:
                self.progress.heartbeat()
