"""``/api/sources``: registered persistent sources (PostgreSQL, MySQL, S3); URIs shown redacted."""

from __future__ import annotations

import logging
import re
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Path, Query, Response

from kalla.app.deps import SessionDep, require_token
from kalla.app.errors import BadRequestError
from kalla.app.results import _json_row
from kalla.app.schemas import MAX_INT, Column, Page, SourceCreate, SourcePublic, SourceTest
from kalla.app.storage import SourceRepository, SourceRow
from kalla.connectors import connector_for, redact_uri
from kalla.connectors.base import Connector
from kalla.errors import ConflictError, KallaError, NotFoundError, SourceError
from kalla.suggest import did_you_mean

router = APIRouter(prefix="/api/sources", tags=["sources"], dependencies=[Depends(require_token)])
log = logging.getLogger("kalla.app.sources")

SOURCE_TYPES = {
    "postgres": "postgres",
    "postgresql": "postgres",
    "mysql": "mysql",
    "mariadb": "mysql",
    "s3": "s3",
}
_SCHEME = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")
SourceId = Annotated[int, Path(ge=1, le=MAX_INT)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=MAX_INT)]


def source_type(uri: str) -> str:
    match = _SCHEME.match(uri)
    scheme = match.group(1).lower() if match else ""
    if scheme not in SOURCE_TYPES:
        shown = f"'{scheme}://'" if scheme else "a URI without a scheme"
        raise BadRequestError(
            f"cannot register {shown}{did_you_mean(scheme, SOURCE_TYPES) if scheme else ''}: "
            "registered sources are persistent (postgres://, mysql://, s3://); files are "
            "uploaded with each run"
        )
    return SOURCE_TYPES[scheme]


def public(row: SourceRow) -> SourcePublic:
    return SourcePublic(
        id=row.id,
        name=row.name,
        type=row.type,
        uri=redact_uri(row.uri),
        description=row.description,
        created_at=row.created_at,
    )


def _get(session: SessionDep, source_id: int) -> SourceRow:
    row = SourceRepository(session).get(source_id)
    if row is None:
        raise NotFoundError(f"source {source_id} not found")
    return row


@router.get("")
def list_sources(session: SessionDep, limit: Limit = 50, offset: Offset = 0) -> Page[SourcePublic]:
    rows, total = SourceRepository(session).page(limit=limit, offset=offset)
    return Page(items=[public(r) for r in rows], total=total, limit=limit, offset=offset)


@router.post("", status_code=201)
def create_source(body: SourceCreate, session: SessionDep) -> SourcePublic:
    """Register a source; its URI is checked for a supported scheme, not connected to."""
    kind = source_type(body.uri)
    row = SourceRepository(session).add(
        name=body.name, type=kind, uri=body.uri, description=body.description
    )
    if row is None:
        raise ConflictError(f"a source named '{body.name}' already exists")
    log.info("source %s registered: %s", body.name, redact_uri(body.uri))
    return public(row)


@router.get("/{source_id}")
def get_source(source_id: SourceId, session: SessionDep) -> SourcePublic:
    return public(_get(session, source_id))


@router.delete("/{source_id}", status_code=204)
def delete_source(source_id: SourceId, session: SessionDep) -> Response:
    SourceRepository(session).delete(_get(session, source_id))
    return Response(status_code=204)


@router.post("/{source_id}/test")
def test_source(
    source_id: SourceId, session: SessionDep, rows: Annotated[int, Query(ge=1, le=100)] = 5
) -> SourceTest:
    """Connect, list the columns and read a few rows.

    A source that cannot be read is a finding, not an API failure: 200 with ``ok: false``
    and the cause (server down, wrong credentials, missing table), credentials masked.
    """
    row = _get(session, source_id)
    alias = re.sub(r"\W", "_", row.name) or "source"
    try:
        connector = connector_for(row.uri, alias=alias)
        try:
            columns, sample = _describe(connector, rows)
        finally:
            close = getattr(connector, "close", None)
            if callable(close):
                close()
    except KallaError as exc:
        return SourceTest(ok=False, source=public(row), columns=[], sample=[], error=exc.message)
    except Exception as exc:  # a driver error: its text may hold the URI, never echo it
        log.warning("testing source %s failed: %s", row.name, type(exc).__name__)
        error = f"source '{row.name}' ({redact_uri(row.uri)}) cannot be read: {type(exc).__name__}"
        return SourceTest(ok=False, source=public(row), columns=[], sample=[], error=error)
    return SourceTest(ok=True, source=public(row), columns=columns, sample=sample)


def _describe(connector: Connector, n: int) -> tuple[list[Column], list[dict[str, Any]]]:
    """Columns with their types and ``n`` sample rows, reading as little as the source allows."""
    sample_fn = getattr(connector, "sample", None)
    if callable(sample_fn):
        table = sample_fn(n)
    else:
        names = connector.columns()
        if not names:
            raise SourceError(f"source '{connector.alias}' has no columns")
        from kalla.connectors.base import Progress

        table = connector.read(Progress(None), ()).slice(0, n)
    return (
        [Column(name=f.name, type=str(f.type)) for f in table.schema],
        [_json_row(r) for r in table.slice(0, n).to_pylist()],
    )
