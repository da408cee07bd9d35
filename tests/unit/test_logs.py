"""One log format for the whole process (``kalla.logs``): text or JSON lines, library loggers
routed to the one handler, and the run id on every line of a run, the lines its job's child
process logs included."""

from __future__ import annotations

import io
import json
import logging
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from kalla import logs
from kalla.recipe.models import Job
from kalla.runner import JobRunner
from kalla.settings import Settings

FIXTURES = Path(__file__).parents[1] / "fixtures" / "worker"


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    """A stream ``logs.configure`` writes to; the logging setup is restored afterwards."""
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    libraries = {
        name: (list(logging.getLogger(name).handlers), logging.getLogger(name).propagate)
        for name in logs.LIBRARY_LOGGERS
    }
    buffer = io.StringIO()
    yield buffer
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    for name, (handlers, propagate) in libraries.items():
        logging.getLogger(name).handlers[:] = handlers
        logging.getLogger(name).propagate = propagate


def lines(stream: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_json_lines_carry_the_run_id_of_their_context(stream: io.StringIO) -> None:
    logs.configure("info", "json", stream)
    log = logging.getLogger("kalla.test")
    log.info("before any run")
    with logs.run_context("run-1"):
        log.warning("inside %s", "run-1")
        log.info("another run named", extra={"run_id": "run-2"})
        try:
            raise ValueError("boom")
        except ValueError:
            log.exception("failed")
    found = lines(stream)
    assert [(e["message"], e.get("run_id")) for e in found] == [
        ("before any run", None),
        ("inside run-1", "run-1"),
        ("another run named", "run-2"),
        ("failed", "run-1"),
    ]
    assert found[1]["level"] == "WARNING" and found[1]["logger"] == "kalla.test"
    assert str(found[0]["time"]).endswith("Z")
    assert "ValueError: boom" in str(found[3]["exception"])


def test_a_line_naming_a_run_outside_its_context_carries_it(stream: io.StringIO) -> None:
    """The app logs about a run from its request handlers ("run <id> created for recipe
    …"): the line carries the id it names."""
    logs.configure("info", "json", stream)
    run_id = uuid.uuid4()
    logging.getLogger("kalla.app").info("run %s created for recipe %s v%d", run_id, "r", 1)
    logging.getLogger("kalla.app").info("runs listed for recipe %s", "r")
    assert [e.get("run_id") for e in lines(stream)] == [str(run_id), None]


def test_text_lines_name_the_run(stream: io.StringIO) -> None:
    logs.configure("info", "text", stream)
    with logs.run_context(uuid.UUID(int=7)):
        logging.getLogger("kalla.test").info("staged")
    line = stream.getvalue()
    assert f"INFO kalla.test run={uuid.UUID(int=7)}: staged" in line


def test_library_loggers_lose_their_own_format(stream: io.StringIO) -> None:
    """uvicorn and Alembic print through handlers of their own unless told otherwise: after
    ``configure`` their records reach the one handler, in its format."""
    for name in ("uvicorn.error", "alembic"):
        own = logging.StreamHandler(io.StringIO())
        own.setFormatter(logging.Formatter("%(levelname)s:     %(message)s"))
        logging.getLogger(name).addHandler(own)
        logging.getLogger(name).propagate = False
    logs.configure("info", "json", stream)
    logs.configure("info", "json", stream)  # again: still one handler
    logging.getLogger("uvicorn.error").info("Started server process")
    logging.getLogger("alembic.runtime.migration").info("Context impl SQLiteImpl.")
    logging.getLogger("httpx").info("HTTP Request: POST …")  # quieted
    assert [(e["logger"], e["message"]) for e in lines(stream)] == [
        ("uvicorn.error", "Started server process"),
        ("alembic.runtime.migration", "Context impl SQLiteImpl."),
    ]
    assert [h.get_name() for h in logging.getLogger().handlers].count("kalla") == 1


def test_an_unknown_format_is_refused() -> None:
    with pytest.raises(ValueError, match="text or json"):
        logs.formatter("xml")
    with pytest.raises(ValueError, match="KALLA_LOG_FORMAT"):
        Settings(KALLA_LOG_FORMAT="xml")


class _Sink:
    def __init__(self) -> None:
        self.done = False

    def staging(self, event: object) -> None:
        pass

    def matching(self, event: object) -> None:
        pass

    def completed(self, event: object) -> None:
        self.done = True

    def failed(self, event: object, error: object) -> None:
        self.done = True


def test_a_jobs_child_process_logs_with_the_run_id(stream: io.StringIO, tmp_path: Path) -> None:
    """The job runs in a child process; the lines it logs come up the pipe and out of the
    service's one handler, in its format, with the run id."""
    logs.configure("info", "json", stream)
    settings = Settings(
        STAGING_PATH=tmp_path / "staging",
        KALLA_OUTPUT_ROOT=tmp_path / "runs",
        KALLA_MEMORY_LIMIT="512M",
        KALLA_SOURCE_ROOTS=str(FIXTURES),
    )
    runner = JobRunner(settings)
    runner.start()
    job = Job.model_validate(
        {
            "run_id": str(uuid.uuid4()),
            "match_sql": "SELECT l.invoice_id, r.payment_id FROM l JOIN r ON l.nope = r.nope",
            "sources": [
                {"alias": "l", "uri": str(FIXTURES / "invoices.csv")},
                {"alias": "r", "uri": str(FIXTURES / "payments.csv")},
            ],
            "output_path": "out",
            "primary_keys": {"l": ["invoice_id"], "r": ["payment_id"]},
        }
    )
    sink = _Sink()
    try:
        runner.submit(job, sink)
        deadline = time.monotonic() + 60
        while not sink.done:
            assert time.monotonic() < deadline, stream.getvalue()
            time.sleep(0.05)
    finally:
        runner.shutdown(grace=5)
    mine = [e for e in lines(stream) if str(job.run_id) in str(e["message"])]
    assert {e.get("run_id") for e in mine} == {str(job.run_id)}, mine
    # the child's own line: run_job's warning naming the failure, logged in the child
    assert any(e["logger"] == "kalla.runner" and "nope" in str(e["message"]) for e in mine), mine
