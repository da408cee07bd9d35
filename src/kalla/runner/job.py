"""run_job(): one Job from start to finish, knowing nothing of transports or processes.

``JobRunner`` calls it inside the job's own child process (``runner/child.py``), where its
events go into the pipe back to the runner; tests and tools may call it in-process with any
``EventSink`` sink.

The flow is a short ordered list of steps, each a cancellation checkpoint:

1. confine   ``output_path`` under the output root, the staging dir under the staging root
2. check     the SQL is one read-only query over the two aliases; the output dir is free
3. stage     each source (``sources[0]`` is the left side, ``sources[1]`` the right)
4. match     the recipe, written atomically into the output dir (``kalla.pipeline.run``)
5. report    matching 1.0 with ``matched_count``, then the completion event

Any failure becomes one ``failed`` event whose message names the cause and never carries a
traceback or a credential. A cancelled or failed run leaves no outputs (the pipeline writes
into a temp dir renamed into place only on success).
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
import traceback
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from uuid import UUID

from kalla import pipeline
from kalla.connectors import redact_uri
from kalla.engine import RunSummary
from kalla.errors import JobCancelled, KallaError, OutputError, RecipeError, SqlError
from kalla.evidence.output import OUTPUT_NAMES, output_target_problems
from kalla.extras import missing_extra
from kalla.recipe.models import (
    CompletionCallback,
    ErrorCallback,
    Job,
    MatchingProgress,
    OutputPaths,
    StagingProgress,
)
from kalla.recipe.sqltext import check_read_only, referenced_tables
from kalla.runner.events import EventSink
from kalla.runner.limits import out_of_memory
from kalla.secrets import Scrubber
from kalla.settings import Settings
from kalla.suggest import did_you_mean

log = logging.getLogger("kalla.runner")

STAGING_STEP = 0.1  # staging progress events at least this far apart (plus 0.0 and 1.0) …
STAGING_INTERVAL = 2.0  # … or this many seconds apart, whichever comes first


class CancelToken(threading.Event):
    """A ``threading.Event`` that also says why it was set."""

    reason = "run cancelled"

    def cancel(self, reason: str) -> None:
        if not self.is_set():
            self.reason = reason
            self.set()


# --- 1. confine ---------------------------------------------------------------------------


def confine(path: str | Path, root: Path, *, what: str) -> Path:
    """``path`` (relative to ``root``, or absolute) resolved, provided it lies under ``root``.

    Symlinks are resolved before the check, so a link pointing out of the root is refused
    like ``..`` or an absolute path elsewhere. The root itself is refused too: a run's
    outputs always go into a directory of their own.
    """
    try:
        base = Path(root).resolve()
        candidate = Path(path)
        resolved = (candidate if candidate.is_absolute() else base / candidate).resolve()
    except (ValueError, OSError) as exc:  # embedded NUL, symlink loop
        raise RecipeError(f"{what} '{path}' is not a usable path: {exc}") from None
    if not resolved.is_relative_to(base):
        raise RecipeError(f"{what} '{path}': path escapes the output root ({base})")
    if resolved == base:
        raise RecipeError(f"{what} '{path}' must name a directory under the output root ({base})")
    return resolved


def output_dir_for(request: Job, settings: Settings) -> Path:
    """Where the run's outputs go: ``output_path`` confined under ``KALLA_OUTPUT_ROOT``."""
    return confine(request.output_path, settings.output_root, what="output_path")


def local_sources(request: Job) -> list[tuple[str, Path]]:
    """``(alias, path)`` of each source that is a local file, as written (not resolved)."""
    found = []
    for source in request.sources:
        scheme = urlsplit(source.uri).scheme.lower()
        if scheme not in ("", "file") and len(scheme) > 1:  # one letter: a Windows drive
            continue
        found.append(
            (source.alias, Path(urlsplit(source.uri).path if scheme == "file" else source.uri))
        )
    return found


def check_local_sources(request: Job, settings: Settings) -> None:
    """Local files a job names must lie under STAGING_PATH, KALLA_OUTPUT_ROOT or one of
    KALLA_SOURCE_ROOTS: a job API must not copy arbitrary files of this machine into outputs."""
    roots = [Path(r).resolve() for r in (settings.staging_path, settings.output_root)]
    roots += [Path(r).resolve() for r in settings.source_roots]
    problems = []
    by_alias = {s.alias: s for s in request.sources}
    for alias, path in local_sources(request):
        source = by_alias[alias]
        try:
            resolved = path.resolve()
        except (ValueError, OSError) as exc:
            problems.append(f"source '{source.alias}': '{source.uri}' is not a usable path: {exc}")
            continue
        if not any(resolved.is_relative_to(root) for root in roots):
            problems.append(
                f"source '{source.alias}': local file '{source.uri}' is outside the directories "
                "jobs may read (STAGING_PATH, KALLA_OUTPUT_ROOT, KALLA_SOURCE_ROOTS)"
            )
    if problems:
        raise RecipeError("the job names files it may not read", problems=problems)


