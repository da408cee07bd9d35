"""The builder's tools: plain functions of JSON arguments that answer compact JSON.

``run_tool(name, arguments, context)`` is the one entry point; it never raises. A tool that
cannot do what was asked answers ``{"error": ..., "problems": [...]}`` naming the cause,
which the conversation hands back to the model as an error result. Tools read only the
session's sources (``ToolContext``); user files and user SQL are parsed and run here, so the
app runs this function in a child process (``kalla.agent.runner``).

``save_recipe`` is the one tool that is not here: saving needs the app's store and the
user's acceptance, so the session handles it (``kalla.agent.conversation``).
"""

from __future__ import annotations

import copy
import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
from pydantic import ValidationError

from kalla.agent.builder import recipe_from_design, suggest
from kalla.agent.compare import compare_tables
from kalla.agent.context import ToolContext
from kalla.agent.preview import preview
from kalla.agent.profile import jsonable, profile_table
from kalla.agent.sqlinfo import problems as sql_problems
from kalla.connectors import connector_for, redact_uri
from kalla.errors import KallaError, RecipeError
from kalla.evidence.manifest import canonical_json
from kalla.recipe import FilterCondition, FilterOp, Recipe, parse_recipe
from kalla.recipe.parse import describe_validation_error
from kalla.secrets import scrub
from kalla.settings import get_settings
from kalla.suggest import did_you_mean

MAX_SAMPLE_ROWS = 50
MAX_CELL = 200  # characters of a cell shown in sample_rows
SESSION_TOOLS = frozenset({"save_recipe"})


def recipe_sha256(recipe: Recipe | dict[str, Any]) -> str:
    body = recipe.to_dict() if isinstance(recipe, Recipe) else recipe
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def _column(table: pa.Table, alias: str, name: object) -> str:
    if not isinstance(name, str) or name not in table.column_names:
        raise RecipeError(
            f"source '{alias}' has no column '{name}'"
            f"{did_you_mean(str(name), table.column_names)}; "
            f"its columns are: {', '.join(table.column_names)}"
        )
    return name


def _text(arguments: dict[str, Any], name: str) -> str:
    value = arguments.get(name)
    if not isinstance(value, str) or not value:
        raise RecipeError(f"argument '{name}' is required (a text value)")
    return value


# --- the tools -------------------------------------------------------------------------------


