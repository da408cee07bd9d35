"""The worker's operational rules, in-process on real HTTP: callback URL styles (per job and
per worker), job identity (the same body again is idempotent, a different job under a known
run_id is a 409), an output_path that would land on a source refused at submission, and a
callback sender that gives up at its close deadline instead of holding the worker."""

from __future__ import annotations

import logging
import re
import socket
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from callback_receiver import Receiver
from fastapi.testclient import TestClient

from kalla.recipe.models import ErrorCallback, JobRequest
from kalla.runner.job import output_dir_for
from kalla.settings import Settings
from kalla.worker.callbacks import CallbackSender, event_url
from kalla.worker.http import create_worker_app

FIXTURES = Path(__file__).parents[1] / "fixtures" / "worker"


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    r = Receiver().start()
    yield r
    r.stop()


def _settings(tmp_path: Path, **env: str) -> Settings:
    return Settings(
        STAGING_PATH=tmp_path / "staging",
        KALLA_OUTPUT_ROOT=tmp_path / "runs",
        KALLA_MEMORY_LIMIT="512M",
        KALLA_SOURCE_ROOTS=str(FIXTURES),
        **env,
    )


def _body(callback_url: str, **overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "run_id": str(uuid.uuid4()),
        "callback_url": callback_url,
        "match_sql": "SELECT l.invoice_id, r.payment_id FROM l JOIN r "
        "ON l.invoice_id = r.reference_number",
        "sources": [
            {"alias": "l", "uri": str(FIXTURES / "invoices.csv")},
            {"alias": "r", "uri": str(FIXTURES / "payments.csv")},
        ],
        "output_path": f"run-{uuid.uuid4().hex[:8]}",
        "primary_keys": {"l": ["invoice_id"], "r": ["payment_id"]},
    }
    body.update(overrides)
    return body


# ---- callback URL styles ----------------------------------------------------------------------

STYLES = [
    # (callback_url, style, event, where it goes)
    ("http://h/api/runs/1/callback", "auto", "progress", "http://h/api/runs/1/callback"),
    ("http://h/app/api/worker", "auto", "complete", "http://h/app/api/worker/complete"),
    ("http://h/app/api/worker/", "auto", "error", "http://h/app/api/worker/error"),
    ("http://h/app/api/worker", "single", "error", "http://h/app/api/worker"),
    ("http://h/listener", "per_event", "progress", "http://h/listener/progress"),
    ("http://h/listener/", "per_event", "complete", "http://h/listener/complete"),
    ("http://h/l?token=${T}", "per_event", "error", "http://h/l/error?token=${T}"),
]


@pytest.mark.parametrize(("url", "style", "event", "expected"), STYLES)
def test_event_url_styles(url: str, style: str, event: str, expected: str) -> None:
    assert event_url(url, event, style) == expected


def test_callback_style_stays_with_the_transport() -> None:
    request = JobRequest.model_validate(_body("http://h/cb", callback_style="per_event"))
    assert request.callback_style == "per_event"
    assert "callback_style" not in request.job().to_dict()
    with pytest.raises(ValueError, match="callback_style"):
        JobRequest.model_validate(_body("http://h/cb", callback_style="per-event"))


@pytest.mark.parametrize(
    ("setting", "per_job", "paths"),
    [
        ("per_event", None, {"/listener/progress", "/listener/complete"}),  # the worker's
        ("auto", "per_event", {"/listener/progress", "/listener/complete"}),  # the job's
        ("per_event", "single", {"/listener"}),  # the job's wins
        ("auto", None, {"/listener"}),  # seed 002's default, unchanged
    ],
)
def test_the_original_builds_listener_gets_its_paths(
    setting: str, per_job: str | None, paths: set[str], receiver: Receiver, tmp_path: Path
) -> None:
    settings = _settings(tmp_path, KALLA_CALLBACK_STYLE=setting)
    overrides = {"callback_style": per_job} if per_job else {}
    body = _body(receiver.url("/listener"), **overrides)
    with TestClient(create_worker_app(settings)) as client:
        assert client.post("/api/jobs", json=body).status_code == 200
        final = "/listener" if paths == {"/listener"} else "/listener/complete"
        deadline = time.monotonic() + 60
        while client.get(f"/api/jobs/{body['run_id']}").json()["status"] != "completed":
            assert time.monotonic() < deadline
            time.sleep(0.05)
        receiver.wait_for(final)
        view = client.get(f"/api/jobs/{body['run_id']}").json()
        while view["callbacks"]["pending"]:
            time.sleep(0.05)
            view = client.get(f"/api/jobs/{body['run_id']}").json()
    assert set(receiver.paths) == paths


# ---- job identity ---------------------------------------------------------------------------


