"""``/api/runs``: create and dispatch runs (JSON, or multipart with the file sources' uploads)."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID, uuid4

from fastapi import APIRouter, Depends, Query, Request
from pydantic import ValidationError
from starlette.concurrency import run_in_threadpool

from kalla.app.api.recipes import find_version
from kalla.app.deps import SessionDep, StateDep, require_token
from kalla.app.errors import BadRequestError
from kalla.app.jobs import file_sources, resolve_uri
from kalla.app.lifecycle import Outcome
from kalla.app.openapi import json_body
from kalla.app.schemas import (
    MAX_INT,
    Page,
    RunCounts,
    RunCreate,
    RunEventPublic,
    RunPublic,
    RunTimings,
)
from kalla.app.storage import RunRepository, RunRow, SourceRepository
from kalla.app.uploads import RunForm, check_upload_schema, receive_form
from kalla.errors import ConflictError, EvidenceError, NotFoundError
from kalla.evidence.output import OUTPUT_NAMES as OUTPUTS
from kalla.evidence.verify import VerifyReport
from kalla.recipe import Recipe
from kalla.recipe.parse import describe_validation_error
from kalla.runner import JobStatus
from kalla.secrets import scrub
from kalla.settings import Settings
from kalla.suggest import did_you_mean

router = APIRouter(prefix="/api/runs", tags=["runs"], dependencies=[Depends(require_token)])
log = logging.getLogger("kalla.app.runs")

MULTIPART_SCHEMA = {
    "type": "object",
    "required": ["recipe_id"],
    "properties": {
        "recipe_id": {"type": "string"},
        "version": {"type": "integer", "minimum": 1},
    },
    "additionalProperties": {
        "type": "string",
        "format": "binary",
        "description": "one file per file source, the field named after its alias",
    },
}


def public(run: RunRow, *, with_manifest: bool = True) -> RunPublic:
    manifest = run.manifest or None
    results: dict[str, str] = {}
    if run.status == JobStatus.COMPLETED.value:
        produced = set((manifest or {}).get("outputs", {})) or set(OUTPUTS[:3])
        results = {
            name: f"/api/runs/{run.id}/results/{name}" for name in OUTPUTS if name in produced
        }
    seconds = None
    if run.started_at and run.finished_at:
        seconds = round((run.finished_at - run.started_at).total_seconds(), 3)
    stages = (manifest or {}).get("timings", {})
    return RunPublic(
        id=run.id,
        recipe_id=run.recipe_id,
        recipe_version=run.recipe_version,
        status=run.status,
        stage=run.stage,
        progress=round(run.progress, 4),
        mode=run.mode,
        attempts=run.attempts,
        counts=RunCounts(
            matched=run.matched_count,
            unmatched_left=run.unmatched_left_count,
            unmatched_right=run.unmatched_right_count,
            ambiguous_left=run.ambiguous_left_count,
            ambiguous_right=run.ambiguous_right_count,
            ambiguous=run.ambiguous_count,
        ),
        error=run.error,
        timings=RunTimings(
            created_at=run.created_at,
            started_at=run.started_at,
            finished_at=run.finished_at,
            updated_at=run.updated_at,
            seconds=seconds,
            stages={k: float(v) for k, v in stages.items() if isinstance(v, int | float)},
        ),
        results=results,
        manifest=manifest if with_manifest else None,
    )


def get_run(session: SessionDep, run_id: UUID) -> RunRow:
    run = RunRepository(session).get(str(run_id))
    if run is None:
        raise NotFoundError(f"run {run_id} not found")
    return run


@router.post(
    "",
    status_code=202,
    openapi_extra=json_body(RunCreate, {"multipart/form-data": MULTIPART_SCHEMA}),
)
async def create_run(request: Request, state: StateDep) -> RunPublic:
    """Create a run of a recipe version and dispatch it.

    JSON (``{"recipe_id", "version"?}``) when every source is persistent; otherwise
    ``multipart/form-data`` with ``recipe_id`` (and ``version``) fields and one file per
    ``type: "file"`` source, named after its alias. Each file is checked against the
    recipe's ``schema`` before the run is dispatched (422 naming missing columns); a file
    over ``KALLA_MAX_UPLOAD_SIZE`` is refused with 413.
    """
    run_id = str(uuid4())
    upload_dir = (state.settings.staging_path / "uploads" / run_id).resolve()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    form = RunForm()
    if media == "multipart/form-data":
        form = await receive_form(
            request, upload_dir, max_file_bytes=state.settings.max_upload_size
        )
        fields = dict(form.fields)
    elif media in ("application/json", ""):
        fields = _json_fields(await request.body())
    else:
        raise BadRequestError(
            f"unsupported Content-Type '{media[:80]}': send application/json or multipart/form-data"
        )
    try:
        run = await run_in_threadpool(_create, state, run_id, fields, form)
    except BaseException:
        shutil.rmtree(upload_dir, ignore_errors=True)
        raise
    await run_in_threadpool(state.dispatcher.submit, run_id)
    with state.db.session() as session:
        row = RunRepository(session).get(run_id)
        return public(row or run)


def _json_fields(raw: bytes) -> dict[str, Any]:
    try:
        body = RunCreate.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        raise BadRequestError(
            f"invalid run request ({len(problems)} problem(s))", problems=problems
        ) from None
    return {"recipe_id": body.recipe_id, "version": body.version}


def _version(value: Any) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise BadRequestError(f"version must be a whole number, not '{str(value)[:40]}'") from None
    if not 1 <= number <= MAX_INT:
        raise BadRequestError("version must be a whole number from 1")
    return number


def _create(state: StateDep, run_id: str, fields: dict[str, Any], form: RunForm) -> RunRow:
    recipe_id = fields.get("recipe_id")
    if not recipe_id or not isinstance(recipe_id, str):
        raise BadRequestError("recipe_id is required")
    if "\x00" in recipe_id or len(recipe_id) > 200:
        raise BadRequestError("recipe_id must be at most 200 characters, without NUL")
    extra = sorted(set(fields) - {"recipe_id", "version"})
    if extra:
        raise BadRequestError(f"unknown form field(s): {', '.join(f[:40] for f in extra)}")
    version = _version(fields.get("version"))
    with state.db.session() as session:
        row = find_version(session, recipe_id, version)
        recipe = Recipe.model_validate(row.body)
        registered = SourceRepository(session).all()
        check_sources(recipe, form, registered, state.settings)
        run = RunRow(
            id=run_id,
            recipe_version_id=row.id,
            recipe_id=row.recipe_id,
            recipe_version=row.version,
            status=JobStatus.QUEUED.value,
            stage="queued",
            progress=0.0,
            mode=state.dispatcher.mode,
            attempts=0,
            output_path=str((Path(state.settings.output_root) / run_id).resolve()),
            uploads={alias: str(saved.path) for alias, saved in form.files.items()},
        )
        runs = RunRepository(session)
        runs.add(run)
        runs.add_event(
            run_id,
            "created",
            {
                "recipe_id": row.recipe_id,
                "version": row.version,
                "uploads": {
                    a: {"filename": s.filename, "bytes": s.size} for a, s in form.files.items()
                },
            },
        )
    log.info("run %s created for recipe %s v%d", run_id, row.recipe_id, row.version)
    return run


def check_sources(recipe: Recipe, form: RunForm, registered: Any, settings: Settings) -> None:
    """The uploads fit the recipe (one per file source, with its columns; the files are read
    in a child process) and its persistent sources can be read (masked secrets resolved).
    Also used by builder sessions that edit a recipe."""
    wanted = {s.alias: s for s in file_sources(recipe)}
    problems: list[str] = []
    for alias in form.files:
        if alias not in wanted:
            aliases = [recipe.sources.left.alias, recipe.sources.right.alias]
            why = (
                "is a persistent source (its data is read from its URI)"
                if alias in aliases
                else f"is not a source of this recipe{did_you_mean(alias, list(wanted))}"
            )
            problems.append(f"upload '{alias}' {why}")
    for alias in wanted:
        if alias not in form.files:
            problems.append(
                f"file source '{alias}' needs its file: send multipart/form-data with a file "
                f"field named '{alias}'"
            )
    if problems:
        raise BadRequestError(
            f"the uploads do not fit recipe '{recipe.recipe_id}'", problems=problems
        )
    for alias, saved in form.files.items():
        check_upload_schema(saved, wanted[alias].schema_, settings, wanted[alias].format)
    for source in (recipe.sources.left, recipe.sources.right):
        if not source.is_file:
            resolve_uri(source.uri or "", source.alias, registered)


@router.get("")
def list_runs(
    session: SessionDep,
    recipe_id: Annotated[str | None, Query(max_length=200)] = None,
    status: JobStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> Page[RunPublic]:
    """Runs, newest first; filter by recipe and status."""
    rows, total = RunRepository(session).page(
        recipe_id=recipe_id,
        status=status.value if status else None,
        limit=limit,
        offset=offset,
    )
    items = [public(r, with_manifest=False) for r in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/{run_id}")
def read_run(run_id: UUID, session: SessionDep) -> RunPublic:
    """Status, stage, progress, counts, error, timings and (once completed) the manifest."""
    return public(get_run(session, run_id))


@router.post("/{run_id}/cancel")
def cancel_run(run_id: UUID, state: StateDep) -> RunPublic:
    """Cancel a queued or running run. It ends as ``cancelled`` at once; a job already
    running stops at its next checkpoint (within half a second while it reads a PostgreSQL
    table, else between files and passes), or is killed 3 s later, and leaves no outputs.
    409 when the run has already ended."""
    key = str(run_id)
    if state.lifecycle.cancelled(key, "cancelled on request") is not Outcome.APPLIED:
        with state.db.session() as session:
            status = get_run(session, run_id).status
        raise ConflictError(f"run {run_id} already {status}; nothing to cancel")
    state.dispatcher.cancel(key)
    with state.db.session() as session:
        return public(get_run(session, run_id))


VERIFY_MULTIPART = {
    "type": "object",
    "additionalProperties": {
        "type": "string",
        "format": "binary",
        "description": "an input as the run read it, the field named after its alias",
    },
}


@router.post(
    "/{run_id}/verify",
    openapi_extra={
        "requestBody": {
            "required": False,
            "content": {"multipart/form-data": {"schema": VERIFY_MULTIPART}},
        }
    },
)
async def verify_run(run_id: UUID, request: Request, state: StateDep) -> VerifyReport:
    """Verify a completed run, as ``kalla verify`` does (docs/audit.md): its manifest, recipe
    and outputs against their recorded hashes and content digests, then, with its inputs
    sent again (``multipart/form-data``, one file per input named after its alias; uploads
    are not kept after a run), a re-run of its recipe compared digest by digest. The verdict
    is ``verified``, ``differs`` or ``cannot verify`` with its reasons. It runs in a child
    process and answers when the re-run ends."""
    with state.db.session() as session:
        run = get_run(session, run_id)
        status, output = run.status, run.output_path
    if status != JobStatus.COMPLETED.value:
        raise ConflictError(f"run {run_id} is {status}: only a completed run can be verified")
    dest = (state.settings.staging_path / "uploads" / f"verify-{uuid4().hex}").resolve()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    try:
        sources: dict[str, str] = {}
        if media == "multipart/form-data":
            form = await receive_form(request, dest, max_file_bytes=state.settings.max_upload_size)
            if form.fields:
                names = ", ".join(sorted(f[:40] for f in form.fields))
                raise BadRequestError(f"unknown form field(s): {names}; send only files")
            sources = {alias: str(saved.path) for alias, saved in form.files.items()}
        return await run_in_threadpool(_verify_in_child, state.settings, output, sources)
    finally:
        shutil.rmtree(dest, ignore_errors=True)


def _verify_in_child(settings: Settings, run_dir: str, sources: dict[str, str]) -> VerifyReport:
    """``kalla verify --json`` in a child process: the inputs are user files and the re-run
    runs user SQL, which never happens in the app's own process."""
    command = [sys.executable, "-m", "kalla.cli", "verify", run_dir, "--json"]
    for alias, path in sources.items():
        command += ["--source", f"{alias}={path}"]
    env = {
        **os.environ,
        "STAGING_PATH": str(settings.staging_path),
        "KALLA_MEMORY_LIMIT": str(settings.memory_limit),
        "KALLA_TARGET_PARTITIONS": str(settings.target_partitions),
        "KALLA_PARQUET_COMPRESSION": settings.parquet_compression,
        "KALLA_JOIN_STRATEGY": settings.join_strategy,
    }
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    if done.returncode in (0, 8, 9):  # verified, differs, cannot verify
        return VerifyReport.model_validate_json(done.stdout)
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    cause = " ".join(lines).removeprefix("error:").strip() or f"exit status {done.returncode}"
    raise EvidenceError(f"the run cannot be verified: {scrub(cause)}")


@router.get("/{run_id}/events")
def run_events(run_id: UUID, session: SessionDep) -> list[RunEventPublic]:
    """What happened to the run, oldest first."""
    get_run(session, run_id)
    return [
        RunEventPublic(kind=e.kind, payload=e.payload, created_at=e.created_at)
        for e in RunRepository(session).events(str(run_id))
    ]


__all__ = ["get_run", "public", "router"]
