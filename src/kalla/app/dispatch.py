"""Getting runs executed: in-process (embedded, the default) or by a worker over HTTP.

Both dispatchers build the JobRequest from the store when a run is submitted, so a run
believed in flight when the app starts can be settled or resubmitted the same way:

* embedded: the previous process died with the run; outputs already written (their manifest
  is there) complete it, otherwise it is resubmitted, up to ``MAX_ATTEMPTS`` in all.
* single mode (``WORKER_URL``): the worker is asked (``GET /api/jobs/{run_id}``) at start and
  then every ``KALLA_POLL_INTERVAL`` seconds for runs that went quiet; a job the worker does
  not know is resubmitted, a finished one is settled from its status or its manifest.
"""

from __future__ import annotations

import logging
import queue
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any
from uuid import UUID

import httpx

from kalla.app.jobs import build_job
from kalla.app.lifecycle import IN_FLIGHT, Lifecycle, Outcome, RunStatus, scrub
from kalla.app.storage import Database, RecipeVersionRow, RunRepository, RunRow, SourceRepository
from kalla.app.storage.models import utcnow
from kalla.connectors import redact_uri
from kalla.errors import KallaError
from kalla.recipe import (
    CompletionCallback,
    ErrorCallback,
    JobRequest,
    MatchingProgress,
    Recipe,
    StagingProgress,
)
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

    def _prepare(self, run_id: str) -> JobRequest:
        with self.db.session() as session:
            runs = RunRepository(session)
            run = runs.get(run_id, for_update=True)
            if run is None:
                raise KallaError(f"run {run_id} disappeared")
            version = session.get(RecipeVersionRow, run.recipe_version_id)
            assert version is not None
            recipe = Recipe.model_validate(version.body)
            registered = SourceRepository(session).all()
            job = build_job(
                run,
                recipe,
                registered,
                callback_url=f"{app_url(self.settings)}/api/runs/{run.id}/callback",
            )
            run.attempts += 1
            run.mode = self.mode
            run.status = RunStatus.QUEUED.value if run.status != "running" else run.status
            runs.touch(run)
            runs.add_event(run.id, "dispatched", {"mode": self.mode, "attempt": run.attempts})
        return job

    def _send(self, job: JobRequest) -> None:
        raise NotImplementedError


# --- embedded -------------------------------------------------------------------------------


class _EmbeddedEvents:
    """run_job's events straight into the store."""

    def __init__(self, dispatcher: EmbeddedDispatcher) -> None:
        self.dispatcher = dispatcher
        self.lifecycle = dispatcher.lifecycle

    def staging(self, event: StagingProgress) -> None:
        self.lifecycle.staging(event)

    def matching(self, event: MatchingProgress) -> None:
        self.lifecycle.matching(event)

    def completed(self, event: CompletionCallback) -> None:
        self.lifecycle.completed(event)

    def failed(self, event: ErrorCallback, error: KallaError) -> None:
        if self.dispatcher.stopping.is_set() and error.kind == "cancelled":
            # stopped by the app's shutdown: left in flight, resubmitted on the next start
            log.info("run %s interrupted by shutdown; it resumes on the next start", event.run_id)
            return
        self.lifecycle.failed(event)


class EmbeddedDispatcher(Dispatcher):
    """Runs jobs on threads of this process through the worker's ``run_job``."""

    mode = "embedded"

    def __init__(self, db: Database, lifecycle: Lifecycle, settings: Settings) -> None:
        super().__init__(db, lifecycle, settings)
        self.stopping = threading.Event()
        self._queue: queue.Queue[JobRequest | None] = queue.Queue()
        self._threads: list[threading.Thread] = []
        self._tokens: dict[str, Any] = {}
        self._lock = threading.Lock()

    def start(self) -> None:
        for i in range(max(1, self.settings.worker_concurrency)):
            thread = threading.Thread(target=self._loop, name=f"kalla-run-{i}", daemon=True)
            thread.start()
            self._threads.append(thread)
        super().start()

    def stop(self) -> None:
        self.stopping.set()
        with self._lock:
            for token in self._tokens.values():
                token.cancel("the app is shutting down")
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            thread.join(timeout=self.settings.worker_shutdown_grace)

    def _recover_one(self, run_id: str, attempts: int, status: str, mode: str) -> None:
        if self.lifecycle.settle_from_manifest(run_id):
            log.info("run %s: outputs found complete; settled", run_id)
            return
        self._resubmit_or_fail(run_id, attempts, "the run was interrupted (the app stopped)")

    def _send(self, job: JobRequest) -> None:
        self._queue.put(job)

    def cancel(self, run_id: str) -> None:
        # a queued job is skipped when its turn comes (its run is no longer in flight)
        with self._lock:
            token = self._tokens.get(run_id)
        if token is not None:
            token.cancel("run cancelled on request")

    def _loop(self) -> None:
        from kalla.worker.job import CancelToken, remove_partial_outputs, run_job

        while True:
            job = self._queue.get()
            if job is None or self.stopping.is_set():
                return
            run_id = str(job.run_id)
            token = CancelToken()
            with self._lock:
                self._tokens[run_id] = token
            try:
                if self.lifecycle.started(run_id) is not Outcome.APPLIED:
                    continue  # cancelled while it waited
                remove_partial_outputs(Path(job.output_path))
                run_job(job, _EmbeddedEvents(self), settings=self.settings, cancel=token)
            except Exception as exc:  # run_job reports failures itself; this is a bug
                log.exception("embedded run %s crashed", run_id)
                if not self.stopping.is_set():
                    self.lifecycle.failed(
                        ErrorCallback(run_id=job.run_id, error=f"internal error: {exc!r}"[:500])
                    )
            finally:
                with self._lock:
                    self._tokens.pop(run_id, None)


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

    def _send(self, job: JobRequest) -> None:
        run_id = UUID(str(job.run_id))
        try:
            response = self.client.post(f"{self.worker_url}/api/jobs", json=job.to_dict())
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
            if run is not None and run.status == RunStatus.QUEUED.value:
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
        state = str(body.get("status", "")).lower()
        if state in ("completed", "complete", "succeeded", "done"):
            if not self.lifecycle.settle_from_manifest(run_id):
                result = body.get("result") or body.get("completion")
                if isinstance(result, dict):
                    try:
                        self.lifecycle.completed(CompletionCallback.model_validate(result))
                    except ValueError:
                        log.warning("run %s: worker says completed, no outputs found", run_id)
        elif state in ("failed", "error", "cancelled"):
            error = body.get("error") or f"the worker reports the run {state}"
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
