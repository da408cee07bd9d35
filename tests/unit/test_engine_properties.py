"""Every engine against a brute-force pure-Python reference, on small random inputs.

Join keys with NULLs and duplicates, amounts at and around the tolerance: each engine must
find exactly the reference's matched pairs (for every cardinality and a two-pass
waterfall), exactly its unmatched records, and control totals that add up.
"""

from __future__ import annotations

from collections import Counter
from decimal import Decimal
from pathlib import Path
from tempfile import TemporaryDirectory

import pyarrow as pa
import pyarrow.parquet as pq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from kalla.engine import EngineOptions, SourceInput, make_executor, reconcile
from kalla.recipe import MatchSpec

Row = tuple[str | None, int]  # (join key, amount in cents)
TOLERANCE = 2  # cents
SELECT = "SELECT l.lid, r.rid, abs(l.amount - r.amount) AS diff FROM l JOIN r ON l.ref = r.ref"
TOLERANT = f"{SELECT} AND tolerance_match(l.amount, r.amount, 0.02)"
EXACT = f"{SELECT} AND l.amount = r.amount"

rows = st.lists(
    st.tuples(st.sampled_from([None, "a", "b", "c"]), st.integers(-250, 250)), max_size=10
)


def _write(path: Path, key: str, data: list[Row]) -> None:
    table = pa.table(
        {
            key: pa.array(range(len(data)), pa.int64()),
            "ref": pa.array([r for r, _ in data], pa.string()),
            "amount": pa.array([Decimal(c).scaleb(-2) for _, c in data], pa.decimal128(12, 2)),
        }
    )
    pq.write_table(table, path)


def _candidates(
    left: list[Row], right: list[Row], lids: set[int], rids: set[int], exact: bool
) -> list[tuple[int, int, int]]:
    """(diff, lid, rid) for every pair the SQL would return among the remaining records."""
    out = []
    for lid in sorted(lids):
        for rid in sorted(rids):
            (lref, lamt), (rref, ramt) = left[lid], right[rid]
            diff = abs(lamt - ramt)
            if lref is not None and lref == rref and (diff == 0 if exact else diff <= TOLERANCE):
                out.append((diff, lid, rid))
    return out


def _greedy(candidates: list[tuple[int, int, int]]) -> list[tuple[int, int, int]]:
    used_l: set[int] = set()
    used_r: set[int] = set()
    kept = []
    for diff, lid, rid in sorted(candidates):
        if lid not in used_l and rid not in used_r:
            kept.append((diff, lid, rid))
            used_l.add(lid)
            used_r.add(rid)
    return kept


def reference(
    left: list[Row], right: list[Row], passes: list[bool], one_to_one: bool
) -> list[tuple[int, int]]:
    lids, rids = set(range(len(left))), set(range(len(right)))
    matched: list[tuple[int, int]] = []
    for exact in passes:
        found = _candidates(left, right, lids, rids, exact)
        if one_to_one:
            found = _greedy(found)
        pairs = [(lid, rid) for _, lid, rid in found]
        matched += pairs
        lids -= {lid for lid, _ in pairs}
        rids -= {rid for _, rid in pairs}
    return matched


def check(
    engine: str,
    left: list[Row],
    right: list[Row],
    passes: list[bool],
    one_to_one: bool,
    join_strategy: str = "auto",
) -> None:
    with TemporaryDirectory() as tmp:
        root = Path(tmp)
        _write(root / "l.parquet", "lid", left)
        _write(root / "r.parquet", "rid", right)
        spec_data: dict[str, object] = (
            {"match_sql": EXACT if passes[0] else TOLERANT}
            if len(passes) == 1
            else {
                "passes": [
                    {"name": f"p{i}", "match_sql": EXACT if exact else TOLERANT}
                    for i, exact in enumerate(passes)
                ]
            }
        )
        if one_to_one:
            spec_data |= {"cardinality": "one_to_one", "rank_by": "diff"}
        options = EngineOptions(
            memory_limit=512 * 1024**2,
            target_partitions=2,
            join_strategy=join_strategy,
            engine=engine,
        )
        with make_executor(options) as executor:
            summary = reconcile(
                MatchSpec.model_validate(spec_data),
                SourceInput("l", root / "l.parquet", ("lid",)),
                SourceInput("r", root / "r.parquet", ("rid",)),
                root / "out",
                executor=executor,
            )
        matched = pq.read_table(root / "out" / "matched.parquet")
        got = list(zip(matched["lid"].to_pylist(), matched["rid"].to_pylist(), strict=True))
        expected = reference(left, right, passes, one_to_one)
        assert Counter(got) == Counter(expected)

        unmatched_l = pq.read_table(root / "out" / "unmatched_left.parquet")["lid"].to_pylist()
        unmatched_r = pq.read_table(root / "out" / "unmatched_right.parquet")["rid"].to_pylist()
        assert sorted(unmatched_l) == sorted(set(range(len(left))) - {p[0] for p in expected})
        assert sorted(unmatched_r) == sorted(set(range(len(right))) - {p[1] for p in expected})
        for total in summary.control_totals:
            assert total.input_rows == total.matched_keys + total.unmatched_rows
        if not one_to_one and len(passes) == 1:
            per_left = Counter(lid for lid, _ in expected)
            assert summary.ambiguous_left_count == sum(1 for n in per_left.values() if n > 1)


FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FAST
@given(left=rows, right=rows)
def test_many_to_many_matches_the_reference(engine: str, left: list[Row], right: list[Row]) -> None:
    check(engine, left, right, passes=[False], one_to_one=False)


@FAST
@given(left=rows, right=rows)
def test_one_to_one_matches_the_greedy_reference(
    engine: str, left: list[Row], right: list[Row]
) -> None:
    check(engine, left, right, passes=[False], one_to_one=True)


@FAST
@given(left=rows, right=rows, one_to_one=st.booleans())
def test_waterfall_matches_the_reference(
    engine: str, left: list[Row], right: list[Row], one_to_one: bool
) -> None:
    check(engine, left, right, passes=[True, False], one_to_one=one_to_one)


@FAST
@given(left=rows, right=rows, one_to_one=st.booleans())
def test_sort_merge_joins_give_the_same_answers(
    engine: str, left: list[Row], right: list[Row], one_to_one: bool
) -> None:
    """The strategy Kalla switches to when inputs outgrow memory (it spills)."""
    check(
        engine, left, right, passes=[True, False], one_to_one=one_to_one, join_strategy="sort_merge"
    )
