"""Turn JSON into models, reporting every problem at once (never just the first)."""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from kalla.errors import RecipeError, SqlError
from kalla.recipe.models import JobRequest, Recipe
from kalla.recipe.sqltext import check_read_only, referenced_tables
from kalla.suggest import did_you_mean

M = TypeVar("M", bound=BaseModel)


def describe_errors(errors: Iterable[Mapping[str, Any]]) -> list[str]:
    """One line per problem, located by its JSON path (``sources.left.primary_key: …``).

    Takes pydantic's error dicts, also as FastAPI reports a request: body fields are named
    by their path alone, other parameters keep their kind (``query limit: …``)."""
    problems = []
    for item in errors:
        loc = [str(p) for p in item.get("loc", ())]
        if item.get("type") == "json_invalid":
            detail = (item.get("ctx") or {}).get("error", "cannot parse it")
            at = f" at character {loc[1]}" if len(loc) > 1 else ""
            problems.append(f"request body is not valid JSON: {detail}{at}")
            continue
        kind = ""
        if loc and loc[0] in ("body", "path", "query", "header"):
            kind = "" if loc[0] == "body" else f"{loc[0]} "
            loc = loc[1:]
        message = str(item.get("msg", "invalid")).removeprefix("Value error, ")
        problems.append(f"{kind}{'.'.join(loc)}: {message}" if loc else message)
    return problems


def describe_validation_error(error: ValidationError) -> list[str]:
    return describe_errors(error.errors(include_url=False))


def parse_model(model: type[M], data: Any, *, what: str) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = describe_validation_error(exc)
        raise RecipeError(
            f"invalid {what} ({len(problems)} problem(s))", problems=problems
        ) from None


def load_json(path: Path, *, what: str) -> Any:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise RecipeError(f"{what} file not found: {path}") from None
    except OSError as exc:
        raise RecipeError(f"cannot read {what} file {path}: {exc.strerror}") from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise RecipeError(
            f"{what} file {path} is not valid JSON: {exc.msg} at line {exc.lineno}, "
            f"column {exc.colno}"
        ) from None


def _unknown_tables(data: Any) -> list[str]:
    """Static check of the SQL's table names against the source aliases (raw JSON in)."""
    if not isinstance(data, dict) or not isinstance(data.get("sources"), dict):
        return []
    aliases = [
        str(s["alias"]) for s in data["sources"].values() if isinstance(s, dict) and s.get("alias")
    ]
    queries = [("match_sql", data.get("match_sql"))]
    if isinstance(data.get("passes"), list):
        queries += [
            (f"passes.{i}.match_sql", p.get("match_sql"))
            for i, p in enumerate(data["passes"])
            if isinstance(p, dict)
        ]
    problems = []
    for where, sql in queries:
        if not isinstance(sql, str):
            continue
        try:
            check_read_only(sql, where)
        except SqlError as exc:
            problems.append(exc.message)
            continue
        tables = referenced_tables(sql)
        for name in sorted((tables or set()) - set(aliases)):
            problems.append(
                f"{where}: unknown table '{name}'{did_you_mean(name, aliases)}; "
                f"the sources are: {', '.join(aliases)}"
            )
    return problems


def parse_recipe(data: Any) -> Recipe:
    """A Recipe, or one RecipeError listing every problem: shape, keys, filters, SQL tables."""
    problems: list[str] = []
    recipe = None
    try:
        recipe = Recipe.model_validate(data)
    except ValidationError as exc:
        problems = describe_validation_error(exc)
    problems += _unknown_tables(data)
    if problems or recipe is None:
        raise RecipeError(f"invalid recipe ({len(problems)} problem(s))", problems=problems)
    return recipe


def load_recipe(path: Path) -> Recipe:
    return parse_recipe(load_json(path, what="recipe"))


def parse_job_request(data: Any) -> JobRequest:
    return parse_model(JobRequest, data, what="job request")
