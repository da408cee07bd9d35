"""The breaks steps of a plan (``kalla.plan.breaks``) run on an executor.

Both sides' unmatched rows are written to work files first (each side's same-amount step
reads the other's), then, per side, the nearest record of each unmatched row, the output
with ``nearest_key`` and ``nearest_reason``, and the count of rows per reason.
"""

from __future__ import annotations

from pathlib import Path

from kalla.engine.executor import Executor, Written
from kalla.engine.summary import BreakReason, Breaks
from kalla.plan.breaks import SideBreaks
from kalla.plan.reconciliation import UnmatchedPlan


def write_unmatched_rows(
    executor: Executor, side: UnmatchedPlan, steps: SideBreaks, root: Path
) -> int:
    """The side's unmatched rows into its work file, registered for the next steps."""
    what = f"unmatched rows of '{side.alias}'"
    rows = executor.write(side.query, root / steps.work_file, what=what).rows
    executor.register_parquet(steps.work_table, root / steps.work_file, what=what)
    return rows


def explain_side(
    executor: Executor, side: UnmatchedPlan, steps: SideBreaks, root: Path
) -> tuple[Written, Breaks]:
    """Write the side's output with the explanation columns (its content digest summed as
    it is written); what was written and the reason counts."""
    what = f"explaining the unmatched rows of '{side.alias}'"
    executor.write(steps.best, root / steps.best_file, what=what)
    executor.register_parquet(steps.best_table, root / steps.best_file, what=what)
    written = executor.write(steps.output, root / side.file, what=what, digest=True)
    counts = executor.fetch(steps.counts, what=what).to_pylist()
    reasons = tuple(BreakReason(reason=str(r["reason"]), count=int(r["n"])) for r in counts)
    return written, Breaks(alias=side.alias, output=side.output, reasons=reasons)
