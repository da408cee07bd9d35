"""Builder sessions that edit a saved recipe ("Edit in builder"), through a real ``kalla serve``:
``POST /api/agent/sessions`` with ``recipe_id`` checks the uploads as a run does, runs the
recipe as the session's first turn, and accepting saves the recipe's next version. With a key
the assistant is told of the recipe (the scripted Messages-API server sees it)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest
from messages_server import MessagesServer, call, last_tool_result, say
from test_agent_conversation import GOOD_SQL, recipe
from test_agent_sessions import FILES, agent_app, converse, kinds, parse_sse
from test_app_harness import client, pg_url, postgres_database, write_csv

EXACT_SQL = (
    'SELECT "ledger"."entry_id", "bank"."txn_id" FROM ledger JOIN bank '
    'ON "ledger"."doc_ref" = "bank"."reference" AND "ledger"."amount" = "bank"."amount"'
)
SCHEMAS = {"ledger": ["entry_id", "doc_ref", "amount"], "bank": ["txn_id", "reference", "amount"]}


def saved_recipe(sql: str = EXACT_SQL, **changes: Any) -> dict[str, Any]:
    """The recipe as saved by hand: file sources with their expected columns."""
    body = recipe(sql, match_description="Same reference, same amount.")
    for side in ("left", "right"):
        alias = body["sources"][side]["alias"]
        body["sources"][side].update(type="file", schema=SCHEMAS[alias])
    body.update(changes)
    return body


def edit(http: httpx.Client, files: dict[str, Path] = FILES, **fields: str) -> httpx.Response:
    handles = {alias: (path.name, path.read_bytes(), "text/csv") for alias, path in files.items()}
    return http.post("/api/agent/sessions", files=handles, data=fields)


def first_turn(http: httpx.Client, session_id: str) -> list[tuple[int, str, dict[str, Any]]]:
    """The session's first turn, followed as a page follows it (SSE on GET …/events)."""
    with http.stream(
        "GET",
        f"/api/agent/sessions/{session_id}/events",
        headers={"Accept": "text/event-stream"},
        timeout=120,
    ) as stream:
        return list(parse_sse(stream.iter_lines()))


@pytest.fixture(scope="module")
def builder(tmp_path_factory: pytest.TempPathFactory) -> Iterator[httpx.Client]:
    app = agent_app(tmp_path_factory.mktemp("agent-edit"), server=None).start()
    try:
        yield client(app.url)
    finally:
        app.stop()


def test_a_session_edits_a_saved_recipe_and_saves_its_next_version(builder: httpx.Client) -> None:
    http = builder
    assert http.post("/api/recipes", json=saved_recipe()).status_code == 201

    created = edit(http, recipe_id="ledger-bank")
    assert created.status_code == 201, created.text
    session = created.json()
    assert session["status"] == "running"  # the recipe is being run on the uploads
    assert session["seed"] == {"recipe_id": "ledger-bank", "version": 1, "name": "Ledger to bank"}
    assert session["title"] == "Edit Ledger to bank"

    events = first_turn(http, session["id"])
    assert kinds(events) == [
        "tool_call",
        "tool_result",
        "proposal",
        "preview",
        "text_delta",
        "done",
    ]
    proposal = next(d for _, k, d in events if k == "proposal")
    assert proposal["recipe"]["match_sql"] == EXACT_SQL
    assert proposal["recipe"]["sources"]["left"]["schema"][:2] == ["entry_id", "doc_ref"]
    preview = next(d for _, k, d in events if k == "preview")["preview"]
    assert preview["counts"]["matched_rows"] == 240  # exact amounts only: no tolerance pass
    text = next(d["text"] for _, k, d in events if k == "text_delta")
    assert text.startswith("This is recipe 'ledger-bank' version 1 as saved. Run on all the data:")
    assert "ANTHROPIC_API_KEY is not set" in text

    got = http.get(f"/api/agent/sessions/{session['id']}").json()
    assert got["status"] == "idle" and got["previewed"]
    assert got["seed"]["sha256"] == proposal["sha256"]
    assert got["transcript"][0] == {"role": "user", "text": "Edit recipe 'ledger-bank' version 1."}

    # the builder's own rule, to compare: it replaces the seed as the proposal
    answer = converse(http, session["id"], "what would you do?")
    ours = next(d for _, k, d in answer if k == "preview")["preview"]
    assert ours["counts"]["matched_rows"] == 360
    again = converse(http, session["id"], "and now?")  # the builder's proposal stands
    assert "cannot discuss changes" in "".join(d["text"] for _, k, d in again if k == "text_delta")
    accepted = http.post(f"/api/agent/sessions/{session['id']}/accept", json={})
    assert accepted.status_code == 201, accepted.text
    saved = accepted.json()
    assert (saved["recipe_id"], saved["version"], saved["name"]) == (
        "ledger-bank",
        2,
        "Ledger to bank",
    )
    assert saved["recipe"]["passes"][1]["name"] == "within_tolerance"
    assert http.get("/api/agent/sessions", params={"limit": 5}).json()["items"][0]["saved"] == {
        "recipe_id": "ledger-bank",
        "version": 2,
        "sha256": saved["sha256"],
    }


