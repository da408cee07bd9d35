"""Issue 14's figure: every hostile or broken input in ``cases/*.toml`` ends in a named
error or the right answer, through the entry point a user would take.

One test, parametrised over the cases. For each: build the inputs, run the entry point
(``kalla run`` as a subprocess, the app's upload API, the worker's job API), then check
the expectation (exit code / HTTP status, a message naming the cause, counts and pairs for
the cases that must succeed) and the invariants every case shares: no internal error or
traceback, inputs byte-for-byte intact, no partial output, no credential in anything the
user sees, the service still answering, and an answer within the case's time.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pyarrow.parquet as pq
import pytest
from bad_input_builders import build
from bad_input_cases import Case, load_cases, params, recipe_bytes
from bad_input_services import CANARIES, Service, clean_env
from callback_receiver import Receiver

CASES = load_cases()
PG_SERVER = os.environ.get("KALLA_TEST_PG", "postgres://postgres@127.0.0.1:5432")
FINAL = ("completed", "failed", "cancelled")


@dataclass
class Outcome:
    code: int  # exit code (cli) or HTTP status of the submission (app, worker)
    message: str  # what the user reads: stderr, the response body or the run's error
    run_status: str | None = None
    counts: dict[str, int] | None = None
    output_dir: Path | None = None  # where this run's outputs are (or would be)
    texts: list[str] = field(default_factory=list)  # everything shown, for the secret check
    service: Service | None = None


def snapshot(folder: Path) -> dict[str, str]:
    """path -> sha256 (or "dir") of everything under ``folder``."""
    found: dict[str, str] = {}
    for path in sorted(folder.rglob("*")):
        rel = str(path.relative_to(folder))
        found[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return found


def _within(child: Path, parent: Path) -> bool:
    return child == parent or parent in child.parents


# --- entry points ---------------------------------------------------------------------------


def prepare(case: Case, root: Path) -> tuple[Path, dict[str, str]]:
    """Build the case's inputs in its own folder; the folder and what it held."""
    folder = root / "cases" / case.name.replace("/", "__")
    for name, spec in case.files.items():
        build(folder / "inputs" / name, spec)
    (folder / "inputs").mkdir(parents=True, exist_ok=True)
    return folder, snapshot(folder)


@contextlib.contextmanager
def scratch_database(statements: tuple[str, ...]) -> Iterator[str]:
    """A fresh database on the local PostgreSQL holding what ``statements`` create; its URI.
    Dropped afterwards. No statements: no database."""
    if not statements:
        yield ""
        return
    psycopg = pytest.importorskip("psycopg")
    name = f"kalla_bad_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        with psycopg.connect(f"{PG_SERVER}/{name}", autocommit=True) as conn:
            for statement in statements:
                conn.execute(statement)
        yield f"{PG_SERVER}/{name}"
    finally:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@dataclass(frozen=True)
class CliRun:
    folder: Path
    before: dict[str, str]
    outcome: Outcome | None  # None: no answer within the case's time
    took: float


def run_cli(case: Case, root: Path) -> CliRun:
    """Build, snapshot and run ``kalla run`` (in a worker thread: see ``cli_runs``)."""
    folder, before = prepare(case, root)
    with scratch_database(case.pg) as pg:
        return _run_cli(case, root, folder, before, pg)


