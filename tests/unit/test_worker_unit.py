"""The worker's parts in-process: signing, the callback allow-list, path confinement,
secret scrubbing, ``run_job`` with a recording sink, and the app's routes and errors."""

from __future__ import annotations

import threading
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from kalla.errors import ConfigError, JobCancelled, KallaError, OutputError, RecipeError
from kalla.recipe.models import (
    CompletionCallback,
    ErrorCallback,
    JobRequest,
    MatchingProgress,
    StagingProgress,
)
from kalla.runner import CancelToken, run_job
from kalla.runner.job import confine
from kalla.secrets import Scrubber
from kalla.settings import Settings
from kalla.worker.callbacks import (
    check_callback_url,
    event_url,
    host_allowed,
    sign,
    verify_signature,
)
from kalla.worker.http import create_worker_app, serve

FIXTURES = Path(__file__).parents[1] / "fixtures" / "worker"
DEFAULT_HOSTS = Settings().callback_allowed_hosts


# --- signing --------------------------------------------------------------------------------


def test_signature_round_trip_and_forgeries() -> None:
    body = b'{"run_id":"x","error":"boom"}'
    now = 1_700_000_000
    signature = sign("s3cret", body, now)
    assert signature.startswith("sha256=") and len(signature) == 7 + 64
    assert verify_signature("s3cret", body, str(now), signature, now=now + 10)
    assert not verify_signature("other", body, str(now), signature, now=now)
    assert not verify_signature("s3cret", body + b" ", str(now), signature, now=now)
    assert not verify_signature("s3cret", body, str(now + 1), signature, now=now)  # ts is signed
    assert not verify_signature("s3cret", body, str(now), signature, max_age=300, now=now + 301)
    assert not verify_signature("s3cret", body, str(now), signature, max_age=300, now=now - 301)
    assert not verify_signature("s3cret", body, None, signature, now=now)
    assert not verify_signature("s3cret", body, str(now), None, now=now)
    assert not verify_signature("s3cret", body, "12.5", signature, now=now)


# --- where callbacks may go -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("host", "allowed"),
    [
        ("localhost", True),
        ("LOCALHOST.", True),
        ("127.0.0.1", True),
        ("127.9.9.9", True),
        ("::1", True),
        ("example.com", False),
        ("localhost.evil.com", False),
        ("127.0.0.1.nip.io", False),
        ("10.0.0.1", False),
        ("169.254.169.254", False),
        ("::ffff:10.0.0.1", False),
    ],
)
def test_default_allow_list_is_loopback(host: str, allowed: bool) -> None:
    assert host_allowed(host, DEFAULT_HOSTS) is allowed


def test_allow_list_entries() -> None:
    hosts = ("app", "*.svc.cluster.local", "10.1.0.0/16", "fd00::1")
    assert host_allowed("app", hosts) and host_allowed("App", hosts)
    assert host_allowed("kalla.ns.svc.cluster.local", hosts)
    assert not host_allowed("svc.cluster.local.evil.com", hosts)
    assert host_allowed("10.1.200.3", hosts) and not host_allowed("10.2.0.1", hosts)
    assert host_allowed("fd00::1", hosts) and not host_allowed("fd00::2", hosts)
    assert not host_allowed("localhost", hosts)  # replaced, not added to, the default
    assert host_allowed("anything.example", ("*",))


def test_callback_url_problems_name_the_cause() -> None:
    assert check_callback_url("http://127.0.0.1:3001/cb", DEFAULT_HOSTS) == []
    assert "not allowed" in check_callback_url("https://example.com/cb", DEFAULT_HOSTS)[0]
    assert "http://" in check_callback_url("file:///etc/passwd", DEFAULT_HOSTS)[0]
    assert "no host" in check_callback_url("http:///cb", DEFAULT_HOSTS)[0]
    assert "valid URL" in check_callback_url("http://127.0.0.1:99999/cb", DEFAULT_HOSTS)[0]
    shown = check_callback_url("https://u:pw@example.com/cb", DEFAULT_HOSTS)[0]
    assert "pw" not in shown


def test_event_urls_for_both_seed_styles() -> None:
    one = "http://localhost:3001/api/runs/a1b2c3d4/callback"
    assert event_url(one, "complete") == one
    base = "http://localhost:3000/api/worker"
    assert event_url(base, "progress") == base + "/progress"
    assert event_url(base + "/?x=1", "error") == base + "/error?x=1"


def test_allowed_hosts_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("KALLA_CALLBACK_ALLOWED_HOSTS", " App , *.svc.local,10.0.0.0/8 ")
    assert Settings().callback_allowed_hosts == ("app", "*.svc.local", "10.0.0.0/8")


# --- paths and secrets ----------------------------------------------------------------------


