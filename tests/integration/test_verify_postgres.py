"""``kalla verify`` of a run whose invoices came from PostgreSQL: the database may have
changed since, so without a snapshot the run cannot be verified; a CSV exported from the
table as the run read it (another format, another row order) verifies it; an export taken
after a row changed is named as a changed input."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from kalla_test_services import Database, pg_execute
from typer.testing import CliRunner

from kalla.cli import app
from kalla.evidence.verify import Verdict, VerifyReport

pytestmark = pytest.mark.postgres


def _export(database: Database, path: Path) -> Path:
    """The open invoices as CSV, newest first (the run read them in another order)."""
    import psycopg

    query = "COPY (SELECT * FROM invoices WHERE status = 'open' ORDER BY invoice_id DESC)"
    with (
        psycopg.connect(database.uri) as conn,
        conn.cursor() as cursor,
        cursor.copy(f"{query} TO STDOUT WITH (FORMAT csv, HEADER)") as copy,
    ):
        path.write_bytes(b"".join(bytes(chunk) for chunk in copy))
    return path


def test_a_database_input_verifies_from_a_snapshot_only(
    tmp_path: Path, pg_database: Database
) -> None:
    pg_execute(
        pg_database,
        "CREATE TABLE invoices (invoice_id text PRIMARY KEY, amount numeric(12,2), status text)",
        (
            "INSERT INTO invoices VALUES (%s, %s, %s)",
            [
                ("INV-1", Decimal("100.00"), "open"),
                ("INV-2", Decimal("19.99"), "open"),
                ("INV-3", Decimal("75.00"), "void"),
            ],
        ),
    )
    payments = tmp_path / "payments.csv"
    payments.write_text("payment_id,reference_number,paid_amount\nP1,INV-1,100.00\nP2,,5.00\n")
    recipe = {
        "recipe_id": "pg-verify",
        "name": "PostgreSQL invoices vs a payments CSV",
        "match_sql": "SELECT i.invoice_id, p.payment_id FROM invoices i JOIN payments p"
        " ON i.invoice_id = p.reference_number AND i.amount = p.paid_amount",
        "sources": {
            "left": {
                "alias": "invoices",
                "type": "postgres",
                "uri": pg_database.table_uri("invoices"),
                "primary_key": ["invoice_id"],
                "filters": [{"column": "status", "op": "eq", "value": "open"}],
            },
            "right": {"alias": "payments", "type": "file", "primary_key": ["payment_id"]},
        },
    }
    (tmp_path / "recipe.json").write_text(json.dumps(recipe))
    env = {"STAGING_PATH": str(tmp_path / "staging")}
    run = tmp_path / "run"
    args = ["run", str(tmp_path / "recipe.json"), "-o", str(run), "-s", f"payments={payments}"]
    assert CliRunner().invoke(app, args, env=env).exit_code == 0

    def verify(*args: str) -> VerifyReport:
        result = CliRunner().invoke(app, ["verify", str(run), "--json", *args], env=env)
        return VerifyReport.model_validate_json(result.output)

    report = verify()
    assert report.verdict is Verdict.CANNOT_VERIFY
    assert report.reasons == ("input 'invoices' is a database source that was not snapshotted",)

    snapshot = _export(pg_database, tmp_path / "invoices-export.csv")
    report = verify("--source", f"invoices={snapshot}")
    assert report.verdict is Verdict.VERIFIED, report.lines()

    pg_execute(pg_database, "UPDATE invoices SET amount = 19.98 WHERE invoice_id = 'INV-2'")
    later = _export(pg_database, tmp_path / "invoices-later.csv")
    report = verify("--source", f"invoices={later}")
    assert report.verdict is Verdict.CANNOT_VERIFY
    assert report.reasons == ("input 'invoices' changed since the run",)
