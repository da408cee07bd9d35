"""The one status vocabulary of a job (worker) and of a run (app)."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """queued → running → completed | failed | cancelled; the last three are final."""

    QUEUED = "queued"
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in TERMINAL


IN_FLIGHT = (JobStatus.QUEUED, JobStatus.RUNNING)
TERMINAL = (JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED)
