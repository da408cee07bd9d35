"""``POST /api/runs/{id}/verify`` through a real ``kalla serve`` (embedded, SQLite): a stored
run verified with its inputs uploaded again; without them, or with a changed one, it cannot
be verified and says why; a modified output differs; an unfinished or unknown run is refused.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest
from test_app_harness import (
    Process,
    app_process,
    client,
    file_recipe,
    invoice_payment_files,
    upload,
    wait_for_run,
)


class App:
    def __init__(self, process: Process, data: Path, workdir: Path) -> None:
        self.process = process
        self.data = data
        self.workdir = workdir
        self.http = client(process.url, timeout=120.0)

    def completed_run(self) -> dict[str, Any]:
        files = {"invoices": self.data / "invoices.csv", "payments": self.data / "payments.csv"}
        created = upload(self.http, "inv-pay", files)
        assert created.status_code == 202, created.text
        run = wait_for_run(self.http, created.json()["id"])
        assert run["status"] == "completed", run
        return run

    def verify(self, run_id: str, files: dict[str, Path] | None = None) -> Any:
        if not files:
            return self.http.post(f"/api/runs/{run_id}/verify")
        parts = {alias: (p.name, p.read_bytes(), "text/csv") for alias, p in files.items()}
        return self.http.post(f"/api/runs/{run_id}/verify", files=parts)


@pytest.fixture(scope="module")
def app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    workdir = tmp_path_factory.mktemp("app-verify")
    data = workdir / "data"
    invoice_payment_files(data)
    process = app_process(workdir).start()
    try:
        application = App(process, data, workdir)
        assert application.http.post("/api/recipes", json=file_recipe()).status_code == 201
        yield application
    finally:
        process.stop()


def _checks(report: dict[str, Any]) -> dict[str, str]:
    return {c["name"]: c["status"] for c in report["checks"]}


def test_a_run_verified_with_its_inputs_uploaded_again(app: App) -> None:
    run = app.completed_run()
    files = {"invoices": app.data / "invoices.csv", "payments": app.data / "payments.csv"}

    response = app.verify(run["id"], files)

    assert response.status_code == 200, response.text
    report = response.json()
    assert report["verdict"] == "verified", report
    assert _checks(report)["re-run matched"] == "ok"
    assert not list((app.workdir / "staging" / "uploads").glob("verify-*")), "uploads removed"


def test_without_its_inputs_a_run_cannot_be_verified_and_says_why(app: App) -> None:
    run = app.completed_run()

    report = app.verify(run["id"]).json()

    assert report["verdict"] == "cannot verify"
    assert _checks(report)["output matched"] == "ok"
    assert "input 'invoices' is not available" in report["reasons"]


def test_a_changed_input_and_a_modified_output_are_named(app: App, tmp_path: Path) -> None:
    run = app.completed_run()
    changed = tmp_path / "payments.csv"
    changed.write_text((app.data / "payments.csv").read_text().replace("PAY-X1", "PAY-X9"))
    files = {"invoices": app.data / "invoices.csv", "payments": changed}

    report = app.verify(run["id"], files).json()
    assert report["verdict"] == "cannot verify"
    assert report["reasons"] == ["input 'payments' changed since the run"]

    output = Path(run["manifest"]["outputs"]["unmatched_right"]["file"])
    path = app.workdir / "runs" / run["id"] / output
    pq.write_table(pq.read_table(path).slice(1), path)
    report = app.verify(run["id"], {**files, "payments": app.data / "payments.csv"}).json()
    assert report["verdict"] == "differs"
    assert report["reasons"] == ["output 'unmatched_right' was modified after the run"]


def test_unknown_runs_and_bad_forms_are_refused(app: App) -> None:
    missing = app.http.post("/api/runs/00000000-0000-0000-0000-000000000000/verify")
    assert missing.status_code == 404
    run = app.completed_run()
    csv = ("invoices.csv", (app.data / "invoices.csv").read_bytes(), "text/csv")
    bad = app.http.post(f"/api/runs/{run['id']}/verify", data={"x": "1"}, files={"invoices": csv})
    assert bad.status_code == 422
    assert "unknown form field" in bad.json()["error"]
    unknown = app.verify(run["id"], {"nope": app.data / "invoices.csv"})
    assert unknown.status_code == 422
    assert "--source names an input the run does not have: nope" in unknown.json()["error"]
