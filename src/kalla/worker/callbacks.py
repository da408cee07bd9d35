"""Callbacks: signed, retried, in order per run, only to allow-listed hosts.

Signature scheme (the receiver checks it with ``verify_signature``)::

    X-Kalla-Timestamp: <unix time in whole seconds when the attempt was sent>
    X-Kalla-Signature: sha256=<hex HMAC-SHA256(secret, "<timestamp>." + body)>

``body`` is the exact request body (UTF-8 JSON bytes, the seed 002 payload), so the receiver
must verify the raw bytes before parsing them. The timestamp is inside the signed text, so a
replay with a fresh timestamp fails the check and a captured request goes stale after
``max_age`` seconds. Each retry is signed afresh. Without ``KALLA_CALLBACK_SECRET`` requests
go unsigned (allowed only while the worker listens on loopback).

Other headers (not signed; for routing and de-duplication): ``X-Kalla-Event`` (``progress``,
``complete`` or ``error``), ``X-Kalla-Run-Id``, ``X-Kalla-Sequence`` (1, 2, … per run).

URL styles (``KALLA_CALLBACK_STYLE``, or a job's ``callback_style``): ``single`` posts every
event to ``callback_url`` (seed 002); ``per_event`` takes it as a base for ``/progress``,
``/complete`` and ``/error`` (seed 000, and the original build's listener); ``auto``, the
default, is ``single`` unless the URL's path ends in ``/api/worker``.

Delivery: each run has a channel whose thread posts its events one after another, so they
arrive in order. A failed attempt (connection error, timeout, HTTP 408/425/429/5xx) is
retried with exponential backoff and jitter until ``KALLA_CALLBACK_RETRY_SECONDS`` have
passed; other 3xx/4xx answers are final (redirects are not followed). Once an event has been
given up, the channel's later *progress* events are skipped (they would be stale), but its
final event (complete / error) still gets the whole retry budget.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import random
import threading
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol
from urllib.parse import urlsplit, urlunsplit
from uuid import UUID

import httpx

from kalla import logs
from kalla.connectors import redact_uri
from kalla.errors import RecipeError
from kalla.recipe.models import Frozen

log = logging.getLogger("kalla.worker.callbacks")

SIGNATURE_HEADER = "X-Kalla-Signature"
TIMESTAMP_HEADER = "X-Kalla-Timestamp"
EVENT_HEADER = "X-Kalla-Event"
RUN_ID_HEADER = "X-Kalla-Run-Id"
SEQUENCE_HEADER = "X-Kalla-Sequence"
EVENTS = ("progress", "complete", "error")
SEED000_BASE = "/api/worker"  # callback_url paths ending here get /progress, /complete, /error

BACKOFF_FIRST = 0.2  # seconds before the first retry; doubles each time …
BACKOFF_CAP = 10.0  # … up to this; each delay is jittered to 50-100 % of its value
RETRYABLE_STATUS = frozenset({408, 425, 429})


# --- signing ------------------------------------------------------------------------------


def _key(secret: str | bytes) -> bytes:
    return secret.encode("utf-8") if isinstance(secret, str) else secret


def sign(secret: str | bytes, body: bytes, timestamp: int | str) -> str:
    """``sha256=<hex>``: HMAC-SHA256 over ``b"<timestamp>." + body``."""
    message = str(timestamp).encode("ascii") + b"." + body
    return "sha256=" + hmac.new(_key(secret), message, hashlib.sha256).hexdigest()


def verify_signature(
    secret: str | bytes,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    max_age: float = 300.0,
    *,
    now: float | None = None,
) -> bool:
    """True when ``signature`` signs ``timestamp`` + ``body`` and the timestamp is fresh.

    ``max_age`` bounds the clock difference both ways (a replayed or a forward-dated
    request fails). Compares in constant time. Pass the raw request body, not re-encoded JSON.
    """
    if not timestamp or not signature or not timestamp.isdigit():
        return False
    current = time.time() if now is None else now
    if abs(current - int(timestamp)) > max_age:
        return False
    return hmac.compare_digest(sign(secret, body, timestamp), signature.strip())


# --- where callbacks may go ---------------------------------------------------------------


def host_allowed(host: str, allowed: Sequence[str]) -> bool:
    """Is ``host`` on the allow-list? Entries: a host name, ``*.suffix``, an IP, a CIDR, ``*``."""
    host = host.lower().rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in allowed:
        entry = raw.strip().lower().rstrip(".")
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                continue  # a host-name entry never matches an IP literal
        elif entry.startswith("*."):
            if host.endswith(entry[1:]):
                return True
        elif host == entry:
            return True
    return False


def check_callback_url(url: str, allowed: Sequence[str]) -> list[str]:
    """Problems with ``url`` as a callback target (empty when it may be used)."""
    shown = redact_uri(url)
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        return [f"callback_url '{shown}' is not a valid URL: {exc}"]
    if parts.scheme not in ("http", "https"):
        return [f"callback_url '{shown}' must be an http:// or https:// URL"]
    host = parts.hostname or ""
    if not host:
        return [f"callback_url '{shown}' has no host"]
    if not host_allowed(host, allowed):
        return [
            f"callback_url host '{host}' is not allowed; allowed hosts "
            f"(KALLA_CALLBACK_ALLOWED_HOSTS): {', '.join(allowed) or 'none'}"
        ]
    return []


def require_callback_url(url: str, allowed: Sequence[str]) -> None:
    problems = check_callback_url(url, allowed)
    if problems:
        raise RecipeError("callback_url refused", problems=problems)


CALLBACK_STYLES = ("auto", "single", "per_event")


def event_url(callback_url: str, event: str, style: str = "auto") -> str:
    """The URL one event goes to: ``callback_url`` itself, or ``{callback_url}/{event}``
    (``per_event``, or ``auto`` with a path ending in ``/api/worker``)."""
    parts = urlsplit(callback_url)
    path = parts.path.rstrip("/")
    if style == "single" or (style == "auto" and not path.endswith(SEED000_BASE)):
        return callback_url
    return urlunsplit(parts._replace(path=f"{path}/{event}"))


# --- delivery -----------------------------------------------------------------------------


class CallbackObserver(Protocol):
    """Counts what the sender does (the worker's Prometheus metrics implement it)."""

    def callback_attempt(self, event: str, result: str) -> None: ...

    def callback_gave_up(self, event: str) -> None: ...


@dataclass(frozen=True)
class _Delivery:
    event: str  # progress | complete | error
    url: str
    body: bytes
    sequence: int
    final: bool


class CallbackSender:
    """Owns the HTTP client and the channels; one sender per worker process."""

    def __init__(
        self,
        *,
        secret: str | bytes | None,
        retry_seconds: float,
        timeout: float,
        observer: CallbackObserver | None = None,
        client: httpx.Client | None = None,
    ) -> None:
        self.secret = secret
        self.retry_seconds = retry_seconds
        self.timeout = timeout
        self.observer = observer
        self.client = client or httpx.Client(
            timeout=timeout,
            follow_redirects=False,  # a redirect could lead off the allow-list
            trust_env=False,  # no proxy from the environment: callbacks go where they say
        )
        self.stopping = threading.Event()
        self._closing_by: float | None = None  # monotonic; set by close()
        self._lock = threading.Lock()
        self._channels: set[CallbackChannel] = set()

    def channel(self, run_id: UUID, callback_url: str, style: str = "auto") -> CallbackChannel:
        """A new channel for one run; check the URL with ``require_callback_url`` first."""
        return CallbackChannel(self, run_id, callback_url, style)

    def _register(self, channel: CallbackChannel, active: bool) -> None:
        with self._lock:
            if active:
                self._channels.add(channel)
            else:
                self._channels.discard(channel)

    def pending(self) -> int:
        with self._lock:
            return sum(c.stats()["pending"] for c in self._channels)

    def close(self, wait: float) -> None:
        """Let channels drain for at most ``wait`` seconds, then give up what is left.

        From the call on, no attempt may run past that deadline (each one's timeout is cut
        to it) and no retry waits beyond it; an attempt already in flight when it passes is
        abandoned to its daemon thread, so the caller (the worker's shutdown) is never held
        longer. A second call returns at once.
        """
        with self._lock:
            if self._closing_by is not None:
                return
            deadline = self._closing_by = time.monotonic() + wait
        while time.monotonic() < deadline:
            with self._lock:
                busy = [c for c in self._channels if c.busy()]
            if not busy:
                break
            self.stopping.wait(0.05)
        self.stopping.set()  # wakes every retry wait: each gives up at once
        with self._lock:
            channels = list(self._channels)
        threads = [c.thread for c in channels if c.thread is not None]
        for thread in threads:  # time to log their give-up, not to finish a post in flight
            thread.join(timeout=0.2)
        for channel in channels:
            pending = channel.stats()["pending"]
            if pending:  # an attempt still in flight: abandoned with its daemon thread
                log.warning(
                    "callbacks for run %s to %s: %d not delivered, given up: the worker shut "
                    "down while an attempt was unanswered",
                    channel.run_id,
                    redact_uri(channel.callback_url),
                    pending,
                    extra={"run_id": str(channel.run_id)},
                )
        if not any(t.is_alive() for t in threads):
            self.client.close()

    def _time_left(self) -> float | None:
        """Seconds until the close deadline (None while not closing)."""
        closing_by = self._closing_by
        return None if closing_by is None else closing_by - time.monotonic()

    def _observe(self, event: str, result: str) -> None:
        if self.observer is not None:
            self.observer.callback_attempt(event, result)

    def post(self, delivery: _Delivery, run_id: UUID) -> bool:
        """Deliver one event, retrying within the budget; True once the receiver took it."""
        deadline = time.monotonic() + self.retry_seconds
        attempt = 0
        reason = "not attempted"
        while True:
            left = self._time_left()
            if left is not None and (left <= 0 or self.stopping.is_set()):
                return self._give_up(delivery, run_id, attempt, f"{reason}; the worker shut down")
            attempt += 1
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                EVENT_HEADER: delivery.event,
                RUN_ID_HEADER: str(run_id),
                SEQUENCE_HEADER: str(delivery.sequence),
                TIMESTAMP_HEADER: str(timestamp),
            }
            if self.secret:
                headers[SIGNATURE_HEADER] = sign(self.secret, delivery.body, timestamp)
            retry_after = 0.0
            try:
                response = self.client.post(
                    delivery.url,
                    content=delivery.body,
                    headers=headers,
                    timeout=self.timeout if left is None else min(self.timeout, left),
                )
            except httpx.HTTPError as exc:
                retryable, reason = True, f"{type(exc).__name__}"
            else:
                status = response.status_code
                if 200 <= status < 300:
                    self._observe(delivery.event, "delivered")
                    return True
                retryable = status >= 500 or status in RETRYABLE_STATUS
                reason = f"HTTP {status}"
                retry_after = _retry_after(response.headers.get("Retry-After"))
            delay = max(retry_after, _backoff(attempt))
            if not retryable or time.monotonic() + delay > deadline:
                return self._give_up(delivery, run_id, attempt, reason)
            left = self._time_left()
            if left is not None and (left < delay or self.stopping.is_set()):
                return self._give_up(delivery, run_id, attempt, f"{reason}; the worker shut down")
            self._observe(delivery.event, "retry")
            self.stopping.wait(delay)  # set at the close deadline: the loop then gives up

    def _give_up(self, delivery: _Delivery, run_id: UUID, attempts: int, reason: str) -> bool:
        self._observe(delivery.event, "failed")
        log.warning(
            "callback %s #%d for run %s to %s given up after %d attempt(s): %s",
            delivery.event,
            delivery.sequence,
            run_id,
            redact_uri(delivery.url),
            attempts,
            reason,
        )
        if self.observer is not None:
            self.observer.callback_gave_up(delivery.event)
        return False


