"""schemathesis against the app's own OpenAPI document: no generated input gets a 5xx.

The app is seeded first (a source, a recipe, a completed run) and those identifiers are fed
to the path parameters, so the generated cases reach the results pages (sort, filter, formats)
and not only the 404s. Bounded: a few examples per operation, well under two minutes.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from kalla_test_services import run_schemathesis
from test_app_harness import (
    app_process,
    client,
    file_recipe,
    invoice_payment_files,
    pg_url,
    postgres_database,
    upload,
    wait_for_run,
)


@pytest.mark.parametrize(
    "backend", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_no_server_error_on_generated_input(backend: str, tmp_path: Path) -> None:
    if backend == "postgres":
        with postgres_database() as db:
            _fuzz(tmp_path, pg_url(db))
    else:
        _fuzz(tmp_path, None)


def _fuzz(tmp_path: Path, database_url: str | None) -> None:
    data = tmp_path / "data"
    invoices, payments = invoice_payment_files(data)
    app = app_process(tmp_path, database_url=database_url, KALLA_MAX_UPLOAD_SIZE="64K").start()
    try:
        http = client(app.url)
        source = http.post(
            "/api/sources",
            json={"name": "ledger", "uri": "postgres://ledger@127.0.0.1:9/ledger?table=t"},
        ).json()
        http.post("/api/recipes", json=file_recipe("st"))
        created = upload(http, "st", {"invoices": invoices, "payments": payments}).json()
        run = wait_for_run(http, created["id"])
        assert run["status"] == "completed"

        config = tmp_path / "schemathesis.toml"
        config.write_text(
            "[parameters]\n"
            f'"path.run_id" = "{run["id"]}"\n'
            '"path.recipe_id" = "st"\n'
            '"body.recipe_id" = "st"\n'
            f'"path.source_id" = {source["id"]}\n'
        )
        code, output, cases = run_schemathesis(f"{app.url}/openapi.json", config=config)
        assert code == 0, output[-6000:]
        assert cases > 100, output[-3000:]
        assert " ERROR " not in app.log(), app.log()[-5000:]
    finally:
        app.stop()
