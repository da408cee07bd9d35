"""The job service behind the worker's API: a bounded queue, N job threads, job records.

Transport-free like ``run_job``: ``http.py`` maps it onto routes. One lock guards every
record; job threads run ``run_job`` outside it and report through ``_RecordEvents``, which
updates the record, the metrics and the run's callback channel.
"""

from __future__ import annotations

import logging
import math
import os
import queue
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any
from uuid import UUID

from kalla.errors import ConflictError, KallaError, NotFoundError, RecipeError, UnavailableError
from kalla.recipe.models import (
    CompletionCallback,
    ErrorCallback,
    JobRequest,
    MatchingProgress,
    StagingProgress,
)
from kalla.settings import Settings
from kalla.worker.callbacks import CallbackChannel, CallbackSender, check_callback_url
from kalla.worker.job import (
    CancelToken,
    JobCancelled,
    check_local_sources,
    output_dir_for,
    remove_partial_outputs,
    run_job,
)
from kalla.worker.metrics import WorkerMetrics

log = logging.getLogger("kalla.worker")

HISTORY = 10_000  # finished jobs remembered (status queries, duplicate run_ids)
CANCEL_WAIT = 5.0  # seconds a cancelled job gets to reach its next checkpoint at shutdown
CALLBACK_FLUSH = 5.0  # seconds final callbacks get to go out at shutdown
DEFAULT_JOB_SECONDS = 5.0  # Retry-After estimate before any job has finished


class JobState(StrEnum):
    ACCEPTED = "accepted"  # queued
    RUNNING = "running"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def finished(self) -> bool:
        return self in (JobState.COMPLETED, JobState.FAILED, JobState.CANCELLED)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


@dataclass
class JobRecord:
    request: JobRequest
    output_dir: Path
    channel: CallbackChannel
    cancel: CancelToken = field(default_factory=CancelToken)
    state: JobState = JobState.ACCEPTED
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

    @property
    def run_id(self) -> UUID:
        return self.request.run_id

    def view(self) -> dict[str, Any]:
        """What ``GET /api/jobs/{run_id}`` answers (no URIs: they may hold credentials)."""
        return {
            "run_id": str(self.run_id),
            "status": self.state.value,
            "stage": self.stage,
            "source": self.source,
            "progress": self.progress,
            "cancel_requested": self.cancel.is_set() and not self.state.finished,
            "result": self.result,
            "error": self.error,
            "error_kind": self.error_kind,
            "submitted_at": self.submitted_at,
            "started_at": self.started_at,
            "finished_at": self.finished_at,
            "callbacks": self.channel.stats(),
        }


