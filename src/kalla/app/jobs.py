"""Recipe version + run + registered sources → the Job a runner runs.

A persistent source in a recipe may carry a redacted URI (``postgres://app:***@db/ledger``,
exactly what the API shows for a registered source): the password is taken from the
registered source for the same server and user when the job is built, and only there.
"""

from __future__ import annotations

from collections.abc import Sequence
from urllib.parse import urlsplit, urlunsplit

from kalla.app.storage import RunRow, SourceRow
from kalla.errors import RecipeError
from kalla.recipe import Job, Recipe, RecipeSource, ResolvedSource, SourceType

MASK = "***"
_SCHEME_FAMILY = {"postgresql": "postgres", "mariadb": "mysql"}


def _server(uri: str) -> tuple[str, str, int | None, str] | None:
    """(scheme family, host, port, user) of a URI, or None if it has no host."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return None
    if not parts.hostname:
        return None
    scheme = _SCHEME_FAMILY.get(parts.scheme.lower(), parts.scheme.lower())
    return scheme, parts.hostname.lower(), port, parts.username or ""


def has_masked_password(uri: str) -> bool:
    try:
        return urlsplit(uri).password == MASK
    except ValueError:
        return False


def resolve_uri(uri: str, alias: str, registered: Sequence[SourceRow]) -> str:
    """``uri`` with a masked password filled in from a registered source of the same server."""
    if not has_masked_password(uri):
        return uri
    server = _server(uri)
    for source in registered:
        if server is not None and _server(source.uri) == server:
            password = urlsplit(source.uri).password
            if password is None:
                continue
            parts = urlsplit(uri)
            netloc = parts.netloc.replace(f":{MASK}@", f":{password}@", 1)
            return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
    raise RecipeError(
        f"source '{alias}': its URI has a masked password and no registered source for "
        f"that server and user holds one; register the source (POST /api/sources) or "
        f"reference the password as ${{ENV_NAME}}"
    )


def file_sources(recipe: Recipe) -> list[RecipeSource]:
    return [s for s in (recipe.sources.left, recipe.sources.right) if s.type is SourceType.FILE]


def build_job(run: RunRow, recipe: Recipe, registered: Sequence[SourceRow]) -> Job:
    uploads = run.uploads or {}
    resolved = []
    for source in (recipe.sources.left, recipe.sources.right):
        if source.type is SourceType.FILE:
            uri = uploads.get(source.alias)
            if not uri:
                raise RecipeError(f"file source '{source.alias}' has no uploaded file")
        else:
            uri = resolve_uri(source.uri or "", source.alias, registered)
        resolved.append(ResolvedSource(alias=source.alias, uri=uri, filters=source.filters))
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
