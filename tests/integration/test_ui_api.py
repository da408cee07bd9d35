"""The JSON endpoints behind the web UI, and its sign-in and error pages, through a real
``kalla serve`` (no browser): results views (several filters, sort, age column, downloads
of the filtered view), overview rates, run progress (JSON and SSE), the match layout,
browser sessions with CSRF beside Bearer tokens.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from test_app_harness import file_recipe, upload, wait_for_run, write_csv
from ui_browser import UiApp, completed_run, save_recipe, start_app

TOKEN = "ui-api-token-for-tests-3e8a"


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiApp]:
    ui = start_app(tmp_path_factory.mktemp("ui-api"))
    try:
        yield ui
    finally:
        ui.process.stop()


@pytest.fixture(scope="module")
def run(app: UiApp) -> dict[str, Any]:
    save_recipe(app, file_recipe("ui-api"))
    files = {"invoices": app.data / "invoices.csv", "payments": app.data / "payments.csv"}
    return completed_run(app, "ui-api", files)


def _amounts(path: Path, key: str) -> dict[str, Decimal]:
    with open(path, newline="") as handle:
        return {row[key]: Decimal(row["amount"]) for row in csv.DictReader(handle)}


# --- results views --------------------------------------------------------------------------


def test_several_filters_and_a_sort_apply_together(app: UiApp, run: dict[str, Any]) -> None:
    params = [
        ("filter_column", "amount"), ("filter_op", "gte"), ("filter_value", "110"),
        ("filter_column", "invoice_id"), ("filter_op", "contains"), ("filter_value", "INV-0001"),
        ("sort", "amount"), ("order", "desc"),
    ]  # fmt: skip
    page = app.http.get(f"/api/runs/{run['id']}/results/unmatched_left", params=params).json()
    ids = [r["invoice_id"] for r in page["rows"]]
    assert ids == ["INV-00019", "INV-00017", "INV-00015", "INV-00013", "INV-00011"]
    assert page["total"] == 5


def test_filters_without_a_value_each_are_refused_naming_the_cause(
    app: UiApp, run: dict[str, Any]
) -> None:
    params = [("filter_column", "amount"), ("filter_column", "customer"), ("filter_value", "1")]
    response = app.http.get(f"/api/runs/{run['id']}/results/unmatched_left", params=params)
    assert response.status_code == 422
    assert "2 filter_column(s) but 1 filter_value(s)" in response.json()["error"]


def test_age_column_counts_days_from_a_date_column(app: UiApp, run: dict[str, Any]) -> None:
    url = f"/api/runs/{run['id']}/results/unmatched_right"
    page = app.http.get(url, params={"age_from": "date", "sort": "age_days"}).json()
    assert page["columns"][-1] == {"name": "age_days", "type": "int32"}
    today = dt.date.today()
    for row in page["rows"]:
        assert row["age_days"] == (today - dt.date.fromisoformat(row["date"])).days
    assert [r["payment_id"] for r in page["rows"]] == ["PAY-X2", "PAY-X1"]  # youngest first
    refused = app.http.get(url, params={"age_from": "amount"})
    assert refused.status_code == 422
    assert "column 'amount' is decimal128" in refused.json()["error"]


def test_downloads_are_of_the_filtered_sorted_view(app: UiApp, run: dict[str, Any]) -> None:
    url = f"/api/runs/{run['id']}/results/unmatched_left"
    view = {"filter_column": "amount", "filter_op": "lt", "filter_value": "106", "sort": "amount",
            "order": "desc"}  # fmt: skip
    page = app.http.get(url, params=view).json()
    expected = [r["invoice_id"] for r in page["rows"]]
    assert expected == ["INV-00005", "INV-00003", "INV-00001"]

    response = app.http.get(url, params={**view, "format": "csv"})
    assert "-unmatched_left-filtered.csv" in response.headers["content-disposition"]
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert [r["invoice_id"] for r in rows] == expected

    parquet = app.http.get(url, params={**view, "format": "parquet"})
    table = pq.read_table(io.BytesIO(parquet.content))
    assert table.column("invoice_id").to_pylist() == expected

    chosen = [*view.items(), ("columns", "amount"), ("columns", "invoice_id")]
    narrow = app.http.get(url, params=[*chosen, ("format", "csv")])
    assert narrow.text.splitlines()[:2] == ['"amount","invoice_id"', '105.05,"INV-00005"']
    page = app.http.get(url, params=chosen).json()
    assert [c["name"] for c in page["columns"]] == ["amount", "invoice_id"]
    unknown = app.http.get(url, params={"columns": "amont"})
    assert unknown.status_code == 422 and "did you mean 'amount'" in unknown.json()["error"]

    whole = app.http.get(url, params={"format": "csv"})
    assert len(list(csv.DictReader(io.StringIO(whole.text)))) == 20
    assert "filtered" not in whole.headers["content-disposition"]


def test_a_bad_filter_on_a_download_is_a_422_not_a_broken_file(
    app: UiApp, run: dict[str, Any]
) -> None:
    url = f"/api/runs/{run['id']}/results/unmatched_left"
    for fmt in ("csv", "xlsx", "parquet"):
        response = app.http.get(
            url,
            params={"filter_column": "amount", "filter_op": "gt", "filter_value": "lots",
                    "format": fmt},
        )  # fmt: skip
        assert response.status_code == 422, fmt
        assert "'lots' is not a valid decimal128" in response.json()["error"]


# --- overview, progress, layout -------------------------------------------------------------


def test_overview_rates_by_count_and_by_amount(app: UiApp, run: dict[str, Any]) -> None:
    invoices = _amounts(app.data / "invoices.csv", "invoice_id")
    payments = _amounts(app.data / "payments.csv", "payment_id")
    matched_payments = {f"PAY-{i:05d}" for i in range(0, 40, 2)}
    matched = sum(v for k, v in invoices.items() if int(k[4:]) % 2 == 0) + sum(
        v for k, v in payments.items() if k in matched_payments
    )
    everything = sum(invoices.values()) + sum(payments.values())

    overview = app.http.get("/api/overview").json()
    item = next(r for r in overview["recent"] if r["run_id"] == run["id"])
    assert item["records"] == 62 and item["matched_records"] == 40
    assert item["rate_count"] == pytest.approx(40 / 62)
    assert item["rate_amount"] == pytest.approx(float(matched / everything))
    assert item["amount_columns"] == {"invoices": "amount", "payments": "amount"}
    trend = next(t for t in overview["trends"] if t["recipe_id"] == "ui-api")
    assert trend["points"][-1]["run_id"] == run["id"]


def test_overview_flags_a_failed_run_and_a_match_rate_drop(app: UiApp, tmp_path: Path) -> None:
    save_recipe(app, file_recipe("ui-drop"))
    invoices, payments = app.data / "invoices.csv", app.data / "payments.csv"
    completed_run(app, "ui-drop", {"invoices": invoices, "payments": payments})
    fewer = tmp_path / "payments.csv"
    lines = payments.read_text().splitlines()
    fewer.write_text("\n".join(lines[:11]) + "\n")  # 10 payments instead of 22
    worse = completed_run(app, "ui-drop", {"invoices": invoices, "payments": fewer})
    broken = write_csv(tmp_path / "bad" / "invoices.csv", ["invoice_id", "amount"],
                       [["INV-00000", "100.00"], ["INV-00000", "100.00"]])  # fmt: skip
    failed = upload(app.http, "ui-drop", {"invoices": broken, "payments": payments}).json()
    assert wait_for_run(app.http, failed["id"])["status"] == "failed"

    attention = app.http.get("/api/overview").json()["attention"]
    drop = next(a for a in attention if a["kind"] == "rate_drop" and a["recipe_id"] == "ui-drop")
    assert drop["run_id"] == worse["id"]
    assert re.search(r"fell from 64\.5% to \d+\.\d%", drop["message"])
    fail = next(a for a in attention if a["run_id"] == failed["id"])
    assert fail["kind"] == "failed" and "not unique" in fail["message"]


def test_progress_of_a_completed_run_as_json_and_as_a_stream(
    app: UiApp, run: dict[str, Any]
) -> None:
    progress = app.http.get(f"/api/runs/{run['id']}/progress").json()
    assert progress["finished"] is True and progress["status"] == "completed"
    assert [(s["alias"], s["side"], s["done"]) for s in progress["sources"]] == [
        ("invoices", "left", True),
        ("payments", "right", True),
    ]
    assert progress["matching"] == 1.0 and progress["matched_count"] == 20

    with app.http.stream("GET", f"/api/runs/{run['id']}/progress/stream") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        text = "".join(response.iter_text())
    events = re.findall(r"event: (\w+)\ndata: (.*)\n\n", text)
    assert [name for name, _ in events] == ["progress", "end"]
    assert '"status":"completed"' in events[0][1]


def test_progress_of_an_unknown_run_is_a_404(app: UiApp) -> None:
    missing = "00000000-0000-4000-8000-000000000000"
    for path in ("progress", "progress/stream"):
        response = app.http.get(f"/api/runs/{missing}/{path}")
        assert response.status_code == 404, path
        assert response.json()["error"] == f"run {missing} not found"


def test_layout_names_each_match_column_s_source(app: UiApp, run: dict[str, Any]) -> None:
    layout = app.http.get(f"/api/runs/{run['id']}/layout").json()
    left, right = layout["sides"]
    assert (left["alias"], left["primary_key"]) == ("invoices", ["invoice_id"])
    assert {c["name"]: c["matched_as"] for c in left["columns"]} == {
        "invoice_id": "invoice_id",
        "customer": None,
        "amount": "invoices.amount",
    }
    assert {c["name"]: c["matched_as"] for c in right["columns"]} == {
        "payment_id": "payment_id",
        "reference_number": None,
        "amount": "payments.amount",
        "date": None,
    }
    assert layout["other"] == ["match_pass"]


# --- pages and errors -----------------------------------------------------------------------


def test_a_page_error_is_a_page_naming_the_cause_and_the_api_stays_json(app: UiApp) -> None:
    page = app.http.get("/recipes/ui-apo")
    assert page.status_code == 404
    assert page.headers["content-type"].startswith("text/html")
    assert "recipe &#39;ui-apo&#39; not found" in page.text and "ui-api" in page.text
    assert "Traceback" not in page.text
    nowhere = app.http.get("/no/such/page")
    assert nowhere.status_code == 404 and "there is no page at this address" in nowhere.text
    api = app.http.get("/api/recipes/ui-apo")
    assert api.status_code == 404 and api.json()["kind"] == "not_found"


def test_a_form_without_its_csrf_token_is_refused(app: UiApp) -> None:
    response = app.http.post("/sources", data={"name": "x", "uri": "s3://b/k.csv"})
    assert response.status_code == 403
    assert "CSRF check failed" in response.text
    assert app.http.get("/api/sources").json()["total"] == 0


def _csrf(html: str) -> str:
    match = re.search(r'name="csrf-token" content="([0-9a-f]+)"', html)
    assert match, "no CSRF token in the page"
    return match.group(1)


def test_signed_in_browser_session_beside_bearer_tokens(tmp_path: Path) -> None:
    ui = start_app(tmp_path, KALLA_API_TOKEN=TOKEN)
    browser = httpx.Client(base_url=ui.url, trust_env=False, follow_redirects=False)
    try:
        first = browser.get("/sources")
        assert first.status_code == 303 and first.headers["location"] == "/login?next=/sources"
        assert browser.get("/api/overview").status_code == 401

        form = browser.get("/login?next=/sources")
        csrf = _csrf(form.text)
        wrong = browser.post("/login", data={"csrf_token": csrf, "token": "nope", "next": "/"})
        assert wrong.status_code == 401 and "not the API token" in wrong.text
        signed = browser.post(
            "/login", data={"csrf_token": csrf, "token": TOKEN, "next": "/sources"}
        )
        assert signed.status_code == 303 and signed.headers["location"] == "/sources"
        cookie = signed.headers["set-cookie"]
        assert "HttpOnly" in cookie and "SameSite=strict" in cookie
        assert TOKEN not in cookie

        page = browser.get("/sources")
        assert page.status_code == 200
        session_csrf = _csrf(page.text)
        assert session_csrf != csrf  # a new session on sign-in
        assert browser.get("/api/overview").status_code == 200
        body = {"name": "lake", "uri": "s3://bucket/key.parquet"}
        assert browser.post("/api/sources", json=body).status_code == 401  # no CSRF header
        made = browser.post("/api/sources", json=body, headers={"X-CSRF-Token": session_csrf})
        assert made.status_code == 201

        bearer = httpx.Client(base_url=ui.url, trust_env=False)
        assert bearer.get("/api/sources").status_code == 401
        bearer.headers["Authorization"] = f"Bearer {TOKEN}"
        assert bearer.get("/api/sources").json()["total"] == 1
        both = httpx.Client(base_url=ui.url, trust_env=False, cookies=browser.cookies)
        both.headers["Authorization"] = "Bearer wrong"  # a wrong token is not saved by a cookie
        assert both.get("/api/sources").status_code == 401

        out = browser.post("/logout", data={"csrf_token": session_csrf})
        assert out.status_code == 303 and out.headers["location"] == "/login"
        assert browser.get("/api/overview").status_code == 401
    finally:
        ui.process.stop()


def test_login_only_returns_to_a_page_of_this_app(tmp_path: Path) -> None:
    ui = start_app(tmp_path, KALLA_API_TOKEN=TOKEN)
    try:
        for target in ("https://evil.example/", "//evil.example/x", "/\\evil.example",
                       "javascript:alert(1)"):  # fmt: skip
            browser = httpx.Client(base_url=ui.url, trust_env=False, follow_redirects=False)
            csrf = _csrf(browser.get("/login").text)
            response = browser.post(
                "/login", data={"csrf_token": csrf, "token": TOKEN, "next": target}
            )
            assert response.headers["location"] == "/", target
    finally:
        ui.process.stop()