class WorkerService:
    """Accepts jobs, runs them on ``worker_concurrency`` threads, remembers their status."""

    def __init__(
        self,
        settings: Settings,
        *,
        metrics: WorkerMetrics | None = None,
        sender: CallbackSender | None = None,
    ) -> None:
        self.settings = settings
        self.metrics = metrics or WorkerMetrics()
        secret = settings.callback_secret.get_secret_value() if settings.callback_secret else None
        self.sender = sender or CallbackSender(
            secret=secret,
            retry_seconds=settings.callback_retry_seconds,
            timeout=settings.callback_timeout,
            observer=self.metrics,
        )
        self._lock = threading.Lock()
        self._jobs: OrderedDict[UUID, JobRecord] = OrderedDict()
        self._queue: queue.Queue[JobRecord | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._queued = 0
        self._running = 0
        self._avg_seconds: float | None = None
        self._stopping = False
        self._stopped = threading.Event()
        self.metrics.track(lambda: self._queued, lambda: self._running)

    # --- lifecycle ----------------------------------------------------------------------

    @property
    def capacity(self) -> int:
        return self.settings.worker_concurrency + self.settings.worker_queue_size

    def start(self) -> None:
        for root in (self.settings.staging_path, self.settings.output_root):
            try:
                Path(root).mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                log.warning("cannot create %s: %s (the worker stays not ready)", root, exc)
        for index in range(self.settings.worker_concurrency):
            thread = threading.Thread(target=self._work, name=f"kalla-job-{index}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def shutdown(self, grace: float | None = None) -> bool:
        """Stop accepting; fail queued jobs; let running ones finish for ``grace`` seconds,
        then cancel them; flush final callbacks. True when no job thread is left running."""
        grace = self.settings.worker_shutdown_grace if grace is None else grace
        with self._lock:
            if self._stopping:
                first = False
            else:
                first = self._stopping = True
                waiting = [r for r in self._jobs.values() if r.state is JobState.ACCEPTED]
        if not first:
            self._stopped.wait()
            return not any(t.is_alive() for t in self._threads)
        for record in waiting:
            self._cancel_queued(
                record, "the worker shut down before the run started; submit it again"
            )
        for _ in self._threads:
            self._queue.put(None)
        deadline = time.monotonic() + grace
        self._join(deadline)
        if any(t.is_alive() for t in self._threads):
            with self._lock:
                running = [r for r in self._jobs.values() if r.state is JobState.RUNNING]
            for record in running:
                log.warning("run %s still running after %gs: cancelling it", record.run_id, grace)
                record.cancel.cancel(
                    f"run cancelled: the worker shut down ({grace:g}s grace period passed)"
                )
            self._join(time.monotonic() + CANCEL_WAIT)
        clean = not any(t.is_alive() for t in self._threads)
        if not clean:
            with self._lock:
                running = [r for r in self._jobs.values() if r.state is JobState.RUNNING]
            for record in running:
                remove_partial_outputs(record.output_dir)
        self.sender.close(wait=CALLBACK_FLUSH)
        self._stopped.set()
        return clean

    def cancel_running(self, reason: str) -> None:
        """Ask every running job to stop at its next checkpoint (a second SIGTERM)."""
        with self._lock:
            running = [r for r in self._jobs.values() if r.state is JobState.RUNNING]
        for record in running:
            record.cancel.cancel(reason)

    def threads_alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)

    def _join(self, deadline: float) -> None:
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))

    def readiness(self) -> list[str]:
        """Why the worker cannot take a job now; empty when it can."""
        reasons = []
        if self._stopping:
            reasons.append("shutting down")
        for name, root in (
            ("staging root", self.settings.staging_path),
            ("output root", self.settings.output_root),
        ):
            if not Path(root).is_dir() or not os.access(root, os.W_OK | os.X_OK):
                reasons.append(f"{name} {root} is not a writable directory")
        with self._lock:
            if self._queued + self._running >= self.capacity:
                reasons.append(f"job queue is full ({self._queued} waiting)")
        return reasons

    # --- submit / query / cancel --------------------------------------------------------

    def submit(self, request: JobRequest) -> tuple[dict[str, Any], bool]:
        """Queue the job; ``(status view, True)``, or the known job's view and False.

        Raises RecipeError (422) listing every problem found without touching any data,
        UnavailableError (503) when the queue is full or the worker is shutting down.
        """
        with self._lock:
            known = self._jobs.get(request.run_id)
            if known is not None:
                return known.view(), False
        problems = check_callback_url(request.callback_url, self.settings.callback_allowed_hosts)
        output_dir: Path | None = None
        try:
            output_dir = output_dir_for(request, self.settings)
        except RecipeError as exc:
            problems += exc.problems or [exc.message]
        try:
            check_local_sources(request, self.settings)
        except RecipeError as exc:
            problems += exc.problems or [exc.message]
        with self._lock:
            known = self._jobs.get(request.run_id)
            if known is not None:  # the same run_id raced us here
                return known.view(), False
            if output_dir is not None:
                problems += [
                    f"output_path {output_dir} is the output of run {r.run_id}, "
                    "which has not finished"
                    for r in self._jobs.values()
                    if not r.state.finished and r.output_dir == output_dir
                ]
            if problems:
                self.metrics.rejected.labels("invalid").inc()
                raise RecipeError(
                    f"invalid job request ({len(problems)} problem(s))", problems=problems
                )
            if self._stopping:
                self.metrics.rejected.labels("shutting_down").inc()
                raise UnavailableError("the worker is shutting down; submit the job to another")
            if self._queued + self._running >= self.capacity:
                self.metrics.rejected.labels("queue_full").inc()
                raise UnavailableError(
                    f"job queue is full ({self._queued} waiting, {self._running} running); "
                    "retry later",
                    retry_after=self._retry_after(),
                )
            assert output_dir is not None
            record = JobRecord(
                request=request,
                output_dir=output_dir,
                channel=self.sender.channel(request.run_id, request.callback_url),
            )
            self._jobs[request.run_id] = record
            self._queued += 1
            self._forget_old()
            view = record.view()
        self._queue.put(record)
        log.info("run %s accepted", request.run_id)
        return view, True

    def get(self, run_id: UUID) -> dict[str, Any]:
        with self._lock:
            record = self._jobs.get(run_id)
            if record is None:
                raise NotFoundError(f"no job with run_id {run_id} is known to this worker")
            return record.view()

    def cancel(self, run_id: UUID) -> dict[str, Any]:
        """Cancel a queued job now, or ask a running one to stop at its next checkpoint."""
        with self._lock:
            record = self._jobs.get(run_id)
            if record is None:
                raise NotFoundError(f"no job with run_id {run_id} is known to this worker")
            state = record.state
        if state is JobState.ACCEPTED:
            self._cancel_queued(record, "run cancelled on request before it started")
        elif state is JobState.RUNNING:
            record.cancel.cancel("run cancelled on request; no outputs were written")
        elif state in (JobState.COMPLETED, JobState.FAILED):
            raise ConflictError(f"run {run_id} already {state.value}; nothing to cancel")
        return self.get(run_id)

    def _cancel_queued(self, record: JobRecord, reason: str) -> None:
        with self._lock:
            if record.state is not JobState.ACCEPTED:
                return
            record.cancel.cancel(reason)
            self._queued -= 1
            self._finish(record, JobState.CANCELLED, error=reason, kind=JobCancelled.kind)
        record.channel.send("error", ErrorCallback(run_id=record.run_id, error=reason), final=True)

    def _retry_after(self) -> int:
        per_job = self._avg_seconds or DEFAULT_JOB_SECONDS
        waves = (self._queued + self._running) / self.settings.worker_concurrency
        return max(1, min(300, math.ceil(per_job * waves)))

    def _forget_old(self) -> None:
        excess = len(self._jobs) - HISTORY
        if excess <= 0:
            return
        for run_id in [k for k, r in self._jobs.items() if r.state.finished][:excess]:
            del self._jobs[run_id]

    # --- job threads --------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            record = self._queue.get()
            if record is None:
                return
            with self._lock:
                if record.state is not JobState.ACCEPTED:
                    continue  # cancelled while it waited
                self._queued -= 1
                self._running += 1
                record.state = JobState.RUNNING
                record.started_at = _now()
                record.started = record.stage_started = time.monotonic()
            try:
                summary = run_job(
                    record.request,
                    _RecordEvents(self, record),
                    settings=self.settings,
                    cancel=record.cancel,
                )
            except Exception:  # run_job reports failures itself; this is a last resort
                log.exception("run %s: the job thread failed", record.run_id)
                summary = None
                message = "internal error in the worker (see its log)"
                with self._lock:
                    unreported = not record.state.finished
                    if unreported:
                        self._finish(record, JobState.FAILED, error=message, kind="error")
                if unreported:
                    error = ErrorCallback(run_id=record.run_id, error=message)
                    record.channel.send("error", error, final=True)
            finally:
                with self._lock:
                    self._running -= 1
            if summary is not None:
                self.metrics.rows_staged.labels("left").inc(summary.left_rows)
                self.metrics.rows_staged.labels("right").inc(summary.right_rows)
                self.metrics.rows_matched.inc(summary.matched_count)

    def _finish(
        self,
        record: JobRecord,
        state: JobState,
        *,
        error: str | None = None,
        kind: str | None = None,
    ) -> None:
        """Record the final state (lock held)."""
        record.state = state
        record.error = error
        record.error_kind = kind
        record.finished_at = _now()
        self.metrics.jobs.labels(state.value).inc()
        if record.started:
            seconds = time.monotonic() - record.started
            self.metrics.job_seconds.labels(state.value).observe(seconds)
            if state is JobState.COMPLETED:
                previous = self._avg_seconds
                self._avg_seconds = seconds if previous is None else 0.8 * previous + 0.2 * seconds
        log.info("run %s %s", record.run_id, state.value)  # run_job logged any error


