"""The builder page in Debian's chromium, against a real ``kalla serve``.

Build a recipe from two uploaded files to a saved recipe that the Recipes page lists: with the
assistant (the real ``anthropic`` SDK in the app, pointed at a scripted Messages-API server)
and with no key (Kalla's deterministic builder, driven from the keyboard, files dropped on the
page). "Edit in builder" starts from a saved recipe and saves its next version. Reloading a
session's page shows its history. A bad upload, a failed tool, a 429 that outlasts the
retries and a spent budget are each shown on the page, naming the cause.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from messages_server import (
    RATE_LIMITED,
    MessagesServer,
    Reply,
    ToolUse,
    call,
    last_tool_result,
    say,
)
from test_agent_conversation import GOOD_SQL, look_at_both_files, recipe
from test_agent_edit_sessions import ledger_table, saved_recipe
from test_agent_sessions import FILES, agent_app, converse
from test_app_harness import Process, client, pg_url, postgres_database
from ui_browser import axe_serious, keep_screenshot

from kalla.agent.builder import alias_for

pytestmark = pytest.mark.browser
SESSION_URL = re.compile(r"/builder/[0-9a-f-]{36}$")


def _expect(locator: Any) -> Any:
    from playwright.sync_api import expect

    return expect(locator)


class App:
    def __init__(self, process: Process, server: MessagesServer | None = None) -> None:
        self.process = process
        self.server = server
        self.url = process.url
        self.http = client(process.url)


@pytest.fixture(scope="module")
def assistant(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """An app whose builder sessions talk to Claude: here, the scripted server. A session may
    use 1,000 tokens: a whole build below takes 960; the budget test spends the rest."""
    with MessagesServer([]) as server:
        process = agent_app(
            tmp_path_factory.mktemp("ui-assistant"), server=server, KALLA_AGENT_MAX_TOKENS="1000"
        ).start()
        try:
            yield App(process, server)
        finally:
            process.stop()


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[App]:
    """An app without ANTHROPIC_API_KEY: Kalla's deterministic builder answers."""
    process = agent_app(tmp_path_factory.mktemp("ui-builder"), server=None).start()
    try:
        yield App(process)
    finally:
        process.stop()


def _tab_to(page: Any, predicate: str, key: str = "Tab", limit: int = 80) -> None:
    """Press ``key`` until the focused element satisfies ``predicate`` (JS, on ``el``)."""
    for _ in range(limit):
        page.keyboard.press(key)
        if page.evaluate(f"(() => {{ const el = document.activeElement; return {predicate}; }})()"):
            return
    raise AssertionError(f"{key} never reached an element where {predicate}")


def _drop(page: Any, target: str, path: Path) -> None:
    """Drop a file on ``target`` as a user dragging it from their desktop would."""
    transfer = page.evaluate_handle(
        "([name, text]) => { const t = new DataTransfer();"
        " t.items.add(new File([text], name, {type: 'text/csv'})); return t; }",
        [path.name, path.read_text()],
    )
    page.dispatch_event(target, "drop", {"dataTransfer": transfer})


def _answered(page: Any) -> Any:
    """The last proposal card once its preview is on the page and the turn has ended."""
    card = page.locator(".proposal").last
    _expect(card.locator(".preview")).to_be_visible(timeout=120_000)
    _expect(page.locator("#turn-status")).to_have_text("", timeout=60_000)
    return card


def _show(page: Any, locator: Any) -> None:
    """Scroll so that ``locator`` starts at the top of the window (for the screenshots)."""
    locator.evaluate("el => el.scrollIntoView({block: 'start'})")


# --- with the assistant ----------------------------------------------------------------------


