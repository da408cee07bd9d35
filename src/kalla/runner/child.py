"""Run a function in a child process of its own, so that whatever goes wrong there (a
segfault in native code, an abort, a runaway allocation, a hang) ends that call with an
error naming the cause and never the service that asked.

Children are forked from a forkserver that imported the pipeline once (DataFusion, Arrow,
the connectors): a child starts in milliseconds, where a fresh interpreter would spend about
a second importing them (``bench/job_startup.py``). Each child

* takes the parent's environment and working directory of the moment (the forkserver's
  own are those of when it started), so ``${ENV}`` secrets resolve as they would in-process;
* has its data segment capped by the OS (``RLIMIT_DATA``) at ``KALLA_MEMORY_LIMIT +
  KALLA_JOB_MEMORY_HEADROOM``: an allocation past the cap fails in the child (a
  ``MemoryError`` in Python, an abort in native code) instead of taking the machine's memory;
* sends its log records, events and result up one pipe and reads "cancel" from another;
  asked to stop while its engine runs a statement (which DataFusion cannot stop), it exits
  at once, and the parent cleans up what it left;
* ends at once when the parent goes away (the control pipe closes), so a killed service
  leaves no job running behind it;
* writes native crash output (a Rust panic or allocation failure, faulthandler's traceback)
  to a file the parent reads to name the cause, then deletes.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import multiprocessing
import os
import re
import resource
import signal
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing import forkserver
from multiprocessing.connection import Connection, wait
from multiprocessing.context import ForkServerContext
from pathlib import Path
from typing import Any, NoReturn

from kalla.engine.executor import IN_STATEMENT
from kalla.errors import JobCrashedError, KallaError
from kalla.extras import missing_extra
from kalla.runner.job import CancelToken  # imports the pipeline: once, in the forkserver
from kalla.runner.limits import memory_cap, out_of_memory
from kalla.settings import Settings, get_settings

log = logging.getLogger("kalla.runner")

# Modules the forkserver imports before it forks anyone; a missing one is skipped. A child
# also runs the service's main module again (multiprocessing's rule), kalla/cli.py: what it
# imports is preloaded, so that costs no imports.
PRELOAD = [
    "kalla.runner.child",
    "kalla.runner.probe",
    "kalla.runner.warm",
    "typer",
    "rich.progress",
    "rich.table",
    "kalla.connectors.csv",
    "kalla.connectors.parquet",
    "kalla.connectors.excel",
    "kalla.connectors.json",
    "kalla.connectors.postgres",
    "kalla.connectors.mysql",
    "kalla.connectors.s3",
    "python_calamine",
]
STOP_GRACE = 3.0  # seconds a child asked to stop gets to reach a checkpoint before it is killed
POLL = 0.1  # seconds between checks for a stop request while a child runs
STDERR_TAIL = 4000  # characters of a dead child's stderr kept for the log …
STDERR_SCAN = 64 * 1024  # … and searched for the cause
EXIT_ORPHANED = 75  # a child whose parent went away
EXIT_STOPPED = 76  # a child asked to stop while its engine ran a statement

# DataFusion's allocator (mimalloc) reserves 1 GiB arenas up front, which RLIMIT_DATA
# counts although they are never touched: smaller arenas keep the cap close to real use.
_ALLOCATOR_ENV = {"MIMALLOC_ARENA_RESERVE": "64MiB"}
_NATIVE_OOM = re.compile(r"memory allocation of (\d+) bytes failed")

_context_lock = threading.Lock()
_context: ForkServerContext | None = None


def _forkserver() -> ForkServerContext:
    global _context
    with _context_lock:
        if _context is None:
            context = multiprocessing.get_context("forkserver")
            context.set_forkserver_preload(PRELOAD)
            for name, value in _ALLOCATOR_ENV.items():
                os.environ.setdefault(name, value)  # read by the forkserver when it starts
            _context = context
        return _context


def warm_up() -> None:
    """Start the forkserver now (it imports the pipeline: about a second) rather than at the
    first job."""
    _forkserver()
    forkserver.ensure_running()


# --- inside the child ------------------------------------------------------------------------


class Channel:
    """What a function running in a child gets: ``send`` up the pipe, ``cancel`` set when
    the parent asks it to stop."""

    def __init__(self, connection: Connection) -> None:
        self.connection = connection
        self.cancel = CancelToken()
        self._lock = threading.Lock()  # events may come from a connector's reader threads

    def send(self, message: Any) -> None:
        with self._lock:
            self.connection.send(message)

    def event(self, payload: Any) -> None:
        self.send(("event", payload))


class _PipeLogHandler(logging.Handler):
    """Log records of the child, re-logged by the parent under the same logger name."""

    def __init__(self, channel: Channel) -> None:
        super().__init__()
        self.channel = channel

    def emit(self, record: logging.LogRecord) -> None:
        with contextlib.suppress(Exception):  # the pipe is gone: so is the parent
            self.channel.send(("log", record.levelno, record.name, self.format(record)))


@dataclass(frozen=True)
class _Spec:
    target: Callable[..., Any]
    args: tuple[Any, ...]
    env: dict[str, str]
    cwd: str
    memory_bytes: int | None
    stderr_path: str
    log_level: int


def _listen(control: Connection, channel: Channel) -> None:
    """Cancel requests from the parent; its end closing means it is gone: exit at once."""
    while True:
        try:
            kind, reason = control.recv()
        except (EOFError, OSError):
            os._exit(EXIT_ORPHANED)
        if kind == "cancel":
            channel.cancel.cancel(str(reason))
            if IN_STATEMENT.is_set():  # the engine cannot stop it: end the process now
                os._exit(EXIT_STOPPED)


def _child_main(spec: _Spec, events: Connection, control: Connection) -> None:
    stderr = os.open(spec.stderr_path, os.O_WRONLY | os.O_APPEND)
    os.dup2(stderr, 1)
    os.dup2(stderr, 2)
    os.close(stderr)
    faulthandler.enable(all_threads=True)  # a segfault's Python stack goes to that file
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C drains the service; it is not ours
    os.chdir(spec.cwd)
    os.environ.clear()
    os.environ.update(spec.env)
    get_settings.cache_clear()
    if spec.memory_bytes:
        _, hard = resource.getrlimit(resource.RLIMIT_DATA)
        cap = spec.memory_bytes if hard == resource.RLIM_INFINITY else min(hard, spec.memory_bytes)
        resource.setrlimit(resource.RLIMIT_DATA, (cap, cap))
    channel = Channel(events)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    root.addHandler(_PipeLogHandler(channel))
    root.setLevel(spec.log_level)
    threading.Thread(target=_listen, args=(control, channel), daemon=True).start()
    try:
        result = spec.target(channel, *spec.args)
    except KallaError as exc:
        _send_error(channel, exc)
    except MemoryError as exc:
        channel.send(("memory", str(exc)[:200]))
    except BaseException as exc:  # a bug: the traceback to the log, the type to the caller
        missing = missing_extra(exc)
        if missing is not None:  # not a bug: an extra that is not installed here
            _send_error(channel, missing)
            _exit(events)
        trace = "".join(traceback.format_exception(exc))
        log.error("unexpected error in a child process:\n%s", trace)
        _send_error(channel, KallaError(f"internal error: {type(exc).__name__}"))
    else:
        channel.send(("result", result))
    _exit(events)


def _exit(events: Connection) -> NoReturn:
    events.close()
    sys.stdout.flush()
    sys.stderr.flush()
    # Everything is written and reported: no interpreter teardown (freeing a large heap,
    # waiting on a connector's leftover threads) between the answer and the exit.
    os._exit(0)


def _send_error(channel: Channel, error: KallaError) -> None:
    try:
        channel.send(("error", error))
    except Exception:  # an attribute that does not pickle: the message is what matters
        channel.send(("error", KallaError(error.message)))


# --- in the parent ---------------------------------------------------------------------------


def run_in_child(
    target: Callable[..., Any],
    *args: Any,
    settings: Settings,
    what: str,
    doing: Callable[[], str] = lambda: "",
    on_event: Callable[[Any], None] | None = None,
    should_stop: Callable[[], KallaError | None] | None = None,
    scrub: Callable[[str], str] = lambda text: text,
) -> Any:
    """``target(channel, *args)`` in a child process; its return value.

    ``on_event`` receives what the child passes to ``channel.event`` (in order, on this
    thread). A KallaError the target raises is raised here. While the child runs,
    ``should_stop`` is asked every 0.1 s: once it returns an error, the child is asked to
    stop (its ``channel.cancel`` is set), killed ``STOP_GRACE`` seconds later if still
    running, and that error is raised. A child that dies without an answer raises an error
    naming ``what`` ("the job's process"), the signal or exit status, and ``doing()`` at the
    time ("while matching"); past the memory cap, a ResourceLimitError naming the cap.
    """
    context = _forkserver()
    events_r, events_w = context.Pipe(duplex=False)
    control_r, control_w = context.Pipe(duplex=False)
    fd, stderr_path = tempfile.mkstemp(prefix="kalla-child-", suffix=".stderr")
    os.close(fd)
    spec = _Spec(
        target=target,
        args=args,
        env=dict(os.environ),
        cwd=os.getcwd(),
        memory_bytes=memory_cap(settings),
        stderr_path=stderr_path,
        log_level=logging.getLogger().getEffectiveLevel(),
    )
    process = context.Process(
        target=_child_main, args=(spec, events_w, control_r), name="kalla-child", daemon=True
    )
    try:
        process.start()
    except Exception:
        Path(stderr_path).unlink(missing_ok=True)
        for connection in (events_r, events_w, control_r, control_w):
            connection.close()
        raise
    events_w.close()
    control_r.close()
    answer: tuple[Any, ...] | None = None
    stop: KallaError | None = None
    kill_at: float | None = None
    killed = False
    try:
        while True:
            ready = wait([events_r, process.sentinel], timeout=POLL)
            if events_r in ready:
                try:
                    message = events_r.recv()
                except (EOFError, OSError):
                    break
                if message[0] == "event":
                    if on_event is not None:
                        _call(on_event, message[1])
                elif message[0] == "log":
                    logging.getLogger(message[2]).log(message[1], "%s", scrub(message[3]))
                else:
                    answer = message
            elif process.sentinel in ready:
                break
            if stop is None and should_stop is not None:
                stop = should_stop()
                if stop is not None:
                    kill_at = time.monotonic() + STOP_GRACE
                    with contextlib.suppress(OSError):  # it is exiting anyway
                        control_w.send(("cancel", stop.message))
            if kill_at is not None and not killed and time.monotonic() >= kill_at:
                log.warning("%s did not stop within %gs: killing it", what, STOP_GRACE)
                process.kill()
                killed = True
        process.join(timeout=5)
        if process.exitcode is None:  # it closed the pipe but lingers: end it
            process.kill()
            process.join()
    finally:
        if process.exitcode is None:  # we are leaving abnormally: never leave it running
            process.kill()
            process.join()
        events_r.close()
        control_w.close()
        tail = _read_tail(stderr_path)
    if tail.strip() and answer is None:
        log.warning("%s left on stderr:\n%s", what, scrub(_last_lines(tail)))
    if answer is not None:
        if answer[0] == "result":
            return answer[1]
        if answer[0] == "memory":
            raise out_of_memory(settings, what, doing())
        error = answer[1]
        if stop is not None and error.kind == "cancelled":
            raise stop  # a timeout stays a timeout, whatever the child made of the request
        raise error
    if stop is not None and (killed or process.exitcode == EXIT_STOPPED):
        raise stop
    raise _death(process.exitcode, tail, settings, what, doing())


def _call(action: Callable[[Any], None], payload: Any) -> None:
    try:
        action(payload)
    except Exception:  # the caller's bug must not leave the child unwatched
        log.exception("handling an event of a child process failed")


def _death(code: int | None, tail: str, settings: Settings, what: str, doing: str) -> KallaError:
    """Why a child ended without an answer, as an error that names the cause."""
    where = f" {doing}" if doing else ""
    native = _NATIVE_OOM.search(tail)
    if native is not None:
        return out_of_memory(settings, what, doing, asked=int(native.group(1)))
    if code is not None and code < 0:
        number = -code
        try:
            name = signal.Signals(number).name
        except ValueError:
            name = "unknown signal"
        hint = ""
        if number == signal.SIGKILL:
            hint = " (by the system: usually its out-of-memory killer)"
        return JobCrashedError(f"{what} was killed by signal {number} ({name}){where}{hint}")
    if code == EXIT_ORPHANED:
        return JobCrashedError(f"{what} lost its parent{where}")
    return JobCrashedError(f"{what} exited with status {code}{where} without reporting its end")


def _read_tail(path: str) -> str:
    """The end of a child's stderr file (then removed): enough to find a native allocation
    failure above the crash dump that follows it."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - STDERR_SCAN))
            return handle.read().decode("utf-8", "replace")
    except OSError:
        return ""
    finally:
        Path(path).unlink(missing_ok=True)


def _last_lines(text: str) -> str:
    tail = text[-STDERR_TAIL:]
    return tail if len(text) <= STDERR_TAIL else tail.partition("\n")[2]
