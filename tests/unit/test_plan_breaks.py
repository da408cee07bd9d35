"""How the plan reads a pass's conditions for the breaks explained (``kalla.plan.breaks``),
and the setting that turns the explanation off."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from kalla.cli import app
from kalla.plan.breaks import Kind, pass_conditions, plan_breaks
from kalla.plan.sql import parse_query, rewrite_tolerance
from kalla.settings import get_settings

SCHEMAS = {
    "invoices": pa.schema(
        [("invoice_id", pa.string()), ("amount", pa.decimal128(12, 2)), ("issued", pa.date32())]
    ),
    "payments": pa.schema(
        [("payment_id", pa.string()), ("ref", pa.string()), ("paid", pa.decimal128(12, 2)),
         ("paid_on", pa.date32()), ("status", pa.string())]
    ),
}  # fmt: skip
CASE = Path(__file__).parent.parent / "fixtures" / "recipes" / "breaks_explained"


def conditions(sql: str):  # type: ignore[no-untyped-def]
    return pass_conditions(rewrite_tolerance(parse_query(sql, "test")), "p", SCHEMAS)


@pytest.mark.parametrize(
    ("sql", "keys", "residuals"),
    [
        (
            "SELECT * FROM invoices i JOIN payments p "
            "ON i.invoice_id = p.ref AND i.amount = p.paid",
            ["invoice_id = ref"],
            [(Kind.AMOUNT, ("amount", "paid"))],
        ),
        (
            "SELECT * FROM invoices i JOIN payments p ON TRIM(p.ref) = i.invoice_id "
            "AND tolerance_match(i.amount, p.paid, 0.02) WHERE p.status = 'ok'",
            ["invoice_id = TRIM(ref)"],
            [(Kind.AMOUNT, ("amount", "paid")), (Kind.OTHER, None)],
        ),
        (  # no key: the amounts compared with "=" pair records; the date window stays
            "SELECT * FROM invoices, payments WHERE invoices.amount = payments.paid "
            "AND payments.paid_on BETWEEN invoices.issued AND invoices.issued + INTERVAL '5 days'",
            ["amount = paid"],
            [(Kind.DATE, ("issued", "paid_on"))],
        ),
    ],
)
def test_keys_and_residuals(sql: str, keys: list[str], residuals: list[object]) -> None:
    found = conditions(sql)
    assert found is not None
    shown = [f"{k.left.sql()} = {k.right.sql()}".replace('"', "") for k in found.keys]
    assert [s.replace("invoices.", "").replace("payments.", "") for s in shown] == keys
    assert [(r.kind, r.pair) for r in found.residuals] == residuals


def test_a_union_of_the_sources_is_not_read() -> None:
    sql = "SELECT invoice_id AS k FROM invoices UNION ALL SELECT payment_id FROM payments"
    assert conditions(sql) is None
    assert (
        plan_breaks(
            [None],
            SCHEMAS,
            {"invoices": ["invoice_id"], "payments": ["payment_id"]},
            {"invoices": "b1", "payments": "b2"},
        )
        is None
    )


def test_columns_of_the_same_name_are_never_replaced() -> None:
    schemas = {
        "invoices": SCHEMAS["invoices"].append(pa.field("nearest_key", pa.string())),
        "payments": SCHEMAS["payments"],
    }
    found = pass_conditions(
        parse_query("SELECT * FROM invoices i JOIN payments p ON i.invoice_id = p.ref", "t"),
        "p",
        schemas,
    )
    plan = plan_breaks(
        [found], schemas, {"invoices": ["invoice_id"], "payments": ["payment_id"]},
        {"invoices": "b1", "payments": "b2"},
    )  # fmt: skip
    assert plan is not None
    assert plan.side("invoices").columns == ("_nearest_key", "nearest_reason")
    assert plan.side("payments").columns == ("nearest_key", "nearest_reason")


def test_kalla_explain_breaks_false_writes_the_rows_alone(tmp_path: Path) -> None:
    expected = json.loads((CASE / "expected.json").read_text())
    args = ["run", str(CASE / "recipe.json"), "-o", str(tmp_path / "out"), "--json"]
    for alias, file in expected["sources"].items():
        args += ["--source", f"{alias}={CASE / file}"]
    env = {"STAGING_PATH": str(tmp_path / "staging"), "KALLA_EXPLAIN_BREAKS": "false"}
    get_settings.cache_clear()
    try:
        result = CliRunner().invoke(app, args, env=env)
    finally:
        get_settings.cache_clear()
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["breaks"] == []
    table = pq.read_table(tmp_path / "out" / "unmatched_left.parquet")
    assert table.column_names == ["invoice_id", "customer", "amount", "issue_date"]
    assert table.num_rows == expected["counts"]["unmatched_left_count"]
    manifest = json.loads((tmp_path / "out" / "manifest.json").read_text())
    assert manifest["breaks_explained"] is False


def test_generated_sql_of_thousands_of_conditions_is_not_read() -> None:
    ors = " OR ".join(f"i.amount = {i}.25" for i in range(3000))
    sql = f"SELECT * FROM invoices i JOIN payments p ON i.invoice_id = p.ref AND ({ors})"
    assert conditions(sql) is None
