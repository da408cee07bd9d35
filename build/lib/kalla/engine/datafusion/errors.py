"""DataFusion's failures as KallaErrors that name the step and the cause."""

from __future__ import annotations

import re
from collections.abc import Sequence

from kalla.errors import KallaError, ResourceLimitError, SqlError
from kalla.suggest import did_you_mean

_PREFIXES = ("DataFusion error: ", "Error during planning: ", "Execution error: ")
_TABLE_NOT_FOUND = re.compile(r"table '(?:[^']*\.)?([^'.]+)' not found")


def _size(n: int) -> str:
    return f"{n / 1024**3:.1f} GiB" if n >= 1024**3 else f"{n / 1024**2:.1f} MiB"


def is_memory_error(message: str) -> bool:
    return "Resources exhausted" in message or ("memory" in message.lower() and "limit" in message)


def sql_error(exc: BaseException, what: str, tables: Sequence[str]) -> SqlError:
    """DataFusion's message, trimmed, with an unknown table named plainly."""
    message = str(exc).strip()
    for prefix in _PREFIXES:
        message = message.replace(prefix, "")
    missing = _TABLE_NOT_FOUND.search(message)
    if missing:
        name = missing.group(1)
        return SqlError(
            f"{what}: unknown table '{name}'{did_you_mean(name, tables)}; "
            f"the sources are: {', '.join(tables)}"
        )
    first_line, _, rest = message.partition("\n")
    detail = first_line + (" " + " ".join(rest.split()) if rest else "")
    return SqlError(f"{what}: {detail}")


def translate(
    exc: BaseException, what: str, *, memory_limit: int, tables: Sequence[str]
) -> KallaError:
    """The KallaError for a DataFusion failure (it raises plain Exceptions)."""
    if isinstance(exc, KallaError):
        return exc
    message = str(exc)
    if is_memory_error(message):
        return ResourceLimitError(
            f"{what}: the run needs more than the memory limit of {_size(memory_limit)} even "
            "when spilling to disk; raise KALLA_MEMORY_LIMIT or reduce the data "
            f"(DataFusion: {message.splitlines()[0][:300]})"
        )
    return sql_error(exc, what, tables)
