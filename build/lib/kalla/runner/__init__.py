"""One job runner for every transport, each job in a child process of its own.

``JobRunner`` (queue, concurrency, cancellation, drain) takes a ``Job`` and an
``EventSink``; ``run_job`` is the job itself, knowing nothing of transports or processes;
``child.run_in_child`` is the process boundary (crash isolation, the OS memory cap);
``JobStatus`` is the status vocabulary the worker and the app share.
"""

from kalla.errors import JobCancelled
from kalla.runner.events import EventSink, GatesStart
from kalla.runner.job import CancelToken, run_job
from kalla.runner.runner import JobRecord, JobRunner, ReportsStatus, RunnerObserver
from kalla.runner.status import IN_FLIGHT, TERMINAL, JobStatus

__all__ = [
    "IN_FLIGHT",
    "TERMINAL",
    "CancelToken",
    "EventSink",
    "GatesStart",
    "JobCancelled",
    "JobRecord",
    "JobRunner",
    "JobStatus",
    "ReportsStatus",
    "RunnerObserver",
    "run_job",
]