def _run_cli(case: Case, root: Path, folder: Path, before: dict[str, str], pg: str) -> CliRun:
    recipe = folder / "recipe.json"
    recipe.write_bytes(recipe_bytes(case).replace(b"{pg}", pg.encode()))
    output = folder / case.output
    args = [sys.executable, "-m", "kalla.cli", "run", str(recipe), "-o", str(output), "--json"]
    for alias, name in case.sources.items():
        args += ["-s", f"{alias}={folder / 'inputs' / name}"]
    if case.overwrite:
        args.append("--overwrite")
    env = clean_env(root / "cli-env", **case.env)
    started = time.monotonic()
    proc = subprocess.Popen(
        args,
        cwd=folder,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        out, err = proc.communicate(timeout=case.expect.seconds)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        return CliRun(folder, before, None, time.monotonic() - started)
    took = time.monotonic() - started
    stdout, stderr = out.decode(errors="replace"), err.decode(errors="replace")
    counts = None
    if proc.returncode == 0:
        summary = json.loads(stdout)
        counts = {
            "matched": summary["matched_count"],
            "unmatched_left": summary["unmatched_left_count"],
            "unmatched_right": summary["unmatched_right_count"],
        }
    texts = [stdout, stderr, *_outputs(output)]
    return CliRun(
        folder, before, Outcome(proc.returncode, stderr, None, counts, output, texts), took
    )


@pytest.fixture(scope="module")
def cli_runs(
    request: pytest.FixtureRequest, corpus_root: Path
) -> Iterator[dict[str, Future[CliRun]]]:
    """Every selected CLI case, started at once on a small pool: each ``kalla run`` spends
    most of its second importing, so two at a time keep the corpus well under 3 minutes.
    Each test then waits for its own run and checks it."""
    selected = [
        item.callspec.params["case"]
        for item in request.session.items
        if hasattr(item, "callspec") and isinstance(item.callspec.params.get("case"), Case)
    ]
    jobs = int(os.environ.get("KALLA_BAD_INPUT_JOBS", "2"))
    with ThreadPoolExecutor(max_workers=jobs) as pool:
        yield {
            case.name: pool.submit(run_cli, case, corpus_root)
            for case in selected
            if case.entry == "cli"
        }


def _outputs(output: Path) -> list[str]:
    if not output.is_dir():
        return []
    return [p.read_bytes().decode(errors="replace") for p in output.iterdir() if p.is_file()]


def _multipart(case: Case, folder: Path, recipe_id: str) -> tuple[bytes, str]:
    """The upload form built by hand, so that a case can cut it or lie in its headers."""
    req = case.request
    boundary = "kalla-bad-input-boundary"
    parts = [("recipe_id", None, recipe_id.encode(), None)]
    for alias, name in case.sources.items():
        filename = req.get("filename", name)
        data = (folder / "inputs" / name).read_bytes()
        parts.append((alias, filename, data, req.get("content_type", "text/csv")))
    body = b""
    for name, filename, data, ctype in parts:
        body += f"--{boundary}\r\n".encode()
        disposition = f'form-data; name="{name}"'
        if filename is not None:
            disposition += f'; filename="{filename}"'
        body += f"Content-Disposition: {disposition}\r\n".encode()
        if ctype:
            body += f"Content-Type: {ctype}\r\n".encode()
        body += b"\r\n" + data + b"\r\n"
    body += f"--{boundary}--\r\n".encode()
    if req.get("cut"):
        body = body[: -int(req["cut"])]
    media = req.get("form_content_type", f"multipart/form-data; boundary={boundary}")
    return body, media


def _wait(http: httpx.Client, path: str, seconds: float) -> dict[str, Any]:
    deadline = time.monotonic() + seconds
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = http.get(path)
        assert response.status_code == 200, response.text
        view = response.json()
        if view["status"] in FINAL:
            return view
        time.sleep(0.05)
    pytest.fail(f"{path} still {view.get('status')} after {seconds:g} s")


def run_app(case: Case, folder: Path, app: Service) -> Outcome:
    recipe_id = "bad-" + case.name.replace("/", "-")
    raw = recipe_bytes(case)
    if case.recipe is not None:
        raw = json.dumps({**case.recipe, "recipe_id": recipe_id}).encode()
    texts: list[str] = []
    with app.client() as http:
        if "pad_bytes" in case.request:  # a recipe body of that many more bytes
            padded = {**json.loads(raw), "description": "x" * int(case.request["pad_bytes"])}
            raw = json.dumps(padded).encode()
        sent: bytes | Iterator[bytes] = raw
        if case.request.get("chunked"):  # no Content-Length: the body arrives in pieces
            sent = iter([raw[i : i + 65536] for i in range(0, len(raw), 65536)])
        json_type = {"content-type": "application/json"}
        saved = http.post("/api/recipes", content=sent, headers=json_type)
        texts.append(saved.text)
        if case.request.get("stage") == "recipe":
            return Outcome(saved.status_code, saved.text, texts=texts, service=app)
        assert saved.status_code in (200, 201), saved.text
        body, media = _multipart(case, folder, recipe_id)
        response = http.post("/api/runs", content=body, headers={"content-type": media})
        texts.append(response.text)
        if response.status_code != 202:
            return Outcome(response.status_code, response.text, texts=texts, service=app)
        run_id = response.json()["id"]
        view = _wait(http, f"/api/runs/{run_id}", case.expect.seconds)
        texts.append(json.dumps(view))
        counts = {k: v for k, v in view["counts"].items() if v is not None}
        output = app.root / "runs" / run_id
        return Outcome(
            202, view.get("error") or "", view["status"], counts, output, texts, service=app
        )


def _job(case: Case, folder: Path, receiver: Receiver) -> dict[str, Any]:
    recipe = case.recipe or {}
    left, right = recipe["sources"]["left"], recipe["sources"]["right"]
    run_id = str(uuid.uuid4())
    body: dict[str, Any] = {
        "run_id": run_id,
        "callback_url": receiver.url(),
        "match_sql": recipe.get("match_sql"),
        "sources": [
            {"alias": alias, "uri": str(folder / "inputs" / name)}
            for alias, name in case.sources.items()
        ],
        "output_path": f"run-{run_id}",
        "primary_keys": {
            left["alias"]: left["primary_key"],
            right["alias"]: right["primary_key"],
        },
    }
    patch = {
        key: value.replace("{receiver}", receiver.url(""))  # the receiver's port is not fixed
        if isinstance(value, str)
        else value
        for key, value in case.request.get("patch", {}).items()
    }
    return _patched(body, patch)


def _patched(body: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    out = dict(body)
    for key, value in patch.items():
        if value == "__delete__":
            out.pop(key, None)
        else:
            out[key] = value
    return out


def run_worker(case: Case, folder: Path, worker: Service, receiver: Receiver) -> Outcome:
    req = case.request
    body = _job(case, folder, receiver)
    run_id = body.get("run_id") if isinstance(body.get("run_id"), str) else None
    texts: list[str] = []
    with worker.client() as http:
        headers = {"content-type": req.get("content_type", "application/json")}
        if "raw" in req:
            content = req["raw"].encode()
        elif "pad_bytes" in req:
            content = json.dumps({**body, "pad": "x" * int(req["pad_bytes"])}).encode()
        else:
            content = json.dumps(body).encode()
        if req.get("chunked"):  # no Content-Length: the body arrives in pieces
            pieces = [content[i : i + 65536] for i in range(0, len(content), 65536)]
            response = http.post("/api/jobs", content=iter(pieces), headers=headers)
        else:
            response = http.post("/api/jobs", content=content, headers=headers)
        texts.append(response.text)
        if "then_patch" in req and response.status_code == 200:
            _wait(http, f"/api/jobs/{run_id}", case.expect.seconds)
            again = _patched(body, req["then_patch"])
            response = http.post("/api/jobs", json=again)
            texts.append(response.text)
            return Outcome(response.status_code, response.text, texts=texts, service=worker)
        if response.status_code != 200 or "raw" in req:
            return Outcome(response.status_code, response.text, texts=texts, service=worker)
        view = _wait(http, f"/api/jobs/{run_id}", case.expect.seconds)
        texts.append(json.dumps(view))
        result = view.get("result") or {}
        counts = None
        if view["status"] == "completed":
            counts = {
                "matched": result["matched_count"],
                "unmatched_left": result["unmatched_left_count"],
                "unmatched_right": result["unmatched_right_count"],
            }
        if req.get("callback_paths"):
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                seen = receiver.paths_for(str(run_id))
                if all(any(p.endswith(w) for p in seen) for w in req["callback_paths"]):
                    break
                time.sleep(0.05)
            seen = receiver.paths_for(str(run_id))
            for wanted in req["callback_paths"]:
                assert any(p.endswith(wanted) for p in seen), f"no callback to *{wanted}: {seen}"
        output = worker.root / "runs" / f"run-{run_id}"
        message = str(view.get("error") or "")
        return Outcome(200, message, view["status"], counts, output, texts, service=worker)


# --- the test ---------------------------------------------------------------------------------


@pytest.mark.parametrize("case", params(CASES))
def test_bad_input(case: Case, corpus_root: Path, request: pytest.FixtureRequest) -> None:
    if case.entry == "cli":
        run = request.getfixturevalue("cli_runs")[case.name].result()
        if run.outcome is None:
            pytest.fail(f"kalla run gave no answer within {case.expect.seconds:g} s")
        folder, before, outcome, took = run.folder, run.before, run.outcome, run.took
    else:
        folder, before = prepare(case, corpus_root)
        started = time.monotonic()
        if case.entry == "app":
            outcome = run_app(case, folder, request.getfixturevalue("app"))
        else:
            worker = request.getfixturevalue("worker")
            outcome = run_worker(case, folder, worker, request.getfixturevalue("receiver"))
        took = time.monotonic() - started

    expect = case.expect
    said = outcome.message.lower()
    context = f"{case.about}\n--- said ---\n{outcome.message[-3000:]}"
    if expect.exit is not None:
        assert outcome.code == expect.exit, context
    if expect.status is not None:
        assert outcome.code == expect.status, context
    if expect.run_status is not None:
        assert outcome.run_status == expect.run_status, context
    for part in expect.message:
        assert part.lower() in said, f"the error does not name '{part}'\n{context}"
    for part in expect.not_message:
        assert part.lower() not in said, f"the error says '{part}'\n{context}"
    for bad in ("internal error", "traceback (most recent call last)"):
        assert bad not in said, context
    assert took < expect.seconds, f"took {took:.1f} s, more than {expect.seconds:g} s"

    succeeded = outcome.run_status == "completed" or (case.entry == "cli" and outcome.code == 0)
    if expect.counts is not None:
        counts = outcome.counts or {}
        assert {k: counts.get(k) for k in expect.counts} == expect.counts, context
    if expect.matched is not None:
        assert succeeded, context
        assert outcome.output_dir is not None
        assert _pairs(case, outcome.output_dir) == {tuple(p) for p in expect.matched}

    _nothing_lost(case, folder, before, outcome, succeeded)
    for path in expect.absent:
        assert not Path(path).exists(), f"{path} was written"
    shown = "\n".join(outcome.texts)
    for name, secret in CANARIES.items():
        assert secret not in shown, f"{name} shown to the user"
    if outcome.service is not None:
        assert outcome.service.proc is not None and outcome.service.proc.poll() is None
        with outcome.service.client() as http:
            assert http.get("/health").status_code == 200, "the service stopped answering"
        log = outcome.service.log()
        for name, secret in CANARIES.items():
            assert secret not in log, f"{name} in the {outcome.service.command} log"


def _pairs(case: Case, output: Path) -> set[tuple[str, str]]:
    recipe = case.recipe or {}
    left = recipe["sources"]["left"]["primary_key"][0]
    right = recipe["sources"]["right"]["primary_key"][0]
    table = pq.read_table(output / "matched.parquet")
    names = table.column_names

    def column(key: str, alias: str) -> list[Any]:
        for name in (key, f"{alias}.{key}", f"{alias}_{key}"):
            if name in names:
                return table.column(name).to_pylist()
        raise AssertionError(f"no column for {key} in {names}")

    lefts = column(left, recipe["sources"]["left"]["alias"])
    rights = column(right, recipe["sources"]["right"]["alias"])
    return {(str(a), str(b)) for a, b in zip(lefts, rights, strict=True)}


def _nothing_lost(
    case: Case, folder: Path, before: dict[str, str], outcome: Outcome, succeeded: bool
) -> None:
    after = snapshot(folder)
    changed = [p for p, digest in before.items() if after.get(p) != digest]
    assert not changed, f"inputs changed or gone: {changed}"
    new = [p for p in after if p not in before and p != "recipe.json"]
    if case.entry == "cli":
        out = outcome.output_dir
        allowed = succeeded and out is not None and not _within(out, folder / "inputs")
        stray = [p for p in new if not (allowed and out is not None and _within(folder / p, out))]
        assert not stray, f"left behind: {stray[:10]}"
    elif outcome.output_dir is not None and not succeeded:
        assert not outcome.output_dir.exists(), "a failed run left an output directory"
