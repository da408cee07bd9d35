"""Dependencies the routers share: app state, a DB session, the bearer-token guard."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.orm import Session

from kalla.app.dispatch import Dispatcher
from kalla.app.events import RunEvents
from kalla.app.lifecycle import Lifecycle
from kalla.app.overview import AmountRates
from kalla.app.storage import Database
from kalla.app.web.auth import api_session_ok
from kalla.errors import UnauthorizedError
from kalla.settings import Settings


@dataclass
class AppState:
    settings: Settings
    db: Database
    lifecycle: Lifecycle
    dispatcher: Dispatcher
    events: RunEvents = field(default_factory=RunEvents)
    amounts: AmountRates = field(default_factory=AmountRates)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.kalla
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with state.db.session() as session:
        yield session


# "function": commit before the response is sent, so a client never reads stale state
SessionDep = Annotated[Session, Depends(get_session, scope="function")]

_bearer = HTTPBearer(auto_error=False, description="KALLA_API_TOKEN, when the app has one")


def require_token(
    state: StateDep,
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """With ``KALLA_API_TOKEN`` set, every API call needs ``Authorization: Bearer <token>``
    (or, from the web UI, its signed-in session cookie plus the CSRF header when unsafe)."""
    token = state.settings.api_token
    if token is None:
        return
    if credentials is None and api_session_ok(request, state.settings):
        return
    given = credentials.credentials if credentials is not None else ""
    if not hmac.compare_digest(given.encode(), token.get_secret_value().encode()):
        raise UnauthorizedError("missing or wrong API token (send Authorization: Bearer <token>)")
