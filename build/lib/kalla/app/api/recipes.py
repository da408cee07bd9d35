"""``/api/recipes``: recipes in the seed shape; saving one again makes a new immutable version.

A recipe is stored with every literal secret in its URIs redacted (``***``; ``${ENV_NAME}``
placeholders kept), its sha256 taken on what is stored, and the save answers with a warning
for each secret that was written literally.
"""

from __future__ import annotations

import hashlib
import json
import logging
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request, Response

from kalla.app.deps import SessionDep, require_token
from kalla.app.errors import BadRequestError
from kalla.app.openapi import json_body
from kalla.app.schemas import MAX_INT, Page, RecipePublic, RecipeVersionPublic
from kalla.app.storage import RecipeRepository, RecipeVersionRow
from kalla.errors import ConflictError, NotFoundError, RecipeError
from kalla.evidence.manifest import canonical_json
from kalla.recipe import Recipe, parse_recipe
from kalla.secrets import literal_secret_warnings, redact_recipe
from kalla.suggest import did_you_mean

router = APIRouter(prefix="/api/recipes", tags=["recipes"], dependencies=[Depends(require_token)])
log = logging.getLogger("kalla.app.recipes")

MAX_RECIPE_ID = 200


def _app_problems(recipe: Recipe) -> list[str]:
    """What the store needs beyond the recipe model (which checks that a URI fits its type):
    sizes, no NUL, and no file path on the server for a file source."""
    problems = []
    if len(recipe.recipe_id) > MAX_RECIPE_ID:
        problems.append(f"recipe_id: at most {MAX_RECIPE_ID} characters")
    if "\\u0000" in json.dumps(recipe.to_dict()):
        problems.append("text in the recipe must not contain NUL characters")
    for side, source in (("left", recipe.sources.left), ("right", recipe.sources.right)):
        if source.is_file and source.uri:
            problems.append(
                f"sources.{side}.uri: file source '{source.alias}' takes its file as an "
                "upload with each run; remove the uri"
            )
    return problems


def parse_body(raw: bytes) -> Recipe:
    try:
        data = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadRequestError(f"request body is not valid JSON: {exc}") from None
    problems: list[str] = []
    recipe = None
    try:
        recipe = parse_recipe(data)
    except RecipeError as exc:
        problems += exc.problems or [exc.message]
    if recipe is not None:
        problems += _app_problems(recipe)
    if problems or recipe is None:
        raise RecipeError(f"invalid recipe ({len(problems)} problem(s))", problems=problems)
    return recipe


def public(row: RecipeVersionRow, versions: int, warnings: list[str] | None = None) -> RecipePublic:
    return RecipePublic(
        recipe_id=row.recipe_id,
        version=row.version,
        name=row.name,
        sha256=row.sha256,
        created_at=row.created_at,
        versions=versions,
        recipe=redact_recipe(row.body),  # stored redacted; again in case a row predates that
        warnings=warnings or [],
    )


def version_public(row: RecipeVersionRow) -> RecipeVersionPublic:
    return RecipeVersionPublic(
        recipe_id=row.recipe_id,
        version=row.version,
        name=row.name,
        sha256=row.sha256,
        created_at=row.created_at,
    )


def find_version(session: SessionDep, recipe_id: str, version: int | None) -> RecipeVersionRow:
    repo = RecipeRepository(session)
    row = repo.latest(recipe_id) if version is None else repo.get(recipe_id, version)
    if row is not None:
        return row
    if version is not None and repo.latest(recipe_id) is not None:
        raise NotFoundError(f"recipe '{recipe_id}' has no version {version}")
    raise NotFoundError(
        f"recipe '{recipe_id}' not found{did_you_mean(recipe_id, repo.recipe_ids())}"
    )


@router.get("")
def list_recipes(
    session: SessionDep,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=MAX_INT)] = 0,
) -> Page[RecipePublic]:
    """The latest version of every recipe."""
    rows, total = RecipeRepository(session).page_latest(limit=limit, offset=offset)
    return Page(items=[public(r, n) for r, n in rows], total=total, limit=limit, offset=offset)


@router.post(
    "",
    status_code=201,
    openapi_extra=json_body(Recipe),
    responses={200: {"model": RecipePublic, "description": "identical to the latest version"}},
)
async def save_recipe(request: Request, session: SessionDep, response: Response) -> RecipePublic:
    """Validate (every problem listed) and save; a known ``recipe_id`` gets a new version.

    Literal secrets in URIs are stored as ``***`` (``warnings`` says which); a run takes a
    masked password from the registered source of the same server and user. Saving exactly
    the latest version's content again creates nothing and answers 200.
    """
    recipe = parse_body(await request.body())
    warnings = literal_secret_warnings(recipe.to_dict())
    body = redact_recipe(recipe.to_dict())
    digest = hashlib.sha256(canonical_json(body).encode()).hexdigest()
    repo = RecipeRepository(session)
    for note in warnings:
        log.warning("recipe %s: %s", recipe.recipe_id, note)
    for _ in range(3):
        latest = repo.latest(recipe.recipe_id)
        if latest is not None and latest.sha256 == digest:
            response.status_code = 200
            return public(latest, latest.version, warnings)
        row = repo.add(recipe_id=recipe.recipe_id, name=recipe.name, body=body, sha256=digest)
        if row is not None:
            log.info("recipe %s saved as version %d", row.recipe_id, row.version)
            return public(row, row.version, warnings)
    raise ConflictError(f"recipe '{recipe.recipe_id}' is being saved concurrently; try again")


@router.get("/{recipe_id}")
def get_recipe(
    recipe_id: str,
    session: SessionDep,
    version: Annotated[
        int | None, Query(ge=1, le=MAX_INT, description="default: the latest")
    ] = None,
) -> RecipePublic:
    row = find_version(session, recipe_id, version)
    latest = RecipeRepository(session).latest(recipe_id)
    return public(row, latest.version if latest else row.version)


@router.get("/{recipe_id}/versions")
def list_versions(recipe_id: str, session: SessionDep) -> list[RecipeVersionPublic]:
    rows = RecipeRepository(session).versions(recipe_id)
    if not rows:
        find_version(session, recipe_id, None)  # the 404 with a suggestion
    return [version_public(r) for r in rows]


__all__ = ["find_version", "router"]
