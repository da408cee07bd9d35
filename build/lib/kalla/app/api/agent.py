"""``/api/agent``: recipe-builder sessions (docs/agent.md).

- ``POST /api/agent/sessions``: a session over uploaded files (multipart, one file per field,
  the field name is the source's alias) and/or registered sources (``sources``, by name).
- ``POST /api/agent/sessions/{id}/messages``: answers ``{"content"}`` with a Server-Sent
  Events stream of typed events (``text_delta``, ``tool_call``, ``tool_result``,
  ``proposal``, ``preview``, ``error``, ``done``; see ``kalla.agent.events``).
- ``GET /api/agent/sessions/{id}``: the session: sources, transcript, proposal, preview.
- ``GET /api/agent/sessions/{id}/events``: the stored events, to replay a conversation.
- ``POST /api/agent/sessions/{id}/accept``: saves the previewed proposal as a recipe (a new
  version when the recipe exists), as ``POST /api/recipes`` does.

With ``ANTHROPIC_API_KEY`` the assistant answers; without it the deterministic builder does.
"""

from __future__ import annotations

import threading
from datetime import datetime
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.concurrency import run_in_threadpool

from kalla.agent.context import SessionSource, ToolContext
from kalla.agent.events import KINDS
from kalla.agent.session import SessionState
from kalla.agent.tools import is_error
from kalla.app.agent_sessions import AgentSessions
from kalla.app.api.recipes import find_version, public
from kalla.app.deps import SessionDep, StateDep, require_token
from kalla.app.errors import BadRequestError
from kalla.app.openapi import json_body
from kalla.app.schemas import MAX_INT, Page, RecipePublic, Text
from kalla.app.storage import RecipeRepository
from kalla.app.storage.models import AgentSessionRow
from kalla.app.uploads import RunForm, receive_form
from kalla.errors import SourceError
from kalla.recipe.parse import describe_validation_error

router = APIRouter(prefix="/api/agent", tags=["agent"], dependencies=[Depends(require_token)])

SSE_SCHEMA = {
    "text/event-stream": {
        "schema": {"type": "string"},
        "example": 'id: 1\nevent: text_delta\ndata: {"text": "Let me look"}\n\n',
    }
}
MULTIPART_SCHEMA = {
    "type": "object",
    "properties": {
        "title": {"type": "string"},
        "sources": {"type": "string", "description": "registered source names, comma-separated"},
    },
    "additionalProperties": {
        "type": "string",
        "format": "binary",
        "description": "one file per source; the field name becomes its alias",
    },
}


class AgentSessionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    sources: list[Annotated[str, Field(min_length=1, max_length=200)]] = Field(
        default_factory=list, max_length=8, description="registered source names"
    )
    title: Text = Field(default="", max_length=200)


class AgentMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: Text = Field(min_length=1, max_length=20_000)


