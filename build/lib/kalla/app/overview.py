"""The numbers on the overview page: match rates per run, a trend per recipe, and the runs
that need a look (failed, control totals off, match rate down on the recipe's previous run).

Counts come from each run's manifest. The amount rate sums one amount column per side (the
numeric column named like an amount) over the distinct matched records and the unmatched
ones, read from the run's Parquet outputs with pyarrow; outputs never change, so the result
is cached per run.
"""

from __future__ import annotations

import re
import threading
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from pydantic import BaseModel, Field
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kalla.app.lifecycle import IN_FLIGHT
from kalla.app.storage import RecipeVersionRow, RunRow, SourceRow
from kalla.runner import JobStatus as RunStatus

RECENT = 10
TREND_RUNS = 20  # latest completed runs per recipe in its trend
DROP = 0.001  # a fall in match rate larger than this (0.1 point) needs attention
_AMOUNT_NAME = re.compile(r"amount|amt|total|value|paid|balance|sum", re.IGNORECASE)


class RunRate(BaseModel):
    run_id: str
    recipe_id: str
    recipe_version: int
    status: str
    created_at: datetime
    records: int | None = Field(default=None, description="input rows, both sides")
    matched_records: int | None = Field(default=None, description="rows in a final match")
    rate_count: float | None = Field(default=None, description="matched records / records")
    rate_amount: float | None = Field(
        default=None, description="matched amount / amount, both sides (absolute values)"
    )
    amount_columns: dict[str, str] = Field(
        default_factory=dict, description="source alias → the amount column summed"
    )
    error: str | None = None


class TrendPoint(BaseModel):
    run_id: str
    created_at: datetime
    rate_count: float


class RecipeTrend(BaseModel):
    recipe_id: str
    name: str
    points: list[TrendPoint] = Field(description="oldest first")


class Attention(BaseModel):
    run_id: str
    recipe_id: str
    kind: str = Field(description="failed | control_totals | rate_drop")
    message: str


class OverviewTotals(BaseModel):
    recipes: int
    sources: int
    runs: int
    in_flight: int


class Overview(BaseModel):
    totals: OverviewTotals
    recent: list[RunRate]
    trends: list[RecipeTrend]
    attention: list[Attention]


# --- amounts --------------------------------------------------------------------------------


def _numeric(kind: pa.DataType) -> bool:
    return pa.types.is_decimal(kind) or pa.types.is_floating(kind) or pa.types.is_integer(kind)


def amount_column(schema: pa.Schema, keys: list[str]) -> str | None:
    """The side's amount: a numeric column named like one, else its first decimal column."""
    candidates = [f for f in schema if f.name not in keys and _numeric(f.type)]
    for fld in candidates:
        if _AMOUNT_NAME.search(fld.name):
            return fld.name
    decimals = [f.name for f in candidates if pa.types.is_decimal(f.type)]
    return decimals[0] if decimals else None


def _in_matched(matched: pa.Schema, alias: str, column: str, other: pa.Schema) -> str | None:
    """The name ``column`` of source ``alias`` has in the match output, if it is there."""
    for name in (f"{alias}.{column}", f"{alias}_{column}"):
        if name in matched.names:
            return name
    if column in matched.names and column not in other.names:
        return column  # a plain name is only this side's when the other side lacks it
    return None


def _abs_sum(table: pa.Table, column: str) -> float:
    total = pc.sum(pc.abs(table.column(column))).as_py()
    return float(total or 0)


def _side_amounts(
    out: Path, alias: str, keys: list[str], mine: str, other: str
) -> tuple[str, float, float] | None:
    """(column, matched amount, unmatched amount) of one side, or None when unknown."""
    unmatched = out / f"{mine}.parquet"
    matched = out / "matched.parquet"
    if not unmatched.is_file() or not matched.is_file():
        return None
    schema = pq.read_schema(unmatched)
    other_schema = pq.read_schema(out / f"{other}.parquet")
    column = amount_column(schema, keys)
    if column is None:
        return None
    matched_schema = pq.read_schema(matched)
    names = [_in_matched(matched_schema, alias, c, other_schema) for c in [*keys, column]]
    if any(n is None for n in names):
        return None
    wanted = [str(n) for n in names]
    table = pq.read_table(matched, columns=list(dict.fromkeys(wanted)))
    distinct = table.group_by(list(dict.fromkeys(wanted))).aggregate([])  # one per record
    left_over = _abs_sum(pq.read_table(unmatched, columns=[column]), column)
    return column, _abs_sum(distinct, wanted[-1]), left_over


class AmountRates:
    """Amount match rate per completed run, computed once from its outputs."""

    def __init__(self, size: int = 512) -> None:
        self._cache: OrderedDict[str, tuple[float | None, dict[str, str]]] = OrderedDict()
        self._lock = threading.Lock()
        self._size = size

    def get(self, run: RunRow) -> tuple[float | None, dict[str, str]]:
        with self._lock:
            if run.id in self._cache:
                return self._cache[run.id]
        result = self._compute(run)
        with self._lock:
            self._cache[run.id] = result
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return result

    @staticmethod
    def _compute(run: RunRow) -> tuple[float | None, dict[str, str]]:
        inputs = (run.manifest or {}).get("inputs") or []
        if len(inputs) != 2:
            return None, {}
        out = Path(run.output_path)
        matched = unmatched = 0.0
        columns: dict[str, str] = {}
        sides = (("unmatched_left", "unmatched_right"), ("unmatched_right", "unmatched_left"))
        try:
            for source, (mine, other) in zip(inputs, sides, strict=True):
                found = _side_amounts(
                    out, str(source["alias"]), list(source["primary_key"]), mine, other
                )
                if found is None:
                    continue
                columns[str(source["alias"])] = found[0]
                matched += found[1]
                unmatched += found[2]
        except (OSError, KeyError, TypeError, pa.ArrowException):
            return None, {}
        if not columns or matched + unmatched == 0:
            return None, columns
        return matched / (matched + unmatched), columns