def output_clashes(request: Job, output_dir: Path, settings: Settings) -> list[str]:
    """Why ``output_dir`` may not receive this job's outputs: it is, holds or lies inside
    one of its local sources, or it holds the staging directory (``evidence.output``)."""
    return output_target_problems(
        output_dir,
        [(f"source '{alias}'", path) for alias, path in local_sources(request)],
        overwrite=False,
        keep=[("the staging directory", Path(settings.staging_path))],
    )


def staging_dir_for(run_id: UUID, settings: Settings) -> Path:
    """The run's own scratch directory under ``STAGING_PATH`` (removed when the run ends)."""
    return confine(f"job-{run_id}", settings.staging_path, what="staging path")


def remove_partial_outputs(output_dir: Path) -> None:
    """Remove what an interrupted atomic write left next to ``output_dir`` (never the target).

    The pipeline writes into ``.<name>.tmp-<id>`` beside the target and renames it; a run
    stopped hard (process exit past the shutdown grace) can leave that temp dir behind.
    """
    for leftover in output_dir.parent.glob(f".{output_dir.name}.tmp-*"):
        shutil.rmtree(leftover, ignore_errors=True)


# --- 2. check -----------------------------------------------------------------------------


def check_sql(request: Job) -> None:
    """One read-only query per pass, reading only the two source aliases; all problems at once.

    The engine checks the same again (and DataFusion's SQLOptions refuse DDL/DML); checking
    here fails a bad job before any source is staged.
    """
    aliases = [s.alias for s in request.sources]
    problems: list[str] = []
    for index, step in enumerate(request.match_passes()):
        where = "match_sql" if request.passes is None else f"passes.{index}.match_sql"
        try:
            check_read_only(step.match_sql, where)
        except SqlError as exc:
            problems.append(exc.message)
            continue
        for name in sorted((referenced_tables(step.match_sql) or set()) - set(aliases)):
            problems.append(
                f"{where}: unknown table '{name}'{did_you_mean(name, aliases)}; "
                f"the sources are: {', '.join(aliases)}"
            )
    if problems:
        raise SqlError("the job's SQL cannot run", problems=problems)


def check_output_free(output_dir: Path) -> None:
    if output_dir.exists() and (not output_dir.is_dir() or any(output_dir.iterdir())):
        raise OutputError(
            f"output directory {output_dir} already exists and is not empty; "
            "give the run an output_path of its own"
        )


# --- 3-5. run -----------------------------------------------------------------------------


def _emit(action: Any, *args: Any) -> None:
    """A sink that fails must not fail the run (nor hide the run's own error)."""
    try:
        action(*args)
    except Exception:
        log.exception("job event sink failed")


class _Reporter:
    """Pipeline progress → EventSink, throttled; every call is a cancellation checkpoint."""

    def __init__(self, request: Job, events: EventSink, cancel: threading.Event | None) -> None:
        self.run_id = request.run_id
        self.right_alias = request.sources[1].alias
        self.events = events
        self.cancel = cancel
        self.last: dict[str, tuple[float, float]] = {}  # alias -> (fraction, monotonic time)
        self.matching_started = False

    def checkpoint(self) -> None:
        if self.cancel is not None and self.cancel.is_set():
            raise JobCancelled(_cancel_reason(self.cancel))

    def __call__(self, stage: str, alias: str | None, fraction: float) -> None:
        self.checkpoint()
        now = time.monotonic()
        if stage == "staging" and alias is not None:
            previous = self.last.get(alias)
            if previous is None or (
                fraction > previous[0]  # a reader's heartbeat repeats its fraction: no event
                and (
                    fraction >= 1.0
                    or fraction - previous[0] >= STAGING_STEP
                    or now - previous[1] >= STAGING_INTERVAL
                )
            ):
                self.last[alias] = (fraction, now)
                event = StagingProgress(run_id=self.run_id, progress=fraction, source=alias)
                _emit(self.events.staging, event)
            if alias == self.right_alias and fraction >= 1.0:
                self.start_matching()
        elif stage == "matching" and fraction < 1.0:
            # 1.0 is reported once the outputs are written, with the matched count
            self.start_matching()
            _emit(self.events.matching, MatchingProgress(run_id=self.run_id, progress=fraction))

    def start_matching(self) -> None:
        if not self.matching_started:
            self.matching_started = True
            _emit(self.events.matching, MatchingProgress(run_id=self.run_id, progress=0.0))


def _cancel_reason(cancel: threading.Event) -> str:
    return str(getattr(cancel, "reason", "run cancelled"))


def manifest_recipe(request: Job) -> dict[str, Any]:
    """What the manifest records of the job: everything that decides the result, no secrets."""
    data = request.to_dict()
    data.pop("callback_url", None)  # a JobRequest's transport field: not the job's
    data["sources"] = [
        {**source, "uri": redact_uri(source["uri"])} for source in data.get("sources", [])
    ]
    return data