def test_build_a_recipe_with_the_assistant_from_two_uploads_to_the_recipes_page(
    assistant: App, page: Any
) -> None:
    assert assistant.server is not None
    assistant.server.add(
        *look_at_both_files("Let me look at both files."),
        call("propose_recipe", {"recipe": recipe()}, "doc_ref and reference are the same key."),
        call("preview_recipe", {"recipe": recipe()}),
        lambda req: say(
            f"{last_tool_result(req)['preview']['counts']['matched_rows']} pairs match; the "
            "ledger records left differ by more than 0.05 or have no bank line. Accept to save."
        ),
    )
    page.goto(f"{assistant.url}/builder")
    _expect(page.get_by_role("note")).to_contain_text("Assistant: Claude")
    page.get_by_label("Add files").set_input_files([FILES["ledger"], FILES["bank"]])
    names = page.get_by_label("Name in the recipe")
    _expect(names).to_have_count(2)
    assert [names.nth(i).input_value() for i in range(2)] == ["ledger", "bank"]
    page.get_by_label("Title").fill("Ledger to bank, March")
    page.get_by_role("button", name="Start the session").click()
    page.wait_for_url(SESSION_URL)
    _expect(page.get_by_role("heading", level=1)).to_have_text("Ledger to bank, March")

    page.get_by_label("Your message").fill("Match my ledger to the bank")
    page.get_by_role("button", name="Send").click()
    # streamed: its first words are on the page while the turn is still running its tools
    _expect(page.locator(".msg-reply .say").first).to_have_text("Let me look at both files.")
    _expect(page.locator("#turn-status")).to_have_text("The assistant is answering…")
    card = _answered(page)

    _expect(page.locator(".msg-user .say")).to_have_text(["Match my ledger to the bank"])
    _expect(page.locator(".tool.tool-ok")).to_have_count(6)
    compared = page.locator(".tool .tool-label").nth(3)
    _expect(compared).to_contain_text("Compared ledger.doc_ref with bank.reference: 95% of rows")
    _expect(compared).to_contain_text("a good join key")
    _expect(card.locator(".plain-words")).to_have_text("Same reference, amounts within 0.05.")
    sql = card.locator("details.sql")
    _expect(sql).not_to_have_attribute("open", "")
    sql.locator("summary").click()
    _expect(sql.locator("code")).to_have_text(GOOD_SQL)
    counts = card.locator("table.preview-counts")
    rows = counts.locator("tbody tr")
    _expect(rows.nth(1)).to_have_text(re.compile(r"^Matched\s*360\s*360$"))
    _expect(rows.nth(2)).to_have_text(re.compile(r"^Unmatched\s*60\s*36$"))
    _expect(counts.locator("tr", has_text="by count")).to_contain_text("85.7%")
    _expect(counts.locator("tr", has_text="by amount")).to_contain_text("91.8%")
    _expect(card.locator(".big-number")).to_have_text("360 matched pairs")
    _expect(card.locator("table.examples").first).to_contain_text(
        "same 'doc_ref', amounts differ by 100.00"
    )
    _expect(page.locator(".msg-reply .say").last).to_contain_text("360 pairs match")
    assert axe_serious(page) == []
    sql.locator("summary").click()
    _show(page, page.locator(".msg-user").last)  # the message, the tools, the proposal
    keep_screenshot(page, "builder-session")

    page.get_by_role("button", name="Accept…").click()
    _expect(page.get_by_label("Recipe id")).to_have_value("ledger-bank")
    _expect(page.get_by_label("Name", exact=True)).to_have_value("Ledger to bank")
    page.get_by_role("button", name="Save the recipe").click()
    notice = card.locator(".saved-notice")
    _expect(notice).to_have_text("Saved as recipe Ledger to bank, version 1. Run it")
    _expect(page.locator("#saved-box")).to_contain_text("Saved as recipe Ledger to bank")
    saved = assistant.http.get("/api/recipes/ledger-bank").json()
    assert saved["recipe"]["match_sql"] == GOOD_SQL

    page.get_by_role("link", name="Recipes", exact=True).click()
    page.get_by_role("link", name="Ledger to bank", exact=True).click()
    page.wait_for_url(re.compile(r"/recipes/ledger-bank$"))
    _expect(page.locator(".plain-words")).to_have_text("Same reference, amounts within 0.05.")


