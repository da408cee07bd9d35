"""One router per resource."""

from kalla.app.api.agent import router as agent_router
from kalla.app.api.callbacks import router as callbacks_router
from kalla.app.api.overview import router as overview_router
from kalla.app.api.recipes import router as recipes_router
from kalla.app.api.results import router as results_router
from kalla.app.api.run_views import router as run_views_router
from kalla.app.api.runs import router as runs_router
from kalla.app.api.sources import router as sources_router

ROUTERS = (
    sources_router,
    recipes_router,
    runs_router,
    results_router,
    callbacks_router,
    run_views_router,
    overview_router,
    agent_router,
)

__all__ = ["ROUTERS"]
