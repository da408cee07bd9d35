"""The memory cap of a job's process, and the error that names it."""

from __future__ import annotations

from kalla.errors import ResourceLimitError
from kalla.settings import Settings, format_size


def memory_cap(settings: Settings) -> int:
    """Bytes of data segment a child process may hold: DataFusion's pool plus headroom for
    the interpreter, Arrow buffers outside the pool and staging."""
    return settings.memory_limit + settings.job_memory_headroom


def out_of_memory(
    settings: Settings, who: str, doing: str = "", *, asked: int | None = None
) -> ResourceLimitError:
    """``who`` ("the job's process") went past the cap ``doing`` something ("while
    matching"), asking for ``asked`` bytes more when known."""
    where = f" {doing}" if doing else ""
    detail = f": an allocation of {format_size(asked)} failed" if asked else ""
    return ResourceLimitError(
        f"{who} exceeded the memory limit of {format_size(memory_cap(settings))} "
        f"(KALLA_MEMORY_LIMIT {format_size(settings.memory_limit)} + "
        f"KALLA_JOB_MEMORY_HEADROOM {format_size(settings.job_memory_headroom)})"
        f"{where}{detail}; raise KALLA_MEMORY_LIMIT or give it less data"
    )