class AgentAccept(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipe_id: Text | None = Field(default=None, min_length=1, max_length=200)
    name: Text | None = Field(default=None, min_length=1, max_length=200)


class AgentSourcePublic(BaseModel):
    alias: str
    name: str
    type: str
    origin: str = Field(description="upload | registered")


class AgentSessionPublic(BaseModel):
    id: str
    title: str
    mode: str = Field(description="assistant (ANTHROPIC_API_KEY set) | builder (deterministic)")
    status: str = Field(description="idle | running (a turn is being answered)")
    sources: list[AgentSourcePublic]
    transcript: list[dict[str, str]] = Field(description="[{role, text}] in order")
    proposal: dict[str, Any] | None = Field(
        description="the latest valid recipe: recipe, sha256, match_description, sql"
    )
    preview: dict[str, Any] | None = Field(description="{sha256, preview} of the latest preview")
    previewed: bool = Field(description="the current proposal has been run on the data")
    accepted: bool
    saved: dict[str, Any] | None = Field(description="{recipe_id, version, sha256} once saved")
    usage: dict[str, int]
    turns: int
    events: int
    created_at: datetime
    updated_at: datetime


class AgentEventPublic(BaseModel):
    seq: int
    kind: str = Field(description=" | ".join(KINDS))
    data: dict[str, Any]
    created_at: datetime


_CREATE = threading.Lock()


def _service(state: StateDep) -> AgentSessions:
    """The app's one session service, created on first use (its tool processes too)."""
    with _CREATE:
        found: AgentSessions | None = getattr(state, "agent", None)
        if found is None:
            found = AgentSessions(state.db, state.settings)
            state.agent = found  # type: ignore[attr-defined]
    return found


ServiceDep = Annotated[AgentSessions, Depends(_service)]


def _public(row: AgentSessionRow, events: int) -> AgentSessionPublic:
    state = SessionState.from_dict(row.state)
    return AgentSessionPublic(
        id=row.id,
        title=row.title,
        mode=row.mode,
        status=row.status,
        sources=[
            AgentSourcePublic(alias=s["alias"], name=s["name"], type=s["type"], origin=s["origin"])
            for s in row.sources.get("items", [])
        ],
        transcript=state.transcript,
        proposal=state.proposal,
        preview=state.preview,
        previewed=state.previewed,
        accepted=bool(state.accepted),
        saved=state.saved,
        usage=state.usage,
        turns=state.turns,
        events=events,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )


@router.post(
    "/sessions",
    status_code=201,
    openapi_extra=json_body(AgentSessionCreate, {"multipart/form-data": MULTIPART_SCHEMA}),
)
async def create_session(request: Request, state: StateDep) -> AgentSessionPublic:
    """A session over uploads and/or registered sources; each upload is checked readable."""
    service = _service(state)
    session_id = service.new_id()
    media = request.headers.get("content-type", "").split(";")[0].strip().lower()
    form = RunForm()
    if media == "multipart/form-data":
        form = await receive_form(
            request, service.upload_dir(session_id), max_file_bytes=state.settings.max_upload_size
        )
        extra = sorted(set(form.fields) - {"title", "sources"})
        if extra:
            service.delete_files(session_id)
            raise BadRequestError(f"unknown form field(s): {', '.join(f[:40] for f in extra)}")
        body = AgentSessionCreate(
            title=form.fields.get("title", "")[:200],
            sources=[s.strip() for s in form.fields.get("sources", "").split(",") if s.strip()],
        )
    elif media in ("application/json", ""):
        try:
            body = AgentSessionCreate.model_validate_json(await request.body() or b"{}")
        except ValidationError as exc:
            problems = describe_validation_error(exc)
            raise BadRequestError(
                f"invalid session request ({len(problems)} problem(s))", problems=problems
            ) from None
    else:
        raise BadRequestError(
            f"unsupported Content-Type '{media[:80]}': send application/json or multipart/form-data"
        )
    uploads = {alias: (saved.path, saved.filename) for alias, saved in form.files.items()}
    try:
        await run_in_threadpool(_check_uploads, service, session_id, uploads)
        row = await run_in_threadpool(
            service.create, session_id, title=body.title, uploads=uploads, registered=body.sources
        )
    except BaseException:
        service.delete_files(session_id)
        raise
    return _public(row, 0)


def _check_uploads(service: AgentSessions, session_id: str, uploads: dict[str, Any]) -> None:
    """Each upload is read (its header) in a child process, never in the app's own."""
    problems = []
    for alias, (path, filename) in uploads.items():
        context = ToolContext(
            sources=(SessionSource(alias, str(path), "file", filename, "upload"),),
            work_dir=service.root / session_id,
        )
        result = service.tools.run("check_source", {"alias": alias}, context)
        if is_error(result):
            problems.append(f"upload '{alias}' ({filename[:120]}): {result['error']}")
    if problems:
        raise SourceError("an upload cannot be read", problems=problems)


@router.get("/sessions")
def list_sessions(
    session: SessionDep,
    service: ServiceDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> Page[AgentSessionPublic]:
    rows, total = service.page(session, limit=limit, offset=offset)
    items = [_public(r, service.event_count(session, r.id)) for r in rows]
    return Page(items=items, total=total, limit=limit, offset=offset)


@router.get("/sessions/{session_id}")
def get_session(session_id: UUID, session: SessionDep, service: ServiceDep) -> AgentSessionPublic:
    row = service.get(session, str(session_id))
    return _public(row, service.event_count(session, row.id))


@router.get(
    "/sessions/{session_id}/events",
    response_model=list[AgentEventPublic],
    responses={200: {"content": SSE_SCHEMA, "description": "JSON list, or SSE when asked"}},
)
def list_events(
    session_id: UUID,
    request: Request,
    session: SessionDep,
    service: ServiceDep,
    after: Annotated[int, Query(ge=0, le=MAX_INT, description="only events after this seq")] = 0,
) -> Any:
    """The session's stored events. With ``Accept: text/event-stream`` (``EventSource``): the
    same as SSE, then the live events of a running turn until its ``done``; a reconnecting
    client's ``Last-Event-ID`` counts as ``after``."""
    row = service.get(session, str(session_id))
    if "text/event-stream" in request.headers.get("accept", ""):
        resume = request.headers.get("last-event-id", "")
        start = int(resume) if resume.isdigit() and int(resume) <= MAX_INT else after
        return StreamingResponse(
            service.follow(row.id, start),
            media_type="text/event-stream",
            headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
        )
    return [
        AgentEventPublic(
            seq=e.seq,
            kind=e.kind,
            data={k: v for k, v in e.payload.items() if k != "kind"},
            created_at=e.created_at,
        )
        for e in service.events(session, row.id, after)
    ]


@router.post(
    "/sessions/{session_id}/messages",
    response_class=StreamingResponse,
    responses={200: {"content": SSE_SCHEMA, "description": "the turn's events (SSE)"}},
)
async def post_message(
    session_id: UUID, body: AgentMessage, service: ServiceDep
) -> StreamingResponse:
    """Answer a message: an SSE stream of the turn's events, ending with ``done``."""
    stream = await run_in_threadpool(service.start_turn, str(session_id), body.content)
    return StreamingResponse(
        stream,
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


@router.post(
    "/sessions/{session_id}/accept",
    status_code=201,
    responses={200: {"description": "identical to the recipe's latest version: nothing new"}},
)
def accept(
    session_id: UUID,
    service: ServiceDep,
    session: SessionDep,
    response: Response,
    body: AgentAccept | None = None,
) -> RecipePublic:
    """Save the previewed proposal (optionally under another ``recipe_id`` / ``name``)."""
    body = body or AgentAccept()
    saved, created = service.accept(str(session_id), recipe_id=body.recipe_id, name=body.name)
    if not created:
        response.status_code = 200
    row = find_version(session, saved["recipe_id"], saved["version"])
    latest = RecipeRepository(session).latest(saved["recipe_id"])
    return public(row, latest.version if latest else row.version)
