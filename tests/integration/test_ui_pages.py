"""Every page of the web UI: axe-core finds no serious or critical violation, each is
screenshotted at 1440×900 (``KALLA_UI_SCREENSHOTS=docs/ui`` keeps them), and the main
journey works from the keyboard alone.

The app holds what a controller sees after a few month-ends: the demo recipe in two
versions, three completed runs of it on different data, a failed run and a source.
"""

from __future__ import annotations

import re
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_app_harness import upload, wait_for_run
from ui_browser import (
    SCREENSHOTS,
    UiApp,
    axe_serious,
    completed_run,
    demo_files,
    demo_recipe,
    save_recipe,
    start_app,
)

pytestmark = pytest.mark.browser
RECIPE = "demo-invoices-payments"


@pytest.fixture(scope="module")
def showcase(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    workdir = tmp_path_factory.mktemp("ui-pages")
    app = start_app(workdir)
    try:
        first = demo_recipe()
        first["passes"] = first["passes"][:1]
        first["match_description"] = "Reference and amount identical."
        save_recipe(app, first)
        save_recipe(app, demo_recipe())  # version 2 adds the tolerance pass
        runs = [
            completed_run(app, RECIPE, demo_files(workdir / f"month-{seed}", 2000, seed))
            for seed in (7, 8, 9)
        ]
        duplicate = demo_files(workdir / "broken", 200, 11)
        lines = duplicate["invoices"].read_text().splitlines()
        duplicate["invoices"].write_text("\n".join([*lines, lines[1]]) + "\n")  # a repeated key
        failed = upload(app.http, RECIPE, duplicate).json()
        assert wait_for_run(app.http, failed["id"])["status"] == "failed"
        source = app.http.post(
            "/api/sources",
            json={
                "name": "erp_ledger",
                "uri": "postgres://reader:${ERP_PASSWORD}@erp.internal:5432/finance?table=ledger",
                "description": "General ledger of the ERP (read-only user)",
            },
        ).json()
        yield {"app": app, "runs": runs, "failed": failed, "source": source}
    finally:
        app.process.stop()


@pytest.fixture(scope="module")
def shots_dir() -> Iterator[Path]:
    if SCREENSHOTS:
        target = Path(SCREENSHOTS)
        target.mkdir(parents=True, exist_ok=True)
        yield target
    else:
        with tempfile.TemporaryDirectory(prefix="kalla-ui-shots-") as name:
            yield Path(name)


def _pages(data: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(screenshot name, path, a selector that is there once the page is ready)."""
    run = data["runs"][-1]["id"]
    return [
        ("overview", "/", "figure.chart"),
        ("sources", "/sources", "form"),
        ("source", f"/sources/{data['source']['id']}", "dl.facts"),
        ("recipes", "/recipes", "table"),
        ("recipe", f"/recipes/{RECIPE}", "details"),
        ("recipe-diff", f"/recipes/{RECIPE}/diff?from=1&to=2", "table.diff"),
        ("builder", "/builder", "main h2"),
        ("new-run", f"/runs/new?recipe={RECIPE}", "#start-run"),
        ("runs", "/runs", "table"),
        ("run", f"/runs/{run}", "table.results tbody tr"),
        ("run-failed", f"/runs/{data['failed']['id']}", ".error"),
        ("not-found", "/recipes/no-such-recipe", ".error"),
    ]


PAGE_NAMES = [name for name, _, _ in _pages({"runs": [{"id": ""}], "failed": {"id": ""},
                                              "source": {"id": 0}})]  # fmt: skip


@pytest.mark.parametrize("name", PAGE_NAMES)
def test_page_has_no_serious_accessibility_violation(
    name: str, showcase: dict[str, Any], page: Any, shots_dir: Path
) -> None:
    app: UiApp = showcase["app"]
    _, path, ready = next(p for p in _pages(showcase) if p[0] == name)
    page.goto(app.url + path)
    page.locator(ready).first.wait_for()
    assert axe_serious(page) == []
    page.screenshot(path=str(shots_dir / f"{name}.png"))


def test_result_tabs_and_dialog_have_no_serious_violation(
    showcase: dict[str, Any], page: Any, shots_dir: Path
) -> None:
    app: UiApp = showcase["app"]
    page.goto(f"{app.url}/runs/{showcase['runs'][-1]['id']}")
    page.get_by_role("tab", name="Unmatched invoices").click()
    page.get_by_label("Age in days since issue_date").check()
    page.get_by_role("button", name="Sort by age_days").click()
    page.get_by_role("button", name="Sort by age_days, descending").click()
    page.locator("th[aria-sort=descending]").wait_for()
    page.locator("#results-section").scroll_into_view_if_needed()
    assert axe_serious(page) == []
    page.screenshot(path=str(shots_dir / "run-unmatched.png"))
    page.get_by_role("tab", name="Matched", exact=True).click()
    page.get_by_role("button", name="Show the two records of row 1", exact=True).click()
    page.get_by_role("dialog").wait_for()
    assert axe_serious(page) == []
    page.screenshot(path=str(shots_dir / "run-drilldown.png"))


def test_login_page_has_no_serious_violation(tmp_path: Path, page: Any, shots_dir: Path) -> None:
    app = start_app(tmp_path, KALLA_API_TOKEN="ui-a11y-token-0b7e")
    try:
        page.goto(f"{app.url}/")
        page.wait_for_url(re.compile(r"/login"))
        assert axe_serious(page) == []
        page.screenshot(path=str(shots_dir / "login.png"))
    finally:
        app.process.stop()


def _tab_to(page: Any, predicate: str, limit: int = 60) -> None:
    """Press Tab until the focused element satisfies ``predicate`` (JS, on ``el``)."""
    for _ in range(limit):
        page.keyboard.press("Tab")
        if page.evaluate(f"(() => {{ const el = document.activeElement; return {predicate}; }})()"):
            return
    raise AssertionError(f"Tab never reached an element where {predicate}")


def test_main_journey_from_the_keyboard(showcase: dict[str, Any], page: Any) -> None:
    """Overview → New run → pick the recipe → start → results: tabs, filter, sort, paging.

    Only the files are given without the keyboard (a headless browser has no file dialog).
    """
    app: UiApp = showcase["app"]
    files = demo_files(Path(tempfile.mkdtemp(prefix="kalla-kbd-")), 500, 21)
    page.goto(f"{app.url}/")
    _tab_to(page, "el.textContent.trim() === 'Skip to content'")
    _tab_to(page, "el.textContent.trim() === 'New run'")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/runs/new$"))

    _tab_to(page, "el.id === 'recipe'")
    page.keyboard.press("ArrowDown")  # the first recipe
    _tab_to(page, "el.textContent.trim() === 'Choose'")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(rf"recipe={RECIPE}"))

    for alias, path in files.items():
        page.locator(f"#file-{alias}").set_input_files(path)
    _tab_to(page, "el.id === 'start'")
    page.keyboard.press("Enter")
    page.wait_for_url(re.compile(r"/runs/[0-9a-f-]{36}$"))
    page.get_by_role("heading", name="Summary").wait_for(timeout=60_000)

    _tab_to(page, "el.getAttribute('role') === 'tab'")
    assert page.evaluate("document.activeElement.textContent") == "Matched"
    page.keyboard.press("ArrowRight")
    assert page.evaluate("document.activeElement.textContent") == "Unmatched invoices"
    count = page.locator(".pager .count")
    count.filter(has_text=re.compile(r"of \d")).wait_for()
    total = int(count.inner_text().rsplit(" of ", 1)[1].replace(",", ""))

    _tab_to(page, "el.dataset.filter === 'currency'")
    page.keyboard.type("EUR")
    page.keyboard.press("Enter")
    count.filter(has_text="(filtered)").wait_for()
    filtered = int(count.inner_text().split(" of ")[1].split(" ")[0].replace(",", ""))
    assert 0 < filtered < total
    assert page.evaluate("document.activeElement.dataset.filter") == "currency"  # focus kept

    page.keyboard.press("Shift+Tab")
    page.keyboard.press("Shift+Tab")  # back over the operator to the column headers
    _tab_to(page, "el.classList.contains('sort') && el.dataset.column === 'amount'")
    page.keyboard.press("Enter")
    page.locator("th[aria-sort=ascending]", has_text="amount").wait_for()
    amounts = [
        float(t) for t in page.locator("table.results tbody tr td.num").all_inner_texts()
        if re.fullmatch(r"-?\d+(\.\d+)?", t)
    ]  # fmt: skip
    assert amounts == sorted(amounts)
    rows = page.locator("table.results tbody tr").all_inner_texts()
    assert rows and all("EUR" in r for r in rows)