def run_job(
    request: Job,
    events: EventSink,
    *,
    settings: Settings,
    cancel: threading.Event | None = None,
) -> RunSummary | None:
    """Run one job; report through ``events``; the summary on success, None otherwise.

    Never raises for a failed run: the failure is the ``failed`` event. ``cancel`` is checked
    between steps and at every progress report (cooperative: a long SQL pass finishes first).
    """
    scrub = Scrubber.for_uris(s.uri for s in request.sources)
    reporter = _Reporter(request, events, cancel)
    staging_dir: Path | None = None
    output_dir: Path | None = None
    try:
        output_dir = output_dir_for(request, settings)
        staging_dir = staging_dir_for(request.run_id, settings)
        check_sql(request)
        check_local_sources(request, settings)
        check_output_free(output_dir)
        reporter.checkpoint()
        left, right = (
            pipeline.SourceSpec(
                alias=source.alias,
                uri=source.uri,
                primary_key=tuple(request.primary_keys[source.alias]),
                filters=tuple(source.filters),
                format=source.format,
                allow_duplicate_keys=source.allow_duplicate_keys,
            )
            for source in request.sources
        )
        summary = pipeline.run(
            pipeline.RunRequest(
                spec=request,
                left=left,
                right=right,
                output_dir=output_dir,
                recipe=manifest_recipe(request),
                staging_dir=staging_dir,
            ),
            progress=reporter,
            settings=settings,
        )
    except Exception as exc:
        error = _as_kalla_error(exc, cancel, scrub, settings)
        if output_dir is not None and isinstance(error, JobCancelled):
            remove_partial_outputs(output_dir)
        log.warning("run %s %s: %s", request.run_id, error.kind, scrub(error.message))
        message = scrub(error.message)
        _emit(events.failed, ErrorCallback(run_id=request.run_id, error=message), error)
        return None
    finally:
        if staging_dir is not None:
            shutil.rmtree(staging_dir, ignore_errors=True)

    paths = summary.output_paths
    _emit(
        events.matching,
        MatchingProgress(run_id=request.run_id, progress=1.0, matched_count=summary.matched_count),
    )
    _emit(
        events.completed,
        CompletionCallback(
            run_id=request.run_id,
            matched_count=summary.matched_count,
            unmatched_left_count=summary.unmatched_left_count,
            unmatched_right_count=summary.unmatched_right_count,
            ambiguous_left_count=summary.ambiguous_left_count,
            ambiguous_right_count=summary.ambiguous_right_count,
            output_paths=OutputPaths.model_validate(
                {name: paths.get(name) for name in (*OUTPUT_NAMES, "manifest")}
            ),
        ),
    )
    return summary


def _as_kalla_error(
    exc: Exception, cancel: threading.Event | None, scrub: Scrubber, settings: Settings
) -> KallaError:
    """The run's failure as a KallaError whose message is safe to send anywhere."""
    if cancel is not None and cancel.is_set():
        # a connector may have wrapped the JobCancelled raised in its progress callback
        return exc if isinstance(exc, JobCancelled) else JobCancelled(_cancel_reason(cancel))
    if isinstance(exc, KallaError):
        return exc
    missing = missing_extra(exc)  # a driver that is not installed: name its extra
    if missing is not None:
        return missing
    if isinstance(exc, MemoryError):  # past the process's cap (Python or Arrow allocating)
        return out_of_memory(settings, "the job")
    # A bug, not a user error: the traceback goes to the service log (scrubbed), the caller
    # gets the exception's type and message only.
    log.error("unexpected error in a job:\n%s", scrub("".join(traceback.format_exception(exc))))
    detail = scrub(str(exc))[:500]
    return KallaError(f"internal error in the job: {type(exc).__name__}: {detail}")


# --- in the job's own process -------------------------------------------------------------


class _PipeEvents:
    """The child's EventSink: every event goes up the pipe to the runner, in order."""

    def __init__(self, channel: Any) -> None:
        self.channel = channel

    def staging(self, event: StagingProgress) -> None:
        self.channel.event(("staging", event))

    def matching(self, event: MatchingProgress) -> None:
        self.channel.event(("matching", event))

    def completed(self, event: CompletionCallback) -> None:
        self.channel.event(("completed", event))

    def failed(self, event: ErrorCallback, error: KallaError) -> None:
        self.channel.event(("failed", event, error))


def run_job_in_child(channel: Any, job: Job, settings: Settings) -> tuple[int, int] | None:
    """What ``JobRunner`` runs in the child (``child.run_in_child``): ``run_job`` with its
    events on the pipe; the rows staged per side (for metrics) when the job completed."""
    summary = run_job(job, _PipeEvents(channel), settings=settings, cancel=channel.cancel)
    return None if summary is None else (summary.left_rows, summary.right_rows)
