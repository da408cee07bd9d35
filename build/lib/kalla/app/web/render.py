"""Rendering pages: the Jinja2 environment, its filters, and the session every page carries.

Every page gets a browser session (anonymous without ``KALLA_API_TOKEN``) so its forms and
scripts have a CSRF token; with a token, a page without a signed-in session sends the
browser to ``/login``.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from urllib.parse import quote

from fastapi.templating import Jinja2Templates
from starlette.requests import Request
from starlette.responses import Response

from kalla import __version__
from kalla.app.web.auth import (
    CSRF_FIELD,
    WebSession,
    auth_required,
    new_session,
    read_session,
    set_cookie,
)
from kalla.settings import Settings

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=str(HERE / "templates"))


class LoginRequired(Exception):
    """A page asked for without a signed-in session (``KALLA_API_TOKEN`` is set)."""

    def __init__(self, next_path: str) -> None:
        super().__init__(next_path)
        self.next_path = next_path


def _pct(value: float | None, digits: int = 1) -> str:
    return "—" if value is None else f"{value * 100:.{digits}f}%"


def _num(value: Any) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, int):
        return f"{value:,}"
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        return str(value)
    return f"{number:,}"


def _when(value: datetime | str | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value)
        except ValueError:
            return value
    else:
        moment = value
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC")


def _seconds(value: float | None) -> str:
    if value is None:
        return "—"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    if value < 120:
        return f"{value:.1f} s"
    return f"{value / 60:.1f} min"


templates.env.filters.update(
    pct=_pct,
    num=_num,
    when=_when,
    seconds=_seconds,
    urlpart=lambda value: quote(str(value), safe=""),
    pretty=lambda value: json.dumps(value, indent=2, ensure_ascii=False, default=str),
)
templates.env.globals.update(version=__version__, csrf_field=CSRF_FIELD)


def page_session(request: Request, settings: Settings) -> WebSession:
    """The request's browser session, a new anonymous one, or a redirect to the login."""
    session = read_session(request, settings)
    if auth_required(settings):
        if session is None or not session.signed_in:
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            raise LoginRequired(target)
        return session
    if session is None:
        session, cookie = new_session(settings, signed_in=False)
        request.state.new_cookie = cookie
    return session


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    *,
    session: WebSession,
    settings: Settings,
    status: int = 200,
) -> Response:
    """A page, with the session's CSRF token for its forms and scripts."""
    context = {
        "csrf": session.csrf,
        "signed_in": session.signed_in,
        "auth": auth_required(settings),
        "path": request.url.path,
        **context,
    }
    response = templates.TemplateResponse(request, name, context, status_code=status)
    cookie = getattr(request.state, "new_cookie", None)
    if cookie:
        set_cookie(response, request, cookie)
    response.headers["Cache-Control"] = "no-store"
    return response


def wants_page(request: Request) -> bool:
    """A request for a page (not the API, a static file or the API docs)."""
    path = request.url.path
    return not path.startswith(("/api/", "/static/", "/docs", "/redoc", "/openapi")) and (
        path not in ("/api", "/health")
    )


def render_error(
    request: Request,
    settings: Settings,
    *,
    status: int,
    message: str,
    problems: list[str] | tuple[str, ...] = (),
) -> Response:
    """An error as a page that names the cause, in the app's layout (never a traceback)."""
    session = read_session(request, settings)
    if session is None:
        session, cookie = new_session(settings, signed_in=False)
        request.state.new_cookie = cookie
    titles = {401: "Not signed in", 403: "Refused", 404: "Not found", 409: "Not possible now"}
    title = titles.get(status, "Something went wrong" if status >= 500 else "Cannot do that")
    return render(
        request,
        "error.html",
        {"title": title, "message": message, "problems": list(problems), "status": status},
        session=session,
        settings=settings,
        status=status,
    )
