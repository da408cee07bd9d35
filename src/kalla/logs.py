"""One log format for the whole process: readable text, or one JSON object per line with
``KALLA_LOG_FORMAT=json``.

``configure`` installs a single handler on the root logger and makes every library logger
that would otherwise print in a format of its own (uvicorn's, Alembic's) hand its records
to it. Every record made while a run is being worked on carries that run's id: the job
runner sets it (``run_context``) on the thread that runs a job and relays the log lines of
the job's child process, a callback channel on its own thread; a record may also name it
with ``extra={"run_id": …}``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import sys
import time
from collections.abc import Iterator
from contextvars import ContextVar
from typing import IO, Any

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s%(run)s: %(message)s"

RUN_ID: ContextVar[str | None] = ContextVar("kalla_run_id", default=None)

# Libraries whose loggers come with handlers or formats of their own: their records go to
# the root handler instead (uvicorn installs its own unless given log_config=None).
LIBRARY_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access", "alembic", "sqlalchemy")
QUIET = {  # a line per callback request, per Alembic plugin: noise
    "httpx": logging.WARNING,
    "httpcore": logging.WARNING,
    "alembic.runtime.plugins": logging.WARNING,
}

_HANDLER_NAME = "kalla"


@contextlib.contextmanager
def run_context(run_id: object) -> Iterator[None]:
    """Every record logged in this context (this thread, or this task) names ``run_id``."""
    token = RUN_ID.set(str(run_id))
    try:
        yield
    finally:
        RUN_ID.reset(token)


# "run <uuid>" in a message logged outside the run's context (the app's request handlers)
_NAMED_RUN = re.compile(r"\brun (?:id )?([0-9a-f]{8}-(?:[0-9a-f]{4}-){3}[0-9a-f]{12})\b")


class RunIdFilter(logging.Filter):
    """Sets ``record.run_id``: the one passed in ``extra``, else the context's, else the
    run the message names (``run <uuid>``), else None."""

    def filter(self, record: logging.LogRecord) -> bool:
        run_id = getattr(record, "run_id", None) or RUN_ID.get()
        if run_id is None:
            named = _NAMED_RUN.search(record.getMessage())
            run_id = named.group(1) if named else None
        record.run_id = run_id
        return True


class TextFormatter(logging.Formatter):
    """``2026-11-30 21:50:01,123 INFO kalla.runner run=<id>: message``."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)

    def format(self, record: logging.LogRecord) -> str:
        run_id = getattr(record, "run_id", None)
        record.run = f" run={run_id}" if run_id else ""
        return super().format(record)


class JsonFormatter(logging.Formatter):
    """One JSON object per record: ``time`` (UTC, ISO 8601), ``level``, ``logger``,
    ``message``, ``run_id`` when the record belongs to a run, ``exception`` when it has one."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _utc(record.created),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        run_id = getattr(record, "run_id", None)
        if run_id:
            entry["run_id"] = str(run_id)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def _utc(created: float) -> str:
    seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(created))
    return f"{seconds}.{int(created % 1 * 1000):03d}Z"


def formatter(fmt: str) -> logging.Formatter:
    """The formatter of ``fmt`` (``text`` or ``json``)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"unknown log format {fmt!r} (use {' or '.join(LOG_FORMATS)})")
    return JsonFormatter() if fmt == "json" else TextFormatter()


def level_of(level: str | int) -> int:
    """``"info"``/``"WARNING"``/``20`` → the logging level (INFO for a name it does not know)."""
    if isinstance(level, int):
        return level
    found = logging.getLevelName(level.upper())
    return found if isinstance(found, int) else logging.INFO


def configure(level: str | int = "info", fmt: str = "text", stream: IO[str] | None = None) -> None:
    """Send every record of the process, at ``level`` and above, to ``stream`` (stderr) in
    one format. Calling it again replaces the handler it installed before (other handlers
    of the root logger, such as a test's capture, are left alone)."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        if handler.get_name() == _HANDLER_NAME:
            root.removeHandler(handler)
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(formatter(fmt))
    handler.addFilter(RunIdFilter())
    root.addHandler(handler)
    root.setLevel(level_of(level))
    for name in LIBRARY_LOGGERS:
        library = logging.getLogger(name)
        for own in list(library.handlers):
            library.removeHandler(own)
        library.propagate = True
    for name, quiet in QUIET.items():
        logging.getLogger(name).setLevel(quiet)


__all__ = [
    "LOG_FORMATS",
    "RUN_ID",
    "JsonFormatter",
    "RunIdFilter",
    "TextFormatter",
    "configure",
    "formatter",
    "level_of",
    "run_context",
]
