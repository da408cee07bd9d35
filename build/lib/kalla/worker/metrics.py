"""The worker's Prometheus metrics, in a registry of its own (one per app, not global).

``WorkerMetrics`` observes the job runner (``RunnerObserver``) and the callback sender
(``CallbackObserver``).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

OUTCOMES = ("completed", "failed", "cancelled")
REJECTIONS = ("invalid", "queue_full", "shutting_down")
STAGES = ("staging", "matching")
CALLBACK_EVENTS = ("progress", "complete", "error")
CALLBACK_RESULTS = ("delivered", "retry", "failed")
DURATION_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800, 3600)

CONTENT_TYPE = CONTENT_TYPE_LATEST

if TYPE_CHECKING:
    from kalla.runner import JobRecord


class WorkerMetrics:
    """Counters, gauges and histograms the worker updates; ``render()`` is ``/metrics``."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.jobs = Counter(
            "kalla_worker_jobs", "Jobs finished, by outcome.", ["outcome"], registry=r
        )
        self.rejected_jobs = Counter(
            "kalla_worker_jobs_rejected",
            "Job submissions refused, by reason.",
            ["reason"],
            registry=r,
        )
        self.job_seconds = Histogram(
            "kalla_worker_job_duration_seconds",
            "Wall time of a job from start to its final event, by outcome.",
            ["outcome"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.stage_seconds = Histogram(
            "kalla_worker_stage_duration_seconds",
            "Wall time of a job stage (staging both sources; matching to written outputs).",
            ["stage"],
            buckets=DURATION_BUCKETS,
            registry=r,
        )
        self.rows_staged = Counter(
            "kalla_worker_rows_staged",
            "Source rows staged by completed jobs.",
            ["side"],
            registry=r,
        )
        self.rows_matched = Counter(
            "kalla_worker_rows_matched", "Matched rows written by completed jobs.", registry=r
        )
        self.queue_depth = Gauge(
            "kalla_worker_queue_depth", "Jobs accepted and waiting to start.", registry=r
        )
        self.in_flight = Gauge("kalla_worker_jobs_in_flight", "Jobs running now.", registry=r)
        self.callback_attempts = Counter(
            "kalla_worker_callback_attempts",
            "Callback POST attempts, by event and result (delivered, retry, failed).",
            ["event", "result"],
            registry=r,
        )
        self.callback_failures = Counter(
            "kalla_worker_callback_failures",
            "Callbacks given up after their retry budget (or refused by the receiver).",
            ["event"],
            registry=r,
        )
        for outcome in OUTCOMES:
            self.jobs.labels(outcome)
            self.job_seconds.labels(outcome)
        for reason in REJECTIONS:
            self.rejected_jobs.labels(reason)
        for stage in STAGES:
            self.stage_seconds.labels(stage)
        for side in ("left", "right"):
            self.rows_staged.labels(side)
        for event in CALLBACK_EVENTS:
            self.callback_failures.labels(event)
            for result in CALLBACK_RESULTS:
                self.callback_attempts.labels(event, result)

    def track(self, queue_depth: Callable[[], float], in_flight: Callable[[], float]) -> None:
        """Read the two gauges from the runner when scraped."""
        self.queue_depth.set_function(queue_depth)
        self.in_flight.set_function(in_flight)

    # RunnerObserver
    def rejected(self, reason: str) -> None:
        self.rejected_jobs.labels(reason).inc()

    def stage_ended(self, stage: str, seconds: float) -> None:
        self.stage_seconds.labels(stage).observe(seconds)

    def job_ended(self, record: JobRecord) -> None:
        outcome = record.status.value
        self.jobs.labels(outcome).inc()
        if record.seconds is not None:
            self.job_seconds.labels(outcome).observe(record.seconds)
        if record.staged_rows is not None:
            left, right = record.staged_rows
            self.rows_staged.labels("left").inc(left)
            self.rows_staged.labels("right").inc(right)
        if record.result is not None:
            self.rows_matched.inc(record.result.get("matched_count", 0))

    # CallbackObserver
    def callback_attempt(self, event: str, result: str) -> None:
        self.callback_attempts.labels(event, result).inc()

    def callback_gave_up(self, event: str) -> None:
        self.callback_failures.labels(event).inc()

    def render(self) -> bytes:
        return generate_latest(self.registry)