class _RecordEvents:
    """JobEvents for one record: keep its status, time its stages, send its callbacks."""

    def __init__(self, service: WorkerService, record: JobRecord) -> None:
        self.service = service
        self.record = record

    def _stage(self, stage: str | None) -> None:
        """Enter ``stage`` (lock held; None: the last one ended well): observe the previous."""
        record = self.record
        if record.stage == stage:
            return
        now = time.monotonic()
        if record.stage is not None:
            self.service.metrics.stage_seconds.labels(record.stage).observe(
                now - record.stage_started
            )
        if stage is not None:
            record.stage, record.stage_started = stage, now

    def staging(self, event: StagingProgress) -> None:
        with self.service._lock:
            self._stage("staging")
            self.record.source = event.source
            self.record.progress = event.progress
        self.record.channel.send("progress", event)

    def matching(self, event: MatchingProgress) -> None:
        with self.service._lock:
            self._stage("matching")
            self.record.source = None
            self.record.progress = event.progress
        self.record.channel.send("progress", event)

    def completed(self, event: CompletionCallback) -> None:
        with self.service._lock:
            self._stage(None)
            self.record.progress = 1.0
            self.record.result = event.to_dict()
            self.service._finish(self.record, JobState.COMPLETED)
        self.record.channel.send("complete", event, final=True)

    def failed(self, event: ErrorCallback, error: KallaError) -> None:
        state = JobState.CANCELLED if isinstance(error, JobCancelled) else JobState.FAILED
        with self.service._lock:
            self.service._finish(self.record, state, error=event.error, kind=error.kind)
        self.record.channel.send("error", event, final=True)
