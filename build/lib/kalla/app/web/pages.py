"""The web UI's pages. Each page renders the same models the JSON API returns, by calling
the API's own route functions, so a page and its ``/api`` twin never disagree.

Forms post here (with the session's CSRF token) and redirect; the few things a form cannot
do — upload with progress, follow a run live, page through results — are our own small ES
modules in ``static/js`` talking to the JSON API.
"""

from __future__ import annotations

import contextlib
import difflib
import json
from typing import Annotated, Any
from urllib.parse import quote, urlsplit
from uuid import UUID

from fastapi import APIRouter, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError

from kalla.app.api import recipes as recipes_api
from kalla.app.api import runs as runs_api
from kalla.app.api import sources as sources_api
from kalla.app.deps import AppState, SessionDep, StateDep
from kalla.app.layout import match_layout
from kalla.app.overview import count_rate, overview
from kalla.app.progress import run_progress
from kalla.app.schemas import SourceCreate, SourceProbe, SourcePublic
from kalla.app.storage import RecipeVersionRow
from kalla.app.web.auth import (
    COOKIE,
    CSRF_FIELD,
    WebSession,
    auth_required,
    csrf_matches,
    new_session,
    read_session,
    set_cookie,
    token_matches,
)
from kalla.app.web.render import page_session, render
from kalla.connectors import redact_uri
from kalla.errors import ConflictError, KallaError, NotFoundError, UnauthorizedError
from kalla.recipe.parse import describe_validation_error
from kalla.runner import JobStatus as RunStatus
from kalla.secrets import redact_recipe

router = APIRouter(include_in_schema=False)

OUTPUT_TABS = (
    ("matched", "Matched"),
    ("unmatched_left", "Unmatched {left}"),
    ("unmatched_right", "Unmatched {right}"),
    ("ambiguous", "Ambiguous"),
)


class CsrfError(KallaError):
    status = 403
    kind = "csrf"


async def _form(request: Request, session: WebSession) -> dict[str, str]:
    """The posted form's text fields, after checking its CSRF token."""
    form = await request.form(max_files=1, max_fields=20)
    fields = {k: v for k, v in form.items() if isinstance(v, str)}
    if not csrf_matches(session, fields.get(CSRF_FIELD)):
        raise CsrfError(
            "this form has expired or did not come from this app (CSRF check failed); "
            "reload the page and send it again"
        )
    return fields


def _with_body(request: Request, body: bytes) -> Request:
    """The same request carrying ``body``: a page hands a JSON document to an API route."""
    sent = False

    async def receive() -> dict[str, Any]:
        nonlocal sent
        if sent:
            return {"type": "http.disconnect"}
        sent = True
        return {"type": "http.request", "body": body, "more_body": False}

    return Request(request.scope, receive)


