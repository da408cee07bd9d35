"""Browser sessions: a signed cookie, and a CSRF token bound to it.

Scripts keep using ``Authorization: Bearer <KALLA_API_TOKEN>``. A browser signs in once on
``/login`` with the same token and then carries a session cookie (HttpOnly, SameSite=Strict,
signed with a key derived from the token, so changing the token signs everyone out). Every
form and every unsafe API call made with the cookie must also carry the session's CSRF
token (a form field, or the ``X-CSRF-Token`` header the page scripts send).

Without a token the app has no sign-in (it only listens on loopback), but forms still carry
a CSRF token, bound to an anonymous session, so another site cannot post them.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from itsdangerous import BadSignature, URLSafeTimedSerializer
from starlette.requests import Request
from starlette.responses import Response

from kalla.settings import Settings

COOKIE = "kalla_session"
CSRF_HEADER = "x-csrf-token"
CSRF_FIELD = "csrf_token"
MAX_AGE = 12 * 3600  # seconds a sign-in lasts
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_PROCESS_KEY = secrets.token_bytes(32)  # signs anonymous sessions when there is no token


@dataclass(frozen=True)
class WebSession:
    sid: str
    signed_in: bool
    csrf: str


def _key(settings: Settings) -> bytes:
    if settings.api_token is None:
        return _PROCESS_KEY
    token = settings.api_token.get_secret_value().encode()
    return hashlib.sha256(b"kalla-web-session\x00" + token).digest()


def _serializer(settings: Settings) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(_key(settings), salt="kalla-session")


def _csrf(settings: Settings, sid: str) -> str:
    return hmac.new(_key(settings), b"csrf\x00" + sid.encode(), hashlib.sha256).hexdigest()


def auth_required(settings: Settings) -> bool:
    return settings.api_token is not None


def read_session(request: Request, settings: Settings) -> WebSession | None:
    """The session the request's cookie carries, if it is valid and not expired."""
    cookie = request.cookies.get(COOKIE)
    if not cookie:
        return None
    try:
        data = _serializer(settings).loads(cookie, max_age=MAX_AGE)
    except BadSignature:
        return None
    if not isinstance(data, dict) or not isinstance(data.get("sid"), str):
        return None
    sid = data["sid"]
    return WebSession(sid=sid, signed_in=bool(data.get("in")), csrf=_csrf(settings, sid))


def new_session(settings: Settings, *, signed_in: bool) -> tuple[WebSession, str]:
    """A fresh session and its cookie value (a new id on sign-in: no session fixation)."""
    sid = secrets.token_urlsafe(18)
    cookie = _serializer(settings).dumps({"sid": sid, "in": signed_in})
    return WebSession(sid=sid, signed_in=signed_in, csrf=_csrf(settings, sid)), cookie


def set_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        COOKIE,
        value,
        max_age=MAX_AGE,
        httponly=True,
        samesite="strict",
        secure=request.url.scheme == "https",
        path="/",
    )


def token_matches(settings: Settings, given: str) -> bool:
    if settings.api_token is None:
        return False
    expected = settings.api_token.get_secret_value().encode()
    return hmac.compare_digest(given.encode(), expected)


def csrf_matches(session: WebSession, given: str | None) -> bool:
    return bool(given) and hmac.compare_digest(str(given), session.csrf)


def api_session_ok(request: Request, settings: Settings) -> bool:
    """An API call made by a signed-in page: the cookie, plus the CSRF header if unsafe."""
    session = read_session(request, settings)
    if session is None or not session.signed_in:
        return False
    if request.method in SAFE_METHODS:
        return True
    return csrf_matches(session, request.headers.get(CSRF_HEADER))
