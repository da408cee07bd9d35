"""How two columns' values overlap, raw and after each normalisation.

The overlap says whether a column pair can join two sources: ``coverage`` is the share of
rows on the better-covered side whose value exists on the other side, ``specificity`` how
close a join on it comes to one pair per row (1.0 for a key; near 0 for a currency code that
every row shares). Both are computed from value counts, never by materialising the join.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from kalla.agent.columns import ColumnInfo, Kind, as_days, as_float, column_info
from kalla.agent.normalize import LADDER
from kalla.agent.profile import jsonable

EXAMPLES = 3


@dataclass(frozen=True)
class Overlap:
    normalisation: str
    left_rows: int  # all rows, NULLs included
    right_rows: int
    left_distinct: int
    right_distinct: int
    shared_distinct: int
    left_rows_found: int  # left rows whose value exists on the right
    right_rows_found: int
    pairs: int  # rows an equi-join on these values produces
    examples: dict[str, list[Any]]

    @property
    def left_coverage(self) -> float:
        return self.left_rows_found / self.left_rows if self.left_rows else 0.0

    @property
    def right_coverage(self) -> float:
        return self.right_rows_found / self.right_rows if self.right_rows else 0.0

    @property
    def coverage(self) -> float:
        return max(self.left_coverage, self.right_coverage)

    @property
    def specificity(self) -> float:
        if not self.pairs:
            return 0.0
        return min(self.left_rows_found, self.right_rows_found) / self.pairs

    @property
    def score(self) -> float:
        return self.coverage * self.specificity

    def to_dict(self, *, share_rows: bool = True) -> dict[str, Any]:
        data: dict[str, Any] = {
            "normalisation": self.normalisation,
            "left_rows_found_share": round(self.left_coverage, 4),
            "right_rows_found_share": round(self.right_coverage, 4),
            "shared_distinct_values": self.shared_distinct,
            "left_distinct": self.left_distinct,
            "right_distinct": self.right_distinct,
            "join_pairs": self.pairs,
            "specificity": round(self.specificity, 4),
        }
        if share_rows:
            data["examples"] = self.examples
        return data


def value_counts(values: pa.ChunkedArray | pa.Array, side: str = "n") -> pa.Table:
    """Distinct non-NULL values ``v`` with how often each occurs (column ``side``)."""
    counted = pc.value_counts(values.drop_null())
    return pa.table(
        {"v": counted.field("values"), side: pc.cast(counted.field("counts"), pa.int64())}
    )


def value_overlap(
    name: str,
    left: pa.ChunkedArray | pa.Array,
    right: pa.ChunkedArray | pa.Array,
    *,
    examples: bool = False,
) -> Overlap:
    """Overlap of two arrays of comparable values (already normalised)."""
    return counts_overlap(
        name,
        value_counts(left, "l"),
        value_counts(right, "r"),
        len(left),
        len(right),
        examples=examples,
    )


def counts_overlap(
    name: str,
    lc: pa.Table,
    rc: pa.Table,
    left_rows: int,
    right_rows: int,
    *,
    examples: bool = False,
) -> Overlap:
    """Overlap from two ``value_counts`` tables (distinct values first, then their counts)."""
    lc = lc.rename_columns(["v", "l"])
    rc = rc.rename_columns(["v", "r"])
    if lc.schema.field("v").type != rc.schema.field("v").type:
        rc = rc.set_column(0, "v", pc.cast(rc["v"], lc.schema.field("v").type))
    shared = lc.join(rc, "v", join_type="inner")
    found_l = int(pc.sum(shared["l"]).as_py() or 0)
    found_r = int(pc.sum(shared["r"]).as_py() or 0)
    pairs = int(pc.sum(pc.multiply(shared["l"], shared["r"])).as_py() or 0)
    shown: dict[str, list[Any]] = {}
    if examples:
        shared_values = shared["v"].slice(0, EXAMPLES).to_pylist()
        only_l = lc.join(rc, "v", join_type="left anti")["v"].slice(0, EXAMPLES).to_pylist()
        only_r = rc.join(lc, "v", join_type="left anti")["v"].slice(0, EXAMPLES).to_pylist()
        shown = {
            "shared": [jsonable(v) for v in shared_values],
            "left_only": [jsonable(v) for v in only_l],
            "right_only": [jsonable(v) for v in only_r],
        }
    return Overlap(
        normalisation=name,
        left_rows=left_rows,
        right_rows=right_rows,
        left_distinct=lc.num_rows,
        right_distinct=rc.num_rows,
        shared_distinct=shared.num_rows,
        left_rows_found=found_l,
        right_rows_found=found_r,
        pairs=pairs,
        examples=shown,
    )


def _cents(values: pa.ChunkedArray) -> pa.ChunkedArray:
    """Amounts as whole cents (int64), so equal decimals compare equal whatever their scale."""
    return pc.cast(pc.round(pc.multiply(as_float(values), 100.0)), pa.int64())


def numeric_overlaps(
    left: pa.ChunkedArray, right: pa.ChunkedArray, *, examples: bool = False
) -> list[Overlap]:
    lv, rv = _cents(left), _cents(right)
    return [
        value_overlap("exact", lv, rv, examples=examples),
        value_overlap("negated", lv, pc.negate(rv), examples=examples),
        value_overlap("absolute", pc.abs(lv), pc.abs(rv), examples=examples),
        value_overlap(
            "rounded_to_units",
            pc.round(pc.divide(lv, 100.0)),
            pc.round(pc.divide(rv, 100.0)),
            examples=examples,
        ),
    ]


def text_overlaps(
    left: pa.ChunkedArray, right: pa.ChunkedArray, *, examples: bool = False
) -> list[Overlap]:
    return [value_overlap(n.name, n.apply(left), n.apply(right), examples=examples) for n in LADDER]


def compare(
    left: pa.ChunkedArray,
    left_info: ColumnInfo,
    right: pa.ChunkedArray,
    right_info: ColumnInfo,
    *,
    examples: bool = False,
) -> list[Overlap]:
    """Every applicable normalisation's overlap for one column pair."""
    if left_info.is_date and right_info.is_date:
        return [
            value_overlap(
                "same_day",
                as_days(left, left_info),
                as_days(right, right_info),
                examples=examples,
            )
        ]
    numeric = (Kind.INTEGER, Kind.DECIMAL, Kind.FLOAT)
    if left_info.is_measure and right_info.is_measure:
        return numeric_overlaps(left, right, examples=examples)
    if (
        left_info.kind in numeric
        and right_info.kind in numeric
        and not (left_info.kind is Kind.INTEGER and right_info.kind is Kind.INTEGER)
    ):
        return numeric_overlaps(left, right, examples=examples)
    return text_overlaps(left, right, examples=examples)


