"""The web UI's journeys in Debian's chromium, against a real ``kalla serve``.

Register a source and preview it; run a recipe with uploads and watch its progress stream to
done; filter and sort the unmatched table and download the filtered XLSX; cancel a run; a
bad upload shows its error next to the file; sign in with the token.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from openpyxl import load_workbook
from test_app_harness import (
    PG_PASSWORD,
    pg_execute,
    pg_url,
    postgres_database,
    slow_recipe,
    write_csv,
)
from ui_browser import (
    UI_PG_PASSWORD,
    UiApp,
    axe_serious,
    completed_run,
    file_recipe,
    keep_screenshot,
    save_recipe,
    start_app,
)

pytestmark = pytest.mark.browser


def _expect(locator: Any) -> Any:
    from playwright.sync_api import expect

    return expect(locator)


# --- sources --------------------------------------------------------------------------------


@pytest.mark.postgres
def test_register_a_source_and_preview_it(ui_app: UiApp, page: Any) -> None:
    with postgres_database("kalla_ui") as database:
        pg_execute(
            database,
            "CREATE TABLE ledger (entry_id text primary key, amount numeric(10,2), booked date)",
            "INSERT INTO ledger SELECT 'E-' || lpad(i::text, 4, '0'), i * 1.25, "
            "date '2026-01-01' + i FROM generate_series(1, 50) AS i",
        )
        uri = pg_url(database, password="${KALLA_UI_PG_PASSWORD}") + "?table=ledger"
        page.goto(f"{ui_app.url}/sources")
        page.get_by_label("Name").fill("ledger_ui")
        page.get_by_label("Address").fill(uri)
        page.get_by_label("Description").fill("the general ledger")
        page.get_by_role("button", name="Register and test the connection").click()

        page.wait_for_url(re.compile(r"/sources/\d+\?test=1$"))
        _expect(page.get_by_role("status")).to_contain_text("Connected: 3 columns")
        assert axe_serious(page) == []
        keep_screenshot(page, "source-preview")
        preview = page.locator("table.data")
        assert preview.locator("tbody tr").count() == 20
        assert preview.locator("thead th").all_inner_texts()[0].startswith("entry_id")
        assert "E-0001" in preview.locator("tbody tr").first.inner_text()
        html = page.content()
        assert UI_PG_PASSWORD not in html
        assert "postgres:${KALLA_UI_PG_PASSWORD}@" in html

        page.get_by_role("link", name="Sources").first.click()
        _expect(page.get_by_role("link", name="ledger_ui")).to_be_visible()
        assert UI_PG_PASSWORD not in page.content()


def test_a_literal_password_is_not_stored_and_the_page_says_what_to_write(
    ui_app: UiApp, page: Any
) -> None:
    page.goto(f"{ui_app.url}/sources")
    page.get_by_label("Name").fill("ledger_literal")
    page.get_by_label("Address").fill(
        pg_url("kalla_nowhere", password=PG_PASSWORD) + "?table=ledger"
    )
    page.get_by_role("button", name="Register and test the connection").click()

    page.wait_for_url(re.compile(r"/sources/\d+\?test=1$"))
    _expect(page.get_by_role("note").first).to_contain_text("${")
    html = page.content()
    assert PG_PASSWORD not in html
    assert "postgres:***@" in html


def test_a_bad_source_is_refused_on_the_form_naming_the_cause(ui_app: UiApp, page: Any) -> None:
    page.goto(f"{ui_app.url}/sources")
    page.get_by_label("Name").fill("files_dir")
    page.get_by_label("Address").fill("ftp://user:Secret-Ftp-99@files.example/x.csv")
    page.get_by_role("button", name="Register and test the connection").click()

    alert = page.get_by_role("alert")
    _expect(alert).to_contain_text("cannot register 'ftp://'")
    assert page.url.endswith("/sources")
    assert page.get_by_label("Name").input_value() == "files_dir"
    assert "Secret-Ftp-99" not in page.content()


def test_deleting_a_source_asks_first_then_removes_it(ui_app: UiApp, page: Any) -> None:
    response = ui_app.http.post(
        "/api/sources", json={"name": "to_delete", "uri": "s3://bucket/data.parquet"}
    )
    assert response.status_code == 201, response.text
    page.goto(f"{ui_app.url}/sources/{response.json()['id']}")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete this source").click()
    _expect(page.get_by_role("status")).to_contain_text("Source 'to_delete' deleted.")
    assert ui_app.http.get(f"/api/sources/{response.json()['id']}").status_code == 404


# --- runs -----------------------------------------------------------------------------------


@pytest.mark.postgres
def test_run_with_an_upload_streams_its_progress_to_done(
    ui_app: UiApp, page: Any, tmp_path: Path
) -> None:
    """Left side: a PostgreSQL view that takes 2 s to read; right side: an uploaded CSV."""
    with postgres_database("kalla_ui") as database:
        recipe = slow_recipe(database, "ui-progress", seconds=2)
        pg_execute(
            database,
            "INSERT INTO invoices SELECT 'INV-' || lpad(i::text, 5, '0'), 100 + i + i / 100.0 "
            "FROM generate_series(0, 39) AS i",
        )
        recipe["sources"]["right"] = file_recipe()["sources"]["right"]
        save_recipe(ui_app, recipe)
        streams: list[str] = []
        polled: list[str] = []

        def watch(request: Any) -> None:
            if "/progress/stream" in request.url:
                streams.append(request.url)
            elif re.search(r"/api/runs/[0-9a-f-]+(/progress)?$", request.url):
                polled.append(request.url)

        page.on("request", watch)
        page.goto(f"{ui_app.url}/runs/new?recipe=ui-progress")
        page.get_by_label("File for payments").set_input_files(ui_app.data / "payments.csv")
        page.get_by_role("button", name="Start the run").click()

        page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
        run_id = page.url.rsplit("/", 1)[1]
        _expect(page.locator("#progress-text")).to_contain_text("Reading invoices")
        assert axe_serious(page) == []  # the page of a run in progress
        keep_screenshot(page, "run-progress")
        _expect(page.get_by_role("heading", name="Summary")).to_be_visible(timeout=60_000)
        _expect(page.locator(".badge.status-completed")).to_be_visible()

        run = ui_app.http.get(f"/api/runs/{run_id}").json()
        assert run["status"] == "completed"
        assert run["counts"]["matched"] == 20
        assert len(streams) == 1, streams  # one EventSource for the whole run
        assert polled == [], f"the page polled: {polled}"
        cards = page.locator(".cards").inner_text()
        assert "20" in cards and "pairs" in cards


def test_a_bad_upload_shows_its_error_next_to_the_file(
    ui_app: UiApp, page: Any, tmp_path: Path
) -> None:
    save_recipe(ui_app, file_recipe("ui-bad-upload"))
    wrong = write_csv(
        tmp_path / "payments.csv", ["payment_id", "ref", "amount"], [["P1", "INV-00001", "1.00"]]
    )
    page.goto(f"{ui_app.url}/runs/new?recipe=ui-bad-upload")
    page.get_by_label("File for invoices").set_input_files(ui_app.data / "invoices.csv")
    page.get_by_label("File for payments").set_input_files(wrong)
    page.get_by_role("button", name="Start the run").click()

    error = page.locator("#error-payments")
    _expect(error).to_contain_text("missing expected column 'reference_number'")
    assert axe_serious(page) == []
    keep_screenshot(page, "new-run-bad-upload")
    _expect(page.locator("#error-invoices")).to_be_empty()
    _expect(page.get_by_label("File for payments")).to_have_attribute("aria-invalid", "true")
    assert page.url.endswith("/runs/new?recipe=ui-bad-upload")
    runs = ui_app.http.get("/api/runs", params={"recipe_id": "ui-bad-upload"}).json()
    assert runs["total"] == 0  # refused before a run was created


def test_a_missing_file_is_named_before_anything_is_sent(ui_app: UiApp, page: Any) -> None:
    save_recipe(ui_app, file_recipe("ui-missing-file"))
    page.goto(f"{ui_app.url}/runs/new?recipe=ui-missing-file")
    page.get_by_label("File for invoices").set_input_files(ui_app.data / "invoices.csv")
    page.get_by_role("button", name="Start the run").click()
    _expect(page.locator("#error-payments")).to_have_text("Choose the file for payments.")
    _expect(page.get_by_label("File for payments")).to_be_focused()


@pytest.mark.postgres
def test_cancel_a_running_run(ui_app: UiApp, page: Any) -> None:
    with postgres_database("kalla_ui") as database:
        save_recipe(ui_app, slow_recipe(database, "ui-cancel", seconds=60))
        response = ui_app.http.post("/api/runs", json={"recipe_id": "ui-cancel"})
        assert response.status_code == 202, response.text
        run_id = response.json()["id"]
        page.goto(f"{ui_app.url}/runs/{run_id}")
        _expect(page.locator("#progress-text")).to_contain_text("Reading")
        page.once("dialog", lambda dialog: dialog.accept())
        started = time.monotonic()
        page.get_by_role("button", name="Cancel the run").click()

        _expect(page.get_by_role("alert")).to_contain_text(
            "The run was cancelled: cancelled on request"
        )
        _expect(page.locator(".badge.status-cancelled")).to_be_visible()
        assert time.monotonic() - started < 30
        assert ui_app.http.get(f"/api/runs/{run_id}").json()["status"] == "cancelled"


# --- results --------------------------------------------------------------------------------


def test_filter_and_sort_unmatched_then_download_the_filtered_xlsx(
    ui_app: UiApp, page: Any, tmp_path: Path
) -> None:
    save_recipe(ui_app, file_recipe("ui-results"))
    files = {"invoices": ui_app.data / "invoices.csv", "payments": ui_app.data / "payments.csv"}
    run = completed_run(ui_app, "ui-results", files)
    page.goto(f"{ui_app.url}/runs/{run['id']}")

    page.get_by_role("tab", name="Unmatched invoices").click()
    _expect(page.locator(".pager .count")).to_have_text("Rows 1–20 of 20")
    page.get_by_label("Filter amount: how to compare").select_option("gte")
    page.get_by_label("Filter amount: value").fill("120")
    page.get_by_label("Filter amount: value").press("Enter")
    _expect(page.locator(".pager .count")).to_have_text("Rows 1–10 of 10 (filtered)")
    page.get_by_role("button", name="Sort by amount").click()
    _expect(page.locator("th[aria-sort=ascending]")).to_contain_text("amount")
    page.get_by_role("button", name="Sort by amount, descending").click()
    _expect(page.locator("th[aria-sort=descending]")).to_contain_text("amount")

    shown = page.locator("table.results tbody tr").all_inner_texts()
    ids = [line.split("\t")[0].strip() for line in shown]
    expected = [f"INV-{i:05d}" for i in range(39, 19, -2)]  # odd invoices, amount 100+i ≥ 120
    assert ids == expected

    # the column chooser: the source's three columns and the two explaining the break
    page.get_by_text("Columns (5 of 5)").click()
    page.get_by_role("checkbox", name="customer").uncheck()
    _expect(page.get_by_text("Columns (4 of 5)")).to_be_visible()
    _expect(page.locator("table.results thead th")).to_have_count(4)
    with page.expect_download() as info:
        page.get_by_role("link", name="Excel").click()
    download = info.value
    assert download.suggested_filename.endswith("-unmatched_left-filtered.xlsx")
    target = tmp_path / "filtered.xlsx"
    download.save_as(target)
    sheet = load_workbook(target, read_only=True).active
    rows = list(sheet.iter_rows(values_only=True))
    # the columns shown, not the hidden one
    assert rows[0] == ("invoice_id", "amount", "nearest_key", "nearest_reason")
    assert [r[0] for r in rows[1:]] == expected
    assert all(r[1] >= 120 for r in rows[1:])


def test_matched_row_drills_down_to_both_source_records(ui_app: UiApp, page: Any) -> None:
    save_recipe(ui_app, file_recipe("ui-drill"))
    files = {"invoices": ui_app.data / "invoices.csv", "payments": ui_app.data / "payments.csv"}
    run = completed_run(ui_app, "ui-drill", files)
    page.goto(f"{ui_app.url}/runs/{run['id']}")
    page.get_by_label("Filter invoice_id: value").fill("INV-00004")
    page.get_by_label("Filter invoice_id: value").press("Enter")
    _expect(page.locator(".pager .count")).to_have_text("Rows 1–1 of 1 (filtered)")
    page.get_by_role("button", name="Show the two records of row 1").click()

    dialog = page.get_by_role("dialog")
    _expect(dialog).to_be_visible()
    left = dialog.locator("table", has_text="Left: invoices").inner_text()
    right = dialog.locator("table", has_text="Right: payments").inner_text()
    assert "INV-00004" in left and "104.04" in left
    assert "PAY-00004" in right and "104.04" in right
    page.keyboard.press("Escape")
    _expect(dialog).to_be_hidden()


# --- sign-in --------------------------------------------------------------------------------


def test_sign_in_with_the_token(tmp_path: Path, page: Any) -> None:
    token = "ui-token-for-tests-5c1d"
    app = start_app(tmp_path, KALLA_API_TOKEN=token)
    try:
        save_recipe(app, file_recipe("ui-login"))
        files = {"invoices": app.data / "invoices.csv", "payments": app.data / "payments.csv"}
        run = completed_run(app, "ui-login", files)

        page.goto(f"{app.url}/runs/{run['id']}")
        page.wait_for_url(re.compile(r"/login\?next="))
        page.get_by_label("API token").fill("not-the-token")
        page.get_by_role("button", name="Sign in").click()
        _expect(page.get_by_role("alert")).to_contain_text("that is not the API token")

        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{app.url}/runs/{run['id']}")
        _expect(page.locator(".pager .count")).to_have_text("Rows 1–20 of 20")  # API by cookie

        # the cookie alone does not make a state-changing API call: it needs the CSRF header
        status = page.evaluate(
            "async () => (await fetch('/api/sources', {method: 'POST', "
            "headers: {'content-type': 'application/json'}, "
            "body: JSON.stringify({name: 'x', uri: 's3://b/k.csv'})})).status"
        )
        assert status == 401
        assert app.http.get("/api/sources").json()["total"] == 0

        page.get_by_role("button", name="Sign out").click()
        page.wait_for_url(re.compile(r"/login"))
        page.goto(f"{app.url}/")
        page.wait_for_url(re.compile(r"/login\?next=/"))
    finally:
        app.process.stop()


# --- recipes --------------------------------------------------------------------------------


def test_add_a_recipe_from_its_file_then_a_bad_one_names_every_problem(
    ui_app: UiApp, page: Any, tmp_path: Path
) -> None:
    good = tmp_path / "recipe.json"
    good.write_text(json.dumps(file_recipe("ui-from-file")))
    page.goto(f"{ui_app.url}/recipes")
    page.get_by_label("Recipe (JSON)").set_input_files(good)
    page.get_by_role("button", name="Check and save").click()
    page.wait_for_url(re.compile(r"/recipes/ui-from-file\?version=1$"))
    _expect(page.get_by_role("heading", level=1)).to_have_text("Invoices to payments")
    _expect(page.locator(".plain-words")).to_have_text("reference equal, amount within 0.02")

    bad = tmp_path / "bad.json"
    recipe = file_recipe("ui-bad-recipe", match_sql="SELECT x FROM nowhere")
    recipe["sources"]["left"]["primary_key"] = []
    bad.write_text(json.dumps(recipe))
    page.goto(f"{ui_app.url}/recipes")
    page.get_by_label("Recipe (JSON)").set_input_files(bad)
    page.get_by_role("button", name="Check and save").click()
    alert = page.get_by_role("alert")
    _expect(alert).to_contain_text("The recipe was not saved: invalid recipe")
    _expect(alert).to_contain_text("primary_key")
    assert page.url.endswith("/recipes")
    assert ui_app.http.get("/api/recipes/ui-bad-recipe").status_code == 404
