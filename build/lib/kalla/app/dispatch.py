"""Getting runs executed: by this app's own job runner (embedded, the default) or by a
worker over HTTP.

Both dispatchers build the Job from the store when a run is submitted, so a run believed in
flight when the app starts can be settled or resubmitted the same way:

* embedded: ``kalla.runner.JobRunner`` runs each job in a child process and reports through
  ``LifecycleSink``, straight into the store. A run the previous app process died with is
  completed from its outputs when they are all there (their manifest), otherwise submitted
  again, up to ``MAX_ATTEMPTS`` in all.
* single mode (``WORKER_URL``): the worker is asked (``GET /api/jobs/{run_id}``) at start and
  then every ``KALLA_POLL_INTERVAL`` seconds for runs that went quiet; a job the worker does
  not know is resubmitted, a finished one is settled from its status or its manifest.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from kalla.app.jobs import build_job
from kalla.app.lifecycle import IN_FLIGHT, Lifecycle, Outcome, scrub
from kalla.app.storage import Database, RecipeVersionRow, RunRepository, RunRow, SourceRepository
from kalla.app.storage.models import utcnow
from kalla.connectors import redact_uri
from kalla.errors import ConflictError, KallaError, NotFoundError
from kalla.recipe import (
    CompletionCallback,
    ErrorCallback,
    Job,
    MatchingProgress,
    Recipe,
    StagingProgress,
)
from kalla.runner import JobRunner, JobStatus
from kalla.runner.job import remove_partial_outputs
from kalla.settings import Settings

log = logging.getLogger("kalla.app.dispatch")

MAX_ATTEMPTS = 3


def app_url(settings: Settings) -> str:
    """Where a worker reaches this app (``KALLA_APP_URL``, else the bound host and port)."""
    if settings.app_url:
        return settings.app_url.rstrip("/")
    host = settings.app_host
    if host in ("0.0.0.0", "::", ""):
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    return f"http://{host}:{settings.app_port}"


class Dispatcher:
    """What both modes share: building jobs, recovery at start, attempts accounting."""

    mode = "base"

    def __init__(self, db: Database, lifecycle: Lifecycle, settings: Settings) -> None:
        self.db = db
        self.lifecycle = lifecycle
        self.settings = settings

    # ---- API used by the routes ---------------------------------------------------------

    def submit(self, run_id: str) -> None:
        """Hand the run over for execution; a failure to do so fails the run (never raises)."""
        try:
            job = self._prepare(run_id)
        except KallaError as exc:
            self.lifecycle.failed(ErrorCallback(run_id=UUID(run_id), error=exc.message))
            return
        except Exception as exc:  # its text could quote a URI: the type only
            log.error("run %s: cannot build its job: %s", run_id, type(exc).__name__)
            error = f"cannot build the job: {type(exc).__name__}"
            self.lifecycle.failed(ErrorCallback(run_id=UUID(run_id), error=error))
            return
        self._send(job)

    def cancel(self, run_id: str) -> None:
        """Stop the job of a run the lifecycle has just cancelled (never raises)."""

    def start(self) -> None:
        self.recover()

    def stop(self) -> None:
        pass

    # ---- recovery -----------------------------------------------------------------------

    def recover(self) -> None:
        with self.db.session() as session:
            runs = [
                (r.id, r.attempts, r.status, r.mode)
                for r in RunRepository(session).with_status(IN_FLIGHT)
            ]
        for run_id, attempts, status, mode in runs:
            try:
                self._recover_one(run_id, attempts, status, mode)
            except Exception:
                log.exception("could not recover run %s", run_id)

    def _recover_one(self, run_id: str, attempts: int, status: str, mode: str) -> None:
        raise NotImplementedError

    def _resubmit_or_fail(self, run_id: str, attempts: int, why: str) -> None:
        if attempts >= MAX_ATTEMPTS:
            self.lifecycle.failed(
                ErrorCallback(
                    run_id=UUID(run_id),
                    error=f"{why}; gave up after {attempts} attempt(s)",
                )
            )
            return
        log.info("run %s: %s; submitting it again", run_id, why)
        self.lifecycle.note(run_id, "resubmitted", {"reason": why, "attempt": attempts + 1})
        self.submit(run_id)

    # ---- machinery ----------------------------------------------------------------------

    def _prepare(self, run_id: str) -> Job:
        with self.db.session() as session:
            runs = RunRepository(session)
            run = runs.get(run_id, for_update=True)
            if run is None:
                raise KallaError(f"run {run_id} disappeared")
            version = session.get(RecipeVersionRow, run.recipe_version_id)
            assert version is not None
            recipe = Recipe.model_validate(version.body)
            registered = SourceRepository(session).all()
            job = build_job(run, recipe, registered)
            run.attempts += 1
            run.mode = self.mode
            if run.status != JobStatus.RUNNING:
                run.status = JobStatus.QUEUED.value
            runs.touch(run)
            runs.add_event(run.id, "dispatched", {"mode": self.mode, "attempt": run.attempts})
        return job

    def _send(self, job: Job) -> None:
        raise NotImplementedError


# --- embedded -------------------------------------------------------------------------------


class LifecycleSink:
    """The embedded mode's EventSink: a job's events straight into its run's lifecycle."""

    def __init__(self, lifecycle: Lifecycle, runner: JobRunner) -> None:
        self.lifecycle = lifecycle
        self.runner = runner

    def may_start(self, job: Job) -> bool:
        """Only a run still in flight starts (not one cancelled while it waited); what an
        interrupted earlier attempt left half-written goes first."""
        remove_partial_outputs(Path(job.output_path))
        return self.lifecycle.started(str(job.run_id)) is Outcome.APPLIED

    def staging(self, event: StagingProgress) -> None:
        self.lifecycle.staging(event)

    def matching(self, event: MatchingProgress) -> None:
        self.lifecycle.matching(event)

    def completed(self, event: CompletionCallback) -> None:
        self.lifecycle.completed(event)

    def failed(self, event: ErrorCallback, error: KallaError) -> None:
        if self.runner.stopping and error.kind == "cancelled":
            # stopped by the app's shutdown: left in flight, resubmitted on the next start
            log.info("run %s interrupted by shutdown; it resumes on the next start", event.run_id)
            return
        self.lifecycle.failed(event)


