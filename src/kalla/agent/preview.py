"""Run a recipe on the real sources through the normal engine, and say what came out.

``preview(recipe, context)`` calls ``kalla.pipeline.run`` (the entry point of ``kalla run``
and of every job) on the session's staged sources: whole when both have at most
``context.preview_rows`` rows, otherwise on a key-consistent sample (rows kept by a hash of
their normalised join key, so pairs stay together), and says which. It answers with
counts, match rates by count and by amount, per-pass statistics and, for a few unmatched
records per side, the nearest candidate on the other side and why it missed.
"""

from __future__ import annotations

import hashlib
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from kalla import pipeline
from kalla.agent.columns import Kind, as_days, as_float, column_info
from kalla.agent.context import ToolContext
from kalla.agent.normalize import ALNUM, DIGITS
from kalla.agent.profile import jsonable
from kalla.agent.sqlinfo import SqlLink, links
from kalla.engine import RunSummary
from kalla.recipe import Recipe
from kalla.settings import get_settings

EXAMPLES = 5
_SHOWN_COLUMNS = 8


@dataclass(frozen=True)
class _Links:
    keys: list[SqlLink]
    amount: SqlLink | None
    date: SqlLink | None


def _classify(found: list[SqlLink], left: pa.Table, right: pa.Table) -> _Links:
    keys, amount, date = [], None, None
    for link in found:
        li = column_info(link.left, left.column(link.left))
        ri = column_info(link.right, right.column(link.right))
        if li.is_date and ri.is_date:
            date = date or link
        elif li.is_measure and ri.is_measure:
            amount = amount or link
        elif li.kind in (Kind.TEXT, Kind.INTEGER) and ri.kind in (Kind.TEXT, Kind.INTEGER):
            keys.append(link)
    return _Links(keys, amount, date)


def _first_measure(table: pa.Table) -> str | None:
    for name in table.column_names:
        if column_info(name, table.column(name)).is_measure:
            return name
    return None


# --- key-consistent sample -------------------------------------------------------------------


def _bucket(values: pa.ChunkedArray, buckets: int) -> np.ndarray:
    """A stable bucket per value (the same on both sides for equal normalised keys)."""
    keys = DIGITS.apply(values)
    fallback = ALNUM.apply(values)
    keys = pc.coalesce(keys, fallback)
    out = np.full(len(keys), -1, dtype=np.int64)
    for i, value in enumerate(keys.to_pylist()):
        if value is not None:
            digest = hashlib.blake2b(value.encode(), digest_size=8).digest()
            out[i] = int.from_bytes(digest, "little") % buckets
    return out


def _sample_pair(
    left: pa.Table, right: pa.Table, found: _Links, limit: int
) -> tuple[pa.Table, pa.Table, str]:
    """Both sides cut to about ``limit`` rows, keeping the rows whose key falls in the same
    buckets (by the first key comparison, else the amount) so that pairs stay together."""
    buckets = max(2, int(np.ceil(max(left.num_rows, right.num_rows) / limit)))
    if found.keys:
        lb = _bucket(left.column(found.keys[0].left), buckets)
        rb = _bucket(right.column(found.keys[0].right), buckets)
        key = f"'{found.keys[0].left}' / '{found.keys[0].right}'"
        how = f"rows whose {key} key falls in 1 of {buckets} hash buckets"
    elif found.amount is not None:
        lb = _amount_bucket(left.column(found.amount.left), buckets)
        rb = _amount_bucket(right.column(found.amount.right), buckets)
        how = f"rows whose whole-unit amount falls in 1 of {buckets} buckets"
    else:
        rng = np.random.default_rng(7)
        lb = rng.integers(0, buckets, left.num_rows)
        rb = rng.integers(0, buckets, right.num_rows)
        how = f"a random 1/{buckets} of each side"
    return (
        left.filter(pa.array(lb == 0)),
        right.filter(pa.array(rb == 0)),
        how,
    )


def _amount_bucket(values: pa.ChunkedArray, buckets: int) -> np.ndarray:
    units = np.abs(np.floor(as_float(values).to_numpy(zero_copy_only=False)))
    units = np.nan_to_num(units, nan=-1.0)
    return np.where(units >= 0, units.astype(np.int64) % buckets, -1)


# --- the run ---------------------------------------------------------------------------------


def _run(recipe: Recipe, paths: Mapping[str, str], work_dir: Path) -> tuple[RunSummary, Path]:
    out = work_dir / "previews" / uuid.uuid4().hex[:12]
    left, right = pipeline.sources_from_recipe(recipe, paths)
    request = pipeline.RunRequest(
        spec=recipe,
        left=left,
        right=right,
        output_dir=out,
        recipe=recipe.to_dict(),
        staging_dir=work_dir / "preview-staging",
    )
    return pipeline.run(request, settings=get_settings()), out


