"""One error root for Kalla.

Every error a user can cause is a ``KallaError`` subclass that carries the HTTP status an
API answers with and the exit code the CLI exits with, so a single handler per transport
turns any of them into a response. Messages name the cause and never contain credentials.
"""

from __future__ import annotations

from collections.abc import Sequence


class KallaError(Exception):
    """Root of every error Kalla raises on purpose."""

    status: int = 500
    exit_code: int = 1
    kind: str = "error"

    def __init__(self, message: str, *, problems: Sequence[str] = ()) -> None:
        self.problems: tuple[str, ...] = tuple(problems)
        if self.problems and len(self.problems) > 1:
            message = message + "\n" + "\n".join(f"  - {p}" for p in self.problems)
        elif self.problems and self.problems[0] not in message:
            message = f"{message}: {self.problems[0]}"
        super().__init__(message)

    @property
    def message(self) -> str:
        return str(self)

    def headers(self) -> dict[str, str]:
        """HTTP headers an API response for this error carries (Retry-After, …)."""
        return {}

    def to_dict(self) -> dict[str, object]:
        return {"error": self.message, "kind": self.kind, "problems": list(self.problems)}


class ConfigError(KallaError):
    """A setting is missing or unsafe (e.g. binding publicly without a token)."""

    status = 500
    exit_code = 78
    kind = "config"


class MissingDependencyError(KallaError):
    """An optional extra is not installed; the message says which one to install."""

    status = 501
    exit_code = 78
    kind = "missing_dependency"


class RecipeError(KallaError):
    """The recipe or job request is invalid; ``problems`` lists every problem found."""

    status = 422
    exit_code = 2
    kind = "recipe"


class SqlError(RecipeError):
    """``match_sql`` is refused (not read-only) or fails to plan/execute."""

    kind = "sql"


class TypeMismatchError(SqlError):
    """``match_sql`` compares columns of different types (text with a number, a zoned with a
    zone-less timestamp …) that only an implicit cast could compare; the CAST to write."""

    kind = "type_mismatch"


class CandidateLimitError(RecipeError):
    """A pass yields more candidate pairs than ``KALLA_MAX_CANDIDATES`` allows: its join
    condition does not narrow the pairs (``ON true``, a tolerance alone)."""

    kind = "candidate_limit"


class SourceError(KallaError):
    """A source cannot be read: missing file, malformed data, wrong schema."""

    status = 422
    exit_code = 3
    kind = "source"


class SourceUnavailableError(SourceError):
    """A source server is down, refuses the credentials or times out."""

    status = 502
    kind = "source_unavailable"


class DataIntegrityError(KallaError):
    """The data breaks an invariant: duplicate primary keys, control totals off."""

    status = 422
    exit_code = 4
    kind = "integrity"


class OutputError(KallaError):
    """Outputs cannot be written (target exists, path escapes its root, disk full)."""

    status = 409
    exit_code = 5
    kind = "output"


class ResourceLimitError(KallaError):
    """The run needs more memory than the configured limit allows, even spilling."""

    status = 507
    exit_code = 6
    kind = "memory_limit"


class EvidenceError(KallaError):
    """A run's evidence cannot be read or computed: no manifest, a manifest that is not a
    Kalla run's, a table whose column types have no canonical digest."""

    status = 422
    exit_code = 7
    kind = "evidence"


class NotFoundError(KallaError):
    """A run, job, recipe or source that the service does not know."""

    status = 404
    kind = "not_found"


class ConflictError(KallaError):
    """The request clashes with the current state (cancel a finished run, reuse a path)."""

    status = 409
    kind = "conflict"


class UnauthorizedError(KallaError):
    """Missing or wrong API token, unsigned or stale callback."""

    status = 401
    kind = "unauthorized"

    def headers(self) -> dict[str, str]:
        return {"WWW-Authenticate": "Bearer"}


class PayloadTooLargeError(KallaError):
    status = 413
    kind = "payload_too_large"


class UnavailableError(KallaError):
    """Cannot take the work now (queue full, shutting down, worker down); retry later."""

    status = 503
    exit_code = 75
    kind = "unavailable"

    def __init__(self, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(self.retry_after)} if self.retry_after else {}


class JobCancelled(KallaError):
    """The run was cancelled (on request or at shutdown) before it finished."""

    status = 409
    exit_code = 130
    kind = "cancelled"


class JobCrashedError(KallaError):
    """The process a job ran in died (a signal, an abort) without reporting its end."""

    status = 500
    exit_code = 70
    kind = "crashed"


class JobTimeoutError(KallaError):
    """The job ran past its time limit (``KALLA_JOB_TIMEOUT``) and was stopped."""

    status = 504
    exit_code = 124
    kind = "timeout"