class EmbeddedDispatcher(Dispatcher):
    """Runs jobs on this app's own ``JobRunner``, each in a child process."""

    mode = "embedded"

    def __init__(self, db: Database, lifecycle: Lifecycle, settings: Settings) -> None:
        super().__init__(db, lifecycle, settings)
        self.runner = JobRunner(settings, name="the app")
        self.sink = LifecycleSink(lifecycle, self.runner)

    def start(self) -> None:
        self.runner.start()
        super().start()

    def stop(self) -> None:
        """Running jobs are stopped at once; their runs resume on the next start."""
        self.runner.shutdown(grace=0)

    def _recover_one(self, run_id: str, attempts: int, status: str, mode: str) -> None:
        if self.lifecycle.settle_from_manifest(run_id):
            log.info("run %s: outputs found complete; settled", run_id)
            return
        self._resubmit_or_fail(run_id, attempts, "the run was interrupted (the app stopped)")

    def _send(self, job: Job) -> None:
        try:
            self.runner.submit(job, self.sink)
        except KallaError as exc:  # refused (queue full, a path out of bounds): the run fails
            self.lifecycle.failed(ErrorCallback(run_id=job.run_id, error=exc.message))

    def cancel(self, run_id: str) -> None:
        with contextlib.suppress(NotFoundError, ConflictError):  # not ours, or it has ended
            self.runner.cancel(UUID(run_id))


# --- single mode ----------------------------------------------------------------------------


