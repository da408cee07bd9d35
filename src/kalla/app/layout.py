"""Which source each column of a run's match output came from: the drill-down from a
matched row to the two source records it pairs.

A source's full columns are those of its unmatched output (full source rows, less the two
explanation columns a run adds when it explains its breaks). A column of
the match output belongs to a source when it is named ``<alias>.<column>`` or
``<alias>_<column>`` (how the engine names duplicates and aliased keys), or plainly
``<column>`` when only that source has such a column.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
from pydantic import BaseModel, Field


class SideColumn(BaseModel):
    name: str = Field(description="the column in the source")
    matched_as: str | None = Field(description="its name in the match output, if carried")


class SideLayout(BaseModel):
    alias: str
    side: str = Field(description="left | right")
    primary_key: list[str]
    columns: list[SideColumn]


class MatchLayout(BaseModel):
    sides: list[SideLayout]
    other: list[str] = Field(description="match output columns of neither source (computed)")


def _owner(name: str, alias: str, mine: list[str], theirs: list[str]) -> str | None:
    for prefix in (f"{alias}.", f"{alias}_"):
        if name.startswith(prefix) and name[len(prefix) :] in mine:
            return name[len(prefix) :]
    if name in mine and name not in theirs:
        return name
    return None


def match_layout(output_path: str, manifest: dict[str, Any] | None) -> MatchLayout:
    out = Path(output_path)
    inputs = (manifest or {}).get("inputs") or []
    matched = out / "matched.parquet"
    if len(inputs) != 2 or not matched.is_file():
        return MatchLayout(sides=[], other=[])
    files = ("unmatched_left.parquet", "unmatched_right.parquet")
    schemas = [pq.read_schema(out / f).names if (out / f).is_file() else [] for f in files]
    if (manifest or {}).get("breaks_explained"):  # the last two: nearest_key, nearest_reason
        schemas = [names[:-2] for names in schemas]
    matched_names = pq.read_schema(matched).names
    claimed: set[str] = set()
    sides = []
    for i, (source, side) in enumerate(zip(inputs, ("left", "right"), strict=True)):
        alias = str(source.get("alias", side))
        mine, theirs = schemas[i], schemas[1 - i]
        carried: dict[str, str] = {}
        for name in matched_names:
            column = _owner(name, alias, mine, theirs)
            if column is not None and column not in carried:
                carried[column] = name
                claimed.add(name)
        sides.append(
            SideLayout(
                alias=alias,
                side=side,
                primary_key=[str(k) for k in source.get("primary_key") or []],
                columns=[SideColumn(name=c, matched_as=carried.get(c)) for c in mine],
            )
        )
    return MatchLayout(sides=sides, other=[n for n in matched_names if n not in claimed])
