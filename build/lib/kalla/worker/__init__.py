"""Transports that feed ``kalla.runner.JobRunner``: ``http`` is seed 002's runner API
(``kalla worker``), ``callbacks`` signs and delivers its events (``verify_signature`` is what
a receiver checks them with), ``metrics`` is its Prometheus registry.

Nothing is imported here, so importing a submodule does not pull in the HTTP stack.
"""
