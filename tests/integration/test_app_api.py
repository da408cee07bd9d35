"""The app's REST API through a real ``kalla serve`` process, on SQLite and on PostgreSQL.

One flow per resource: register sources, save recipe versions, start runs with uploads,
follow them to completion, page every result set, download CSV/XLSX/Parquet and read them
back; plus the refusals (413, 422 naming missing columns, 404 with suggestions, 401 for
unsigned or stale callbacks).
"""

from __future__ import annotations

import io
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest
from test_app_harness import (
    PG_PASSWORD,
    Process,
    app_process,
    base_env,
    client,
    file_recipe,
    invoice_payment_files,
    pg_execute,
    pg_url,
    postgres_database,
    signed,
    slow_recipe,
    upload,
    wait_for_run,
    write_csv,
)

SEED_000_PATHS = {
    ("get", "/api/sources"),
    ("post", "/api/sources"),
    ("get", "/api/recipes"),
    ("post", "/api/recipes"),
    ("get", "/api/recipes/{recipe_id}"),
    ("post", "/api/runs"),
    ("get", "/api/runs/{run_id}"),
    ("post", "/api/worker/progress"),
    ("post", "/api/worker/complete"),
    ("post", "/api/worker/error"),
}
MAX_UPLOAD = 64 * 1024
EXPLAINED = ("nearest_key", "nearest_reason")  # the breaks explained, on unmatched rows


class App:
    def __init__(self, process: Process, backend: str, database: str | None, data: Path) -> None:
        self.process = process
        self.backend = backend
        self.database = database  # the PostgreSQL database name (postgres backend)
        self.data = data
        self.http = client(process.url)


