"""Errors only the HTTP API raises; like every Kalla error they carry their status."""

from __future__ import annotations

from kalla.errors import KallaError


class NotFoundError(KallaError):
    status = 404
    kind = "not_found"


class ConflictError(KallaError):
    status = 409
    kind = "conflict"


class UnauthorizedError(KallaError):
    status = 401
    kind = "unauthorized"


class PayloadTooLargeError(KallaError):
    status = 413
    kind = "payload_too_large"


class BadRequestError(KallaError):
    status = 422
    kind = "request"


class WorkerUnavailableError(KallaError):
    status = 502
    kind = "worker_unavailable"