def best_overlap(overlaps: list[Overlap], *, slack: float = 0.02) -> Overlap:
    """The weakest normalisation whose score is within ``slack`` (relative) of the best one's.

    A stronger normalisation always links at least as many rows; it is only worth its
    risk of false links when it links clearly more."""
    top = max(o.score for o in overlaps)
    if top <= 0:
        return max(overlaps, key=lambda o: o.coverage)
    for o in overlaps:
        if o.score >= top * (1 - slack):
            return o
    return overlaps[0]


def compare_tables(
    left: pa.Table,
    left_column: str,
    right: pa.Table,
    right_column: str,
    *,
    share_rows: bool = True,
) -> dict[str, Any]:
    """The ``compare_columns`` answer: every normalisation's overlap and the recommended one."""
    li = column_info(left_column, left.column(left_column))
    ri = column_info(right_column, right.column(right_column))
    overlaps = compare(
        left.column(left_column), li, right.column(right_column), ri, examples=share_rows
    )
    best = best_overlap(overlaps)
    return {
        "left": {"column": left_column, "kind": li.kind.value, "rows": left.num_rows},
        "right": {"column": right_column, "kind": ri.kind.value, "rows": right.num_rows},
        "normalisations": [o.to_dict(share_rows=share_rows) for o in overlaps],
        "recommended": best.normalisation if best.score > 0 else None,
        "reading": _reading(best),
    }


def _reading(best: Overlap) -> str:
    if best.score == 0:
        return "no value in common under any normalisation: not a join key"
    share = f"{best.coverage:.0%} of rows find a partner ({best.normalisation})"
    if best.specificity >= 0.9:
        return f"{share}; about one partner each: a good join key"
    if best.specificity >= 0.5:
        return f"{share}; some values repeat: a key, with duplicates to resolve"
    return (
        f"{share}, but a join on it produces {best.pairs:,} pairs: values repeat too much "
        "to identify records on their own (a grouping column, not a key)"
    )