def test_confine_keeps_paths_under_the_root(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    root.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (root / "link").symlink_to(outside, target_is_directory=True)
    assert confine("a/b", root, what="output_path") == root.resolve() / "a" / "b"
    assert confine(str(root / "x"), root, what="output_path") == root.resolve() / "x"
    assert confine("a/../b", root, what="output_path") == root.resolve() / "b"
    for bad in ("..", "../x", "a/../../x", "/etc", str(outside), "link/x", ".", "", "a\0b"):
        with pytest.raises(RecipeError) as caught:
            confine(bad, root, what="output_path")
        assert caught.value.status == 422
        assert "output root" in caught.value.message or "not a usable path" in caught.value.message


def test_scrubber_masks_credentials() -> None:
    scrub = Scrubber.for_uris(
        [
            "postgres://kalla:p%40ss-word@db:5432/books?table=t",
            "mysql://root:${DB_PASSWORD}@db/x?table=t",
            "s3://bucket/f.csv?token=tok-123456",
        ],
        environ={"DB_PASSWORD": "from-env-999"},
    )
    text = scrub(
        "failed: p@ss-word p%40ss-word from-env-999 tok-123456 and "
        "https://someone:else@host/x still table=t"
    )
    for secret in ("p@ss-word", "p%40ss-word", "from-env-999", "tok-123456", "else@"):
        assert secret not in text
    assert "table=t" in text and "https://someone:***@host/x" in text


# --- run_job with a recording sink ----------------------------------------------------------


class Recorder:
    def __init__(self, on_staging: Any = None) -> None:
        self.events: list[Any] = []
        self.error: KallaError | None = None
        self.on_staging = on_staging

    def staging(self, event: StagingProgress) -> None:
        self.events.append(event)
        if self.on_staging is not None:
            self.on_staging(event)

    def matching(self, event: MatchingProgress) -> None:
        self.events.append(event)

    def completed(self, event: CompletionCallback) -> None:
        self.events.append(event)

    def failed(self, event: ErrorCallback, error: KallaError) -> None:
        self.events.append(event)
        self.error = error


def _empty(folder: Path) -> bool:
    return not folder.exists() or not any(folder.iterdir())


def _settings(tmp_path: Path) -> Settings:
    return Settings(
        STAGING_PATH=tmp_path / "staging",
        KALLA_OUTPUT_ROOT=tmp_path / "runs",
        KALLA_MEMORY_LIMIT="512M",
        KALLA_SOURCE_ROOTS=str(FIXTURES),
    )


def _request(**overrides: Any) -> JobRequest:
    data: dict[str, Any] = {
        "run_id": str(uuid.uuid4()),
        "callback_url": "http://127.0.0.1:1/cb",
        "match_sql": (
            "SELECT l.invoice_id, r.payment_id FROM left_src l JOIN right_src r "
            "ON l.invoice_id = r.reference_number "
            "AND tolerance_match(l.amount, r.paid_amount, 0.02)"
        ),
        "sources": [
            {"alias": "left_src", "uri": str(FIXTURES / "invoices.csv")},
            {"alias": "right_src", "uri": str(FIXTURES / "payments.csv")},
        ],
        "output_path": "out",
        "primary_keys": {"left_src": ["invoice_id"], "right_src": ["payment_id"]},
    }
    data.update(overrides)
    return JobRequest.model_validate(data)


def test_run_job_reports_in_order(tmp_path: Path) -> None:
    sink = Recorder()
    settings = _settings(tmp_path)
    summary = run_job(_request(), sink, settings=settings)
    assert summary is not None and summary.matched_count == 3
    kinds = [type(e).__name__ for e in sink.events]
    assert kinds[0] == "StagingProgress" and kinds[-2:] == [
        "MatchingProgress",
        "CompletionCallback",
    ]
    staging = [e for e in sink.events if isinstance(e, StagingProgress)]
    assert staging[0].source == "left_src" and staging[-1].source == "right_src"
    done = sink.events[-1]
    assert isinstance(done, CompletionCallback)
    assert done.output_paths.manifest is not None
    assert Path(done.output_paths.matched).parent == (tmp_path / "runs" / "out").resolve()
    assert sink.events[-2] == MatchingProgress(run_id=done.run_id, progress=1.0, matched_count=3)
    assert _empty(tmp_path / "staging")
    manifest = (tmp_path / "runs" / "out" / "manifest.json").read_text()
    assert "callback_url" not in manifest


def test_run_job_refuses_hostile_sql_before_staging(tmp_path: Path) -> None:
    sink = Recorder()
    request = _request(match_sql="COPY left_src TO '/tmp/x.csv'")
    assert run_job(request, sink, settings=_settings(tmp_path)) is None
    assert [type(e) for e in sink.events] == [ErrorCallback]
    assert "COPY" in sink.events[0].error and sink.error is not None and sink.error.status == 422


def test_run_job_refuses_a_used_output_dir(tmp_path: Path) -> None:
    settings = _settings(tmp_path)
    (tmp_path / "runs" / "out").mkdir(parents=True)
    (tmp_path / "runs" / "out" / "keep.txt").write_text("earlier run")
    sink = Recorder()
    assert run_job(_request(), sink, settings=settings) is None
    assert isinstance(sink.error, OutputError) and len(sink.events) == 1
    assert (tmp_path / "runs" / "out" / "keep.txt").read_text() == "earlier run"


def test_run_job_cancelled_before_start_writes_nothing(tmp_path: Path) -> None:
    cancel = CancelToken()
    cancel.cancel("run cancelled on request")
    sink = Recorder()
    assert run_job(_request(), sink, settings=_settings(tmp_path), cancel=cancel) is None
    assert isinstance(sink.error, JobCancelled)
    assert sink.events == [ErrorCallback(run_id=sink.events[0].run_id, error=cancel.reason)]
    assert not (tmp_path / "runs" / "out").exists()


def test_run_job_cancelled_mid_staging_leaves_nothing(tmp_path: Path) -> None:
    cancel = CancelToken()
    sink = Recorder(on_staging=lambda event: cancel.cancel("stop"))
    assert run_job(_request(), sink, settings=_settings(tmp_path), cancel=cancel) is None
    assert isinstance(sink.error, JobCancelled) and sink.events[-1].error == "stop"
    assert _empty(tmp_path / "runs") and _empty(tmp_path / "staging")


def test_run_job_failure_never_carries_credentials(tmp_path: Path) -> None:
    sink = Recorder()
    request = _request(
        sources=[
            {"alias": "left_src", "uri": "postgres://kalla:hunter2secret@127.0.0.1:1/db?table=t"},
            {"alias": "right_src", "uri": str(FIXTURES / "payments.csv")},
        ]
    )
    assert run_job(request, sink, settings=_settings(tmp_path)) is None
    message = sink.events[-1].error
    assert "hunter2secret" not in message and "Traceback" not in message
    assert "127.0.0.1:1" in message


# --- the app --------------------------------------------------------------------------------


@pytest.fixture
def client(tmp_path: Path) -> Any:
    with TestClient(create_worker_app(_settings(tmp_path))) as c:
        yield c


def test_routes_match_seed_002(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/health", "/ready", "/metrics", "/api/jobs", "/api/jobs/{run_id}"} <= set(paths)
    assert set(paths["/api/jobs/{run_id}"]) == {"get", "delete"}
    assert "post" in paths["/api/jobs"]


def test_errors_are_json_with_their_status(client: TestClient) -> None:
    missing = client.get(f"/api/jobs/{uuid.uuid4()}")
    assert missing.status_code == 404 and missing.json()["kind"] == "not_found"
    not_uuid = client.get("/api/jobs/not-a-uuid")
    assert not_uuid.status_code == 422 and "run_id" in not_uuid.json()["problems"][0]
    bad = client.post("/api/jobs", json={"run_id": "nope", "sources": []})
    assert bad.status_code == 422
    body = bad.json()
    assert set(body) == {"error", "kind", "problems"} and len(body["problems"]) >= 4


def test_submit_then_status(client: TestClient) -> None:
    request = _request()
    body = request.to_dict()
    response = client.post("/api/jobs", json=body)
    assert response.json() == {"run_id": str(request.run_id), "status": "accepted"}
    deadline = time.monotonic() + 30
    while client.get(f"/api/jobs/{request.run_id}").json()["status"] != "completed":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    view = client.get(f"/api/jobs/{request.run_id}").json()
    assert view["result"]["matched_count"] == 3 and view["error"] is None
    assert "uri" not in str(view)
    metrics = client.get("/metrics").text
    assert 'kalla_worker_jobs_total{outcome="completed"} 1.0' in metrics
    assert "kalla_worker_rows_matched_total 3.0" in metrics


def test_not_ready_when_the_output_root_is_not_writable(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    settings = Settings(
        STAGING_PATH=tmp_path / "staging",
        KALLA_OUTPUT_ROOT=blocker,
        KALLA_SOURCE_ROOTS=str(FIXTURES),
    )
    with TestClient(create_worker_app(settings)) as c:
        ready = c.get("/ready")
        assert ready.status_code == 503 and "output root" in ready.text
        assert c.get("/health").status_code == 200


def test_public_bind_needs_a_callback_secret(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="KALLA_CALLBACK_SECRET"):
        serve(_settings(tmp_path), host="0.0.0.0", port=0)


def test_cancel_token_keeps_the_first_reason() -> None:
    token = CancelToken()
    seen: list[bool] = []
    threading.Thread(target=lambda: seen.append(token.wait(5))).start()
    token.cancel("first")
    token.cancel("second")
    time.sleep(0.05)
    assert token.reason == "first" and seen == [True]


def test_heartbeats_are_checkpoints_not_events() -> None:
    from kalla.runner.job import _Reporter

    sink, cancel = Recorder(), CancelToken()
    report = _Reporter(_request(), sink, cancel)
    for fraction in (0.0, 0.5, 0.5, 0.5, 1.0, 1.0):
        report("staging", "left_src", fraction)
    assert [e.progress for e in sink.events if isinstance(e, StagingProgress)] == [0.0, 0.5, 1.0]
    cancel.cancel("run cancelled on request")
    with pytest.raises(JobCancelled):
        report("staging", "left_src", 1.0)  # a repeated fraction still checks
