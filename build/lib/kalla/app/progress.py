"""A run's progress as the UI shows it: overall, per source while staging, then matching.

Built from the store alone (the run row and its recorded staging/matching events), so the
JSON endpoint, the live stream and a page rendered on the server all say the same thing.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, Field
from sqlalchemy.orm import Session

from kalla.app.lifecycle import TERMINAL
from kalla.app.storage import RecipeVersionRow, RunRepository, RunRow
from kalla.errors import NotFoundError
from kalla.runner import JobStatus as RunStatus


class SourceProgress(BaseModel):
    alias: str
    side: str = Field(description="left | right")
    progress: float = Field(description="0..1 of this source's staging")
    done: bool


class RunProgress(BaseModel):
    run_id: str
    recipe_id: str
    status: str = Field(description="queued | running | completed | failed | cancelled")
    stage: str
    progress: float = Field(description="0..1 over staging and matching")
    sources: list[SourceProgress]
    matching: float = Field(description="0..1 of the matching stage")
    matched_count: int | None = None
    error: str | None = None
    finished: bool = Field(description="the run has ended; no more progress will come")
    updated_at: datetime


def _aliases(recipe: RecipeVersionRow | None) -> tuple[str, str]:
    try:
        sources: dict[str, Any] = recipe.body["sources"] if recipe else {}
        return str(sources["left"]["alias"]), str(sources["right"]["alias"])
    except (KeyError, TypeError):
        return "left", "right"


def run_progress(session: Session, run_id: str) -> RunProgress:
    """The progress of one run, from its row and its recorded events."""
    runs = RunRepository(session)
    run: RunRow | None = runs.get(run_id)
    if run is None:
        raise NotFoundError(f"run {run_id} not found")
    left, right = _aliases(session.get(RecipeVersionRow, run.recipe_version_id))
    staged = {left: 0.0, right: 0.0}
    matching = 0.0
    for event in runs.events(run_id):
        payload = event.payload or {}
        fraction = payload.get("progress")
        if not isinstance(fraction, int | float):
            continue
        if event.kind == "staging" and payload.get("source") in staged:
            alias = str(payload["source"])
            staged[alias] = max(staged[alias], float(fraction))
        elif event.kind == "matching":
            matching = max(matching, float(fraction))
    completed = run.status == RunStatus.COMPLETED.value
    past_staging = completed or run.stage in ("matching", "done")
    if completed:
        matching = 1.0
    sources = [
        SourceProgress(
            alias=alias,
            side=side,
            progress=1.0 if past_staging else round(staged[alias], 4),
            done=past_staging or staged[alias] >= 1.0,
        )
        for alias, side in ((left, "left"), (right, "right"))
    ]
    return RunProgress(
        run_id=run.id,
        recipe_id=run.recipe_id,
        status=run.status,
        stage=run.stage,
        progress=round(run.progress, 4),
        sources=sources,
        matching=round(matching, 4),
        matched_count=run.matched_count,
        error=run.error,
        finished=run.status in TERMINAL,
        updated_at=run.updated_at,
    )