def test_uploads_that_do_not_fit_the_recipe_are_refused_naming_the_cause(
    builder: httpx.Client, tmp_path: Path
) -> None:
    http = builder
    http.post("/api/recipes", json=saved_recipe(recipe_id="fit-check"))
    before = http.get("/api/agent/sessions").json()["total"]
    missing = edit(http, {"ledger": FILES["ledger"]}, recipe_id="fit-check")
    assert missing.status_code == 422
    assert "file source 'bank' needs its file" in missing.json()["problems"][0]

    stray = edit(http, {**FILES, "extra": FILES["bank"]}, recipe_id="fit-check")
    assert stray.status_code == 422
    assert "upload 'extra' is not a source of this recipe" in stray.text

    wrong = write_csv(tmp_path / "bank.csv", ["txn_id", "ref", "amount"], [["B1", "R1", "1.00"]])
    refused = edit(http, {"ledger": FILES["ledger"], "bank": wrong}, recipe_id="fit-check")
    assert refused.status_code == 422
    body = refused.json()
    assert "'bank'" in body["error"] and "missing expected column 'reference'" in body["error"]
    assert body["problems"] == ["missing column 'reference'"]

    unknown = http.post("/api/agent/sessions", json={"recipe_id": "fit-chek"})
    assert unknown.status_code == 404 and "did you mean 'fit-check'" in unknown.text
    no_version = http.post("/api/agent/sessions", json={"recipe_id": "fit-check", "version": 9})
    assert no_version.status_code == 404 and "has no version 9" in no_version.text
    both = http.post("/api/agent/sessions", json={"recipe_id": "fit-check", "sources": ["x"]})
    assert both.status_code == 422 and "leave 'sources' out" in both.text
    assert http.get("/api/agent/sessions").json()["total"] == before  # nothing was created


def test_a_recipe_that_does_not_run_on_the_files_ends_its_first_turn_with_the_reason(
    builder: httpx.Client,
) -> None:
    http = builder
    bad = saved_recipe(
        'SELECT "ledger"."entry_id", "bank"."txn_id" FROM ledger JOIN bank '
        'ON "ledger"."doc_ref" = "bank"."reference" '
        'AND "ledger"."posting_dat" = "bank"."value_date"',
        recipe_id="bad-date",
    )
    assert http.post("/api/recipes", json=bad).status_code == 201  # columns: checked by a run
    session = edit(http, recipe_id="bad-date").json()
    events = first_turn(http, session["id"])
    assert kinds(events)[-2:] == ["error", "done"]
    error = next(d for _, k, d in events if k == "error")
    assert error["message"].startswith("recipe 'bad-date' version 1 does not run on these sources")
    assert "posting_dat" in error["message"] and "did you mean 'posting_date'" in error["message"]
    assert not http.get(f"/api/agent/sessions/{session['id']}").json()["previewed"]


