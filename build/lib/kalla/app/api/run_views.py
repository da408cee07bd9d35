"""What the run pages read besides the run: its progress (JSON, or live as Server-Sent
Events) and the layout of its match output."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from uuid import UUID

import anyio.to_thread
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse

from kalla.app.api.runs import get_run
from kalla.app.deps import SessionDep, StateDep, require_token
from kalla.app.layout import MatchLayout, match_layout
from kalla.app.progress import RunProgress, run_progress
from kalla.runner import JobStatus as RunStatus

router = APIRouter(prefix="/api/runs", tags=["runs"], dependencies=[Depends(require_token)])

RECHECK_SECONDS = 2.0  # re-read even without a notice (a change made by another instance)


@router.get("/{run_id}/progress")
def read_progress(run_id: UUID, session: SessionDep) -> RunProgress:
    """Status, overall progress, each source's staging progress and the matching progress."""
    return run_progress(session, str(run_id))


@router.get(
    "/{run_id}/progress/stream",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/event-stream": {"schema": {"type": "string"}}}}},
)
async def stream_progress(run_id: UUID, request: Request, state: StateDep) -> StreamingResponse:
    """Server-Sent Events: a ``progress`` event (the JSON of ``/progress``) whenever the run
    changes, then one ``end`` event once it has ended. Open it with ``EventSource``."""
    key = str(run_id)

    def read() -> RunProgress:
        with state.db.session() as session:
            return run_progress(session, key)

    first = await anyio.to_thread.run_sync(read)  # a 404 before the stream starts

    async def events() -> AsyncIterator[str]:
        snapshot: RunProgress | None = first
        last = ""
        with state.events.subscribe(key) as changed:
            while True:
                if snapshot is None:
                    snapshot = await anyio.to_thread.run_sync(read)
                data = snapshot.model_dump_json()
                if data != last:
                    yield f"event: progress\ndata: {data}\n\n"
                    last = data
                if snapshot.finished:
                    yield "event: end\ndata: {}\n\n"
                    return
                snapshot = None
                try:
                    await asyncio.wait_for(changed.wait(), timeout=RECHECK_SECONDS)
                except TimeoutError:
                    yield ": still running\n\n"  # keeps proxies from closing an idle stream
                changed.clear()
                if await request.is_disconnected():
                    return

    headers = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    return StreamingResponse(events(), media_type="text/event-stream", headers=headers)


@router.get("/{run_id}/layout")
def read_layout(run_id: UUID, session: SessionDep) -> MatchLayout:
    """Which source column each match output column carries (for drill-down to the two
    source records of a matched row); empty until the run has completed."""
    run = get_run(session, run_id)
    if run.status != RunStatus.COMPLETED.value:
        return MatchLayout(sides=[], other=[])
    return match_layout(run.output_path, run.manifest)
