"""The worker's HTTP transport (seed 002's runner API) and ``kalla worker``'s server.

Routes only move jobs in and status out: ``kalla.runner.JobRunner`` owns the queue, the
job processes and cancellation; ``CallbackSink`` sends a job's events to its
``callback_url``, which belongs to this transport, not to the job. Every KallaError becomes
``{"error": …, "kind": …, "problems": […]}`` with the error's HTTP status, in one handler.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from types import FrameType
from typing import Any
from uuid import UUID

import anyio.to_thread
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from kalla import __version__, logs
from kalla.body_limit import BodyLimit
from kalla.errors import ConfigError, KallaError, RecipeError
from kalla.extras import missing_extra
from kalla.recipe.models import (
    CompletionCallback,
    ErrorCallback,
    JobRequest,
    MatchingProgress,
    StagingProgress,
)
from kalla.recipe.parse import describe_errors
from kalla.runner import JobRunner, JobStatus
from kalla.settings import Settings, get_settings, is_loopback
from kalla.worker.callbacks import CallbackChannel, CallbackSender, check_callback_url
from kalla.worker.metrics import CONTENT_TYPE, WorkerMetrics

log = logging.getLogger("kalla.worker")

CALLBACK_FLUSH = 5.0  # at shutdown, callbacks get what is left of the grace period, at most
FINAL_FLUSH = 1.0  # this long after the last job ended, and at least this long (final events)


class CallbackSink:
    """One job's events as signed callbacks to its ``callback_url`` (an EventSink)."""

    def __init__(self, channel: CallbackChannel) -> None:
        self.channel = channel

    def staging(self, event: StagingProgress) -> None:
        self.channel.send("progress", event)

    def matching(self, event: MatchingProgress) -> None:
        self.channel.send("progress", event)

    def completed(self, event: CompletionCallback) -> None:
        self.channel.send("complete", event, final=True)

    def failed(self, event: ErrorCallback, error: KallaError) -> None:
        self.channel.send("error", event, final=True)

    def status_fields(self) -> dict[str, Any]:
        return {"callbacks": self.channel.stats()}