def preview(recipe: Recipe, context: ToolContext) -> dict[str, Any]:
    """Run ``recipe`` on the session's sources and summarise the outcome (see module doc)."""
    la, ra = recipe.sources.left.alias, recipe.sources.right.alias
    left, right = context.table(la), context.table(ra)
    columns = {la: left.column_names, ra: right.column_names}
    found = _classify(links(recipe, columns), left, right)
    paths = {la: str(context.staged_path(la)), ra: str(context.staged_path(ra))}
    scope: dict[str, Any] = {
        "whole": True,
        "left_rows": left.num_rows,
        "right_rows": right.num_rows,
    }
    if max(left.num_rows, right.num_rows) > context.preview_rows:
        left, right, how = _sample_pair(left, right, found, context.preview_rows)
        sample_dir = context.work_dir / "preview-sample"
        sample_dir.mkdir(parents=True, exist_ok=True)
        for alias, table in ((la, left), (ra, right)):
            path = sample_dir / f"{alias}.parquet"
            pq.write_table(table, path)
            paths[alias] = str(path)
        scope = {
            "whole": False,
            "sample": how,
            "left_rows": left.num_rows,
            "right_rows": right.num_rows,
            "left_rows_total": scope["left_rows"],
            "right_rows_total": scope["right_rows"],
        }
    summary, out = _run(recipe, paths, context.work_dir)
    try:
        return _report(recipe, summary, out, left, right, found, scope, context.share_rows)
    finally:
        shutil.rmtree(out, ignore_errors=True)


def _amount_share(table: pa.Table, unmatched: pa.Table, column: str | None) -> float | None:
    if column is None or column not in table.column_names:
        return None
    total = float(pc.sum(pc.abs(as_float(table.column(column)))).as_py() or 0.0)
    if total == 0:
        return None
    left_over = float(pc.sum(pc.abs(as_float(unmatched.column(column)))).as_py() or 0.0)
    return round(1 - left_over / total, 4)


def _report(
    recipe: Recipe,
    summary: RunSummary,
    out: Path,
    left: pa.Table,
    right: pa.Table,
    found: _Links,
    scope: dict[str, Any],
    share_rows: bool,
) -> dict[str, Any]:
    unmatched_left = pq.read_table(out / "unmatched_left.parquet")
    unmatched_right = pq.read_table(out / "unmatched_right.parquet")
    left_total, right_total = summary.control_totals
    amount_left = found.amount.left if found.amount else _first_measure(left)
    amount_right = found.amount.right if found.amount else _first_measure(right)
    rates = {
        "left_by_count": round(left_total.matched_keys / left_total.input_rows, 4)
        if left_total.input_rows
        else None,
        "right_by_count": round(right_total.matched_keys / right_total.input_rows, 4)
        if right_total.input_rows
        else None,
        "left_by_amount": _amount_share(left, unmatched_left, amount_left),
        "right_by_amount": _amount_share(right, unmatched_right, amount_right),
    }
    misses = _Misses(recipe, left, right, found, share_rows)
    return {
        "recipe_id": recipe.recipe_id,
        "scope": scope,
        "counts": {
            "left_rows": summary.left_rows,
            "right_rows": summary.right_rows,
            "matched_rows": summary.matched_count,
            "matched_left": left_total.matched_keys,
            "matched_right": right_total.matched_keys,
            "unmatched_left": summary.unmatched_left_count,
            "unmatched_right": summary.unmatched_right_count,
            "ambiguous_left_keys": summary.ambiguous_left_count,
            "ambiguous_right_keys": summary.ambiguous_right_count,
            "ambiguous_rows": summary.ambiguous_count,
        },
        "match_rate": rates,
        "amount_columns": {"left": amount_left, "right": amount_right},
        "passes": [
            {
                "name": p.name,
                "candidates": p.candidate_count,
                "matched": p.matched_count,
                "ambiguous_left_keys": p.ambiguous_left_count,
                "ambiguous_right_keys": p.ambiguous_right_count,
            }
            for p in summary.passes
        ],
        "control_totals_hold": all(t.holds for t in summary.control_totals),
        "unmatched_examples": {
            "left": misses.explain(unmatched_left, side="left"),
            "right": misses.explain(unmatched_right, side="right"),
        },
    }


# --- why a record did not match --------------------------------------------------------------