def _see_other(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


def _local(target: str | None) -> str:
    """Only a path on this app is a place to go back to after signing in."""
    # "//host" and "/\host" are other sites to a browser
    if not target or not target.startswith("/") or target[1:2] in ("/", "\\"):
        return "/"
    parts = urlsplit(target)
    return parts.path + (f"?{parts.query}" if parts.query else "")


# --- sign-in --------------------------------------------------------------------------------


@router.get("/login")
def login_page(request: Request, state: StateDep, next: str = "/") -> Response:
    settings = state.settings
    if not auth_required(settings):
        return _see_other("/")
    session = read_session(request, settings)
    if session is not None and session.signed_in:
        return _see_other(_local(next))
    if session is None:
        session, cookie = new_session(settings, signed_in=False)
        request.state.new_cookie = cookie
    return render(request, "login.html", {"next": _local(next)}, session=session, settings=settings)


@router.post("/login")
async def login(request: Request, state: StateDep) -> Response:
    settings = state.settings
    if not auth_required(settings):
        return _see_other("/")
    session = read_session(request, settings)
    if session is None:  # cookie missing or expired: a fresh form, with a message
        session, cookie = new_session(settings, signed_in=False)
        request.state.new_cookie = cookie
        return render(
            request,
            "login.html",
            {"next": "/", "error": "your sign-in form expired; sign in again"},
            session=session,
            settings=settings,
            status=400,
        )
    fields = await _form(request, session)
    target = _local(fields.get("next"))
    if not token_matches(settings, fields.get("token", "")):
        return render(
            request,
            "login.html",
            {"next": target, "error": "that is not the API token (KALLA_API_TOKEN)"},
            session=session,
            settings=settings,
            status=401,
        )
    _, cookie = new_session(settings, signed_in=True)
    response = _see_other(target)
    set_cookie(response, request, cookie)
    return response


@router.post("/logout")
async def logout(request: Request, state: StateDep) -> Response:
    session = read_session(request, state.settings)
    if session is not None:
        await _form(request, session)
    response = _see_other("/login" if auth_required(state.settings) else "/")
    response.delete_cookie(COOKIE, path="/")
    return response


# --- overview -------------------------------------------------------------------------------


@router.get("/")
def overview_page(request: Request, state: StateDep, db: SessionDep) -> Response:
    session = page_session(request, state.settings)
    data = overview(db, state.amounts)
    return render(
        request,
        "overview.html",
        {"o": data, "title": "Overview", "nav": "overview", "api": "/api/overview"},
        session=session,
        settings=state.settings,
    )


# --- sources --------------------------------------------------------------------------------


def _sources_page(
    request: Request,
    state: StateDep,
    db: SessionDep,
    session: WebSession,
    *,
    error: str | None = None,
    problems: list[str] | None = None,
    values: dict[str, str] | None = None,
    notice: str | None = None,
    status: int = 200,
) -> Response:
    page = sources_api.list_sources(db, limit=500, offset=0)
    return render(
        request,
        "sources.html",
        {
            "title": "Sources",
            "nav": "sources",
            "api": "/api/sources",
            "page": page,
            "error": error,
            "problems": problems or [],
            "values": values or {},
            "notice": notice,
        },
        session=session,
        settings=state.settings,
        status=status,
    )


@router.get("/sources")
def sources_page(
    request: Request, state: StateDep, db: SessionDep, deleted: str | None = None
) -> Response:
    session = page_session(request, state.settings)
    notice = f"Source '{deleted}' deleted." if deleted else None
    return _sources_page(request, state, db, session, notice=notice)


@router.post("/sources")
async def register_source(request: Request, state: StateDep, db: SessionDep) -> Response:
    session = page_session(request, state.settings)
    fields = await _form(request, session)
    values = {k: fields.get(k, "").strip() for k in ("name", "uri", "description")}
    shown = {**values, "uri": redact_uri(values["uri"])}  # never echo a password
    try:
        body = SourceCreate.model_validate(values)
        row = sources_api.create_source(body, db, state)
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        return _sources_page(
            request, state, db, session, error="The source was not registered.",
            problems=problems, values=shown, status=422,
        )  # fmt: skip
    except KallaError as exc:
        return _sources_page(
            request, state, db, session, error=exc.message, problems=list(exc.problems),
            values=shown, status=exc.status,
        )  # fmt: skip
    # a literal password is not stored: the source page's warning says what to write instead
    return _see_other(f"/sources/{row.id}?test=1")


@router.get("/sources/{source_id}")
def source_page(
    request: Request,
    state: StateDep,
    db: SessionDep,
    source_id: sources_api.SourceId,
    test: bool = False,
) -> Response:
    """One source; ``?test=1`` connects and shows its columns and 20 rows."""
    session = page_session(request, state.settings)
    source = sources_api.get_source(source_id, db)
    result = sources_api.test_source(source_id, db, state, rows=20) if test else None
    return _source_page(request, state, source, result, session)


def _source_page(
    request: Request,
    state: AppState,
    source: SourcePublic,
    result: SourceProbe | None,
    session: WebSession,
) -> Response:
    return render(
        request,
        "source.html",
        {
            "title": f"Source {source.name}",
            "nav": "sources",
            "api": f"/api/sources/{source.id}",
            "source": source,
            "test": result,
        },
        session=session,
        settings=state.settings,
    )


@router.post("/sources/{source_id}/delete")
async def delete_source(
    request: Request, state: StateDep, db: SessionDep, source_id: sources_api.SourceId
) -> Response:
    session = page_session(request, state.settings)
    await _form(request, session)
    source = sources_api.get_source(source_id, db)
    sources_api.delete_source(source_id, db)
    return _see_other(f"/sources?deleted={quote(source.name)}")


# --- recipes --------------------------------------------------------------------------------


MAX_RECIPE_FILE = 1024 * 1024


def _recipes_page(
    request: Request,
    state: StateDep,
    db: SessionDep,
    session: WebSession,
    *,
    error: str | None = None,
    problems: list[str] | None = None,
    status: int = 200,
) -> Response:
    page = recipes_api.list_recipes(db, limit=500, offset=0)
    return render(
        request,
        "recipes.html",
        {
            "title": "Recipes",
            "nav": "recipes",
            "api": "/api/recipes",
            "page": page,
            "error": error,
            "problems": problems or [],
        },
        session=session,
        settings=state.settings,
        status=status,
    )


@router.get("/recipes")
def recipes_page(request: Request, state: StateDep, db: SessionDep) -> Response:
    session = page_session(request, state.settings)
    return _recipes_page(request, state, db, session)


@router.post("/recipes")
async def add_recipe(request: Request, state: StateDep, db: SessionDep) -> Response:
    """A recipe from a JSON file (``kalla-demo/recipe.json``, one written by hand or by
    ``kalla suggest``), saved by ``POST /api/recipes`` itself: same checks, same versions."""
    session = page_session(request, state.settings)
    await _form(request, session)
    upload = (await request.form()).get("recipe")
    raw = b""
    if upload is not None and not isinstance(upload, str):
        raw = await upload.read(MAX_RECIPE_FILE + 1)
    if not raw:
        return _recipes_page(
            request, state, db, session, error="Choose a recipe file (JSON) to add.", status=422
        )
    if len(raw) > MAX_RECIPE_FILE:
        return _recipes_page(
            request, state, db, session, error="That file is over 1 MiB: not a recipe.",
            status=413,
        )  # fmt: skip
    try:
        saved = await recipes_api.save_recipe(_with_body(request, raw), db, Response())
    except KallaError as exc:
        return _recipes_page(
            request, state, db, session, error=f"The recipe was not saved: {exc.message}",
            problems=list(exc.problems), status=exc.status,
        )  # fmt: skip
    return _see_other(f"/recipes/{quote(saved.recipe_id, safe='')}?version={saved.version}")


@router.get("/recipes/{recipe_id}")
def recipe_page(
    request: Request,
    state: StateDep,
    db: SessionDep,
    recipe_id: str,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    session = page_session(request, state.settings)
    recipe = recipes_api.get_recipe(recipe_id, db, version)
    versions = recipes_api.list_versions(recipe_id, db)
    runs = runs_api.list_runs(db, recipe_id=recipe_id, status=None, limit=10, offset=0)
    api = f"/api/recipes/{quote(recipe_id, safe='')}" + (f"?version={version}" if version else "")
    return render(
        request,
        "recipe.html",
        {
            "title": f"Recipe {recipe.name}",
            "nav": "recipes",
            "api": api,
            "r": recipe,
            "body": recipe.recipe,
            "versions": versions,
            "runs": runs,
        },
        session=session,
        settings=state.settings,
    )


@router.get("/recipes/{recipe_id}/diff")
def recipe_diff_page(
    request: Request,
    state: StateDep,
    db: SessionDep,
    recipe_id: str,
    a: Annotated[int, Query(ge=1, alias="from")],
    b: Annotated[int, Query(ge=1, alias="to")],
) -> Response:
    """The changes from version ``from`` to version ``to``, line by line."""
    session = page_session(request, state.settings)
    old = recipes_api.get_recipe(recipe_id, db, a)
    new = recipes_api.get_recipe(recipe_id, db, b)
    lines = list(
        difflib.unified_diff(
            _pretty(old.recipe).splitlines(),
            _pretty(new.recipe).splitlines(),
            fromfile=f"version {a}",
            tofile=f"version {b}",
            n=3,
            lineterm="",
        )
    )
    rows = [_diff_row(line) for line in lines[2:]]
    return render(
        request,
        "recipe_diff.html",
        {
            "title": f"Recipe {new.name}: version {a} → {b}",
            "nav": "recipes",
            "api": f"/api/recipes/{quote(recipe_id, safe='')}/versions",
            "r": new,
            "a": a,
            "b": b,
            "rows": rows,
            "versions": recipes_api.list_versions(recipe_id, db),
        },
        session=session,
        settings=state.settings,
    )


def _pretty(body: dict[str, Any]) -> str:
    return json.dumps(body, indent=2, sort_keys=False, ensure_ascii=False)


def _diff_row(line: str) -> tuple[str, str]:
    if line.startswith("@@"):
        return "hunk", line
    if line.startswith("+"):
        return "added", line[1:]
    if line.startswith("-"):
        return "removed", line[1:]
    return "same", line[1:]


@router.get("/builder")
def builder_page(request: Request, state: StateDep, recipe: str | None = None) -> Response:
    session = page_session(request, state.settings)
    return render(
        request,
        "builder.html",
        {"title": "Builder", "nav": "builder", "recipe": recipe, "api": None},
        session=session,
        settings=state.settings,
    )


# --- runs -----------------------------------------------------------------------------------


@router.get("/runs")
def runs_page(
    request: Request,
    state: StateDep,
    db: SessionDep,
    status: RunStatus | None = None,
    recipe: str | None = None,
    offset: Annotated[int, Query(ge=0)] = 0,
) -> Response:
    session = page_session(request, state.settings)
    page = runs_api.list_runs(db, recipe_id=recipe, status=status, limit=50, offset=offset)
    return render(
        request,
        "runs.html",
        {
            "title": "Runs",
            "nav": "runs",
            "api": "/api/runs",
            "page": page,
            "status": status.value if status else "",
            "recipe": recipe or "",
            "statuses": [s.value for s in RunStatus],
        },
        session=session,
        settings=state.settings,
    )


@router.get("/runs/new")
def new_run_page(
    request: Request,
    state: StateDep,
    db: SessionDep,
    recipe: str | None = None,
    version: Annotated[int | None, Query(ge=1)] = None,
) -> Response:
    session = page_session(request, state.settings)
    recipes = recipes_api.list_recipes(db, limit=500, offset=0)
    chosen = None
    error = None
    if recipe:
        try:
            chosen = recipes_api.get_recipe(recipe, db, version)
        except NotFoundError as exc:
            error = exc.message
    return render(
        request,
        "run_new.html",
        {
            "title": "New run",
            "nav": "new",
            "api": "/api/recipes",
            "recipes": recipes,
            "chosen": chosen,
            "error": error,
            "max_upload": state.settings.max_upload_size,
        },
        session=session,
        settings=state.settings,
    )


@router.get("/runs/{run_id}")
def run_page(request: Request, state: StateDep, db: SessionDep, run_id: UUID) -> Response:
    session = page_session(request, state.settings)
    row = runs_api.get_run(db, run_id)
    run = runs_api.public(row)
    version = db.get(RecipeVersionRow, row.recipe_version_id)
    recipe = redact_recipe(version.body) if version else {}
    sources = recipe.get("sources", {})
    left = sources.get("left", {}).get("alias", "left")
    right = sources.get("right", {}).get("alias", "right")
    records, matched_records, rate = count_rate(row)
    completed = row.status == RunStatus.COMPLETED.value
    return render(
        request,
        "run.html",
        {
            "title": f"Run {run.id[:8]} of {run.recipe_id}",
            "nav": "runs",
            "api": f"/api/runs/{run.id}",
            "run": run,
            "recipe": recipe,
            "left": left,
            "right": right,
            "progress": run_progress(db, str(run_id)),
            "rate": rate,
            "rate_amount": state.amounts.get(row) if completed else (None, {}),
            "records": records,
            "matched_records": matched_records,
            "layout": match_layout(row.output_path, row.manifest) if completed else None,
            "tabs": [
                (name, label.format(left=left, right=right))
                for name, label in OUTPUT_TABS
                if name in run.results
            ],
            "manifest_json": _pretty(run.manifest) if run.manifest else None,
        },
        session=session,
        settings=state.settings,
    )


@router.post("/runs/{run_id}/cancel")
async def cancel_run(request: Request, state: StateDep, run_id: UUID) -> Response:
    session = page_session(request, state.settings)
    await _form(request, session)
    with contextlib.suppress(ConflictError):  # it ended meanwhile: its page says how
        runs_api.cancel_run(run_id, state)
    return _see_other(f"/runs/{run_id}")


def login_redirect(next_path: str) -> RedirectResponse:
    return _see_other(f"/login?next={quote(next_path, safe='/')}")


__all__ = ["CsrfError", "UnauthorizedError", "login_redirect", "router"]