def test_errors_are_shown_on_the_page_naming_their_cause(
    assistant: App, page: Any, tmp_path: Path
) -> None:
    server = assistant.server
    assert server is not None
    broken = tmp_path / "broken.xlsx"
    broken.write_bytes(b"this is not a spreadsheet")
    page.goto(f"{assistant.url}/builder")
    page.get_by_label("Add files").set_input_files([broken, FILES["bank"]])
    page.get_by_label("Name in the recipe").first.fill("1st")
    page.get_by_role("button", name="Start the session").click()
    first = page.locator(".file-item").first
    _expect(first.get_by_role("alert")).to_contain_text("letters, digits and _")
    _expect(first.get_by_label("Name in the recipe")).to_be_focused()

    first.get_by_label("Name in the recipe").fill("broken")
    page.get_by_role("button", name="Start the session").click()
    _expect(first.get_by_role("alert")).to_contain_text("upload 'broken' (broken.xlsx)")
    _expect(page.locator(".file-item").nth(1).get_by_role("alert")).to_be_empty()
    _expect(first.get_by_label("Name in the recipe")).to_have_attribute("aria-invalid", "true")
    assert page.url.endswith("/builder")
    assert axe_serious(page) == []

    page.get_by_role("button", name="Remove broken.xlsx").click()
    page.get_by_label("Add files").set_input_files([FILES["ledger"]])
    page.get_by_role("button", name="Start the session").click()
    page.wait_for_url(SESSION_URL)
    message = page.get_by_label("Your message")

    # a tool that fails: its cause and every problem are shown, not only in the details
    typo = recipe(GOOD_SQL.replace('"ledger"."doc_ref"', '"ledger"."doc_reff"'))
    server.add(call("propose_recipe", {"recipe": typo}), say("That SQL has a typo."))
    message.fill("propose something")
    message.press("Control+Enter")
    failed = page.locator(".tool.tool-failed")
    _expect(failed).to_contain_text("Checked a proposal: failed")
    _expect(failed.locator(".tool-error")).to_contain_text("the recipe is not valid")
    _expect(failed.locator(".tool-problems")).to_contain_text("did you mean 'doc_ref'")
    _expect(page.locator("#turn-status")).to_have_text("")

    # 429 after the retries (KALLA_AGENT_MAX_RETRIES=1): said, and the session goes on
    server.add(RATE_LIMITED, RATE_LIMITED)
    message.fill("again")
    page.get_by_role("button", name="Send").click()
    alert = page.locator(".conversation .error").last
    _expect(alert).to_contain_text("rate-limiting this key (HTTP 429)")
    _expect(alert).to_contain_text("send your message again")
    _expect(page.locator("#turn-status")).to_have_text("")

    # the session's token budget (KALLA_AGENT_MAX_TOKENS=1000) runs out
    server.add(Reply((ToolUse("list_sources", {}),), input_tokens=2000))
    message.fill("list them")
    page.get_by_role("button", name="Send").click()
    _expect(page.locator(".conversation .error").last).to_contain_text(
        "this session has used its budget of 1,000 tokens (KALLA_AGENT_MAX_TOKENS"
    )
    _expect(page.locator("#turn-status")).to_have_text("")
    assert server.remaining == 0
    assert axe_serious(page) == []