class Worker:
    """The HTTP transport's parts: the runner, the callback sender, the metrics."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.metrics = WorkerMetrics()
        self.runner = JobRunner(settings, name="the worker", observer=self.metrics)
        secret = settings.callback_secret.get_secret_value() if settings.callback_secret else None
        self.sender = CallbackSender(
            secret=secret,
            retry_seconds=settings.callback_retry_seconds,
            timeout=settings.callback_timeout,
            observer=self.metrics,
        )
        self.metrics.track(lambda: self.runner.queued, lambda: self.runner.running)

    def submit(self, request: JobRequest) -> dict[str, Any]:
        problems = check_callback_url(request.callback_url, self.settings.callback_allowed_hosts)
        style = request.callback_style or self.settings.callback_style
        sink = CallbackSink(self.sender.channel(request.run_id, request.callback_url, style))
        view, created = self.runner.submit(
            request.job(),
            sink,
            problems=problems,
            transport={"callback_url": request.callback_url, "callback_style": style},
        )
        return {"run_id": view["run_id"], "status": "accepted" if created else view["status"]}

    def readiness(self) -> list[str]:
        reasons = self.runner.readiness()
        for name, root in (
            ("staging root", self.settings.staging_path),
            ("output root", self.settings.output_root),
        ):
            if not Path(root).is_dir() or not os.access(root, os.W_OK | os.X_OK):
                reasons.append(f"{name} {root} is not a writable directory")
        return reasons

    def shutdown(self) -> None:
        """Drain the runner, then give the last callbacks what is left of the grace period
        (``KALLA_WORKER_SHUTDOWN_GRACE``): at most ``CALLBACK_FLUSH`` seconds, at least
        ``FINAL_FLUSH`` for the final events of jobs stopped at the grace deadline. No
        callback is retried past that, so the worker exits and frees its port."""
        began = time.monotonic()
        self.runner.shutdown()
        grace_left = began + self.settings.worker_shutdown_grace - time.monotonic()
        self.sender.close(wait=min(CALLBACK_FLUSH, max(grace_left, FINAL_FLUSH)))


def create_worker_app(settings: Settings | None = None) -> FastAPI:
    """The worker's FastAPI app; its runner starts and drains with the app's lifespan."""
    settings = settings or get_settings()
    worker = Worker(settings)
    runner = worker.runner

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runner.start()
        yield
        await anyio.to_thread.run_sync(worker.shutdown)

    app = FastAPI(
        title="Kalla worker",
        version=__version__,
        summary="Runs reconciliation jobs; reports by signed callbacks (docs/worker.md).",
        lifespan=lifespan,
    )
    app.state.worker = worker
    app.add_middleware(BodyLimit, what="a job request is a recipe and its sources' URIs, not data")

    @app.exception_handler(KallaError)
    async def kalla_error(request: Request, exc: KallaError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.headers())

    @app.exception_handler(ImportError)
    async def missing_driver(request: Request, exc: ImportError) -> JSONResponse:
        error = missing_extra(exc)
        if error is None:
            raise exc
        return await kalla_error(request, error)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        if request.method == "POST":
            worker.metrics.rejected("invalid")
        problems = describe_errors(exc.errors())
        error = RecipeError(f"invalid job request ({len(problems)} problem(s))", problems=problems)
        return JSONResponse(error.to_dict(), status_code=error.status)

    @app.get("/health", response_class=PlainTextResponse)
    def health() -> str:
        """200 while the process is alive."""
        return "ok\n"

    @app.get("/ready", response_class=PlainTextResponse)
    def ready() -> PlainTextResponse:
        """200 when a job would be accepted now; 503 with the reasons otherwise."""
        reasons = worker.readiness()
        if reasons:
            return PlainTextResponse(f"not ready: {'; '.join(reasons)}\n", status_code=503)
        return PlainTextResponse("ready\n")

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(worker.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/api/jobs")
    def submit_job(job: JobRequest) -> dict[str, str]:
        """Queue a job: ``{"run_id", "status": "accepted"}``; a known run_id: its status."""
        return worker.submit(job)

    @app.get("/api/jobs/{run_id}")
    def job_status(run_id: UUID) -> dict[str, Any]:
        """Status, stage, progress, counts and error of a job this worker knows."""
        return runner.get(run_id)

    @app.delete("/api/jobs/{run_id}")
    def cancel_job(run_id: UUID) -> JSONResponse:
        """Cancel: a queued job at once (200), a running one at its next checkpoint (202)."""
        view = runner.cancel(run_id)
        code = 202 if view["status"] == JobStatus.RUNNING else 200
        return JSONResponse(view, status_code=code)

    return app


# --- kalla worker ---------------------------------------------------------------------------


class _DrainingServer(uvicorn.Server):
    """SIGTERM/SIGINT: stop taking jobs, let the running one finish (or stop it past the
    grace period), flush callbacks, then stop serving and exit 0. A second signal stops
    running jobs at once."""

    def __init__(self, config: uvicorn.Config, worker: Worker) -> None:
        super().__init__(config)
        self.worker = worker
        self.drain: threading.Thread | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # Not recorded in _captured_signals: uvicorn would re-raise it after shutdown and
        # the default SIGTERM action would turn a clean drain into exit status 143.
        if self.drain is None:
            log.info("signal %d: draining (no new jobs; running ones may finish)", sig)
            self.drain = threading.Thread(target=self._drain, name="kalla-drain", daemon=True)
            self.drain.start()
        else:
            log.info("signal %d again: cancelling running jobs", sig)
            self.worker.runner.cancel_running("run cancelled: the worker was stopped")

    def _drain(self) -> None:
        try:
            self.worker.shutdown()
        finally:
            self.should_exit = True


def serve(
    settings: Settings | None = None,
    *,
    host: str | None = None,
    port: int | None = None,
    log_level: str = "info",
    access_log: bool = False,
) -> int:
    """Run the worker until SIGTERM/SIGINT; the exit code (0 after a clean drain)."""
    settings = settings or get_settings()
    host = host or settings.worker_host
    port = settings.worker_port if port is None else port
    if not is_loopback(host) and settings.callback_secret is None:
        raise ConfigError(
            f"refusing to listen on {host}: beyond loopback the worker needs "
            "KALLA_CALLBACK_SECRET so that receivers can verify its callbacks"
        )
    logs.configure(log_level, settings.log_format)
    if settings.nats_url:
        log.warning("NATS_URL is set, but this worker takes jobs over HTTP only so far")
    if settings.callback_secret is None:
        log.warning("KALLA_CALLBACK_SECRET is not set: callbacks go out unsigned")
    app = create_worker_app(settings)
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        log_config=None,  # uvicorn's records go to the process's one handler (kalla.logs)
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = _DrainingServer(config, app.state.worker)
    server.run()
    return 0 if server.started else 1
