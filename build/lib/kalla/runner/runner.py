"""``JobRunner``: the one job runner behind every transport (the HTTP worker and the app's
embedded mode today; a NATS consumer would be one more): a bounded queue,
``KALLA_WORKER_CONCURRENCY`` job threads, job records, cancellation, a shutdown drain and
the last-resort error handling.

A transport hands it a ``Job`` and an ``EventSink``; a job thread takes the job from the
queue, runs it in a child process of its own (``child.run_in_child`` → ``job.run_job``) and
passes the events coming up the pipe to the record and then to the sink. One lock guards
every record; sinks are called outside it.
"""

from __future__ import annotations

import logging
import math
import queue
import shutil
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, runtime_checkable
from uuid import UUID

from kalla.errors import (
    ConflictError,
    JobCancelled,
    JobTimeoutError,
    KallaError,
    NotFoundError,
    RecipeError,
    UnavailableError,
)
from kalla.recipe.models import (
    CompletionCallback,
    ErrorCallback,
    Job,
    MatchingProgress,
    StagingProgress,
)
from kalla.runner import child
from kalla.runner.events import EventSink, GatesStart
from kalla.runner.job import (
    check_local_sources,
    output_dir_for,
    remove_partial_outputs,
    run_job_in_child,
    staging_dir_for,
)
from kalla.runner.status import JobStatus
from kalla.secrets import Scrubber
from kalla.settings import Settings

log = logging.getLogger("kalla.runner")

HISTORY = 10_000  # finished jobs remembered (status queries, duplicate run_ids)
DEFAULT_JOB_SECONDS = 5.0  # Retry-After estimate before any job has finished


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@runtime_checkable
class ReportsStatus(Protocol):
    """Optional: a sink that adds fields of its own to the job's status view."""

    def status_fields(self) -> dict[str, Any]: ...


class RunnerObserver(Protocol):
    """Counts what the runner does (the worker's Prometheus metrics implement it)."""

    def rejected(self, reason: str) -> None:
        """A submission refused: ``invalid``, ``queue_full`` or ``shutting_down``."""

    def stage_ended(self, stage: str, seconds: float) -> None:
        """``staging`` (both sources) or ``matching`` (to written outputs) ended well."""

    def job_ended(self, record: JobRecord) -> None:
        """The job's final state is recorded and its process is gone."""


@dataclass
class JobRecord:
    job: Job
    sink: EventSink
    output_dir: Path
    status: JobStatus = JobStatus.QUEUED
    stage: str | None = None
    source: str | None = None
    progress: float = 0.0
    result: dict[str, Any] | None = None
    error: str | None = None
    error_kind: str | None = None
    submitted_at: str = field(default_factory=_now)
    started_at: str | None = None
    finished_at: str | None = None
    started: float = 0.0  # monotonic
    stage_started: float = 0.0
    seconds: float | None = None  # from start to the final event
    stop: KallaError | None = None  # why the runner asked the running job to stop
    staged_rows: tuple[int, int] | None = None  # (left, right), once completed

    @property
    def run_id(self) -> UUID:
        return self.job.run_id

    def doing(self) -> str:
        """What the job was doing, for an error that names where it died."""
        if self.stage == "staging" and self.source:
            return f"while staging source '{self.source}'"
        if self.stage is not None:
            return f"while {self.stage}"
        return "while starting"

    def view(self) -> dict[str, Any]:
        """The job's status (no URIs: they may hold credentials)."""
        view: dict[str, Any] = {
            "run_id": str(self.run_id),
            "status": self.status.value,
            "stage": self.stage,
            "source": self.source,
            "progress": self.progress,
            "cancel_requested": self.stop is not None and not self.status.finished,
            "result": self.result,
            "error": self.error,
            "error_kind": self.error_kind,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
        }
        if isinstance(self.sink, ReportsStatus):
            view.update(self.sink.status_fields())
        return view


