"""The deterministic builder: two sources in, a valid Kalla recipe out, with no LLM.

``suggest(left, right)`` designs the match from the data (``design``), writes its passes as
SQL (``recipe_sql``) and its ``match_description`` in plain words (``words``), and returns a
recipe that ``kalla.recipe.parse_recipe`` accepts. ``kalla suggest`` and the session API
(without ``ANTHROPIC_API_KEY``) both call it; either then previews the recipe on the data.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from kalla.agent.design import Design, design_match
from kalla.agent.recipe_sql import RANK, passes
from kalla.agent.words import describe
from kalla.recipe import parse_recipe


@dataclass(frozen=True)
class Suggestion:
    recipe: dict[str, Any]
    design: Design

    @property
    def findings(self) -> tuple[str, ...]:
        return self.design.findings

    def to_dict(self) -> dict[str, Any]:
        return {"recipe": self.recipe, "findings": list(self.findings)}


def alias_for(name: str, taken: set[str] | frozenset[str] = frozenset()) -> str:
    """A source alias from a file name: its stem as a lower-case SQL identifier, unique."""
    stem = Path(name).name
    for suffix in Path(stem).suffixes[::-1]:
        stem = stem.removesuffix(suffix)
    alias = re.sub(r"[^A-Za-z0-9_]+", "_", stem).strip("_").lower() or "source"
    if alias[0].isdigit():
        alias = f"s_{alias}"
    candidate, n = alias, 2
    while candidate in taken:
        candidate, n = f"{alias}_{n}", n + 1
    return candidate


def _slug(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")[:120] or "recipe"


def recipe_from_design(
    design: Design,
    *,
    sources: Mapping[str, Mapping[str, Any]] | None = None,
    recipe_id: str | None = None,
    name: str | None = None,
) -> dict[str, Any]:
    """The recipe JSON for a design. ``sources`` gives each alias's ``type`` and ``uri`` (or
    ``schema`` for a file); by default both are files with every column in ``schema``."""
    la, ra = design.left_alias, design.right_alias
    sources = sources or {}

    def side(alias: str, key: tuple[str, ...], columns: list[str]) -> dict[str, Any]:
        given = dict(sources.get(alias, {"type": "file"}))
        if given.get("type", "file") == "file":
            given = {"type": "file", "schema": columns}
        return {"alias": alias, **given, "primary_key": list(key)}

    steps = passes(design)
    recipe: dict[str, Any] = {
        "recipe_id": recipe_id or _slug(f"{la}-to-{ra}"),
        "name": name or f"{la} to {ra}",
        "description": f"Suggested from the data of '{la}' and '{ra}' by Kalla's builder.",
        "match_description": describe(design),
        "sources": {
            "left": side(la, design.left_key, [c.name for c in design.left_columns]),
            "right": side(ra, design.right_key, [c.name for c in design.right_columns]),
        },
    }
    if len(steps) == 1:
        recipe["match_sql"] = steps[0].sql
    else:
        recipe["passes"] = [
            {"name": p.name, "match_sql": p.sql, "description": p.description} for p in steps
        ]
    if design.one_to_one:
        recipe["cardinality"] = "one_to_one"
        recipe["rank_by"] = RANK
    parse_recipe(recipe)  # the builder only ever hands out a valid recipe
    return recipe


def suggest(
    left_alias: str,
    left: pa.Table,
    right_alias: str,
    right: pa.Table,
    *,
    sources: Mapping[str, Mapping[str, Any]] | None = None,
    recipe_id: str | None = None,
    name: str | None = None,
) -> Suggestion:
    """Design a match for two staged tables and write it as a recipe."""
    design = design_match(left_alias, left, right_alias, right)
    recipe = recipe_from_design(design, sources=sources, recipe_id=recipe_id, name=name)
    return Suggestion(recipe=recipe, design=design)
