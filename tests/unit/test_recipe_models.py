"""The seed contracts: every JSON example in both seed documents parses, and round-trips.

tests/fixtures/seeds/ holds verbatim copies of the seeds' examples, named
``<model>_<seed>.json``. (Two seed blocks are schematic, not JSON — JobRequest's type
sketch and ResolvedSource's ``[FilterCondition]`` — so resolved_source uses the seed's own
FilterCondition example in its place.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, TypeAdapter

from kalla.errors import RecipeError
from kalla.recipe import (
    Cardinality,
    CompletionCallback,
    ErrorCallback,
    FilterCondition,
    JobRequest,
    MatchingProgress,
    Recipe,
    RecipeSource,
    ResolvedSource,
    StagingProgress,
    parse_job_request,
    parse_recipe,
)
from kalla.recipe.models import ProgressCallback

SEEDS = Path(__file__).parent.parent / "fixtures" / "seeds"
MODELS: dict[str, type[BaseModel]] = {
    "recipe": Recipe,
    "recipe_source": RecipeSource,
    "job_request": JobRequest,
    "job_request_curl": JobRequest,
    "resolved_source": ResolvedSource,
    "filter_condition": FilterCondition,
    "staging_progress": StagingProgress,
    "matching_progress": MatchingProgress,
    "completion": CompletionCallback,
    "error": ErrorCallback,
}
EXAMPLES = sorted(p.name for p in SEEDS.glob("*.json") if not p.name.startswith("job_accepted"))


def _model(name: str) -> type[BaseModel]:
    return MODELS[name.rsplit("_seed", 1)[0]]


def test_every_seed_example_is_covered() -> None:
    assert len(EXAMPLES) == 11
    assert {n.rsplit("_seed", 1)[0] for n in EXAMPLES} == set(MODELS)


@pytest.mark.parametrize("name", EXAMPLES)
def test_seed_example_parses_and_round_trips(name: str) -> None:
    data = json.loads((SEEDS / name).read_text())
    model = _model(name).model_validate(data)
    dumped = json.loads(model.model_dump_json(by_alias=True, exclude_none=True))
    assert _model(name).model_validate(dumped) == model
    for key, value in data.items():  # nothing the seed says is lost or renamed
        assert key in dumped
        if not isinstance(value, dict | list):
            assert str(dumped[key]) == str(value)


def test_progress_payloads_are_told_apart_by_stage() -> None:
    adapter: TypeAdapter[Any] = TypeAdapter(ProgressCallback)
    staging = adapter.validate_python(
        json.loads((SEEDS / "staging_progress_seed002.json").read_text())
    )
    matching = adapter.validate_python(
        json.loads((SEEDS / "matching_progress_seed002.json").read_text())
    )
    assert isinstance(staging, StagingProgress) and staging.source == "left_src"
    assert isinstance(matching, MatchingProgress) and matching.matched_count == 4500


def test_models_are_frozen() -> None:
    recipe = parse_recipe(json.loads((SEEDS / "recipe_seed002.json").read_text()))
    with pytest.raises(Exception, match="frozen"):
        recipe.name = "changed"  # type: ignore[misc]


BASE = {
    "recipe_id": "r",
    "name": "n",
    "sources": {
        "left": {"alias": "invoices", "type": "file", "primary_key": ["invoice_id"]},
        "right": {"alias": "payments", "type": "file", "primary_key": ["payment_id"]},
    },
}
SQL = "SELECT i.invoice_id, p.payment_id FROM invoices i JOIN payments p ON i.invoice_id = p.ref"

INVALID = [
    ({"match_sql": SQL, "passes": [{"name": "a", "match_sql": SQL}]}, ["exactly one of"]),
    ({}, ["exactly one of"]),
    ({"passes": [{"name": "a", "match_sql": SQL}, {"name": "a", "match_sql": SQL}]}, ["unique"]),
    ({"match_sql": SQL, "cardinality": "one_to_one"}, ["rank_by"]),
    ({"match_sql": SQL, "cardinality": "one_to_many"}, ["cardinality"]),
    ({"match_sql": "DROP TABLE invoices"}, ["read-only", "DROP"]),
    (
        {"match_sql": SQL.replace("payments p", "paymnts p")},
        ["unknown table 'paymnts'", "did you mean 'payments'"],
    ),
]


@pytest.mark.parametrize(("extra", "fragments"), INVALID)
def test_invalid_recipes_name_the_problem(extra: dict[str, Any], fragments: list[str]) -> None:
    with pytest.raises(RecipeError) as caught:
        parse_recipe({**BASE, **extra})
    for fragment in fragments:
        assert fragment in caught.value.message


def test_every_problem_is_reported_at_once() -> None:
    data = json.loads(json.dumps(BASE))
    data["match_sql"] = SQL.replace("invoices i", "invoice i")
    data["sources"]["left"]["filters"] = [{"column": "amount", "op": "gtt", "value": 1}]
    data["sources"]["left"]["type"] = "postgress"
    data["sources"]["right"]["alias"] = "pay ments"
    with pytest.raises(RecipeError) as caught:
        parse_recipe(data)
    problems = caught.value.problems
    assert len(problems) == 5, problems  # the bad alias also leaves "payments" unknown
    text = caught.value.message
    assert "did you mean 'postgres'" in text
    assert "unknown filter op 'gtt'" in text and "did you mean 'gt'" in text
    assert "plain SQL identifier" in text
    assert "unknown table 'invoice'" in text


def test_a_plain_match_sql_is_one_pass_named_match_sql() -> None:
    recipe = parse_recipe({**BASE, "match_sql": SQL})
    assert [(p.name, p.match_sql) for p in recipe.match_passes()] == [("match_sql", SQL)]
    assert recipe.cardinality is Cardinality.MANY_TO_MANY


@pytest.mark.parametrize(
    ("condition", "fragment"),
    [
        ({"column": "a", "op": "between", "value": [1]}, "two values"),
        ({"column": "a", "op": "in", "value": []}, "non-empty list"),
        ({"column": "a", "op": "like", "value": 5}, "string pattern"),
        ({"column": "a", "op": "eq", "value": [1, 2]}, "single value"),
    ],
)
def test_filter_values_fit_their_op(condition: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        FilterCondition.model_validate(condition)


def test_job_request_primary_keys_must_name_the_sources() -> None:
    data = json.loads((SEEDS / "job_request_seed002.json").read_text())
    data["primary_keys"] = {"left_src": ["invoice_id"], "rigth_src": ["payment_id"]}
    with pytest.raises(RecipeError) as caught:
        parse_job_request(data)
    assert "no entry for source 'right_src'" in caught.value.message
    assert "did you mean 'right_src'" in caught.value.message
