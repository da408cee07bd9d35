"""The process boundary (``kalla.runner.child.run_in_child``) with real child processes:
what crosses the pipe, and how each way for a child to die is named."""

from __future__ import annotations

import ctypes
import logging
import os
import time
from pathlib import Path
from typing import Any

import pytest

from kalla.errors import (
    JobCancelled,
    JobCrashedError,
    JobTimeoutError,
    RecipeError,
    ResourceLimitError,
)
from kalla.runner.child import STOP_GRACE, run_in_child
from kalla.settings import Settings

SETTINGS = Settings(KALLA_MEMORY_LIMIT="256M", KALLA_JOB_MEMORY_HEADROOM="768M")  # cap: 1 GiB


# Targets run in the child: module level, so that the child can import them.


def _echo(channel: Any, *values: Any) -> tuple[Any, ...]:
    for value in values:
        channel.event(value)
    return values


def _environment(channel: Any, name: str) -> tuple[str | None, str]:
    return os.environ.get(name), os.getcwd()


def _refuse(channel: Any) -> None:
    raise RecipeError("the recipe is wrong", problems=["first problem", "second problem"])


def _log(channel: Any) -> None:
    logging.getLogger("kalla.test.child").warning("hello from pid %d", os.getpid())


def _segfault(channel: Any) -> None:
    ctypes.string_at(0)  # reads address 0: SIGSEGV


def _exit(channel: Any, code: int) -> None:
    os._exit(code)


def _allocate(channel: Any, size: int) -> int:
    return len(bytearray(size))


def _wait_for_cancel(channel: Any) -> None:
    channel.event("waiting")
    channel.cancel.wait(30)
    raise JobCancelled(channel.cancel.reason)


def _ignore_cancel(channel: Any) -> None:
    channel.event("busy")
    time.sleep(60)  # a native call that never checks would behave the same


def test_result_and_events_cross_in_order() -> None:
    events: list[Any] = []
    result = run_in_child(
        _echo, 1, "two", {"three": 3}, settings=SETTINGS, what="the child", on_event=events.append
    )
    assert result == (1, "two", {"three": 3})
    assert events == [1, "two", {"three": 3}]


def test_the_child_sees_the_environment_of_the_moment(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    run_in_child(_echo, settings=SETTINGS, what="the child")  # the forkserver is running now
    monkeypatch.setenv("KALLA_TEST_LATE_SECRET", "set-after-the-forkserver-started")
    monkeypatch.chdir(tmp_path)
    assert run_in_child(
        _environment, "KALLA_TEST_LATE_SECRET", settings=SETTINGS, what="the child"
    ) == ("set-after-the-forkserver-started", str(tmp_path))


def test_a_kalla_error_crosses_with_its_problems() -> None:
    with pytest.raises(RecipeError) as caught:
        run_in_child(_refuse, settings=SETTINGS, what="the child")
    assert caught.value.problems == ("first problem", "second problem")
    assert caught.value.status == 422


def test_log_records_reach_the_parent(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        run_in_child(_log, settings=SETTINGS, what="the child")
    record = next(r for r in caplog.records if r.name == "kalla.test.child")
    assert record.levelno == logging.WARNING
    assert record.getMessage().startswith("hello from pid ")
    assert record.getMessage() != f"hello from pid {os.getpid()}"


def test_a_segfault_is_named_with_what_it_was_doing() -> None:
    with pytest.raises(JobCrashedError) as caught:
        run_in_child(
            _segfault, settings=SETTINGS, what="the job's process", doing=lambda: "while matching"
        )
    assert caught.value.message == (
        "the job's process was killed by signal 11 (SIGSEGV) while matching"
    )


def test_an_exit_without_an_answer_is_named() -> None:
    with pytest.raises(JobCrashedError, match="exited with status 3 without reporting its end"):
        run_in_child(_exit, 3, settings=SETTINGS, what="the child")


def test_an_allocation_past_the_cap_names_the_limit() -> None:
    assert run_in_child(_allocate, 64 * 1024**2, settings=SETTINGS, what="the child") > 0
    with pytest.raises(ResourceLimitError) as caught:
        run_in_child(_allocate, 2 * 1024**3, settings=SETTINGS, what="the child")
    assert caught.value.message.startswith(
        "the child exceeded the memory limit of 1 GiB "
        "(KALLA_MEMORY_LIMIT 256 MiB + KALLA_JOB_MEMORY_HEADROOM 768 MiB)"
    )


def test_a_stop_reaches_a_cooperative_child_and_its_reason_wins() -> None:
    """The child ends with its own JobCancelled; the caller gets the stop it asked for."""
    seen: list[Any] = []
    stop = JobTimeoutError("the job ran past its time limit")
    started = time.monotonic()
    with pytest.raises(JobTimeoutError) as caught:
        run_in_child(
            _wait_for_cancel,
            settings=SETTINGS,
            what="the child",
            on_event=seen.append,
            should_stop=lambda: stop if seen else None,
        )
    assert caught.value is stop
    assert time.monotonic() - started < STOP_GRACE  # it stopped by itself, not killed


def test_a_child_that_ignores_a_stop_is_killed_after_the_grace_period() -> None:
    seen: list[Any] = []
    stop = JobCancelled("run cancelled on request")
    started = time.monotonic()
    with pytest.raises(JobCancelled) as caught:
        run_in_child(
            _ignore_cancel,
            settings=SETTINGS,
            what="the child",
            on_event=seen.append,
            should_stop=lambda: stop if seen else None,
        )
    assert caught.value is stop
    assert STOP_GRACE <= time.monotonic() - started < STOP_GRACE + 10