def list_sources(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    return {"sources": [s.public() for s in context.sources]}


def describe_source(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    alias = _text(arguments, "alias")
    source = context.source(alias)
    profile = profile_table(alias, context.table(alias))
    return {"source": source.public(), **profile.to_dict(share_rows=context.share_rows)}


def _filter_mask(table: pa.Table, alias: str, condition: FilterCondition) -> pa.ChunkedArray:
    column = table.column(_column(table, alias, condition.column))

    def typed(value: Any) -> pa.Scalar:
        try:
            if pa.types.is_decimal(column.type) and not isinstance(value, bool):
                return pa.scalar(Decimal(str(value)))  # exact, whatever its scale
            return pa.scalar(value).cast(column.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, ArithmeticError):
            raise RecipeError(
                f"filter on '{condition.column}': {value!r} is not a {column.type} value"
            ) from None

    op, value = condition.op, condition.value
    if op is FilterOp.LIKE:
        return pc.match_like(pc.cast(column, pa.string()), str(value))
    if op is FilterOp.IN:
        assert isinstance(value, list)
        return pc.is_in(column, value_set=pa.array([typed(v).as_py() for v in value], column.type))
    if op is FilterOp.BETWEEN:
        assert isinstance(value, list)
        low, high = typed(value[0]), typed(value[1])
        return pc.and_(pc.greater_equal(column, low), pc.less_equal(column, high))
    functions: dict[FilterOp, Callable[..., Any]] = {
        FilterOp.EQ: pc.equal,
        FilterOp.NEQ: pc.not_equal,
        FilterOp.GT: pc.greater,
        FilterOp.GTE: pc.greater_equal,
        FilterOp.LT: pc.less,
        FilterOp.LTE: pc.less_equal,
    }
    return functions[op](column, typed(value))


def sample_rows(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    if not context.share_rows:
        raise RecipeError(
            "row sharing is off (KALLA_AGENT_SHARE_ROWS=false): rows are not shown to the "
            "assistant; use describe_source and compare_columns, which give statistics only"
        )
    alias = _text(arguments, "alias")
    context.source(alias)
    table = context.table(alias)
    raw_filters = arguments.get("filters") or []
    if not isinstance(raw_filters, list):
        raise RecipeError("'filters' must be a list of {column, op, value}")
    conditions = []
    for i, raw in enumerate(raw_filters):
        try:
            conditions.append(FilterCondition.model_validate(raw))
        except ValidationError as exc:
            raise RecipeError(
                f"filters.{i} is not a valid filter", problems=describe_validation_error(exc)
            ) from None
    for condition in conditions:
        table = table.filter(_filter_mask(table, alias, condition))
    limit = arguments.get("limit", 10)
    if not isinstance(limit, int) or limit < 1:
        raise RecipeError("'limit' must be a positive whole number")
    limit = min(limit, MAX_SAMPLE_ROWS)
    rows = [
        {k: jsonable(v, MAX_CELL) for k, v in row.items()}
        for row in table.slice(0, limit).to_pylist()
    ]
    return {"alias": alias, "matching_rows": table.num_rows, "rows": rows, "limit": limit}


def compare_columns(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    la, ra = _text(arguments, "left_alias"), _text(arguments, "right_alias")
    context.source(la)
    context.source(ra)
    left, right = context.table(la), context.table(ra)
    lc = _column(left, la, arguments.get("left_column"))
    rc = _column(right, ra, arguments.get("right_column"))
    return compare_tables(left, lc, right, rc, share_rows=context.share_rows)


def check_recipe(raw: Any, context: ToolContext) -> tuple[Recipe | None, dict[str, Any], list[str]]:
    """The recipe with the session's sources filled in, and every problem found.

    The model chooses aliases, keys, filters and SQL; where the data comes from is the
    session's business: a source must be one of the session's, and its ``type``, ``uri``
    and ``schema`` are taken from the session, never from the proposal."""
    if not isinstance(raw, dict):
        return None, {}, ["the recipe must be a JSON object (see the README's 'A recipe')"]
    data = copy.deepcopy(raw)
    problems: list[str] = []
    sources = data.get("sources")
    columns: dict[str, list[str]] = {}
    if not isinstance(sources, dict):
        problems.append("sources: give 'left' and 'right', each with an 'alias' of this session")
    else:
        for side in ("left", "right"):
            given = sources.get(side)
            if not isinstance(given, dict):
                problems.append(f"sources.{side}: missing")
                continue
            alias = given.get("alias")
            try:
                known = context.source(alias)
            except RecipeError as exc:
                problems.append(f"sources.{side}.alias: {exc.message}")
                continue
            uri = given.get("uri")
            if uri and uri not in (known.uri, redact_uri(known.uri)):
                problems.append(
                    f"sources.{side}.uri: a recipe made here reads the session's source "
                    f"'{known.alias}' and nothing else; leave 'uri' out"
                )
            names = context.table(known.alias).column_names
            columns[known.alias] = names
            entry = {k: v for k, v in given.items() if k in ("alias", "primary_key", "filters")}
            sources[side] = {**entry, **known.recipe_fields(names)}
    data.setdefault("recipe_id", "recipe")
    data.setdefault("name", str(data["recipe_id"]))
    recipe = None
    try:
        recipe = parse_recipe(data)
    except RecipeError as exc:
        problems += list(exc.problems) or [exc.message]
    problems += sql_problems(data, columns)
    if recipe is not None:
        for recipe_source in (recipe.sources.left, recipe.sources.right):
            names = columns.get(recipe_source.alias, [])
            for f in recipe_source.filters:
                if names and f.column not in names:
                    problems.append(
                        f"filter on '{recipe_source.alias}': no column '{f.column}'"
                        f"{did_you_mean(f.column, names)}"
                    )
    return (recipe if not problems else None), data, problems


def _proposal(recipe: Recipe) -> dict[str, Any]:
    return {
        "recipe": recipe.to_dict(),
        "sha256": recipe_sha256(recipe),
        "match_description": recipe.match_description,
        "sql": [{"name": p.name, "sql": p.match_sql} for p in recipe.match_passes()],
    }


def propose_recipe(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    recipe, _, problems = check_recipe(arguments.get("recipe"), context)
    if recipe is None:
        raise RecipeError(
            f"the recipe is not valid ({len(problems)} problem(s))", problems=problems
        )
    return {
        "valid": True,
        **_proposal(recipe),
        "next": "preview_recipe runs it on the data; quote match rates only from its answer",
    }


def preview_recipe(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    recipe, _, problems = check_recipe(arguments.get("recipe"), context)
    if recipe is None:
        raise RecipeError(
            f"the recipe is not valid ({len(problems)} problem(s))", problems=problems
        )
    return {"valid": True, **_proposal(recipe), "preview": preview(recipe, context)}


def suggest_recipe(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """The deterministic builder's recipe for two of the session's sources."""
    aliases = context.aliases
    la = arguments.get("left_alias") or (aliases[0] if aliases else None)
    ra = arguments.get("right_alias") or (aliases[1] if len(aliases) > 1 else None)
    if la is None or ra is None:
        raise RecipeError(f"the builder needs two sources; this session has {len(aliases)}")
    left, right = context.source(la), context.source(ra)
    lt, rt = context.table(left.alias), context.table(right.alias)
    found = suggest(left.alias, lt, right.alias, rt)
    recipe = recipe_from_design(
        found.design,
        sources={
            left.alias: left.recipe_fields(lt.column_names),
            right.alias: right.recipe_fields(rt.column_names),
        },
        recipe_id=arguments.get("recipe_id") or None,
        name=arguments.get("name") or None,
    )
    return {"valid": True, **_proposal(parse_recipe(recipe)), "findings": list(found.findings)}


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    input_schema: dict[str, Any]
    fn: Callable[[dict[str, Any], ToolContext], dict[str, Any]] | None

    def schema(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "description": self.description,
            "input_schema": self.input_schema,
        }


_ALIAS = {"type": "string", "description": "a source alias of this session (list_sources)"}
_RECIPE = {
    "type": "object",
    "description": "a Kalla recipe: recipe_id, name, match_description, sources.left/right "
    "({alias, primary_key, filters?}; type/uri/schema come from the session), and "
    "match_sql or passes [{name, match_sql, description}], optional cardinality "
    "('one_to_one' with rank_by)",
}
TOOLS: dict[str, Tool] = {
    t.name: t
    for t in (
        Tool(
            "list_sources",
            "The sources of this session (uploads and registered sources): alias, name, type.",
            {"type": "object", "properties": {}},
            list_sources,
        ),
        Tool(
            "describe_source",
            "A source's columns with type, null share, distinct share, min/max, a few sample "
            "values, row count, and key candidates (unique columns or column pairs).",
            {"type": "object", "properties": {"alias": _ALIAS}, "required": ["alias"]},
            describe_source,
        ),
        Tool(
            "sample_rows",
            f"Up to {MAX_SAMPLE_ROWS} rows of a source, optionally filtered with the recipe's "
            "filter ops (eq neq gt gte lt lte between in like).",
            {
                "type": "object",
                "properties": {
                    "alias": _ALIAS,
                    "filters": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "column": {"type": "string"},
                                "op": {"type": "string"},
                                "value": {},
                            },
                            "required": ["column", "op", "value"],
                        },
                    },
                    "limit": {"type": "integer", "minimum": 1, "maximum": MAX_SAMPLE_ROWS},
                },
                "required": ["alias"],
            },
            sample_rows,
        ),
        Tool(
            "compare_columns",
            "How the values of two columns (one per source) overlap, raw and after "
            "normalisations (trim/case, punctuation, digits only without leading zeros, last "
            "number; for amounts: negated, absolute, rounded): finds join keys that need an "
            "expression, and tells keys from grouping columns.",
            {
                "type": "object",
                "properties": {
                    "left_alias": _ALIAS,
                    "left_column": {"type": "string"},
                    "right_alias": _ALIAS,
                    "right_column": {"type": "string"},
                },
                "required": ["left_alias", "left_column", "right_alias", "right_column"],
            },
            compare_columns,
        ),
        Tool(
            "suggest_recipe",
            "Kalla's deterministic builder: a complete recipe inferred from the two sources' "
            "data (keys, normalisation, amounts, sign, tolerance, date window, one-to-one), "
            "with its findings. A good starting point; check and preview it.",
            {
                "type": "object",
                "properties": {
                    "left_alias": _ALIAS,
                    "right_alias": _ALIAS,
                    "recipe_id": {"type": "string"},
                    "name": {"type": "string"},
                },
            },
            suggest_recipe,
        ),
        Tool(
            "propose_recipe",
            "Validate a recipe completely (JSON shape, keys, filters, SQL: read-only, tables "
            "and columns) and report every problem at once.",
            {"type": "object", "properties": {"recipe": _RECIPE}, "required": ["recipe"]},
            propose_recipe,
        ),
        Tool(
            "preview_recipe",
            "Run a recipe on the real data through Kalla's engine (whole, or a key-consistent "
            "sample when large): matched/unmatched/ambiguous counts, match rate by count and "
            "amount, per-pass statistics, and unmatched examples with the nearest candidate "
            "and why it missed. The only source of match rates.",
            {"type": "object", "properties": {"recipe": _RECIPE}, "required": ["recipe"]},
            preview_recipe,
        ),
        Tool(
            "save_recipe",
            "Save the recipe. Only works after the user accepted this exact, previewed "
            "proposal (the Accept button); otherwise ask them to accept it.",
            {"type": "object", "properties": {"recipe": _RECIPE}, "required": ["recipe"]},
            None,
        ),
    )
}


def check_source(arguments: dict[str, Any], context: ToolContext) -> dict[str, Any]:
    """The source can be read: its columns (the header only). For the app, not the model."""
    source = context.source(_text(arguments, "alias"))
    connector = connector_for(source.uri, alias=source.alias, settings=get_settings())
    try:
        return {"alias": source.alias, "columns": connector.columns()}
    finally:
        connector.close()


# Tools the app runs in a child process but the model is not offered.
INTERNAL: dict[str, Callable[[dict[str, Any], ToolContext], dict[str, Any]]] = {
    "check_source": check_source
}


def tool_schemas() -> list[dict[str, Any]]:
    return [t.schema() for t in TOOLS.values()]


def run_tool(name: str, arguments: Any, context: ToolContext | dict[str, Any]) -> dict[str, Any]:
    """Run one tool; ``{"error": ..., "problems": [...]}`` instead of raising."""
    if isinstance(context, dict):
        context = ToolContext.from_dict(context)
    tool = TOOLS.get(name)
    fn = tool.fn if tool is not None else INTERNAL.get(name)
    if tool is None and fn is None:
        return {"error": f"unknown tool '{name}'{did_you_mean(name, TOOLS)}", "problems": []}
    if fn is None:
        return {"error": f"{name} is handled by the session, not by a data tool", "problems": []}
    if not isinstance(arguments, dict):
        return {"error": f"{name} takes a JSON object of arguments", "problems": []}
    try:
        return fn(arguments, context)
    except KallaError as exc:
        return {"error": scrub(exc.message), "problems": [scrub(p) for p in exc.problems]}
    except Exception as exc:  # a bug, not the user's input: name it, never leak a traceback
        detail = scrub(str(exc))[:300]
        return {"error": f"{name} failed: {type(exc).__name__}: {detail}", "problems": []}


def is_error(result: dict[str, Any]) -> bool:
    return "error" in result