class JobRunner:
    """Accepts jobs, runs each in a child process on ``concurrency`` threads, remembers
    their status. ``name`` ("the worker", "the app") is how errors refer to the service."""

    def __init__(
        self,
        settings: Settings,
        *,
        name: str = "the worker",
        observer: RunnerObserver | None = None,
    ) -> None:
        self.settings = settings
        self.name = name
        self.observer = observer
        self._lock = threading.Lock()
        self._jobs: OrderedDict[UUID, JobRecord] = OrderedDict()
        self._queue: queue.Queue[JobRecord | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._queued = 0
        self._running = 0
        self._avg_seconds: float | None = None
        self._stopping = False
        self._stopped = threading.Event()

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def concurrency(self) -> int:
        return self.settings.worker_concurrency

    @property
    def capacity(self) -> int:
        return self.concurrency + self.settings.worker_queue_size

    @property
    def stopping(self) -> bool:
        return self._stopping

    @property
    def queued(self) -> int:
        return self._queued

    @property
    def running(self) -> int:
        return self._running

    def start(self) -> None:
        for root in (self.settings.staging_path, self.settings.output_root):
            try:
                Path(root).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                log.warning("cannot create %s: %s (jobs will fail until it exists)", root, exc)
        threading.Thread(target=_warm_up, name="kalla-forkserver", daemon=True).start()
        for index in range(self.concurrency):
            thread = threading.Thread(target=self._work, name=f"kalla-job-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def shutdown(self, grace: float | None = None) -> None:
        """Stop accepting; cancel queued jobs; let running ones finish for ``grace`` seconds
        (default ``KALLA_WORKER_SHUTDOWN_GRACE``), then stop them (killed ``STOP_GRACE``
        seconds later if they do not reach a checkpoint). Returns once every job has ended."""
        grace = self.settings.worker_shutdown_grace if grace is None else grace
        with self._lock:
            first = not self._stopping
            self._stopping = True
            waiting = [r for r in self._jobs.values() if r.status is JobStatus.QUEUED]
        if not first:
            self._stopped.wait()
            return
        for record in waiting:
            self._cancel_queued(
                record, f"{self.name} shut down before the run started; submit it again"
            )
        for _ in self._threads:
            self._queue.put(None)
        self._join(time.monotonic() + grace)
        if any(t.is_alive() for t in self._threads):
            reason = f"run cancelled: {self.name} shut down ({grace:g}s grace period passed)"
            self.cancel_running(reason)
            self._join(time.monotonic() + child.STOP_GRACE + 10)
        self._stopped.set()

    def cancel_running(self, reason: str) -> None:
        """Ask every running job to stop now (a second SIGTERM, or past the grace period)."""
        with self._lock:
            for record in self._jobs.values():
                if record.status is JobStatus.RUNNING and record.stop is None:
                    log.warning("run %s: %s", record.run_id, reason)
                    record.stop = JobCancelled(reason)

    def _join(self, deadline: float) -> None:
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def readiness(self) -> list[str]:
        """Why a job would not be accepted now; empty when it would."""
        reasons = []
        if self._stopping:
            reasons.append("shutting down")
        with self._lock:
            if self._queued + self._running >= self.capacity:
                reasons.append(f"job queue is full ({self._queued} waiting)")
        return reasons

    # --- submit / query / cancel --------------------------------------------------------

    def submit(
        self, job: Job, sink: EventSink, *, problems: Sequence[str] = ()
    ) -> tuple[dict[str, Any], bool]:
        """Queue the job: ``(its status view, True)``; a known run_id: ``(its view, False)``.

        ``problems`` are what the transport found wrong with its own part of the request;
        they are reported together with the job's. Raises RecipeError (422) listing every
        problem, without touching any data; UnavailableError (503) when the queue is full
        or the runner is shutting down.
        """
        with self._lock:
            known = self._jobs.get(job.run_id)
            if known is not None:
                return known.view(), False
        found = list(problems)
        output_dir: Path | None = None
        try:
            output_dir = output_dir_for(job, self.settings)
        except RecipeError as exc:
            found += exc.problems or [exc.message]
        try:
            check_local_sources(job, self.settings)
        except RecipeError as exc:
            found += exc.problems or [exc.message]
        with self._lock:
            known = self._jobs.get(job.run_id)
            if known is not None:  # the same run_id raced us here
                return known.view(), False
            if output_dir is not None:
                found += [
                    f"output_path {output_dir} is the output of run {r.run_id}, "
                    "which has not finished"
                    for r in self._jobs.values()
                    if not r.status.finished and r.output_dir == output_dir
                ]
            if found:
                self._observe("rejected", "invalid")
                raise RecipeError(f"invalid job request ({len(found)} problem(s))", problems=found)
            if self._stopping:
                self._observe("rejected", "shutting_down")
                raise UnavailableError(f"{self.name} is shutting down; submit the job to another")
            if self._queued + self._running >= self.capacity:
                self._observe("rejected", "queue_full")
                raise UnavailableError(
                    f"job queue is full ({self._queued} waiting, {self._running} running); "
                    "retry later",
                    retry_after=self._retry_after(),
                )
            assert output_dir is not None
            record = JobRecord(job=job, sink=sink, output_dir=output_dir)
            self._jobs[job.run_id] = record
            self._queued += 1
            self._forget_old()
            view = record.view()
        self._queue.put(record)
        log.info("run %s accepted", job.run_id)
        return view, True

    def get(self, run_id: UUID) -> dict[str, Any]:
        """The job's status view; NotFoundError for a run_id this runner does not know."""
        with self._lock:
            return self._record(run_id).view()

    def cancel(self, run_id: UUID, reason: str = "run cancelled on request") -> dict[str, Any]:
        """Cancel a queued job now, or ask a running one to stop (it is killed if it does not
        reach a checkpoint within ``STOP_GRACE`` seconds). ConflictError once it has ended."""
        with self._lock:
            record = self._record(run_id)
            status = record.status
            if status is JobStatus.RUNNING and record.stop is None:
                record.stop = JobCancelled(f"{reason}; no outputs were written")
        if status is JobStatus.QUEUED:
            self._cancel_queued(record, f"{reason} before it started")
        elif status in (JobStatus.COMPLETED, JobStatus.FAILED):
            raise ConflictError(f"run {run_id} already {status.value}; nothing to cancel")
        return self.get(run_id)

    def _record(self, run_id: UUID) -> JobRecord:
        record = self._jobs.get(run_id)
        if record is None:
            raise NotFoundError(f"no job with run_id {run_id} is known to {self.name}")
        return record

    def _cancel_queued(self, record: JobRecord, reason: str) -> None:
        with self._lock:
            if record.status is not JobStatus.QUEUED:
                return
            self._queued -= 1
            self._finish(record, JobStatus.CANCELLED, error=reason, kind=JobCancelled.kind)
        event = ErrorCallback(run_id=record.run_id, error=reason)
        _emit(record.sink.failed, event, JobCancelled(reason))
        self._observe("job_ended", record)

    def _retry_after(self) -> int:
        per_job = self._avg_seconds or DEFAULT_JOB_SECONDS
        waves = (self._queued + self._running) / self.concurrency
        return max(1, min(300, math.ceil(per_job * waves)))

    def _forget_old(self) -> None:
        excess = len(self._jobs) - HISTORY
        if excess <= 0:
            return
        for run_id in [k for k, r in self._jobs.items() if r.status.finished][:excess]:
            del self._jobs[run_id]

    # --- job threads --------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            if record.status is not JobStatus.QUEUED:
                continue  # cancelled while it waited
            if not self._may_start(record):
                continue
            with self._lock:
                if record.status is not JobStatus.QUEUED:
                    continue
                self._queued -= 1
                self._running += 1
                record.status = JobStatus.RUNNING
                record.started_at = _now()
                record.started = record.stage_started = time.monotonic()
            try:
                self._execute(record)
            except Exception:  # the last resort: a bug in the runner, not in the job
                log.exception("run %s: the job runner failed", record.run_id)
                error = KallaError(f"internal error in {self.name}'s job runner (see its log)")
                event = ErrorCallback(run_id=record.run_id, error=error.message)
                self._failed(record, event, error)
            finally:
                with self._lock:
                    self._running -= 1
            self._observe("job_ended", record)

    def _may_start(self, record: JobRecord) -> bool:
        if not isinstance(record.sink, GatesStart):
            return True
        try:
            allowed = record.sink.may_start(record.job)
        except Exception:
            log.exception("run %s: its sink failed deciding whether it may start", record.run_id)
            allowed = False
        if not allowed:
            with self._lock:
                if record.status is JobStatus.QUEUED:
                    self._queued -= 1
                    self._finish(record, JobStatus.CANCELLED, error="its run ended while it waited")
        return allowed

    def _execute(self, record: JobRecord) -> None:
        """Run the job in its child; the events update the record, then go to the sink."""
        output_dir = record.output_dir
        output_was_free = not output_dir.exists() or not any(output_dir.iterdir())
        timeout = self.settings.job_timeout
        deadline = record.started + timeout if timeout else None

        def should_stop() -> KallaError | None:
            if record.stop is None and deadline is not None and time.monotonic() > deadline:
                with self._lock:
                    record.stop = record.stop or JobTimeoutError(
                        f"the job ran past its time limit of {timeout:g}s (KALLA_JOB_TIMEOUT) "
                        f"{record.doing()} and was stopped"
                    )
            return record.stop

        scrub = Scrubber.for_uris(s.uri for s in record.job.sources)
        try:
            rows = child.run_in_child(
                run_job_in_child,
                record.job,
                self.settings,
                settings=self.settings,
                what="the job's process",
                doing=record.doing,
                on_event=lambda message: self._on_event(record, message),
                should_stop=should_stop,
                scrub=scrub,
            )
        except KallaError as error:  # it died, was killed or stopped without reporting
            if record.status.finished:
                return
            remove_partial_outputs(output_dir)
            if output_was_free:  # killed between the outputs' rename and its last event
                shutil.rmtree(output_dir, ignore_errors=True)
            shutil.rmtree(staging_dir_for(record.run_id, self.settings), ignore_errors=True)
            message = scrub(error.message)
            log.warning("run %s %s: %s", record.run_id, error.kind, message)
            self._failed(record, ErrorCallback(run_id=record.run_id, error=message), error)
            return
        with self._lock:
            record.staged_rows = rows

    def _on_event(self, record: JobRecord, message: tuple[Any, ...]) -> None:
        kind, event = message[0], message[1]
        if kind == "staging":
            self._staging(record, event)
        elif kind == "matching":
            self._matching(record, event)
        elif kind == "completed":
            self._completed(record, event)
        elif kind == "failed":
            self._failed(record, event, message[2])

    def _enter(self, record: JobRecord, stage: str | None) -> None:
        """Enter ``stage`` (lock held; None: the last one ended well): observe the previous."""
        if record.stage == stage:
            return
        now = time.monotonic()
        if record.stage is not None:
            self._observe("stage_ended", record.stage, now - record.stage_started)
        if stage is not None:
            record.stage, record.stage_started = stage, now

    def _staging(self, record: JobRecord, event: StagingProgress) -> None:
        with self._lock:
            if record.status.finished:
                return
            self._enter(record, "staging")
            record.source = event.source
            record.progress = event.progress
        _emit(record.sink.staging, event)

    def _matching(self, record: JobRecord, event: MatchingProgress) -> None:
        with self._lock:
            if record.status.finished:
                return
            self._enter(record, "matching")
            record.source = None
            record.progress = event.progress
        _emit(record.sink.matching, event)

    def _completed(self, record: JobRecord, event: CompletionCallback) -> None:
        with self._lock:
            if record.status.finished:
                return
            self._enter(record, None)
            record.progress = 1.0
            record.result = event.to_dict()
            self._finish(record, JobStatus.COMPLETED)
        _emit(record.sink.completed, event)

    def _failed(self, record: JobRecord, event: ErrorCallback, error: KallaError) -> None:
        if isinstance(error, JobCancelled) and record.stop is not None:
            error = record.stop  # a timeout stays a timeout; the runner's reason wins
            event = ErrorCallback(run_id=record.run_id, error=error.message)
        status = JobStatus.CANCELLED if isinstance(error, JobCancelled) else JobStatus.FAILED
        with self._lock:
            if record.status.finished:
                return
            self._finish(record, status, error=event.error, kind=error.kind)
        _emit(record.sink.failed, event, error)

    def _finish(
        self,
        record: JobRecord,
        status: JobStatus,
        *,
        error: str | None = None,
        kind: str | None = None,
    ) -> None:
        """Record the final state (lock held)."""
        record.status = status
        record.error = error
        record.error_kind = kind
        record.finished_at = _now()
        if record.started:
            record.seconds = time.monotonic() - record.started
            if status is JobStatus.COMPLETED:
                previous = self._avg_seconds
                self._avg_seconds = (
                    record.seconds if previous is None else 0.8 * previous + 0.2 * record.seconds
                )
        log.info("run %s %s", record.run_id, status.value)

    def _observe(self, method: str, *args: Any) -> None:
        if self.observer is None:
            return
        try:
            getattr(self.observer, method)(*args)
        except Exception:
            log.exception("runner observer failed")


def _emit(action: Callable[..., None], *args: Any) -> None:
    """A sink that fails must not fail the job (nor hide the job's own end)."""
    try:
        action(*args)
    except Exception:
        log.exception("job event sink failed")


def _warm_up() -> None:
    try:
        child.warm_up()
    except Exception:  # the first job starts it again, and reports why it cannot
        log.exception("cannot start the forkserver for job processes")