class WorkerDispatcher(Dispatcher):
    """POSTs jobs to ``WORKER_URL``; the worker calls back; a poller settles quiet runs."""

    mode = "worker"

    def __init__(
        self,
        db: Database,
        lifecycle: Lifecycle,
        settings: Settings,
        client: httpx.Client | None = None,
    ) -> None:
        super().__init__(db, lifecycle, settings)
        assert settings.worker_url
        self.worker_url = settings.worker_url.rstrip("/")
        self.shown_url = redact_uri(self.worker_url)
        self.client = client or httpx.Client(timeout=10.0, trust_env=False)
        self.stopping = threading.Event()
        self._poller: threading.Thread | None = None

    def start(self) -> None:
        self._poller = threading.Thread(target=self._poll_loop, name="kalla-poll", daemon=True)
        self._poller.start()

    def stop(self) -> None:
        self.stopping.set()
        if self._poller is not None:
            self._poller.join(timeout=5)
        self.client.close()

    def callback_url(self, run_id: UUID) -> str:
        """Where the worker reports this run's events (``KALLA_APP_URL``)."""
        return f"{app_url(self.settings)}/api/runs/{run_id}/callback"

    def _send(self, job: Job) -> None:
        run_id = job.run_id
        request = {**job.to_dict(), "callback_url": self.callback_url(run_id)}
        try:
            response = self.client.post(f"{self.worker_url}/api/jobs", json=request)
        except httpx.HTTPError as exc:
            self.lifecycle.failed(
                ErrorCallback(
                    run_id=run_id,
                    error=f"cannot reach the worker at {self.shown_url}: {type(exc).__name__}",
                )
            )
            return
        if response.status_code in (429, 503):  # busy or draining: the poller tries again
            self._defer(str(run_id), f"the worker is busy (HTTP {response.status_code})")
            return
        if response.status_code >= 300:
            self.lifecycle.failed(
                ErrorCallback(
                    run_id=run_id,
                    error=f"the worker refused the job (HTTP {response.status_code}): "
                    f"{_message(response)}",
                )
            )
            return
        log.info("run %s dispatched to the worker at %s", run_id, self.shown_url)

    def cancel(self, run_id: str) -> None:
        try:
            response = self.client.delete(f"{self.worker_url}/api/jobs/{run_id}")
        except httpx.HTTPError as exc:
            log.warning(
                "run %s: cannot ask the worker at %s to cancel it (%s); its late callbacks "
                "will be ignored",
                run_id,
                self.shown_url,
                type(exc).__name__,
            )
            return
        if response.status_code >= 300 and response.status_code not in (404, 409):
            log.warning("run %s: the worker answered the cancel with HTTP %s", run_id,
                        response.status_code)  # fmt: skip

    def _defer(self, run_id: str, why: str) -> None:
        """Leave the run queued without spending an attempt; the poller submits it again."""
        log.info("run %s: %s; it stays queued", run_id, why)
        with self.db.session() as session:
            runs = RunRepository(session)
            run = runs.get(run_id, for_update=True)
            if run is not None and run.status == JobStatus.QUEUED:
                run.attempts = max(0, run.attempts - 1)
                runs.add_event(run_id, "deferred", {"reason": why})

    def _poll_loop(self) -> None:
        first = True
        while not self.stopping.is_set():
            try:
                self._poll(everything=first)
                first = False
            except Exception:
                log.exception("polling the worker failed")
            self.stopping.wait(self.settings.poll_interval)

    def _poll(self, *, everything: bool) -> None:
        quiet_since = utcnow() - timedelta(seconds=self.settings.poll_interval)
        with self.db.session() as session:
            runs: list[RunRow] = list(RunRepository(session).with_status(IN_FLIGHT))
            due = [
                (r.id, r.attempts, r.status, r.mode)
                for r in runs
                if everything or r.updated_at <= quiet_since
            ]
        for run_id, attempts, status, mode in due:
            if self.stopping.is_set():
                return
            self._recover_one(run_id, attempts, status, mode)

    def recover(self) -> None:
        self._poll(everything=True)

    def _recover_one(self, run_id: str, attempts: int, status: str, mode: str) -> None:
        try:
            response = self.client.get(f"{self.worker_url}/api/jobs/{run_id}")
        except httpx.HTTPError as exc:
            log.warning(
                "run %s: cannot ask the worker at %s (%s); trying again later",
                run_id,
                self.shown_url,
                type(exc).__name__,
            )
            return
        if response.status_code == 404:
            if self.lifecycle.settle_from_manifest(run_id):
                return
            self._resubmit_or_fail(run_id, attempts, "the worker does not know the run")
            return
        if response.status_code >= 300:
            log.warning("run %s: worker status HTTP %s", run_id, response.status_code)
            return
        try:
            body = response.json()
        except ValueError:
            return
        self._settle(run_id, body if isinstance(body, dict) else {})

    def _settle(self, run_id: str, body: dict[str, Any]) -> None:
        try:
            state = JobStatus(str(body.get("status")))
        except ValueError:
            log.warning("run %s: the worker answered an unknown status", run_id)
            return
        if state is JobStatus.COMPLETED:
            if not self.lifecycle.settle_from_manifest(run_id):
                result = body.get("result") or body.get("completion")
                if isinstance(result, dict):
                    try:
                        self.lifecycle.completed(CompletionCallback.model_validate(result))
                    except ValueError:
                        log.warning("run %s: worker says completed, no outputs found", run_id)
        elif state in (JobStatus.FAILED, JobStatus.CANCELLED):
            error = body.get("error") or f"the worker reports the run {state.value}"
            self.lifecycle.failed(ErrorCallback(run_id=UUID(run_id), error=scrub(str(error))))


def _message(response: httpx.Response) -> str:
    try:
        data = response.json()
        text = (
            str(data.get("error") or data.get("detail") or data) if isinstance(data, dict) else ""
        )
    except ValueError:
        text = response.text
    return scrub(text)[:500]


def make_dispatcher(db: Database, lifecycle: Lifecycle, settings: Settings) -> Dispatcher:
    if settings.worker_url:
        return WorkerDispatcher(db, lifecycle, settings)
    return EmbeddedDispatcher(db, lifecycle, settings)
