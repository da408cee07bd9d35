"""The builder's tools through ``run_tool``, on a fixture pair: what each answers, what each
refuses, and what the model is never shown."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from kalla.agent.context import SessionSource, ToolContext
from kalla.agent.tools import TOOLS, run_tool, tool_schemas

CASE = Path(__file__).parent.parent / "fixtures" / "builder" / "bank_tolerance"


def _context(tmp_path: Path, **options: Any) -> ToolContext:
    return ToolContext(
        sources=(
            SessionSource("ledger", str(CASE / "ledger.csv"), name="ledger.csv"),
            SessionSource("bank", str(CASE / "bank.csv"), name="bank.csv"),
            SessionSource(
                "erp",
                "postgres://erp:Sup3r-Secret@db.internal:5432/erp?table=gl",
                type="postgres",
                name="erp",
                origin="registered",
            ),
        ),
        work_dir=tmp_path / "work",
        **options,
    )


def _recipe(sql: str, **extra: Any) -> dict[str, Any]:
    return {
        "recipe_id": "ledger-bank",
        "name": "Ledger to bank",
        "match_description": "same reference, amounts within 0.05",
        "sources": {
            "left": {"alias": "ledger", "primary_key": ["entry_id"]},
            "right": {"alias": "bank", "primary_key": ["txn_id"]},
        },
        "match_sql": sql,
        **extra,
    }


GOOD_SQL = (
    "SELECT l.entry_id, b.txn_id FROM ledger l JOIN bank b ON l.doc_ref = b.reference "
    "AND tolerance_match(l.amount, b.amount, 0.05)"
)


def test_every_tool_has_a_schema_the_model_is_offered() -> None:
    names = [t["name"] for t in tool_schemas()]
    assert names == list(TOOLS)
    assert {
        "list_sources",
        "describe_source",
        "sample_rows",
        "compare_columns",
        "propose_recipe",
        "preview_recipe",
        "save_recipe",
    } <= set(names)
    assert all(t["input_schema"]["type"] == "object" for t in tool_schemas())


def test_list_sources_never_shows_a_password_or_a_server_path(tmp_path: Path) -> None:
    answer = run_tool("list_sources", {}, _context(tmp_path))
    text = json.dumps(answer)
    assert "Sup3r-Secret" not in text
    assert str(CASE) not in text
    assert {s["alias"] for s in answer["sources"]} == {"ledger", "bank", "erp"}


def test_a_registered_source_enters_a_recipe_with_its_uri_redacted(tmp_path: Path) -> None:
    erp = _context(tmp_path).source("erp")
    fields = erp.recipe_fields(["id"])
    assert fields == {"type": "postgres", "uri": "postgres://erp:***@db.internal:5432/erp?table=gl"}


def test_describe_source_profiles_columns_and_key_candidates(tmp_path: Path) -> None:
    answer = run_tool("describe_source", {"alias": "ledger"}, _context(tmp_path))
    assert answer["rows"] == 420
    columns = {c["name"]: c for c in answer["columns"]}
    assert columns["entry_id"]["distinct_share"] == 1.0
    assert columns["amount"]["kind"] == "decimal"
    assert columns["doc_ref"]["samples"]
    assert answer["key_candidates"][0]["unique"] is True


def test_without_row_sharing_the_model_gets_statistics_only(tmp_path: Path) -> None:
    context = _context(tmp_path, share_rows=False)
    described = run_tool("describe_source", {"alias": "ledger"}, context)
    columns = {c["name"]: c for c in described["columns"]}
    assert "samples" not in columns["doc_ref"]
    assert "min" not in columns["doc_ref"]  # a text minimum is a value from a row
    assert columns["amount"]["min"] is not None  # numeric ranges are statistics
    refused = run_tool("sample_rows", {"alias": "ledger"}, context)
    assert "KALLA_AGENT_SHARE_ROWS=false" in refused["error"]
    compared = run_tool(
        "compare_columns",
        {
            "left_alias": "ledger",
            "left_column": "doc_ref",
            "right_alias": "bank",
            "right_column": "reference",
        },
        context,
    )
    assert all("examples" not in n for n in compared["normalisations"])
    previewed = run_tool("preview_recipe", {"recipe": _recipe(GOOD_SQL)}, context)
    examples = previewed["preview"]["unmatched_examples"]["left"]
    assert examples and all("row" not in e for e in examples)


def test_sample_rows_filters_with_the_recipe_ops_and_caps_the_rows(tmp_path: Path) -> None:
    answer = run_tool(
        "sample_rows",
        {
            "alias": "bank",
            "filters": [{"column": "amount", "op": "between", "value": [100, 200]}],
            "limit": 500,
        },
        _context(tmp_path),
    )
    assert answer["limit"] == 50
    assert answer["rows"]
    assert all(100 <= float(r["amount"]) <= 200 for r in answer["rows"])
    bad = run_tool(
        "sample_rows",
        {"alias": "bank", "filters": [{"column": "amout", "op": "eq", "value": 1}]},
        _context(tmp_path),
    )
    assert "did you mean 'amount'" in bad["error"]


def test_compare_columns_finds_the_key_and_tells_a_grouping_column_apart(tmp_path: Path) -> None:
    key = run_tool(
        "compare_columns",
        {
            "left_alias": "ledger",
            "left_column": "doc_ref",
            "right_alias": "bank",
            "right_column": "reference",
        },
        _context(tmp_path),
    )
    assert key["recommended"] == "exact"
    assert "good join key" in key["reading"]
    grouping = run_tool(
        "compare_columns",
        {
            "left_alias": "ledger",
            "left_column": "posting_date",
            "right_alias": "bank",
            "right_column": "value_date",
        },
        _context(tmp_path),
    )
    assert "not a key" in grouping["reading"] or "duplicates" in grouping["reading"]


def test_an_alias_outside_the_session_is_refused_naming_the_sources(tmp_path: Path) -> None:
    answer = run_tool("describe_source", {"alias": "/etc/passwd"}, _context(tmp_path))
    assert "is not a source of this session" in answer["error"]
    assert "ledger, bank, erp" in answer["error"]


def test_propose_reports_every_problem_at_once(tmp_path: Path) -> None:
    sql = "SELECT l.entry_id, b.txn_id FROM ledger l JOIN bank b ON l.doc_reff = b.referense"
    recipe = _recipe(sql)
    recipe["sources"]["right"]["primary_key"] = ["txn"]
    answer = run_tool("propose_recipe", {"recipe": recipe}, _context(tmp_path))
    problems = "\n".join(answer["problems"])
    assert "'doc_reff'" in problems and "did you mean 'doc_ref'" in problems
    assert "'referense'" in problems and "did you mean 'reference'" in problems
    assert "primary key of 'bank' not in its schema" in problems


@pytest.mark.parametrize(
    ("sql", "fragment"),
    [
        ("DROP TABLE ledger", "'DROP' statements are not allowed"),
        ("SELECT 1; DELETE FROM bank", "single statement"),
        ("SELECT * FROM read_csv('/etc/passwd')", "which is not a source"),
        ("SELECT * FROM '/etc/passwd'", "unknown table '/etc/passwd'"),
    ],
)
def test_writes_and_reads_beyond_the_sources_are_refused(
    sql: str, fragment: str, tmp_path: Path
) -> None:
    answer = run_tool("propose_recipe", {"recipe": _recipe(sql)}, _context(tmp_path))
    assert fragment in "\n".join([answer["error"], *answer["problems"]])


def test_a_uri_chosen_by_the_model_is_refused(tmp_path: Path) -> None:
    recipe = _recipe(GOOD_SQL)
    recipe["sources"]["right"]["uri"] = "/etc/passwd"
    answer = run_tool("propose_recipe", {"recipe": recipe}, _context(tmp_path))
    assert "leave 'uri' out" in "\n".join(answer["problems"])


def test_propose_fills_the_sources_from_the_session(tmp_path: Path) -> None:
    answer = run_tool("propose_recipe", {"recipe": _recipe(GOOD_SQL)}, _context(tmp_path))
    right = answer["recipe"]["sources"]["right"]
    assert right["type"] == "file"
    assert "reference" in right["schema"]
    assert len(answer["sha256"]) == 64


def test_preview_runs_the_recipe_and_explains_near_misses(tmp_path: Path) -> None:
    answer = run_tool("preview_recipe", {"recipe": _recipe(GOOD_SQL)}, _context(tmp_path))
    preview = answer["preview"]
    assert preview["scope"]["whole"] is True
    assert preview["counts"]["matched_rows"] == 360
    assert preview["control_totals_hold"] is True
    assert 0 < preview["match_rate"]["left_by_amount"] < 1
    reasons = [e["reason"] for e in preview["unmatched_examples"]["left"]]
    assert any(r.startswith("same 'doc_ref', amounts differ by") for r in reasons)


def test_a_large_preview_runs_on_a_key_consistent_sample_and_says_so(tmp_path: Path) -> None:
    context = _context(tmp_path, preview_rows=100)
    answer = run_tool("preview_recipe", {"recipe": _recipe(GOOD_SQL)}, context)
    scope = answer["preview"]["scope"]
    assert scope["whole"] is False
    assert "hash buckets" in scope["sample"]
    counts = answer["preview"]["counts"]
    # pairs stayed together: nearly every sampled bank row with a reference found its ledger row
    assert counts["matched_right"] >= 0.8 * counts["right_rows"]


def test_a_sql_error_at_run_time_is_named(tmp_path: Path) -> None:
    sql = "SELECT l.entry_id, b.txn_id FROM ledger l JOIN bank b ON l.entry_id = b.reference"
    answer = run_tool("preview_recipe", {"recipe": _recipe(sql)}, _context(tmp_path))
    assert "error" in answer


def test_suggest_recipe_is_the_builder_as_a_tool(tmp_path: Path) -> None:
    answer = run_tool(
        "suggest_recipe", {"left_alias": "ledger", "right_alias": "bank"}, _context(tmp_path)
    )
    assert answer["valid"] is True
    assert [p["name"] for p in answer["recipe"]["passes"]] == ["exact", "within_tolerance"]
    assert any("key:" in f for f in answer["findings"])


def test_unknown_tools_and_bad_arguments_answer_errors(tmp_path: Path) -> None:
    assert (
        "did you mean 'describe_source'"
        in run_tool("describe_sources", {}, _context(tmp_path))["error"]
    )
    assert "JSON object" in run_tool("describe_source", ["x"], _context(tmp_path))["error"]
    assert "handled by the session" in run_tool("save_recipe", {}, _context(tmp_path))["error"]
    assert "'alias' is required" in run_tool("describe_source", {}, _context(tmp_path))["error"]


def test_errors_never_carry_a_password(tmp_path: Path) -> None:
    answer = run_tool("describe_source", {"alias": "erp"}, _context(tmp_path))
    assert "error" in answer
    assert "Sup3r-Secret" not in json.dumps(answer)