def _backoff(attempt: int) -> float:
    base = min(BACKOFF_CAP, BACKOFF_FIRST * 2 ** (attempt - 1))
    return base * random.uniform(0.5, 1.0)


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value or 0), 0.0), BACKOFF_CAP)
    except ValueError:
        return 0.0


class CallbackChannel:
    """One run's events, posted in order by a thread of its own (started on first send)."""

    def __init__(
        self, sender: CallbackSender, run_id: UUID, callback_url: str, style: str = "auto"
    ) -> None:
        assert style in CALLBACK_STYLES, style
        self.sender = sender
        self.run_id = run_id
        self.callback_url = callback_url
        self.style = style
        self.thread: threading.Thread | None = None
        self._cond = threading.Condition()
        self._queue: deque[_Delivery] = deque()
        self._sequence = 0
        self._closed = False
        self._in_progress = False
        self._gave_up = False
        self.delivered = 0
        self.failed = 0
        self.skipped = 0

    def send(self, event: str, payload: Frozen, *, final: bool = False) -> None:
        """Queue one event; ``final`` closes the channel (a complete or error event)."""
        assert event in EVENTS, event
        body = json.dumps(payload.to_dict(), separators=(",", ":")).encode("utf-8")
        start = None
        with self._cond:
            if self._closed:
                return
            self._sequence += 1
            url = event_url(self.callback_url, event, self.style)
            self._queue.append(_Delivery(event, url, body, self._sequence, final))
            self._closed = final
            if self.thread is None:
                start = self.thread = threading.Thread(
                    target=self._run, name=f"kalla-callbacks-{self.run_id}", daemon=True
                )
            self._cond.notify()
        if start is not None:  # outside our lock: the sender's lock is always taken first
            self.sender._register(self, True)
            start.start()

    def close(self) -> None:
        """No more events: the thread ends once the queue is empty."""
        with self._cond:
            self._closed = True
            self._cond.notify()

    def busy(self) -> bool:
        with self._cond:
            return bool(self._queue) or self._in_progress

    def stats(self) -> dict[str, int]:
        with self._cond:
            pending = len(self._queue) + int(self._in_progress)
            return {
                "delivered": self.delivered,
                "failed": self.failed + self.skipped,
                "pending": pending,
            }

    def _run(self) -> None:
        with logs.run_context(self.run_id):
            self._deliver()

    def _deliver(self) -> None:
        try:
            while True:
                with self._cond:
                    while not self._queue and not self._closed:
                        self._cond.wait()
                    if not self._queue:
                        return
                    delivery = self._queue.popleft()
                    if self._gave_up and not delivery.final:
                        self.skipped += 1
                        continue
                    self._in_progress = True
                ok = False
                try:
                    ok = self.sender.post(delivery, self.run_id)
                except Exception:  # a bug must not kill the channel silently
                    log.exception("callback delivery failed for run %s", self.run_id)
                with self._cond:
                    self._in_progress = False
                    if ok:
                        self.delivered += 1
                        self._gave_up = False
                    else:
                        self.failed += 1
                        self._gave_up = True
                    if delivery.final:
                        return
        finally:
            self.sender._register(self, False)
