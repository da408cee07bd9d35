"""``/api/overview``: recent runs with their match rates, a trend per recipe, and the runs
that need attention (the overview page shows exactly this)."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from kalla.app.deps import SessionDep, StateDep, require_token
from kalla.app.overview import Overview, overview

router = APIRouter(prefix="/api/overview", tags=["overview"], dependencies=[Depends(require_token)])


@router.get("")
def read_overview(session: SessionDep, state: StateDep) -> Overview:
    """Totals, the latest runs (match rate by count and by amount), each recipe's match rate
    over its latest runs, and runs that failed, broke control totals or matched less than
    the recipe's previous run."""
    return overview(session, state.amounts)
