"""The worker's HTTP transport (seed 002's runner API) and ``kalla worker``'s server.

Routes only move jobs in and status out; ``WorkerService`` owns the queue and the threads,
``run_job`` the work. Every KallaError becomes ``{"error": …, "kind": …, "problems": […]}``
with the error's HTTP status, in one handler.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from types import FrameType
from typing import Any
from uuid import UUID

import anyio.to_thread
import uvicorn
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from kalla import __version__
from kalla.errors import ConfigError, KallaError, RecipeError
from kalla.recipe.models import JobRequest
from kalla.recipe.parse import describe_errors
from kalla.settings import Settings, get_settings, is_loopback
from kalla.worker.metrics import CONTENT_TYPE
from kalla.worker.service import JobState, WorkerService

log = logging.getLogger("kalla.worker")


def create_worker_app(
    settings: Settings | None = None, *, service: WorkerService | None = None
) -> FastAPI:
    """The worker's FastAPI app; its service starts and drains with the app's lifespan."""
    settings = settings or get_settings()
    service = service or WorkerService(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        service.start()
        yield
        await anyio.to_thread.run_sync(service.shutdown)

    app = FastAPI(
        title="Kalla worker",
        version=__version__,
        summary="Runs reconciliation jobs; reports by signed callbacks (docs/worker.md).",
        lifespan=lifespan,
    )
    app.state.service = service

    @app.exception_handler(KallaError)
    async def kalla_error(request: Request, exc: KallaError) -> JSONResponse:
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        if request.method == "POST":
            service.metrics.rejected.labels("invalid").inc()
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
        reasons = service.readiness()
        if reasons:
            return PlainTextResponse(f"not ready: {'; '.join(reasons)}\n", status_code=503)
        return PlainTextResponse("ready\n")

    @app.get("/metrics")
    def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(service.metrics.render(), media_type=CONTENT_TYPE)

    @app.post("/api/jobs")
    def submit_job(job: JobRequest) -> dict[str, str]:
        """Queue a job: ``{"run_id", "status": "accepted"}``; a known run_id: its status."""
        view, _created = service.submit(job)
        return {"run_id": view["run_id"], "status": view["status"]}

    @app.get("/api/jobs/{run_id}")
    def job_status(run_id: UUID) -> dict[str, Any]:
        """Status, stage, progress, counts and error of a job this worker knows."""
        return service.get(run_id)

    @app.delete("/api/jobs/{run_id}")
    def cancel_job(run_id: UUID) -> JSONResponse:
        """Cancel: a queued job at once (200), a running one at its next checkpoint (202)."""
        view = service.cancel(run_id)
        code = 202 if view["status"] == JobState.RUNNING else 200
        return JSONResponse(view, status_code=code)

    return app


# --- kalla worker ---------------------------------------------------------------------------


class _DrainingServer(uvicorn.Server):
    """SIGTERM/SIGINT: stop taking jobs, let the running one finish (or cancel it past the
    grace period), flush callbacks, then stop serving and exit 0. A second signal cancels
    running jobs at once."""

    def __init__(self, config: uvicorn.Config, service: WorkerService) -> None:
        super().__init__(config)
        self.service = service
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
            self.service.cancel_running("run cancelled: the worker was stopped")

    def _drain(self) -> None:
        try:
            self.service.shutdown()
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
    logging.basicConfig(
        level=getattr(logging, log_level.upper(), logging.INFO),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)  # one line per callback is noise
    if settings.nats_url:
        log.warning("NATS_URL is set, but this worker takes jobs over HTTP only so far")
    if settings.callback_secret is None:
        log.warning("KALLA_CALLBACK_SECRET is not set: callbacks go out unsigned")
    app = create_worker_app(settings)
    service: WorkerService = app.state.service
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level=log_level,
        access_log=access_log,
        lifespan="on",
        timeout_graceful_shutdown=5,
    )
    server = _DrainingServer(config, service)
    server.run()
    if not server.started:
        return 1
    if service.threads_alive():
        # A job stuck in native code past grace + cancel wait: its partial outputs are
        # removed already; do not let interpreter shutdown wait on (or crash in) it.
        log.error("a job thread did not stop; exiting anyway")
        logging.shutdown()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0
