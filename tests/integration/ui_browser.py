"""Shared parts of the browser tests (no tests here): Debian's chromium driven by Playwright,
a real ``kalla serve`` process with data in it, and axe-core for accessibility.

Import the fixtures into a test module (``from ui_browser import browser, page, ...``).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pyarrow.csv as pacsv
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

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
VIEWPORT = {"width": 1440, "height": 900}
# Set it (e.g. to docs/ui) to keep the screenshots the suite takes; otherwise a temp dir.
SCREENSHOTS = os.environ.get("KALLA_UI_SCREENSHOTS")


@dataclass
class UiApp:
    process: Process
    http: httpx.Client
    data: Path

    @property
    def url(self) -> str:
        return self.process.url


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: `make browser` (or .ci/browser) installs it")
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_FLAGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    """A fresh browser context at 1440×900 (cookies of its own); page errors fail the test."""
    context = browser.new_context(viewport=VIEWPORT, accept_downloads=True)
    context.set_default_timeout(15_000)
    tab = context.new_page()
    errors: list[str] = []
    tab.on("pageerror", lambda exc: errors.append(str(exc)))
    try:
        yield tab
    finally:
        context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


UI_PG_PASSWORD = "Ui-Pg-Secret-42"


def start_app(workdir: Path, **env: str) -> UiApp:
    data = workdir / "data"
    invoice_payment_files(data)
    process = app_process(workdir, **env).start()
    token = env.get("KALLA_API_TOKEN")
    return UiApp(process=process, http=client(process.url, token=token), data=data)


@pytest.fixture(scope="module")
def ui_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[UiApp]:
    # sources name their password as a placeholder, resolved in the app's environment
    app = start_app(tmp_path_factory.mktemp("ui-app"), KALLA_UI_PG_PASSWORD=UI_PG_PASSWORD)
    try:
        yield app
    finally:
        app.process.stop()


def save_recipe(app: UiApp, recipe: dict[str, Any]) -> dict[str, Any]:
    response = app.http.post("/api/recipes", json=recipe)
    assert response.status_code in (200, 201), response.text
    body: dict[str, Any] = response.json()
    return body


def completed_run(app: UiApp, recipe_id: str, files: dict[str, Path]) -> dict[str, Any]:
    response = upload(app.http, recipe_id, files)
    assert response.status_code == 202, response.text
    run = wait_for_run(app.http, response.json()["id"])
    assert run["status"] == "completed", run
    return run


def demo_files(directory: Path, rows: int, seed: int) -> dict[str, Path]:
    """The demo's generated invoices and payments, as CSV (``kalla demo`` writes the same)."""
    from kalla.bench.generate import generate

    directory.mkdir(parents=True, exist_ok=True)
    invoices, payments = generate(rows, seed=seed)
    paths = {"invoices": directory / "invoices.csv", "payments": directory / "payments.csv"}
    pacsv.write_csv(invoices, paths["invoices"])
    pacsv.write_csv(payments, paths["payments"])
    return paths


def demo_recipe() -> dict[str, Any]:
    from kalla.demo import DEMO_RECIPE

    recipe: dict[str, Any] = json.loads(json.dumps(DEMO_RECIPE))
    return recipe


def keep_screenshot(page: Any, name: str) -> None:
    """Save a screenshot into ``KALLA_UI_SCREENSHOTS`` when it is set (the journeys' states)."""
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(SCREENSHOTS) / f"{name}.png"))


def axe_serious(page: Any) -> list[dict[str, Any]]:
    """axe-core's serious and critical violations on the page as it is now."""
    from axe_playwright_python.sync_playwright import Axe

    results = Axe().run(page)
    return [
        {"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
        for v in results.response["violations"]
        if v.get("impact") in ("serious", "critical")
    ]


__all__ = [
    "UiApp",
    "axe_serious",
    "browser",
    "completed_run",
    "demo_files",
    "demo_recipe",
    "file_recipe",
    "keep_screenshot",
    "page",
    "save_recipe",
    "start_app",
    "ui_app",
]
