"""No credential in any response or log line (runs after the other app tests: "zz").

This test does the credential-heavy things itself (sources and recipes with passwords in
their URIs, a source test and a run against a server that is down, its password lent by a
registered source as an ${ENV} placeholder whose value is a test password), then greps
every log line written by every app and worker process of the session and every response
body the tests received for the test passwords.
"""

from __future__ import annotations

from pathlib import Path

from test_app_harness import (
    LOG_DIR,
    OTHER_PASSWORD,
    PASSWORDS,
    PG_PASSWORD,
    RESPONSES,
    app_process,
    client,
    file_recipe,
    invoice_payment_files,
    upload,
    wait_for_run,
)


def test_no_password_in_any_response_or_log(tmp_path: Path) -> None:
    data = tmp_path / "data"
    invoices, payments = invoice_payment_files(data)
    app = app_process(tmp_path, KALLA_TEST_DOWN_PASSWORD=PG_PASSWORD).start()
    try:
        http = client(app.url)
        down = f"postgres://ledger:{PG_PASSWORD}@127.0.0.1:9/ledger?table=invoices"
        query = f"mysql://root@127.0.0.1:9/shop?table=orders&password={OTHER_PASSWORD}"
        lender = down.replace(PG_PASSWORD, "${KALLA_TEST_DOWN_PASSWORD}")
        for name, uri in (("down", down), ("query", query), ("down-env", lender)):
            source = http.post(
                "/api/sources", params={"test": "true"}, json={"name": name, "uri": uri}
            )
            assert source.status_code == 201, source.text
            assert source.json()["test"]["ok"] is False
            tested = http.post(f"/api/sources/{source.json()['id']}/test")
            assert tested.status_code == 200 and tested.json()["ok"] is False
        http.get("/api/sources")

        recipe = file_recipe("secret-left")
        recipe["sources"]["left"] = {
            "alias": "invoices",
            "type": "postgres",
            "uri": down,
            "primary_key": ["invoice_id"],
        }
        saved = http.post("/api/recipes", json=recipe)
        assert saved.status_code == 201 and saved.json()["warnings"], saved.text
        http.get("/api/recipes/secret-left")
        http.get("/api/recipes")
        run = wait_for_run(http, upload(http, "secret-left", {"payments": payments}).json()["id"])
        assert run["status"] == "failed" and "127.0.0.1:9" in run["error"], run
        http.get(f"/api/runs/{run['id']}/events")
        http.get("/api/runs")
        del invoices
    finally:
        app.stop()

    logs = sorted(LOG_DIR.glob("*.log"))
    assert logs, "no process logs were captured"
    # the URIs were logged and answered, masked: the grep below looks where they would leak
    assert any("ledger:***@127.0.0.1:9" in p.read_text(errors="replace") for p in logs)
    for path in logs:
        text = path.read_text(errors="replace")
        for password in PASSWORDS:
            assert password not in text, f"{password!r} appears in {path.name}"
    assert len(RESPONSES) > 10
    for body in RESPONSES:
        for password in PASSWORDS:
            assert password.encode() not in body, body[:500]