def test_a_page_opened_during_a_turn_follows_it_to_its_end(assistant: App, page: Any) -> None:
    """The model's answer is held back until the page is open: the page must follow the
    running turn (EventSource on GET …/events), not just replay what was stored."""
    server = assistant.server
    assert server is not None
    gate = threading.Event()
    server.add(lambda req: say("Here it is, after a wait.") if gate.wait(60) else say("late"))
    created = assistant.http.post(
        "/api/agent/sessions",
        files={a: (p.name, p.read_bytes(), "text/csv") for a, p in FILES.items()},
    ).json()
    elsewhere = threading.Thread(
        target=converse, args=(client(assistant.url), created["id"], "are you there?")
    )
    elsewhere.start()  # another tab, or this page before a reload
    try:
        url = f"/api/agent/sessions/{created['id']}"
        for _ in range(200):
            if assistant.http.get(url).json()["status"] == "running":
                break
            time.sleep(0.05)
        streams: list[str] = []

        def watch(request: Any) -> None:
            if request.headers.get("accept") == "text/event-stream":
                streams.append(request.url)

        page.on("request", watch)
        page.goto(f"{assistant.url}/builder/{created['id']}")
        _expect(page.locator("#turn-status")).to_have_text("The assistant is answering…")
        _expect(page.get_by_role("button", name="Send")).to_be_disabled()
    finally:
        gate.set()
        elsewhere.join(timeout=60)
    _expect(page.locator(".msg-reply .say")).to_have_text(["Here it is, after a wait."])
    _expect(page.locator("#turn-status")).to_have_text("")
    _expect(page.locator(".msg-user .say")).to_have_text(["are you there?"])
    assert len(streams) == 1 and "/events?after=" in streams[0], streams


# --- without a key ---------------------------------------------------------------------------


def test_build_a_recipe_without_a_key_from_the_keyboard_then_reload_it(
    builder: App, page: Any
) -> None:
    """Files dropped on the page (a headless browser has no file dialog); then the keyboard."""
    page.goto(f"{builder.url}/builder")
    _expect(page.get_by_role("note")).to_contain_text(
        "No API key: Kalla's deterministic builder answers."
    )
    _drop(page, "#dropzone", FILES["ledger"])
    page.get_by_label("Add files").set_input_files(FILES["bank"])
    _expect(page.locator(".file-item")).to_have_count(2)
    assert axe_serious(page) == []
    _tab_to(page, "el.id === 'start'")
    page.keyboard.press("Enter")
    page.wait_for_url(SESSION_URL)

    _tab_to(page, "el.id === 'message'")
    page.keyboard.type("Match these two files")
    page.keyboard.press("Control+Enter")
    card = _answered(page)
    said = page.locator(".msg-reply .say").first
    _expect(said).to_contain_text("ANTHROPIC_API_KEY is not set, so Kalla's deterministic builder")
    _expect(page.locator(".msg-reply .who")).to_have_text(["Kalla's builder"])
    _expect(card.locator(".big-number")).to_have_text("360 matched pairs")
    assert axe_serious(page) == []
    _show(page, page.locator(".msg-user").last)
    keep_screenshot(page, "builder-no-key")

    # back from the composer to the SQL of the first pass, then on to Accept
    _tab_to(page, "el.tagName === 'SUMMARY' && el.textContent === 'SQL of exact'", "Shift+Tab")
    page.keyboard.press("Enter")
    _expect(card.locator("details.sql").first).to_have_attribute("open", "")
    _tab_to(page, "el.classList.contains('accept')")
    page.keyboard.press("Enter")
    _expect(page.get_by_label("Recipe id")).to_be_focused()
    recipe_id = page.get_by_label("Recipe id").input_value()
    page.keyboard.press("Tab")  # to the name, all of it selected
    page.keyboard.press("End")
    page.keyboard.type(" (March)")
    page.keyboard.press("Tab")
    page.keyboard.press("Enter")
    notice = card.locator(".saved-notice")
    _expect(notice).to_contain_text("Saved as recipe ledger to bank (March), version 1.")

    # reloaded, the page shows the session's history from its events
    page.reload()
    _expect(page.locator(".msg-user .say")).to_have_text(["Match these two files"])
    card = page.locator(".proposal")
    _expect(card.locator(".preview .big-number")).to_have_text("360 matched pairs")
    _expect(page.locator(".tool.tool-ok")).to_have_count(4)
    _expect(card.locator(".saved-notice")).to_contain_text("version 1")
    _expect(page.get_by_role("button", name="Accept…")).to_have_count(0)

    page.locator("#saved-box").get_by_role("link", name="Run it").click()
    page.wait_for_url(re.compile(rf"/runs/new\?recipe={recipe_id}&version=1$"))
    _expect(page.locator("#recipe")).to_have_value(recipe_id)
    page.get_by_role("link", name="Recipes", exact=True).click()
    _expect(page.get_by_role("link", name="ledger to bank (March)", exact=True)).to_be_visible()


