"""``create_app()``: the web UI and the REST API over the metadata store, with run dispatch
and recovery. Errors answer JSON on ``/api`` and a page naming the cause everywhere else."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio.to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from fastapi.staticfiles import StaticFiles
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException

from kalla import __version__
from kalla.app import openapi
from kalla.app.api import ROUTERS
from kalla.app.deps import AppState
from kalla.app.dispatch import make_dispatcher
from kalla.app.lifecycle import Lifecycle
from kalla.app.storage import Database
from kalla.app.web import pages
from kalla.app.web.render import HERE as WEB_DIR
from kalla.app.web.render import LoginRequired, render_error, wants_page
from kalla.body_limit import BodyLimit
from kalla.errors import ConfigError, KallaError
from kalla.extras import missing_extra
from kalla.recipe.parse import describe_errors
from kalla.settings import Settings, get_settings

log = logging.getLogger("kalla.app")


def check_settings(settings: Settings) -> None:
    """Refuse configurations that cannot work: single mode without a callback secret."""
    if settings.worker_url and settings.callback_secret is None:
        raise ConfigError(
            "WORKER_URL is set (single mode) but KALLA_CALLBACK_SECRET is not: the app could "
            "not verify the worker's callbacks; set the same secret on both"
        )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The app. Migrations run, and runs left in flight are settled, when it starts."""
    settings = settings or get_settings()
    check_settings(settings)
    db = Database(settings.database_url)
    lifecycle = Lifecycle(db)
    dispatcher = make_dispatcher(db, lifecycle, settings)
    state = AppState(settings=settings, db=db, lifecycle=lifecycle, dispatcher=dispatcher)
    lifecycle.listeners.append(state.events.publish)  # live progress streams wake at once

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await anyio.to_thread.run_sync(db.migrate)
        await anyio.to_thread.run_sync(dispatcher.start)
        log.info("kalla app ready (%s mode)", dispatcher.mode)
        try:
            yield
        finally:
            await anyio.to_thread.run_sync(dispatcher.stop)
            db.dispose()

    app = FastAPI(
        title="Kalla",
        version=__version__,
        summary="Reconciliation app: sources, recipes, runs and their results (docs/app.md).",
        lifespan=lifespan,
    )
    app.state.kalla = state
    app.add_middleware(
        BodyLimit, what="files go in a multipart upload (/api/runs)", exempt_multipart=True
    )
    for router in ROUTERS:
        app.include_router(router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=WEB_DIR / "static"), name="static")
    openapi.install(app)

    def page_error(request: Request, status: int, message: str, problems: Any = ()) -> Response:
        return render_error(request, settings, status=status, message=message, problems=problems)

    @app.exception_handler(LoginRequired)
    async def login_required(request: Request, exc: LoginRequired) -> Response:
        return pages.login_redirect(exc.next_path)

    @app.exception_handler(KallaError)
    async def kalla_error(request: Request, exc: KallaError) -> Response:
        if exc.status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, exc.message)
        if wants_page(request):
            return page_error(request, exc.status, exc.message, exc.problems)
        return JSONResponse(exc.to_dict(), status_code=exc.status, headers=exc.headers())

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> Response:
        problems = describe_errors(exc.errors())
        if wants_page(request):
            return page_error(request, 422, "the address has a value that is not valid", problems)
        body = {
            "error": f"invalid request ({len(problems)} problem(s))",
            "kind": "request",
            "problems": problems,
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if wants_page(request):
            message = "there is no page at this address" if exc.status_code == 404 else ""
            return page_error(request, exc.status_code, message or str(exc.detail))
        body = {"error": str(exc.detail), "kind": "http", "problems": []}
        return JSONResponse(body, status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(DataError)
    async def unstorable(request: Request, exc: DataError) -> JSONResponse:
        # PostgreSQL refuses what SQLite stores: NUL characters in text, out-of-range numbers
        log.info("%s %s: value refused by the database", request.method, request.url.path)
        body = {
            "error": "a value in the request cannot be stored (text with NUL characters, "
            "or a number out of range)",
            "kind": "request",
            "problems": [],
        }
        return JSONResponse(body, status_code=422)

    @app.exception_handler(Exception)
    async def internal_error(request: Request, exc: Exception) -> Response:
        missing = missing_extra(exc)  # an extra that is not installed: 501 naming it
        if missing is not None:
            return await kalla_error(request, missing)
        log.error("%s %s failed: %s", request.method, request.url.path, type(exc).__name__)
        if wants_page(request):
            return page_error(request, 500, "an internal error stopped this page; see the app log")
        body = {"error": "internal error; see the app log", "kind": "internal", "problems": []}
        return JSONResponse(body, status_code=500)

    @app.get("/health", response_class=PlainTextResponse, tags=["health"])
    def health() -> str:
        """200 while the app is up."""
        return "ok\n"

    return app