class _Misses:
    """The nearest candidate on the other side of an unmatched record, and why it missed."""

    def __init__(
        self, recipe: Recipe, left: pa.Table, right: pa.Table, found: _Links, share_rows: bool
    ) -> None:
        self.recipe = recipe
        self.tables = {"left": left, "right": right}
        self.found = found
        self.share_rows = share_rows
        self.keys = {
            "left": list(recipe.sources.left.primary_key),
            "right": list(recipe.sources.right.primary_key),
        }
        self._index: dict[tuple[str, str], dict[Any, list[int]]] = {}

    def _column(self, side: str, link: SqlLink) -> str:
        return link.left if side == "left" else link.right

    def _lookup(self, side: str, column: str, how: str) -> dict[Any, list[int]]:
        """Value (normalised for keys, whole cents for amounts) → rows of ``side``."""
        cache = (side, f"{column}:{how}")
        if cache not in self._index:
            values = self._values(self.tables[side].column(column), how)
            index: dict[Any, list[int]] = {}
            for row, value in enumerate(values):
                if value is not None:
                    index.setdefault(value, []).append(row)
            self._index[cache] = index
        return self._index[cache]

    @staticmethod
    def _values(column: pa.ChunkedArray, how: str) -> list[Any]:
        if how == "key":
            return ALNUM.apply(column).to_pylist()
        floats = as_float(column).to_numpy(zero_copy_only=False)
        return [None if np.isnan(v) else round(abs(float(v)) * 100) for v in floats]

    def explain(self, unmatched: pa.Table, *, side: str) -> list[dict[str, Any]]:
        other = "right" if side == "left" else "left"
        examples: list[tuple[bool, dict[str, Any]]] = []
        # Rows in key order (an output's row order is the engine's), those with a nearest
        # candidate first: "amounts differ by 5.00" says more than "nothing alike".
        keys = [k for k in self.keys[side] if k in unmatched.column_names]
        ordered = unmatched.sort_by([(k, "ascending") for k in keys]) if keys else unmatched
        for row in ordered.slice(0, EXAMPLES * 10).to_pylist():
            reason, candidate = self._reason(row, side, other)
            item: dict[str, Any] = {
                "key": {k: jsonable(row.get(k)) for k in self.keys[side]},
                "reason": reason,
            }
            if candidate is not None:
                item["nearest"] = {k: jsonable(candidate.get(k)) for k in self.keys[other]}
            if self.share_rows:
                shown = list(row.items())[:_SHOWN_COLUMNS]
                item["row"] = {k: jsonable(v) for k, v in shown}
            examples.append((candidate is None, item))
        examples.sort(key=lambda pair: pair[0])  # stable: key order kept within each group
        return [item for _, item in examples[:EXAMPLES]]

    def _reason(
        self, row: dict[str, Any], side: str, other: str
    ) -> tuple[str, dict[str, Any] | None]:
        table = self.tables[other]
        for link in self.found.keys:
            mine = self._column(side, link)
            theirs = self._column(other, link)
            key = self._values(pa.chunked_array([pa.array([row.get(mine)])]), "key")[0]
            rows = self._lookup(other, theirs, "key").get(key) if key is not None else None
            if rows:
                candidate = table.slice(rows[0], 1).to_pylist()[0]
                return self._differences(row, candidate, side, f"same '{mine}'"), candidate
        amount = self.found.amount
        if amount is not None:
            mine = self._column(side, amount)
            value = _number(row.get(mine))
            if value is not None:
                cents = round(abs(value) * 100)
                rows = self._lookup(other, self._column(other, amount), "amount").get(cents)
                if rows:
                    candidate = table.slice(rows[0], 1).to_pylist()[0]
                    what = (
                        "no record shares its reference; the same amount"
                        if self.found.keys
                        else "same amount"
                    )
                    return self._differences(row, candidate, side, what), candidate
        what = "reference or amount" if self.found.keys else "amount"
        return f"nothing on the other side has the same {what}", None

    def _differences(
        self, row: dict[str, Any], candidate: dict[str, Any], side: str, prefix: str
    ) -> str:
        parts = [prefix]
        amount, date = self.found.amount, self.found.date
        if amount is not None:
            mine, theirs = (
                row.get(self._column(side, amount)),
                candidate.get(self._column("right" if side == "left" else "left", amount)),
            )
            a, b = _number(mine), _number(theirs)
            if a is not None and b is not None:
                if abs(abs(a) - abs(b)) > 1e-9:
                    parts.append(f"amounts differ by {abs(abs(a) - abs(b)):.2f}")
                elif abs(a - b) > 1e-9 and abs(a + b) < 1e-9:
                    parts.append("amounts have opposite signs")
        if date is not None:
            other = "right" if side == "left" else "left"
            mine_d = _day(row.get(self._column(side, date)))
            theirs_d = _day(candidate.get(self._column(other, date)))
            if mine_d is not None and theirs_d is not None and mine_d != theirs_d:
                parts.append(f"dates {abs(theirs_d - mine_d)} days apart")
        if len(parts) == 1:
            parts.append("but it is matched to another record or fails another condition")
        return ", ".join(parts)


def _number(value: Any) -> float | None:
    """A cell as a number (amounts written as text included), or None."""
    if value is None:
        return None
    if isinstance(value, str):
        try:
            number = as_float(pa.chunked_array([pa.array([value])])).to_pylist()[0]
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
            return None
        return None if number is None else float(number)
    return float(value)


def _day(value: Any) -> int | None:
    if value is None:
        return None
    try:
        array = pa.chunked_array([pa.array([value])])
        info = column_info("d", array)
        if not info.is_date:
            return None
        return int(as_days(array, info).to_pylist()[0])
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, TypeError, ValueError):
        return None
