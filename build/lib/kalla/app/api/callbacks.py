"""Worker callbacks (seed 000 and seed 002 styles), each HMAC-verified before it is parsed.

``X-Kalla-Signature: sha256=<HMAC-SHA256(KALLA_CALLBACK_SECRET, "<timestamp>.<body>")>`` and
``X-Kalla-Timestamp`` are required; a missing, wrong or stale signature is 401. A callback is
idempotent: the exact same signed request again is a ``duplicate`` (recorded once), an event
for a run that already ended is ``ignored``.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Header, Request
from starlette.concurrency import run_in_threadpool

from kalla.app.deps import AppState, StateDep
from kalla.app.errors import BadRequestError
from kalla.app.lifecycle import Outcome
from kalla.app.openapi import json_body
from kalla.app.schemas import CallbackAck
from kalla.app.storage import RunRepository
from kalla.errors import UnauthorizedError
from kalla.recipe import CompletionCallback, ErrorCallback, MatchingProgress, StagingProgress
from kalla.recipe.parse import parse_model
from kalla.worker.callbacks import verify_signature

router = APIRouter(tags=["worker callbacks"])
log = logging.getLogger("kalla.app.callbacks")

Signature = Annotated[
    str | None,
    Header(alias="X-Kalla-Signature", description="sha256=<hex HMAC of '<timestamp>.<body>'>"),
]
Timestamp = Annotated[
    str | None, Header(alias="X-Kalla-Timestamp", description="unix seconds when signed")
]
EventName = Annotated[
    str | None, Header(alias="X-Kalla-Event", description="progress | complete | error")
]


async def _verified(request: Request, state: AppState) -> tuple[dict[str, Any], str]:
    """The parsed JSON body and the signature's digest, once the signature checks out."""
    body = await request.body()
    secret = state.settings.callback_secret
    signature = request.headers.get("x-kalla-signature")
    timestamp = request.headers.get("x-kalla-timestamp")
    if secret is None:
        raise UnauthorizedError("callbacks are refused: the app has no KALLA_CALLBACK_SECRET")
    if not verify_signature(
        secret.get_secret_value(), body, timestamp, signature, state.settings.callback_max_age
    ):
        log.warning("callback refused: missing, wrong or stale signature (%s)", request.url.path)
        raise UnauthorizedError("callback signature missing, wrong or stale")
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"callback body is not valid JSON: {exc}") from None
    if not isinstance(data, dict):
        raise BadRequestError("callback body must be a JSON object")
    digest = hashlib.sha256((signature or "").strip().encode()).hexdigest()
    return data, digest


async def _apply(state: AppState, kind: str, data: dict[str, Any], digest: str) -> CallbackAck:
    lifecycle = state.lifecycle
    if kind == "progress":
        if data.get("stage") == "staging":
            staging = parse_model(StagingProgress, data, what="progress callback")
            run_id, outcome = (
                staging.run_id,
                await run_in_threadpool(lambda: lifecycle.staging(staging, digest=digest)),
            )
        else:
            matching = parse_model(MatchingProgress, data, what="progress callback")
            run_id, outcome = (
                matching.run_id,
                await run_in_threadpool(lambda: lifecycle.matching(matching, digest=digest)),
            )
    elif kind == "complete":
        done = parse_model(CompletionCallback, data, what="completion callback")
        run_id, outcome = (
            done.run_id,
            await run_in_threadpool(lambda: lifecycle.completed(done, digest=digest)),
        )
    else:
        failed = parse_model(ErrorCallback, data, what="error callback")
        run_id, outcome = (
            failed.run_id,
            await run_in_threadpool(lambda: lifecycle.failed(failed, digest=digest)),
        )
    if outcome is not Outcome.APPLIED:
        log.info("callback %s for run %s: %s", kind, run_id, outcome.value)
    with state.db.session() as session:
        run = RunRepository(session).get(str(run_id))
        status = run.status if run else "unknown"
    return CallbackAck(run_id=str(run_id), outcome=outcome.value, status=status)


def _kind_of(data: dict[str, Any], header: str | None) -> str:
    if header in ("progress", "complete", "error"):
        return header
    if "stage" in data:
        return "progress"
    if "error" in data:
        return "error"
    return "complete"


@router.post("/api/worker/progress", openapi_extra=json_body(StagingProgress))
async def progress_callback(
    request: Request, state: StateDep, signature: Signature = None, timestamp: Timestamp = None
) -> CallbackAck:
    """Staging or matching progress (seed 002 payloads)."""
    data, digest = await _verified(request, state)
    return await _apply(state, "progress", data, digest)


@router.post("/api/worker/complete", openapi_extra=json_body(CompletionCallback))
async def complete_callback(
    request: Request, state: StateDep, signature: Signature = None, timestamp: Timestamp = None
) -> CallbackAck:
    """The run completed: counts and output paths."""
    data, digest = await _verified(request, state)
    return await _apply(state, "complete", data, digest)


@router.post("/api/worker/error", openapi_extra=json_body(ErrorCallback))
async def error_callback(
    request: Request, state: StateDep, signature: Signature = None, timestamp: Timestamp = None
) -> CallbackAck:
    """The run failed, with its cause."""
    data, digest = await _verified(request, state)
    return await _apply(state, "error", data, digest)


@router.post("/api/runs/{run_id}/callback", openapi_extra=json_body(CompletionCallback))
async def run_callback(
    run_id: UUID,
    request: Request,
    state: StateDep,
    signature: Signature = None,
    timestamp: Timestamp = None,
    event: EventName = None,
) -> CallbackAck:
    """Any event for this run (seed 002's ``callback_url``); ``X-Kalla-Event`` or the payload's
    shape says which."""
    data, digest = await _verified(request, state)
    if str(data.get("run_id", "")) != str(run_id):
        raise BadRequestError(f"callback body is for run {data.get('run_id')!s:.40}, not {run_id}")
    return await _apply(state, _kind_of(data, event), data, digest)
