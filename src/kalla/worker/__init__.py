"""The job runner: ``run_job`` (no transport) and the transports that feed it.

``job.run_job`` runs one JobRequest and reports through a ``JobEvents`` sink; ``service``
queues jobs for it; ``http`` is seed 002's runner API (``kalla worker``); ``callbacks``
signs and delivers events (``verify_signature`` is what a receiver checks them with).
"""

from kalla.worker.job import CancelToken, JobCancelled, JobEvents, run_job

__all__ = ["CancelToken", "JobCancelled", "JobEvents", "run_job"]
