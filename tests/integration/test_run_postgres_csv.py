"""End to end: `kalla run` with invoices in PostgreSQL (filtered at the source) and a CSV of
payments; exact decimals make the 2-cent tolerance hold at the boundary, also when the
database stores the amounts as floats (``double precision``)."""

from __future__ import annotations

import json
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from kalla_test_services import Database, pg_execute

pytestmark = pytest.mark.postgres


@pytest.mark.parametrize("amount_type", ["numeric(12,2)", "double precision"])
def test_kalla_run_postgres_left_csv_right(
    tmp_path: Path, pg_database: Database, amount_type: str
) -> None:
    invoices = [
        ("INV-1", Decimal("100.00"), "open"),
        ("INV-2", Decimal("19.99"), "open"),  # paid 20.01: exactly 2 cents off, matches
        ("INV-3", Decimal("50.00"), "open"),  # paid 50.03: 3 cents off, no match
        ("INV-4", Decimal("75.00"), "void"),  # filtered out at the source
        ("INV-5", Decimal("12.50"), "open"),  # never paid
    ]
    pg_execute(
        pg_database,
        f"CREATE TABLE invoices (invoice_id text PRIMARY KEY, amount {amount_type}, status text)",
        ("INSERT INTO invoices VALUES (%s, %s, %s)", invoices),
    )
    payments = tmp_path / "payments.csv"
    payments.write_text(
        "payment_id,reference_number,paid_amount\r\n"
        "P1,INV-1,100.00\r\nP2,INV-2,20.01\r\nP3,INV-3,50.03\r\nP4,INV-4,75.00\r\nP5,,9.99\r\n",
        encoding="utf-8",
    )
    recipe = {
        "recipe_id": "pg-vs-csv",
        "name": "Invoices in PostgreSQL vs a payments CSV",
        "match_sql": (
            "SELECT i.invoice_id, p.payment_id FROM invoices i JOIN payments p"
            " ON i.invoice_id = p.reference_number"
            " AND tolerance_match(i.amount, p.paid_amount, 0.02)"
        ),
        "sources": {
            "left": {
                "alias": "invoices",
                "type": "postgres",
                "uri": pg_database.table_uri("invoices"),
                "primary_key": ["invoice_id"],
                "filters": [{"column": "status", "op": "eq", "value": "open"}],
            },
            "right": {
                "alias": "payments",
                "type": "file",
                "schema": ["payment_id", "reference_number", "paid_amount"],
                "primary_key": ["payment_id"],
            },
        },
    }
    recipe_path = tmp_path / "recipe.json"
    recipe_path.write_text(json.dumps(recipe))
    out = tmp_path / "out"
    done = subprocess.run(
        [sys.executable, "-c", "from kalla.cli import main; main()", "run", str(recipe_path),
         "-o", str(out), "-s", f"payments={payments}", "--json"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    summary = json.loads(done.stdout)
    assert summary["left_rows"] == 4  # INV-4 was filtered in PostgreSQL
    assert summary["matched_count"] == 2
    assert summary["unmatched_left_count"] == 2
    assert summary["unmatched_right_count"] == 3
    matched = pq.read_table(out / "matched.parquet").to_pylist()
    assert sorted((m["invoice_id"], m["payment_id"]) for m in matched) == [
        ("INV-1", "P1"),
        ("INV-2", "P2"),
    ]
    manifest = json.loads((out / "manifest.json").read_text())
    converted = {i["alias"]: i["floats_as_decimals"] for i in manifest["inputs"]}
    floats = amount_type == "double precision"
    assert converted == {
        "invoices": {"amount": "decimal128(5, 2)"} if floats else {},
        "payments": {},
    }
