"""A run's state machine: every event (embedded or a worker callback) lands here.

queued → running (staging → matching) → completed | failed | cancelled. Terminal states are
final: a late, retried or replayed event changes nothing, and an event whose signature digest
was seen before is not even recorded again. Progress never goes backwards. A run cancelled on
request ends at once; its job stops at its next checkpoint, and should it finish first, the
outputs it wrote are removed, so a cancelled run never leaves results behind.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Callable
from enum import StrEnum
from pathlib import Path
from typing import Any

from kalla.app.storage import Database, RecipeVersionRow, RunRepository, RunRow
from kalla.app.storage.models import utcnow
from kalla.errors import NotFoundError
from kalla.evidence.output import OUTPUT_NAMES
from kalla.recipe import CompletionCallback, ErrorCallback, MatchingProgress, StagingProgress
from kalla.runner import JobStatus
from kalla.secrets import scrub

log = logging.getLogger("kalla.app.runs")

# The runner's vocabulary, as the strings the store keeps.
IN_FLIGHT = tuple(s.value for s in JobStatus if not s.finished)
TERMINAL = tuple(s.value for s in JobStatus if s.finished)


class Outcome(StrEnum):
    APPLIED = "applied"
    IGNORED = "ignored"  # the run already ended, or the event is older than what we know
    DUPLICATE = "duplicate"  # this exact signed callback was received before


# Share of the overall progress bar: staging left, staging right, matching.
_STAGING_LEFT = (0.0, 0.3)
_STAGING_RIGHT = (0.3, 0.6)
_MATCHING = (0.6, 1.0)


def read_manifest(output_path: str) -> dict[str, Any] | None:
    try:
        data = json.loads((Path(output_path) / "manifest.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class Lifecycle:
    """Applies run events to the store, each in its own transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db
        # called with the run id after each applied event (app/events.py wakes live streams)
        self.listeners: list[Callable[[str], None]] = []

    # ---- transitions --------------------------------------------------------------------

    def started(self, run_id: str) -> Outcome:
        """IGNORED when the run ended while it waited (cancelled): do not start its job."""

        def mutate(run: RunRow) -> None:
            run.status = JobStatus.RUNNING.value
            run.stage = "staging"
            run.started_at = run.started_at or utcnow()

        return self._apply(run_id, "started", {}, None, mutate)

    def staging(self, event: StagingProgress, *, digest: str | None = None) -> Outcome:
        payload = event.to_dict()

        def mutate(run: RunRow, recipe: RecipeVersionRow | None = None) -> None:
            left = _left_alias(recipe)
            low, high = _STAGING_LEFT if event.source == left else _STAGING_RIGHT
            run.status = JobStatus.RUNNING.value
            run.started_at = run.started_at or utcnow()
            if run.stage in ("queued", "staging"):
                run.stage = "staging"
            run.progress = max(run.progress, low + (high - low) * event.progress)

        return self._apply(str(event.run_id), "staging", payload, digest, mutate, with_recipe=True)

    def matching(self, event: MatchingProgress, *, digest: str | None = None) -> Outcome:
        def mutate(run: RunRow) -> None:
            low, high = _MATCHING
            run.status = JobStatus.RUNNING.value
            run.started_at = run.started_at or utcnow()
            run.stage = "matching"
            run.progress = max(run.progress, low + (high - low) * event.progress * 0.99)
            if event.matched_count is not None:
                run.matched_count = event.matched_count

        return self._apply(str(event.run_id), "matching", event.to_dict(), digest, mutate)

    def completed(self, event: CompletionCallback, *, digest: str | None = None) -> Outcome:
        def mutate(run: RunRow) -> None:
            manifest = read_manifest(run.output_path)
            counts = (manifest or {}).get("counts", {})
            run.status = JobStatus.COMPLETED.value
            run.stage = "done"
            run.progress = 1.0
            run.matched_count = event.matched_count
            run.unmatched_left_count = event.unmatched_left_count
            run.unmatched_right_count = event.unmatched_right_count
            run.ambiguous_left_count = event.ambiguous_left_count
            run.ambiguous_right_count = event.ambiguous_right_count
            run.ambiguous_count = counts.get("ambiguous_count")
            run.manifest = manifest
            run.error = None
            run.finished_at = utcnow()

        run_id = str(event.run_id)
        outcome = self._apply(run_id, "completed", event.to_dict(), digest, mutate)
        if outcome is Outcome.APPLIED:
            self._cleanup(run_id)
        elif outcome is Outcome.IGNORED:
            self._discard_if_cancelled(run_id)
        return outcome

    def failed(self, event: ErrorCallback, *, digest: str | None = None) -> Outcome:
        message = scrub(event.error)
        payload = {"run_id": str(event.run_id), "error": message}
        outcome = self._end(str(event.run_id), JobStatus.FAILED, message, payload, digest)
        if outcome is Outcome.APPLIED:
            log.warning("run %s failed: %s", event.run_id, message)
        return outcome

    def cancelled(self, run_id: str, reason: str) -> Outcome:
        """End a queued or running run now; IGNORED when it had already ended."""
        outcome = self._end(run_id, JobStatus.CANCELLED, reason, {"reason": reason}, None)
        if outcome is Outcome.APPLIED:
            log.info("run %s cancelled: %s", run_id, reason)
        return outcome

    def settle_from_manifest(self, run_id: str) -> bool:
        """Complete a run from the manifest its outputs carry (the completion was lost)."""
        with self.db.session() as session:
            run = RunRepository(session).get(run_id)
            manifest = read_manifest(run.output_path) if run else None
        if run is None or manifest is None:
            return False
        counts = manifest.get("counts", {})
        try:
            event = CompletionCallback.model_validate(
                {
                    "run_id": run_id,
                    "matched_count": counts["matched_count"],
                    "unmatched_left_count": counts["unmatched_left_count"],
                    "unmatched_right_count": counts["unmatched_right_count"],
                    "ambiguous_left_count": counts.get("ambiguous_left_count"),
                    "ambiguous_right_count": counts.get("ambiguous_right_count"),
                    "output_paths": {
                        name: str(Path(run.output_path) / f"{name}.parquet")
                        for name in OUTPUT_NAMES[:3]  # ambiguous.parquet exists only sometimes
                    },
                }
            )
        except (KeyError, ValueError):
            return False
        self.completed(event)
        return True

    def note(self, run_id: str, kind: str, payload: dict[str, Any]) -> None:
        with self.db.session() as session:
            RunRepository(session).add_event(run_id, kind, payload)

    # ---- machinery ----------------------------------------------------------------------

    def _apply(
        self,
        run_id: str,
        kind: str,
        payload: dict[str, Any],
        digest: str | None,
        mutate: Callable[..., None],
        *,
        with_recipe: bool = False,
    ) -> Outcome:
        with self.db.session() as session:
            runs = RunRepository(session)
            run = runs.get(run_id, for_update=True)
            if run is None:
                raise NotFoundError(f"run {run_id} not found")
            if digest is not None and runs.seen(digest):
                return Outcome.DUPLICATE
            if run.status in TERMINAL:
                runs.add_event(run_id, f"ignored:{kind}", payload, digest=digest)
                return Outcome.IGNORED
            if not runs.add_event(run_id, kind, payload, digest=digest):
                return Outcome.DUPLICATE
            if with_recipe:
                mutate(run, session.get(RecipeVersionRow, run.recipe_version_id))
            else:
                mutate(run)
            runs.touch(run)
        for listener in self.listeners:
            listener(run_id)
        return Outcome.APPLIED

    def _end(
        self,
        run_id: str,
        status: JobStatus,
        message: str,
        payload: dict[str, Any],
        digest: str | None,
    ) -> Outcome:
        """A run ends without results (failed, cancelled): record why, drop its uploads."""

        def mutate(run: RunRow) -> None:
            run.status = status.value
            run.stage = status.value
            run.error = message
            run.finished_at = utcnow()

        outcome = self._apply(run_id, status.value, payload, digest, mutate)
        if outcome is Outcome.APPLIED:
            self._cleanup(run_id)
        return outcome

    def _discard_if_cancelled(self, run_id: str) -> None:
        """A job that finished after its run was cancelled: its outputs are not results."""
        with self.db.session() as session:
            run = RunRepository(session).get(run_id)
            output = run.output_path if run and run.status == JobStatus.CANCELLED else None
        if output:
            shutil.rmtree(output, ignore_errors=True)

    def _cleanup(self, run_id: str) -> None:
        """Uploaded files are scratch once the run has ended; its outputs stay."""
        with self.db.session() as session:
            run = RunRepository(session).get(run_id)
            uploads = dict(run.uploads or {}) if run else {}
        for path in {Path(p).parent for p in uploads.values()}:
            shutil.rmtree(path, ignore_errors=True)


def _left_alias(recipe: RecipeVersionRow | None) -> str | None:
    try:
        return str(recipe.body["sources"]["left"]["alias"]) if recipe else None
    except (KeyError, TypeError):
        return None
