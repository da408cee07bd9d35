"""``/api/sources``: registered persistent sources (the kinds ``connectors.registry`` marks
persistent: PostgreSQL, MySQL, S3).

A URI is stored with every literal secret redacted (``***``) and ``${ENV_NAME}`` placeholders
kept, so the store never holds a password; a password written literally may be used once, for
the connection test at registration (``?test=true``), and the response warns about it. A test
reads the source through the staging flow (``preview_source``: options, filters, a limited
read, secrets resolved only there).
"""

from __future__ import annotations

import logging
import re
from typing import Annotated

from fastapi import APIRouter, Depends, Path, Query, Response

from kalla.app.deps import SessionDep, StateDep, require_token
from kalla.app.errors import BadRequestError
from kalla.app.results import _json_row
from kalla.app.schemas import (
    MAX_INT,
    Column,
    Page,
    SourceCreate,
    SourceProbe,
    SourcePublic,
    SourceRegistered,
    SourceTest,
)
from kalla.app.storage import SourceRepository, SourceRow
from kalla.connectors.registry import (
    PERSISTENT_KINDS,
    SourceKind,
    locate,
    scheme_of,
)
from kalla.errors import ConflictError, KallaError, NotFoundError
from kalla.runner.probe import source_preview
from kalla.secrets import MASK, Scrubber, has_masked_secret, literal_secret_warning, redact_uri
from kalla.settings import Settings
from kalla.suggest import did_you_mean

router = APIRouter(prefix="/api/sources", tags=["sources"], dependencies=[Depends(require_token)])
log = logging.getLogger("kalla.app.sources")

SCHEMES = {scheme: kind for kind in PERSISTENT_KINDS for scheme in kind.schemes}
SourceId = Annotated[int, Path(ge=1, le=MAX_INT)]
Limit = Annotated[int, Query(ge=1, le=500)]
Offset = Annotated[int, Query(ge=0, le=MAX_INT)]
Rows = Annotated[int, Query(ge=1, le=100, description="sample rows to read")]


def source_kind(uri: str) -> SourceKind:
    """The persistent kind ``uri`` names; 422 naming the closest scheme if none."""
    scheme = scheme_of(uri) or ""
    if scheme not in SCHEMES:
        shown = f"'{scheme}://'" if scheme else "a URI without a scheme"
        raise BadRequestError(
            f"cannot register {shown}{did_you_mean(scheme, SCHEMES) if scheme else ''}: "
            f"registered sources are persistent ({', '.join(s + '://' for s in SCHEMES)}); "
            "files are uploaded with each run"
        )
    return SCHEMES[scheme]


def warnings(row: SourceRow) -> list[str]:
    """What the stored URI lacks: a secret that was written literally, so not stored."""
    if not has_masked_secret(row.uri):
        return []
    example = row.uri.replace(MASK, "${ENV_NAME}")
    return [
        f"source '{row.name}': its URI held a literal secret, which Kalla does not store "
        f"(kept as ***), so tests and runs of it cannot log in. Register it again with a "
        f"placeholder, e.g. {example}, and set ENV_NAME where sources are read"
    ]


def public(row: SourceRow) -> SourcePublic:
    return SourcePublic(
        id=row.id,
        name=row.name,
        type=row.type,
        uri=redact_uri(row.uri),  # stored redacted; again in case a row predates that
        description=row.description,
        created_at=row.created_at,
        warnings=warnings(row),
    )


def _get(session: SessionDep, source_id: int) -> SourceRow:
    row = SourceRepository(session).get(source_id)
    if row is None:
        raise NotFoundError(f"source {source_id} not found")
    return row


def _alias(name: str) -> str:
    return re.sub(r"\W", "_", name) or "source"


@router.get("")
def list_sources(session: SessionDep, limit: Limit = 50, offset: Offset = 0) -> Page[SourcePublic]:
    rows, total = SourceRepository(session).page(limit=limit, offset=offset)
    return Page(items=[public(r) for r in rows], total=total, limit=limit, offset=offset)


@router.post("", status_code=201, response_model_exclude_none=True)
def create_source(
    body: SourceCreate,
    session: SessionDep,
    state: StateDep,
    test: Annotated[
        bool, Query(description="connect and read a few rows first, with the URI as given")
    ] = False,
    rows: Rows = 5,
) -> SourceRegistered:
    """Register a source: its URI is checked (scheme, options) and stored with literal
    secrets redacted. With ``?test=true`` it is also read, with the URI as given (a literal
    password is used for that test only); a source that cannot be read is still registered,
    and the test says why."""
    kind = source_kind(body.uri)
    locate(body.uri, alias=_alias(body.name))
    probe = _probe(body.uri, _alias(body.name), state.settings, rows) if test else None
    stored = redact_uri(body.uri)
    row = SourceRepository(session).add(
        name=body.name, type=kind.name, uri=stored, description=body.description
    )
    if row is None:
        raise ConflictError(f"a source named '{body.name}' already exists")
    note = literal_secret_warning(body.uri, source=body.name)
    log.info("source %s registered: %s", body.name, stored)
    if note:
        log.warning("%s", note)
    return SourceRegistered(**public(row).model_dump(), test=probe)


@router.get("/{source_id}")
def get_source(source_id: SourceId, session: SessionDep) -> SourcePublic:
    return public(_get(session, source_id))


@router.delete("/{source_id}", status_code=204)
def delete_source(source_id: SourceId, session: SessionDep) -> Response:
    SourceRepository(session).delete(_get(session, source_id))
    return Response(status_code=204)


@router.post("/{source_id}/test")
def test_source(
    source_id: SourceId, session: SessionDep, state: StateDep, rows: Rows = 5
) -> SourceTest:
    """Connect, list the columns and read a few rows, through the staging flow.

    A source that cannot be read is a finding, not an API failure: 200 with ``ok: false``
    and the cause (server down, wrong credentials, missing table, a ``${ENV_NAME}`` that is
    not set here), credentials masked.
    """
    row = _get(session, source_id)
    probe = _probe(row.uri, _alias(row.name), state.settings, rows)
    return SourceTest(**probe.model_dump(), source=public(row))


def _probe(uri: str, alias: str, settings: Settings, rows: int) -> SourceProbe:
    """Read ``rows`` rows of ``uri`` as staging would; every failure becomes ``ok: false``."""
    scrub = Scrubber.for_uris([uri])
    try:
        table = source_preview(
            uri, alias=alias, settings=settings, rows=rows, what="the process reading it"
        )
    except KallaError as exc:
        return SourceProbe(ok=False, columns=[], sample=[], error=scrub(exc.message))
    except Exception as exc:  # a driver error: its text may hold the URI, never echo it
        log.warning("testing source %s failed: %s", alias, type(exc).__name__)
        error = f"source '{alias}' ({redact_uri(uri)}) cannot be read: {type(exc).__name__}"
        return SourceProbe(ok=False, columns=[], sample=[], error=error)
    return SourceProbe(
        ok=True,
        columns=[Column(name=f.name, type=str(f.type)) for f in table.schema],
        sample=[_json_row(r) for r in table.to_pylist()],
    )