def test_with_a_key_the_assistant_is_told_of_the_recipe_it_edits(tmp_path: Path) -> None:
    with MessagesServer([]) as server:
        app = agent_app(tmp_path, server=server).start()
        try:
            http = client(app.url)
            http.post("/api/recipes", json=saved_recipe())
            session = edit(http, recipe_id="ledger-bank").json()
            assert kinds(first_turn(http, session["id"]))[-1] == "done"
            assert server.requests == []  # the first turn is Kalla's, not the model's

            wider = recipe()  # the model keeps the id and adds the tolerance
            server.add(
                call("preview_recipe", {"recipe": wider}, "Allowing 0.05 of difference."),
                lambda req: say(
                    f"{last_tool_result(req)['preview']['counts']['matched_rows']} pairs now."
                ),
            )
            events = converse(http, session["id"], "allow 5 cents of difference")
            assert "360 pairs now." in "".join(d["text"] for _, k, d in events if k == "text_delta")
            first = server.requests[0]["messages"][0]
            assert first["role"] == "user"
            told, asked = first["content"][0]["text"], first["content"][-1]["text"]
            assert told.startswith("[Kalla, not the user] This session edits the saved recipe")
            assert EXACT_SQL.replace('"', '\\"') in told and '"matched_rows": 240' in told
            assert asked == "allow 5 cents of difference"
            assert str(FILES["ledger"].parent) not in json.dumps(server.requests)

            accepted = http.post(f"/api/agent/sessions/{session['id']}/accept", json={})
            assert accepted.status_code == 201, accepted.text
            assert accepted.json()["version"] == 2
            assert accepted.json()["recipe"]["match_sql"] == GOOD_SQL
        finally:
            app.stop()


# --- a persistent source of the recipe ------------------------------------------------------


@pytest.mark.postgres
def test_a_recipe_reading_postgres_is_edited_with_its_password_from_the_registered_source(
    tmp_path: Path,
) -> None:
    password = "Edit-Session-Pg-Secret-5d"
    with postgres_database("kalla_edit") as database:
        ledger_table(database)
        app = agent_app(tmp_path, server=None, KALLA_EDIT_PG_PASSWORD=password).start()
        try:
            http = client(app.url)
            registered = http.post(
                "/api/sources",
                json={
                    "name": "erp",
                    "uri": pg_url(database, password="${KALLA_EDIT_PG_PASSWORD}") + "?table=ledger",
                },
            )
            assert registered.status_code == 201, registered.text
            body = saved_recipe()
            body["sources"]["left"] = {
                "alias": "ledger",
                "type": "postgres",
                "uri": pg_url(database, password=password) + "?table=ledger",  # stored as ***
                "primary_key": ["entry_id"],
            }
            stored = http.post("/api/recipes", json=body).json()
            assert ":***@" in stored["recipe"]["sources"]["left"]["uri"]

            created = edit(http, {"bank": FILES["bank"]}, recipe_id="ledger-bank")
            assert created.status_code == 201, created.text
            ledger = next(s for s in created.json()["sources"] if s["alias"] == "ledger")
            assert ledger["origin"] == "recipe" and ledger["type"] == "postgres"
            events = first_turn(http, created.json()["id"])
            preview = next(d for _, k, d in events if k == "preview")["preview"]
            assert preview["counts"]["matched_rows"] == 240
            everything = json.dumps(events) + http.get("/api/agent/sessions").text
            assert password not in everything
            assert password not in app.log()
        finally:
            app.stop()


def ledger_table(database: str) -> None:
    """The fixture's ledger (id, reference, amount) as a PostgreSQL table ``ledger``."""
    with psycopg.connect(pg_url(database, driver="postgresql"), autocommit=True) as conn:
        conn.execute("CREATE TABLE ledger (entry_id text, doc_ref text, amount numeric(12,2))")
        with conn.cursor().copy("COPY ledger FROM STDIN WITH (FORMAT csv, HEADER true)") as copy:
            for line in csv_lines(FILES["ledger"], ["entry_id", "doc_ref", "amount"]):
                copy.write(line)


def csv_lines(path: Path, names: list[str]) -> Iterator[str]:
    """The CSV file with only ``names``, as CSV lines."""
    import csv

    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        yield ",".join(names) + "\n"
        for row in reader:
            yield ",".join(row[n] for n in names) + "\n"
