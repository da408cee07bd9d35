"""Where a job's events go: an ``EventSink`` per transport.

The runner calls a job's sink in order, from the thread that watches the job: ``staging``
and ``matching`` any number of times, then exactly one of ``completed`` or ``failed``. A
sink that raises is logged and ignored; it never fails the job. Implementations: the HTTP
worker's signed callbacks (``worker/http.py``), the app's run lifecycle
(``app/dispatch.py``).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

from kalla.errors import KallaError
from kalla.recipe.models import (
    CompletionCallback,
    ErrorCallback,
    Job,
    MatchingProgress,
    StagingProgress,
)


class EventSink(Protocol):
    """The four events of a job, in seed 002's payloads."""

    def staging(self, event: StagingProgress) -> None: ...

    def matching(self, event: MatchingProgress) -> None: ...

    def completed(self, event: CompletionCallback) -> None: ...

    def failed(self, event: ErrorCallback, error: KallaError) -> None: ...


@runtime_checkable
class GatesStart(Protocol):
    """Optional: a sink that decides, as the job leaves the queue, whether it still runs."""

    def may_start(self, job: Job) -> bool:
        """False skips the job without an event (its run ended while it waited)."""
        ...