@pytest.fixture(
    scope="module",
    params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)],
)
def app(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    workdir = tmp_path_factory.mktemp(f"app-{request.param}")
    data = workdir / "data"
    invoice_payment_files(data)
    with _database(request.param) as (url, name):
        process = app_process(
            workdir,
            database_url=url,
            KALLA_MAX_UPLOAD_SIZE=str(MAX_UPLOAD),
            KALLA_TEST_PG_PASSWORD=PG_PASSWORD,  # what ${KALLA_TEST_PG_PASSWORD} resolves to
        ).start()
        try:
            yield App(process, request.param, name, data)
        finally:
            process.stop()


class _database:
    def __init__(self, backend: str) -> None:
        self.backend = backend
        self._cm: Any = None

    def __enter__(self) -> tuple[str | None, str | None]:
        if self.backend == "sqlite":
            return None, None
        self._cm = postgres_database()
        name = self._cm.__enter__()
        # Seed 000 style URL: postgres:// (the app maps it to psycopg)
        return pg_url(name), name

    def __exit__(self, *exc: object) -> None:
        if self._cm is not None:
            self._cm.__exit__(*exc)


def _ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    return response.json() if response.content else None


def _error(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, f"{response.status_code}: {response.text}"
    body = response.json()
    assert set(body) >= {"error", "problems"}, body
    return body


# --- documentation ---------------------------------------------------------------------------


def test_openapi_lists_every_seed_endpoint(app: App) -> None:
    spec = _ok(app.http.get("/openapi.json"))
    present = {(m, p) for p, ops in spec["paths"].items() for m in ops}
    assert present >= SEED_000_PATHS
    assert ("post", "/api/runs/{run_id}/callback") in present
    assert ("get", "/api/runs/{run_id}/results/{output}") in present
    body = spec["paths"]["/api/runs"]["post"]["requestBody"]["content"]
    assert set(body) == {"application/json", "multipart/form-data"}
    assert "Recipe" in spec["components"]["schemas"]
    assert app.http.get("/docs").status_code == 200


# --- sources ---------------------------------------------------------------------------------


def test_sources_register_list_get_delete(app: App) -> None:
    uri = f"postgres://ledger:{PG_PASSWORD}@db.internal:5432/ledger?table=invoices"
    created = _ok(app.http.post("/api/sources", json={"name": "ledger", "uri": uri}), 201)
    assert created["uri"] == "postgres://ledger:***@db.internal:5432/ledger?table=invoices"
    assert created["type"] == "postgres"
    assert PG_PASSWORD not in str(created)
    (warning,) = created["warnings"]  # the literal password was not stored
    assert "postgres://ledger:${ENV_NAME}@db.internal:5432/ledger?table=invoices" in warning
    placeholder = uri.replace(PG_PASSWORD, "${LEDGER_PASSWORD}")
    kept = _ok(app.http.post("/api/sources", json={"name": "ledger-env", "uri": placeholder}), 201)
    assert (kept["uri"], kept["warnings"]) == (placeholder, [])
    _ok(app.http.delete(f"/api/sources/{kept['id']}"), 204)

    duplicate = _error(app.http.post("/api/sources", json={"name": "ledger", "uri": uri}), 409)
    assert "already exists" in duplicate["error"]
    bad = _error(app.http.post("/api/sources", json={"name": "x", "uri": "postgress://h/d"}), 422)
    assert "did you mean 'postgres'" in bad["error"]
    local = _error(app.http.post("/api/sources", json={"name": "y", "uri": "/etc/passwd"}), 422)
    assert "uploaded with each run" in local["error"]

    listed = _ok(app.http.get("/api/sources", params={"limit": 100}))
    assert any(s["id"] == created["id"] for s in listed["items"])
    assert listed["total"] >= 1
    assert _ok(app.http.get(f"/api/sources/{created['id']}")) == created
    _ok(app.http.delete(f"/api/sources/{created['id']}"), 204)
    _error(app.http.get(f"/api/sources/{created['id']}"), 404)
    _error(app.http.delete(f"/api/sources/{created['id']}"), 404)


def test_source_test_reports_an_unreachable_server(app: App) -> None:
    uri = f"postgres://ledger:{PG_PASSWORD}@127.0.0.1:9/ledger?table=invoices"
    created = _ok(app.http.post("/api/sources", json={"name": "down", "uri": uri}), 201)
    response = app.http.post(f"/api/sources/{created['id']}/test")
    tested = _ok(response)
    assert tested["ok"] is False and "127.0.0.1:9" in tested["error"], tested
    assert tested["source"]["uri"].startswith("postgres://ledger:***@")
    assert PG_PASSWORD not in response.text


@pytest.mark.postgres
def test_source_test_returns_schema_and_sample(app: App) -> None:
    with postgres_database("kalla_src") as db:
        pg_execute(
            db,
            "CREATE TABLE ledger (id text primary key, amount numeric(10,2), booked date)",
            "INSERT INTO ledger SELECT 'L' || g, g * 1.5, DATE '2024-01-01' + g "
            "FROM generate_series(1, 20) g",
        )
        uri = pg_url(db, password="${KALLA_TEST_PG_PASSWORD}") + "?table=ledger"
        created = _ok(app.http.post("/api/sources", json={"name": f"pg-{db}", "uri": uri}), 201)
        tested = _ok(app.http.post(f"/api/sources/{created['id']}/test", params={"rows": 3}))
        assert tested["ok"] is True and tested["error"] is None
        assert [c["name"] for c in tested["columns"]] == ["id", "amount", "booked"]
        assert len(tested["sample"]) == 3
        assert set(tested["sample"][0]) == {"id", "amount", "booked"}
        assert PG_PASSWORD not in str(tested)

        # a literal password serves the test at registration only: it is never stored
        literal = pg_url(db, password=PG_PASSWORD) + "?table=ledger"
        registered = _ok(
            app.http.post(
                "/api/sources",
                params={"test": "true", "rows": 2},
                json={"name": f"pg-literal-{db}", "uri": literal},
            ),
            201,
        )
        assert registered["test"]["ok"] is True and len(registered["test"]["sample"]) == 2
        assert registered["uri"] == pg_url(db, password="***") + "?table=ledger"
        later = _ok(app.http.post(f"/api/sources/{registered['id']}/test"))
        assert later["ok"] is False and "${ENV_NAME}" in later["error"], later
        assert PG_PASSWORD not in str(registered) + str(later)


# --- recipes ---------------------------------------------------------------------------------


def test_recipe_versions_are_immutable(app: App) -> None:
    recipe = file_recipe("versioned")
    first = _ok(app.http.post("/api/recipes", json=recipe), 201)
    assert (first["version"], first["versions"]) == (1, 1)
    again = _ok(app.http.post("/api/recipes", json=recipe), 200)
    assert again["version"] == 1 and again["sha256"] == first["sha256"]

    changed = file_recipe("versioned", description="now with a new description")
    second = _ok(app.http.post("/api/recipes", json=changed), 201)
    assert second["version"] == 2

    latest = _ok(app.http.get("/api/recipes/versioned"))
    assert latest["version"] == 2 and latest["versions"] == 2
    assert latest["recipe"]["description"] == "now with a new description"
    old = _ok(app.http.get("/api/recipes/versioned", params={"version": 1}))
    assert old["recipe"]["description"] == recipe["description"]
    versions = _ok(app.http.get("/api/recipes/versioned/versions"))
    assert [v["version"] for v in versions] == [1, 2]
    listed = _ok(app.http.get("/api/recipes"))
    assert {"recipe_id": "versioned", "version": 2} in [
        {"recipe_id": r["recipe_id"], "version": r["version"]} for r in listed["items"]
    ]

    missing = _error(app.http.get("/api/recipes/versioned", params={"version": 9}), 404)
    assert "no version 9" in missing["error"]
    typo = _error(app.http.get("/api/recipes/versiond"), 404)
    assert "did you mean 'versioned'" in typo["error"]
    _error(app.http.get("/api/recipes/nothing-like-it/versions"), 404)


def test_invalid_recipe_lists_every_problem(app: App) -> None:
    bad = file_recipe("broken")
    bad["match_sql"] = "SELECT * FROM invoices i JOIN paymnts p ON i.invoice_id = p.ref"
    bad["sources"]["right"]["primary_key"] = ["payment_no"]
    bad["sources"]["left"]["type"] = "fiel"
    body = _error(app.http.post("/api/recipes", json=bad), 422)
    text = " ".join(body["problems"])
    assert len(body["problems"]) >= 3, body
    assert "paymnts" in text and "payment_no" in text and "fiel" in text

    escape = file_recipe("escape")
    escape["sources"]["left"] = {
        "alias": "invoices",
        "type": "postgres",
        "uri": "/etc/passwd",
        "primary_key": ["invoice_id"],
    }
    body = _error(app.http.post("/api/recipes", json=escape), 422)
    assert "postgres://" in body["problems"][0]
    _error(
        app.http.post(
            "/api/recipes", content=b"{not json", headers={"content-type": "application/json"}
        ),
        422,
    )


# --- runs ------------------------------------------------------------------------------------


def test_run_with_uploads_to_completion_and_results(app: App) -> None:
    _ok(app.http.post("/api/recipes", json=file_recipe("flow")), 201)
    files = {"invoices": app.data / "invoices.csv", "payments": app.data / "payments.csv"}
    created = _ok(upload(app.http, "flow", files), 202)
    assert created["status"] in ("queued", "running", "completed")
    assert (created["recipe_id"], created["recipe_version"]) == ("flow", 1)

    run = wait_for_run(app.http, created["id"])
    assert run["status"] == "completed", run
    assert run["counts"] == {
        "matched": 20,
        "unmatched_left": 20,
        "unmatched_right": 2,
        "ambiguous_left": 0,
        "ambiguous_right": 0,
        "ambiguous": 0,
    }
    assert run["progress"] == 1.0 and run["stage"] == "done"
    assert run["manifest"]["counts"]["matched_count"] == 20
    assert run["timings"]["seconds"] is not None and "total" in run["timings"]["stages"]
    assert set(run["results"]) == {"matched", "unmatched_left", "unmatched_right"}
    base = f"/api/runs/{run['id']}/results"

    # paging: every row exactly once, in order
    seen = []
    for offset in range(0, 20, 7):
        page = _ok(
            app.http.get(
                f"{base}/matched", params={"offset": offset, "limit": 7, "sort": "invoice_id"}
            )
        )
        assert page["total"] == 20
        seen += [r["invoice_id"] for r in page["rows"]]
    assert seen == sorted(f"INV-{i:05d}" for i in range(0, 40, 2))
    names = [c["name"] for c in page["columns"]]
    assert {"invoice_id", "payment_id", "invoices.amount", "payments.amount"} <= set(names)

    desc = _ok(
        app.http.get(
            f"{base}/matched", params={"sort": "invoices.amount", "order": "desc", "limit": 1}
        )
    )
    assert desc["rows"][0]["invoice_id"] == "INV-00038"
    filtered = _ok(
        app.http.get(
            f"{base}/unmatched_left",
            params={"filter_column": "customer", "filter_op": "eq", "filter_value": "Customer 3"},
        )
    )
    assert filtered["total"] == len([i for i in range(1, 40, 2) if i % 7 == 3])
    assert all(r["customer"] == "Customer 3" for r in filtered["rows"])
    numeric = _ok(
        app.http.get(
            f"{base}/unmatched_left",
            params={"filter_column": "amount", "filter_op": "gte", "filter_value": "130"},
        )
    )
    assert numeric["total"] == len([i for i in range(1, 40, 2) if 100 + i >= 130])
    contains = _ok(
        app.http.get(
            f"{base}/unmatched_right",
            params={
                "filter_column": "reference_number",
                "filter_op": "contains",
                "filter_value": "NOPE",
            },
        )
    )
    assert [r["payment_id"] for r in contains["rows"]] == ["PAY-X1"]
    right = _ok(app.http.get(f"{base}/unmatched_right"))
    assert {r["payment_id"] for r in right["rows"]} == {"PAY-X1", "PAY-X2"}
    assert _ok(app.http.get(f"{base}/ambiguous"))["total"] == 0

    typo = _error(app.http.get(f"{base}/matched", params={"sort": "invoice_idd"}), 422)
    assert "did you mean 'invoice_id'" in typo["error"]
    _error(
        app.http.get(
            f"{base}/matched",
            params={"filter_column": "invoices.amount", "filter_op": "gt", "filter_value": "lots"},
        ),
        422,
    )
    _error(app.http.get(f"{base}/ambiguous", params={"format": "csv"}), 404)

    # downloads of the whole output, read back
    csv_response = app.http.get(f"{base}/matched", params={"format": "csv"})
    assert csv_response.status_code == 200 and csv_response.headers["content-type"].startswith(
        "text/csv"
    )
    assert "attachment" in csv_response.headers["content-disposition"]
    table = pacsv.read_csv(io.BytesIO(csv_response.content))
    assert table.num_rows == 20 and "invoices.amount" in table.column_names
    parquet_response = app.http.get(f"{base}/unmatched_left", params={"format": "parquet"})
    assert parquet_response.status_code == 200
    left = pq.read_table(io.BytesIO(parquet_response.content))
    assert left.num_rows == 20
    assert left.column_names == ["invoice_id", "customer", "amount", *EXPLAINED]
    xlsx_response = app.http.get(f"{base}/unmatched_left", params={"format": "xlsx"})
    assert xlsx_response.status_code == 200
    import openpyxl

    sheet = openpyxl.load_workbook(io.BytesIO(xlsx_response.content), read_only=True).active
    rows = list(sheet.iter_rows(values_only=True))
    assert rows[0] == ("invoice_id", "customer", "amount", *EXPLAINED)
    assert len(rows) == 21
    by_id = {r[0]: r for r in rows[1:]}
    assert set(by_id) == {f"INV-{i:05d}" for i in range(1, 40, 2)}
    assert by_id["INV-00001"][2] == pytest.approx(101.01)

    # run listing and events
    listed = _ok(app.http.get("/api/runs", params={"recipe_id": "flow", "status": "completed"}))
    assert [r["id"] for r in listed["items"]] == [run["id"]] and listed["total"] == 1
    assert (
        _ok(app.http.get("/api/runs", params={"recipe_id": "flow", "status": "failed"}))["total"]
        == 0
    )
    kinds = [e["kind"] for e in _ok(app.http.get(f"/api/runs/{run['id']}/events"))]
    assert kinds[:2] == ["created", "dispatched"] and kinds[-1] == "completed"
    assert "staging" in kinds and "matching" in kinds
    # uploads are scratch: removed once the run ended
    assert not list((app.process.env_path("STAGING_PATH") / "uploads").glob(f"{run['id']}*"))


def test_downloads_neutralise_formulas(app: App) -> None:
    """A customer named ``=HYPERLINK(…)`` is text in every download: a leading ``'`` in
    CSV, a quote-prefixed text cell in XLSX; amounts stay numbers (-45.10)."""
    import openpyxl

    names = ['=HYPERLINK("http://evil.example","x")', "+1+2", "-2+3", "@SUM(A1)", "\tTab", "Plain"]
    invoices = write_csv(
        app.data / "formulas" / "invoices.csv",
        ["invoice_id", "customer", "amount"],
        [[f"F-{i}", name, "-45.10"] for i, name in enumerate(names)],
    )
    payments = write_csv(
        app.data / "formulas" / "payments.csv",
        ["payment_id", "reference_number", "amount"],
        [["P-1", "NONE", "1.00"]],
    )
    _ok(app.http.post("/api/recipes", json=file_recipe("formulas")), 201)
    run = wait_for_run(
        app.http,
        _ok(upload(app.http, "formulas", {"invoices": invoices, "payments": payments}), 202)["id"],
    )
    assert run["status"] == "completed", run
    base = f"/api/runs/{run['id']}/results/unmatched_left"
    csv_text = _ok_raw(app.http.get(base, params={"format": "csv", "sort": "invoice_id"})).text
    table = pacsv.read_csv(
        io.BytesIO(csv_text.encode()),
        convert_options=pacsv.ConvertOptions(column_types={"customer": "string"}),
    )
    assert table.column("customer").to_pylist() == [
        f"'{n}" if n[0] in "=+-@\t" else n for n in names
    ]
    assert [str(a) for a in table.column("amount").to_pylist()] == ["-45.1"] * len(names)
    assert ",-45.10," in csv_text  # the decimal's exact text
    xlsx = _ok_raw(app.http.get(base, params={"format": "xlsx", "sort": "invoice_id"}))
    sheet = openpyxl.load_workbook(io.BytesIO(xlsx.content)).active
    cells = [(r[1], r[2]) for r in sheet.iter_rows(min_row=2)]
    assert [c.value for c, _ in cells] == names
    assert all(c.data_type == "s" for c, _ in cells)  # text, never a formula
    assert [c.quotePrefix for c, _ in cells] == [n != "Plain" for n in names]
    assert all(a.value == -45.1 and a.number_format == "#,##0.00" for _, a in cells)


def _ok_raw(response: httpx.Response) -> httpx.Response:
    assert response.status_code == 200, response.text
    return response


def test_runs_are_paginated(app: App) -> None:
    _ok(app.http.post("/api/recipes", json=file_recipe("paged")), 201)
    files = {"invoices": app.data / "invoices.csv", "payments": app.data / "payments.csv"}
    ids = [_ok(upload(app.http, "paged", files), 202)["id"] for _ in range(3)]
    for run_id in ids:
        wait_for_run(app.http, run_id)
    first = _ok(app.http.get("/api/runs", params={"recipe_id": "paged", "limit": 2}))
    second = _ok(app.http.get("/api/runs", params={"recipe_id": "paged", "limit": 2, "offset": 2}))
    assert first["total"] == second["total"] == 3
    assert len(first["items"]) == 2 and len(second["items"]) == 1
    assert {r["id"] for r in first["items"] + second["items"]} == set(ids)
    assert all(r["manifest"] is None for r in first["items"])  # lists stay small


def test_run_refusals(app: App) -> None:
    _ok(app.http.post("/api/recipes", json=file_recipe("refusals")), 201)
    invoices, payments = app.data / "invoices.csv", app.data / "payments.csv"

    wrong = write_csv(app.data / "wrong.csv", ["payment_id", "ref", "amt"], [["P1", "I1", "1.00"]])
    body = _error(upload(app.http, "refusals", {"invoices": invoices, "payments": wrong}), 422)
    assert "'reference_number'" in body["error"] and "'amount'" in body["error"]

    big = app.data / "big.csv"
    big.write_text("invoice_id,amount\n" + "".join(f"I{i},1.00\n" for i in range(MAX_UPLOAD // 8)))
    body = _error(upload(app.http, "refusals", {"invoices": big, "payments": payments}), 413)
    assert "KALLA_MAX_UPLOAD_SIZE" in body["error"]

    body = _error(upload(app.http, "refusals", {"invoices": invoices}), 422)
    assert "file source 'payments' needs its file" in " ".join(body["problems"])
    body = _error(
        upload(
            app.http, "refusals", {"invoices": invoices, "payments": payments, "paymnts": payments}
        ),
        422,
    )
    assert "did you mean 'payments'" in " ".join(body["problems"])
    body = _error(app.http.post("/api/runs", json={"recipe_id": "refusals"}), 422)
    assert "multipart/form-data" in " ".join(body["problems"])
    body = _error(app.http.post("/api/runs", json={"recipe_id": "refusal"}), 404)
    assert "did you mean 'refusals'" in body["error"]
    _error(app.http.post("/api/runs", json={"recipe_id": "refusals", "version": 7}), 404)
    _error(app.http.post("/api/runs", json={"recipe": "refusals"}), 422)
    _error(app.http.post("/api/runs", content=b"x", headers={"content-type": "text/plain"}), 422)
    odd = app.data / "invoices.docx"  # .txt is delimited text, read like a CSV
    odd.write_bytes(invoices.read_bytes())
    body = _error(upload(app.http, "refusals", {"invoices": odd, "payments": payments}), 422)
    assert "unsupported file type" in body["error"]
    # nothing was created by any refusal, and no upload is left behind
    assert _ok(app.http.get("/api/runs", params={"recipe_id": "refusals"}))["total"] == 0
    uploads = app.process.env_path("STAGING_PATH") / "uploads"
    assert not uploads.exists() or not any(
        p for p in uploads.iterdir() if not _run_exists(app, p.name)
    )


def _multipart(boundary: str, recipe_id: str, files: dict[str, Path]) -> bytes:
    """A complete multipart/form-data body, byte for byte (to cut it short on purpose)."""
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="recipe_id"\r\n\r\n'
        f"{recipe_id}\r\n".encode()
    ]
    for alias, path in files.items():
        head = (
            f'--{boundary}\r\nContent-Disposition: form-data; name="{alias}"; '
            f'filename="{path.name}"\r\nContent-Type: text/csv\r\n\r\n'
        )
        parts.append(head.encode() + path.read_bytes() + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode()


TRUNCATIONS = {
    # case: (where the body is cut, what the 400 says)
    "inside the last file": (
        lambda body, boundary: body[: body.rindex(b"PAY-X1")],
        "upload for source 'payments' (payments.csv) was cut off after",
    ),
    "in the closing boundary": (
        lambda body, boundary: body[: -len("--\r\n")],
        "upload for source 'payments' (payments.csv) was cut off after",
    ),
}


@pytest.mark.parametrize("case", sorted(TRUNCATIONS))
def test_a_truncated_upload_is_refused(app: App, case: str) -> None:
    """A body that ends before its closing boundary was cut short on its way (a client, a
    proxy): 400 naming the file, never a run on the rows that arrived."""
    recipe_id = "cut-" + case.replace(" ", "-")
    _ok(app.http.post("/api/recipes", json=file_recipe(recipe_id)), 201)
    files = {"invoices": app.data / "invoices.csv", "payments": app.data / "payments.csv"}
    boundary = "kalla-test-boundary-7MA4YWxk"
    whole = _multipart(boundary, recipe_id, files)
    cut, message = TRUNCATIONS[case]
    response = app.http.post(
        "/api/runs",
        content=cut(whole, boundary),
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    body = _error(response, 400)
    assert body["kind"] == "incomplete_upload" and body["error"].startswith(message), body
    assert "closing boundary" in body["error"]
    assert _ok(app.http.get("/api/runs", params={"recipe_id": recipe_id}))["total"] == 0
    complete = app.http.post(
        "/api/runs",
        content=whole,
        headers={"content-type": f"multipart/form-data; boundary={boundary}"},
    )
    run = wait_for_run(app.http, _ok(complete, 202)["id"])
    assert run["status"] == "completed", run


def _run_exists(app: App, run_id: str) -> bool:
    return app.http.get(f"/api/runs/{run_id}").status_code == 200


def test_failed_run_names_the_cause(app: App) -> None:
    recipe = file_recipe(
        "fails",
        match_sql="SELECT i.invoice_id, p.payment_id FROM invoices i "
        "JOIN payments p ON i.invoice_id = p.no_such_column",
    )
    _ok(app.http.post("/api/recipes", json=recipe), 201)
    files = {"invoices": app.data / "invoices.csv", "payments": app.data / "payments.csv"}
    run = wait_for_run(app.http, _ok(upload(app.http, "fails", files), 202)["id"])
    assert run["status"] == "failed" and "no_such_column" in run["error"]
    assert run["results"] == {}
    _error(app.http.get(f"/api/runs/{run['id']}/results/matched"), 409)
    _error(app.http.get("/api/runs/00000000-0000-0000-0000-000000000000"), 404)
    _error(app.http.get("/api/runs/not-a-uuid"), 422)


def test_an_upload_built_to_exhaust_its_reader_fails_alone(app: App, tmp_path: Path) -> None:
    """A 5 KB XLSX with one cell at XFD1048576: its reader asks for 512 GiB. The file is
    read in a child process capped by the OS, so the upload fails naming the cause and the
    app serves the next run."""
    openpyxl = pytest.importorskip("openpyxl")
    workbook = openpyxl.Workbook()
    sheet = workbook.active
    sheet.append(["invoice_id", "customer", "amount"])
    sheet.append(["INV-00000", "Customer 0", 100])
    sheet["XFD1048576"] = "x"
    bomb = tmp_path / "invoices.xlsx"
    workbook.save(bomb)
    assert bomb.stat().st_size < 8 * 1024
    _ok(app.http.post("/api/recipes", json=file_recipe("xlsx-bomb")), 201)
    files = {"invoices": bomb, "payments": app.data / "payments.csv"}
    error = _error(upload(app.http, "xlsx-bomb", files), 422)["error"]
    assert error.startswith("upload for source 'invoices' (invoices.xlsx): "), error
    assert "exceeded the memory limit of" in error, error
    assert "an allocation of 512 GiB failed" in error, error
    files = {"invoices": app.data / "invoices.csv", "payments": app.data / "payments.csv"}
    run = wait_for_run(app.http, _ok(upload(app.http, "xlsx-bomb", files), 202)["id"])
    assert run["status"] == "completed", run


@pytest.mark.postgres
def test_persistent_sources_run_from_json(app: App) -> None:
    """Both sides in PostgreSQL: a JSON run; the recipe's masked password comes from the
    registered source for that server."""
    with postgres_database("kalla_data") as db:
        pg_execute(
            db,
            "CREATE TABLE invoices (invoice_id text primary key, amount numeric(10,2))",
            "CREATE TABLE payments (payment_id text primary key, reference_number text, "
            "amount numeric(10,2))",
            "INSERT INTO invoices VALUES ('I1', 10.00), ('I2', 20.00), ('I3', 30.00)",
            "INSERT INTO payments VALUES ('P1', 'I1', 10.00), ('P2', 'I2', 20.01), "
            "('P9', 'I9', 1.00)",
        )
        _ok(
            app.http.post(
                "/api/sources",
                json={
                    "name": f"books-{db}",
                    "uri": pg_url(db, password="${KALLA_TEST_PG_PASSWORD}") + "?table=invoices",
                },
            ),
            201,
        )
        masked = pg_url(db, password="***")
        recipe = file_recipe(f"pg-{db}")
        recipe["sources"] = {
            "left": {
                "alias": "invoices",
                "type": "postgres",
                "uri": masked + "?table=invoices",
                "primary_key": ["invoice_id"],
            },
            "right": {
                "alias": "payments",
                "type": "postgres",
                "uri": masked + "?table=payments",
                "primary_key": ["payment_id"],
            },
        }
        saved = _ok(app.http.post("/api/recipes", json=recipe), 201)
        assert "***" in saved["recipe"]["sources"]["left"]["uri"]
        created = _ok(app.http.post("/api/runs", json={"recipe_id": recipe["recipe_id"]}), 202)
        run = wait_for_run(app.http, created["id"])
        assert run["status"] == "completed", run
        assert (
            run["counts"]["matched"],
            run["counts"]["unmatched_left"],
            run["counts"]["unmatched_right"],
        ) == (2, 1, 1)
        assert PG_PASSWORD not in str(run)

        unknown = file_recipe(f"pg-unknown-{db}")
        unknown["sources"] = {
            side: {**spec, "uri": spec["uri"].replace("127.0.0.1", "localhost")}
            for side, spec in recipe["sources"].items()
        }
        _ok(app.http.post("/api/recipes", json=unknown), 201)
        body = _error(app.http.post("/api/runs", json={"recipe_id": unknown["recipe_id"]}), 422)
        assert "masked password" in body["error"]


@pytest.mark.postgres
def test_queued_and_running_runs_can_be_cancelled(app: App) -> None:
    with postgres_database("kalla_slow") as db:
        recipe = slow_recipe(db, f"slow-{db}", seconds=3)
        _ok(app.http.post("/api/recipes", json=recipe), 201)
        start = {"recipe_id": recipe["recipe_id"]}
        running = _ok(app.http.post("/api/runs", json=start), 202)["id"]
        queued = _ok(app.http.post("/api/runs", json=start), 202)["id"]  # one run at a time
        wait_for_run(app.http, running, statuses=("running",))

        for run_id in (queued, running):
            run = _ok(app.http.post(f"/api/runs/{run_id}/cancel"))
            assert (run["status"], run["stage"], run["error"]) == (
                "cancelled",
                "cancelled",
                "cancelled on request",
            )
            assert run["timings"]["finished_at"] is not None and run["results"] == {}
        again = _error(app.http.post(f"/api/runs/{running}/cancel"), 409)
        assert again["error"].endswith("already cancelled; nothing to cancel")
        _error(app.http.post("/api/runs/00000000-0000-0000-0000-000000000000/cancel"), 404)

        # The running job stops at its next checkpoint, once the slow source is read; its
        # failure arrives after the run ended and changes nothing. The queued job never
        # starts, and the next run goes through.
        after = file_recipe(f"after-cancel-{db}")
        _ok(app.http.post("/api/recipes", json=after), 201)
        files = {"invoices": app.data / "invoices.csv", "payments": app.data / "payments.csv"}
        done = wait_for_run(app.http, _ok(upload(app.http, after["recipe_id"], files), 202)["id"])
        assert done["status"] == "completed", done
        kinds = [e["kind"] for e in _ok(app.http.get(f"/api/runs/{running}/events"))]
        assert "ignored:failed" in kinds, kinds  # the job's own end, recorded and ignored
        assert kinds.index("cancelled") < kinds.index("ignored:failed"), kinds
        kinds = [e["kind"] for e in _ok(app.http.get(f"/api/runs/{queued}/events"))]
        assert "started" not in kinds and "cancelled" in kinds, kinds
        for run_id in (queued, running):
            assert _ok(app.http.get(f"/api/runs/{run_id}"))["status"] == "cancelled"
            _error(app.http.get(f"/api/runs/{run_id}/results/matched"), 409)
        listed = _ok(app.http.get("/api/runs", params={"status": "cancelled"}))
        assert {queued, running} <= {r["id"] for r in listed["items"]}


# --- callbacks -------------------------------------------------------------------------------


def test_callbacks_need_a_fresh_valid_signature(app: App) -> None:
    _ok(app.http.post("/api/recipes", json=file_recipe("cb")), 201)
    files = {"invoices": app.data / "invoices.csv", "payments": app.data / "payments.csv"}
    run = wait_for_run(app.http, _ok(upload(app.http, "cb", files), 202)["id"])
    run_id = run["id"]
    error = {"run_id": run_id, "error": "forged failure"}

    for path in ("/api/worker/error", f"/api/runs/{run_id}/callback"):
        unsigned = app.http.post(path, json=error)
        assert unsigned.status_code == 401, unsigned.text
        raw, headers = signed(error, secret="not-the-secret")
        assert app.http.post(path, content=raw, headers=headers).status_code == 401
        raw, headers = signed(error, timestamp=int(time.time()) - 3600)  # a stale replay
        assert app.http.post(path, content=raw, headers=headers).status_code == 401
        raw, headers = signed(error)
        tampered = raw.replace(b"forged", b"FORGED")
        assert app.http.post(path, content=tampered, headers=headers).status_code == 401

    # validly signed, but the run already completed: nothing changes (idempotent)
    raw, headers = signed(error)
    ack = _ok(app.http.post("/api/worker/error", content=raw, headers=headers))
    assert ack == {"run_id": run_id, "outcome": "ignored", "status": "completed"}
    again = _ok(app.http.post("/api/worker/error", content=raw, headers=headers))
    assert again["outcome"] == "duplicate"
    assert _ok(app.http.get(f"/api/runs/{run_id}"))["status"] == "completed"
    complete = {
        "run_id": run_id,
        "matched_count": 0,
        "unmatched_left_count": 0,
        "unmatched_right_count": 0,
        "output_paths": {"matched": "m", "unmatched_left": "l", "unmatched_right": "r"},
    }
    progress = {"stage": "matching", "run_id": run_id, "progress": 0.1}
    for path, body in (("/api/worker/complete", complete), ("/api/worker/progress", progress)):
        raw, headers = signed(body)
        assert _ok(app.http.post(path, content=raw, headers=headers))["outcome"] == "ignored"
    assert _ok(app.http.get(f"/api/runs/{run_id}"))["counts"]["matched"] == 20

    other = "11111111-2222-3333-4444-555555555555"
    raw, headers = signed({"run_id": other, "error": "x"})
    _error(app.http.post("/api/worker/error", content=raw, headers=headers), 404)
    _error(app.http.post(f"/api/runs/{run_id}/callback", content=raw, headers=headers), 422)
    raw, headers = signed({"run_id": run_id, "stage": "staging", "progress": 7})
    _error(app.http.post("/api/worker/progress", content=raw, headers=headers), 422)


# --- kalla serve -----------------------------------------------------------------------------


def test_serve_refuses_a_public_address_without_a_token(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kalla.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=base_env(tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 78, result.stderr
    assert "KALLA_API_TOKEN" in result.stderr