@pytest.mark.postgres
def test_a_registered_source_is_picked_beside_a_dropped_file(builder: App, page: Any) -> None:
    with postgres_database("kalla_ui_builder") as database:
        ledger_table(database)
        registered = builder.http.post(
            "/api/sources",
            json={"name": "erp_ledger", "uri": pg_url(database) + "?table=ledger"},
        )
        assert registered.status_code == 201, registered.text
        page.goto(f"{builder.url}/builder")
        page.get_by_label("erp_ledger").check()
        _drop(page, "#dropzone", FILES["bank"])
        page.get_by_role("button", name="Start the session").click()
        page.wait_for_url(SESSION_URL)
        _expect(page.get_by_role("heading", level=1)).to_have_text("bank.csv ↔ erp_ledger")
        sources = page.locator(".source-list li")
        _expect(sources).to_have_text(
            ["bank bank.csv · uploaded file", "erp_ledger erp_ledger · registered postgres source"]
        )
        page.get_by_label("Your message").fill("match them")
        page.get_by_role("button", name="Send").click()
        card = _answered(page)
        _expect(card.locator(".big-number")).to_have_text("360 matched pairs")
        _expect(card.locator("table.preview-counts thead")).to_contain_text("erp_ledger")


def test_signed_in_with_a_token_the_page_builds_and_saves(tmp_path: Path, page: Any) -> None:
    """With KALLA_API_TOKEN the page's calls carry the session cookie and the CSRF header."""
    token = "ui-builder-token-7e21"
    process = agent_app(tmp_path, server=None, KALLA_API_TOKEN=token).start()
    try:
        page.goto(f"{process.url}/builder")
        page.wait_for_url(re.compile(r"/login\?next=/builder$"))
        page.get_by_label("API token").fill(token)
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(f"{process.url}/builder")
        page.get_by_label("Add files").set_input_files([FILES["ledger"], FILES["bank"]])
        page.get_by_role("button", name="Start the session").click()
        page.wait_for_url(SESSION_URL)
        page.get_by_label("Your message").fill("go")
        page.get_by_role("button", name="Send").click()
        card = _answered(page)
        card.get_by_role("button", name="Accept…").click()
        page.get_by_role("button", name="Save the recipe").click()
        _expect(card.locator(".saved-notice")).to_contain_text("version 1")
        page.reload()  # the replay reads the API with the cookie too
        _expect(page.locator(".proposal .saved-notice")).to_contain_text("version 1")
        recipes = client(process.url, token=token).get("/api/recipes").json()
        assert [r["recipe_id"] for r in recipes["items"]] == ["ledger-to-bank"]
    finally:
        process.stop()