# --- the overview ---------------------------------------------------------------------------


def count_rate(run: RunRow) -> tuple[int | None, int | None, float | None]:
    """(records, matched records, rate) from the run's manifest counts."""
    counts: dict[str, Any] = (run.manifest or {}).get("counts") or {}
    try:
        left, right = int(counts["left_rows"]), int(counts["right_rows"])
        unmatched = int(counts["unmatched_left_count"]) + int(counts["unmatched_right_count"])
    except (KeyError, TypeError, ValueError):
        return None, None, None
    records = left + right
    matched = records - unmatched
    return records, matched, (matched / records if records else None)


def run_rate(run: RunRow, amounts: AmountRates) -> RunRate:
    records, matched, rate = count_rate(run)
    rate_amount, columns = (
        amounts.get(run) if run.status == RunStatus.COMPLETED.value else (None, {})
    )
    return RunRate(
        run_id=run.id,
        recipe_id=run.recipe_id,
        recipe_version=run.recipe_version,
        status=run.status,
        created_at=run.created_at,
        records=records,
        matched_records=matched,
        rate_count=rate,
        rate_amount=rate_amount,
        amount_columns=columns,
        error=run.error,
    )


def _broken_totals(run: RunRow) -> list[str]:
    broken = []
    for total in (run.manifest or {}).get("control_totals") or []:
        try:
            if int(total["input_rows"]) != int(total["matched_keys"]) + int(
                total["unmatched_rows"]
            ):
                broken.append(str(total["alias"]))
        except (KeyError, TypeError, ValueError):
            continue
    return broken


def overview(session: Session, amounts: AmountRates) -> Overview:
    recent_rows = session.scalars(
        select(RunRow).order_by(RunRow.created_at.desc(), RunRow.id).limit(RECENT)
    ).all()
    completed = session.scalars(
        select(RunRow)
        .where(RunRow.status == RunStatus.COMPLETED.value)
        .order_by(RunRow.created_at.desc())
        .limit(500)
    ).all()
    by_recipe: dict[str, list[RunRow]] = {}
    for run in completed:
        runs = by_recipe.setdefault(run.recipe_id, [])
        if len(runs) < TREND_RUNS:
            runs.append(run)
    names = dict(
        session.execute(
            select(RecipeVersionRow.recipe_id, RecipeVersionRow.name).order_by(
                RecipeVersionRow.version
            )
        ).all()
    )  # the latest version's name wins
    trends = []
    attention: list[Attention] = []
    for recipe_id, runs in sorted(by_recipe.items()):
        points = [
            TrendPoint(run_id=r.id, created_at=r.created_at, rate_count=rate)
            for r in reversed(runs)
            if (rate := count_rate(r)[2]) is not None
        ]
        trends.append(
            RecipeTrend(recipe_id=recipe_id, name=names.get(recipe_id, recipe_id), points=points)
        )
        if len(points) >= 2 and points[-2].rate_count - points[-1].rate_count > DROP:
            before, now = points[-2].rate_count, points[-1].rate_count
            attention.append(
                Attention(
                    run_id=points[-1].run_id,
                    recipe_id=recipe_id,
                    kind="rate_drop",
                    message=f"match rate fell from {before:.1%} to {now:.1%} since the "
                    "recipe's previous run",
                )
            )
    for run in completed[:100]:
        broken = _broken_totals(run)
        if broken:
            attention.append(
                Attention(
                    run_id=run.id,
                    recipe_id=run.recipe_id,
                    kind="control_totals",
                    message=f"control totals do not add up for {', '.join(broken)}",
                )
            )
    failed = session.scalars(
        select(RunRow)
        .where(RunRow.status == RunStatus.FAILED.value)
        .order_by(RunRow.created_at.desc())
        .limit(RECENT)
    ).all()
    attention += [
        Attention(
            run_id=r.id,
            recipe_id=r.recipe_id,
            kind="failed",
            message=f"failed: {(r.error or 'no reason recorded')[:300]}",
        )
        for r in failed
    ]
    totals = OverviewTotals(
        recipes=session.scalar(select(func.count(func.distinct(RecipeVersionRow.recipe_id)))) or 0,
        sources=session.scalar(select(func.count()).select_from(SourceRow)) or 0,
        runs=session.scalar(select(func.count()).select_from(RunRow)) or 0,
        in_flight=session.scalar(
            select(func.count()).select_from(RunRow).where(RunRow.status.in_(IN_FLIGHT))
        )
        or 0,
    )
    return Overview(
        totals=totals,
        recent=[run_rate(r, amounts) for r in recent_rows],
        trends=trends,
        attention=attention,
    )
