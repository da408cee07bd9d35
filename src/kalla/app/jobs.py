"""Recipe version + run + registered sources → the Job a runner runs.

A persistent source in a recipe may carry a masked secret (``postgres://app:***@db/ledger``:
exactly what the API shows, and how a recipe with a literal password is stored). When the job
is built, and only then, each masked secret is taken from the registered source of the same
server and user (``registry.same_server``: the same kind, host, port and user), where it is
written as an ``${ENV_NAME}`` placeholder that the worker resolves while it stages the source.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import unquote_plus, urlsplit, urlunsplit

from kalla.app.storage import RunRow, SourceRow
from kalla.connectors.registry import same_server
from kalla.errors import RecipeError
from kalla.recipe import Job, Recipe, RecipeSource, ResolvedSource
from kalla.secrets import MASK, SECRET_PARAMS, has_masked_secret


def _secrets(uri: str) -> dict[str, str]:
    """The secrets of a URI as written: ``""`` → the user info's password, else by the
    query parameter's name. Masked ones are left out: they cannot lend anything."""
    parts = urlsplit(uri)
    found = {}
    if parts.password is not None:
        found[""] = parts.netloc.rpartition("@")[0].partition(":")[2]
    for piece in parts.query.split("&"):
        name, _, value = piece.partition("=")
        if unquote_plus(name).lower() in SECRET_PARAMS:
            found[unquote_plus(name).lower()] = value
    return {k: v for k, v in found.items() if v and v != MASK}


def _fill(uri: str, secrets: dict[str, str]) -> str | None:
    """``uri`` with each masked secret taken from ``secrets``; None if one is missing."""
    parts = urlsplit(uri)
    netloc = parts.netloc
    if parts.password == MASK:
        if "" not in secrets:
            return None
        userinfo, _, hostport = netloc.rpartition("@")
        netloc = f"{userinfo.partition(':')[0]}:{secrets['']}@{hostport}"
    pieces = []
    for piece in parts.query.split("&") if parts.query else []:
        name, _, value = piece.partition("=")
        key = unquote_plus(name).lower()
        if key in SECRET_PARAMS and value == MASK:
            if key not in secrets:
                return None
            piece = f"{name}={secrets[key]}"
        pieces.append(piece)
    return urlunsplit((parts.scheme, netloc, parts.path, "&".join(pieces), parts.fragment))


def resolve_uri(uri: str, alias: str, registered: Sequence[SourceRow]) -> str:
    """``uri`` with its masked secrets filled in from a registered source of the same server."""
    if not has_masked_secret(uri):
        return uri
    server = same_server(uri)
    for source in registered if server is not None else ():
        if same_server(source.uri) == server:
            filled = _fill(uri, _secrets(source.uri))
            if filled is not None:
                return filled
    raise RecipeError(
        f"source '{alias}': its URI has a masked password and no registered source for "
        f"that server and user holds one; register the source (POST /api/sources) with the "
        f"password as ${{ENV_NAME}}, or write ${{ENV_NAME}} in the recipe"
    )


def file_sources(recipe: Recipe) -> list[RecipeSource]:
    return [s for s in (recipe.sources.left, recipe.sources.right) if s.is_file]


def build_job(run: RunRow, recipe: Recipe, registered: Sequence[SourceRow]) -> Job:
    uploads = run.uploads or {}
    resolved = []
    for source in (recipe.sources.left, recipe.sources.right):
        if source.is_file:
            uri = uploads.get(source.alias)
            if not uri:
                raise RecipeError(f"file source '{source.alias}' has no uploaded file")
        else:
            uri = resolve_uri(source.uri or "", source.alias, registered)
        resolved.append(
            ResolvedSource(
                alias=source.alias,
                uri=uri,
                filters=source.filters,
                format=source.format,
                allow_duplicate_keys=source.allow_duplicate_keys,
            )
        )
    return Job(
        run_id=run.id,
        match_sql=recipe.match_sql,
        passes=recipe.passes,
        cardinality=recipe.cardinality,
        rank_by=recipe.rank_by,
        sources=resolved,
        output_path=run.output_path,
        primary_keys={
            recipe.sources.left.alias: recipe.sources.left.primary_key,
            recipe.sources.right.alias: recipe.sources.right.primary_key,
        },
    )
