"""Errors only the app raises; the shared ones (NotFoundError, ConflictError, …) live in
kalla.errors, and like every Kalla error these carry their HTTP status."""

from __future__ import annotations

from kalla.errors import KallaError, UnavailableError


class BadRequestError(KallaError):
    status = 422
    kind = "request"


class WorkerUnavailableError(UnavailableError):
    status = 502
    kind = "worker_unavailable"