def test_a_known_run_id_same_body_is_idempotent_other_body_is_409(
    receiver: Receiver, tmp_path: Path
) -> None:
    body = _body(receiver.url("/cb"))
    with TestClient(create_worker_app(_settings(tmp_path))) as client:
        first = client.post("/api/jobs", json=body)
        assert first.json() == {"run_id": body["run_id"], "status": "accepted"}
        again = client.post("/api/jobs", json=dict(body))
        assert again.status_code == 200 and again.json()["run_id"] == body["run_id"]
        assert again.json()["status"] in ("queued", "running", "completed")
        for change, field in (
            ({"match_sql": body["match_sql"] + " AND true"}, "match_sql"),
            ({"output_path": "elsewhere"}, "output_path"),
            ({"callback_url": receiver.url("/other")}, "callback_url"),
            ({"callback_style": "per_event"}, "callback_style"),
        ):
            other = client.post("/api/jobs", json={**body, **change})
            assert other.status_code == 409, other.text
            error = other.json()
            assert error["kind"] == "conflict" and field in error["error"]
            assert body["run_id"] in error["error"]
        receiver.wait_for("/cb")
    assert not (tmp_path / "runs" / "elsewhere").exists()


# ---- outputs never over a source ------------------------------------------------------------


def test_an_output_path_holding_a_source_is_refused(tmp_path: Path) -> None:
    inbox = tmp_path / "runs" / "inbox"
    inbox.mkdir(parents=True)
    (inbox / "payments.csv").write_bytes((FIXTURES / "payments.csv").read_bytes())
    cases = {
        "inbox": "holds the input of source 'r'",
        "inbox/payments.csv": "is the input of source 'r'",
        "inbox/payments.csv/out": "lies inside the input of source 'r'",
    }
    with TestClient(create_worker_app(_settings(tmp_path))) as client:
        for output_path, fragment in cases.items():
            body = _body("http://127.0.0.1:1/cb", output_path=output_path)
            body["sources"][1]["uri"] = str(inbox / "payments.csv")
            response = client.post("/api/jobs", json=body)
            assert response.status_code == 422, response.text
            assert any(fragment in p for p in response.json()["problems"]), response.json()
    assert (inbox / "payments.csv").read_bytes() == (FIXTURES / "payments.csv").read_bytes()


# ---- a sender closing gives up at its deadline ------------------------------------------------


class _Counter:
    def __init__(self) -> None:
        self.attempts = 0
        self.gave_up = 0

    def callback_attempt(self, event: str, result: str) -> None:
        self.attempts += 1

    def callback_gave_up(self, event: str) -> None:
        self.gave_up += 1


@pytest.fixture
def black_hole() -> Iterator[str]:
    """A port that accepts connections and never answers."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    yield f"http://127.0.0.1:{server.getsockname()[1]}/cb"
    server.close()


@pytest.fixture
def refusing() -> str:
    """A port where nothing listens: every attempt is refused at once and retried."""
    probe = socket.socket()
    probe.bind(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    return f"http://127.0.0.1:{port}/cb"


@pytest.mark.parametrize("target", ["black_hole", "refusing"])
def test_close_gives_up_at_its_deadline(
    target: str, request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture
) -> None:
    url = request.getfixturevalue(target)
    counter = _Counter()
    sender = CallbackSender(secret="s", retry_seconds=600, timeout=30, observer=counter)
    channel = sender.channel(uuid.uuid4(), url)
    channel.send("error", ErrorCallback(run_id=channel.run_id, error="x"), final=True)
    time.sleep(0.5)  # under way: retrying (refused) or waiting for an answer (black hole)
    with caplog.at_level(logging.WARNING, logger="kalla.worker.callbacks"):
        began = time.monotonic()
        sender.close(wait=0.5)
        sender.close(wait=60)  # a second close (the worker's lifespan) returns at once
        # never held by the 30 s attempt in flight nor the 600 s retry budget
        assert time.monotonic() - began < 10
        assert channel.thread is not None
        channel.thread.join(timeout=0 if target == "black_hole" else 5)
    attempts = counter.attempts
    time.sleep(1.0)
    assert counter.attempts == attempts  # nothing retried after the deadline
    if target == "refusing":
        assert counter.gave_up == 1 and channel.stats()["failed"] == 1
        assert "the worker shut down" in caplog.text


# ---- the README's worker example lands where the README says ------------------------------


def test_the_readmes_output_path_lands_where_it_says(tmp_path: Path) -> None:
    readme = (Path(__file__).parents[2] / "README.md").read_text()
    example = readme[readme.index("curl -X POST localhost:50050/api/jobs") :]
    body = example[example.index("-d '") + 4 : example.index("}'") + 1]
    request = JobRequest.model_validate_json(body)
    said = re.search(
        r"The outputs land in `KALLA_OUTPUT_ROOT/([^`]+)` \(`([^`]+)` by default\)", readme
    )
    assert said is not None, "the README says where the example's outputs land"
    assert said.group(1) == request.output_path
    settings = Settings(KALLA_OUTPUT_ROOT="./runs")  # the default, relative to the worker's cwd
    landed = output_dir_for(request.job(), settings)
    assert landed == (Path.cwd() / said.group(2)).resolve()
    docs = (Path(__file__).parents[2] / "docs" / "worker.md").read_text()
    assert '`"a1b2c3d4"` lands in `./runs/a1b2c3d4`' in docs
    assert (
        output_dir_for(
            JobRequest.model_validate_json(body.replace('"a1b2c3d4"', '"runs/a1b2c3d4"')).job(),
            settings,
        )
        == (Path.cwd() / "runs" / "runs" / "a1b2c3d4").resolve()
    )