def test_edit_in_builder_starts_from_the_recipe_and_saves_its_next_version(
    builder: App, page: Any
) -> None:
    response = builder.http.post("/api/recipes", json=saved_recipe(recipe_id="ledger-bank-exact"))
    assert response.status_code == 201, response.text
    page.goto(f"{builder.url}/recipes/ledger-bank-exact")
    page.get_by_role("link", name="Edit in builder").click()
    page.wait_for_url(re.compile(r"/builder\?recipe=ledger-bank-exact$"))
    _expect(page.get_by_role("heading", level=2).first).to_have_text(
        "Edit Ledger to bank version 1"
    )
    _expect(page.locator(".plain-words")).to_have_text("Same reference, same amount.")
    assert axe_serious(page) == []
    keep_screenshot(page, "builder-edit")
    page.get_by_label("File for ledger").set_input_files(FILES["ledger"])
    _drop(page, "fieldset:has(#file-bank)", FILES["bank"])
    page.get_by_role("button", name="Start editing").click()
    page.wait_for_url(SESSION_URL)

    # its first turn runs the recipe as saved (the page follows it as it runs)
    seed = _answered(page)
    _expect(page.locator(".msg-reply .who").first).to_have_text("Kalla")
    _expect(page.locator(".msg-user .say").first).to_have_text(
        "Edit recipe 'ledger-bank-exact' version 1."
    )
    _expect(page.locator(".msg-reply .say").first).to_contain_text(
        "This is recipe 'ledger-bank-exact' version 1 as saved. Run on all the data: 240 of 420"
    )
    _expect(seed.locator(".big-number")).to_have_text("240 matched pairs")

    page.get_by_label("Your message").fill("What would you do?")
    page.get_by_role("button", name="Send").click()
    ours = _answered(page)
    _expect(page.locator(".proposal")).to_have_count(2)
    _expect(ours.locator(".big-number")).to_have_text("360 matched pairs")
    _expect(page.locator(".proposal").first).to_contain_text("A later proposal replaced this one.")
    _expect(page.locator(".proposal").first.get_by_role("button")).to_have_count(0)

    ours.get_by_role("button", name="Accept…").click()
    _expect(page.get_by_label("Recipe id")).to_have_value("ledger-bank-exact")
    _expect(page.get_by_label("Name", exact=True)).to_have_value("Ledger to bank")
    page.get_by_role("button", name="Save the recipe").click()
    _expect(ours.locator(".saved-notice")).to_contain_text("Ledger to bank, version 2.")
    ours.locator(".saved-notice").get_by_role("link", name="Ledger to bank").click()
    page.wait_for_url(re.compile(r"/recipes/ledger-bank-exact\?version=2$"))
    _expect(page.get_by_text("version 2 of 2")).to_be_visible()
    body = builder.http.get("/api/recipes/ledger-bank-exact").json()["recipe"]
    assert [p["name"] for p in body["passes"]] == ["exact", "within_tolerance"]


def test_reject_without_a_key_says_what_can_be_done_instead(builder: App, page: Any) -> None:
    created = builder.http.post(
        "/api/agent/sessions",
        files={a: (p.name, p.read_bytes(), "text/csv") for a, p in FILES.items()},
    )
    assert created.status_code == 201, created.text
    page.goto(f"{builder.url}/builder/{created.json()['id']}")
    page.get_by_label("Your message").fill("go")
    page.get_by_role("button", name="Send").click()
    card = _answered(page)
    card.get_by_role("button", name="Reject").click()
    _expect(card.locator(".decision")).to_contain_text("cannot revise it by conversation")
    _expect(card).to_have_class(re.compile(r"\brejected\b"))


def test_the_page_names_sources_as_the_server_does(builder: App, page: Any) -> None:
    """The page proposes each file's source name by the server's rule (``alias_for``)."""
    page.goto(f"{builder.url}/builder")
    cases: list[tuple[str, list[str]]] = [
        ("Bank Statement.csv", []),
        ("ledger.csv", ["ledger"]),
        ("ledger.csv", ["ledger", "ledger_2"]),
        ("2024 invoices.XLSX", []),
        ("data.v2.csv", []),
        ("___.csv", []),
        ("Zahlungen-März.parquet", []),
        ("dir/payments.json", []),
    ]
    found = page.evaluate(
        "async (cases) => { const m = await import('/static/js/builder-start.js');"
        " return cases.map(([name, taken]) => m.aliasFor(name, new Set(taken))); }",
        cases,
    )
    assert found == [alias_for(name, set(taken)) for name, taken in cases]


def test_a_session_page_that_does_not_exist_says_so(builder: App, page: Any) -> None:
    page.goto(f"{builder.url}/builder/00000000-0000-4000-8000-000000000000")
    _expect(page.get_by_role("alert")).to_contain_text("builder session")
    _expect(page.get_by_role("alert")).to_contain_text("not found")
