"""Exclusive 1:1 selection: best candidate first, each record used at most once.

Greedy by ``rank_by`` ascending, ties broken by the left then right keys, so the result
is deterministic. (With a strict order this equals the "locally dominant edge" matching,
so a distributed engine can compute the same answer in rounds of window functions.)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc


def _group_ids(table: pa.Table, columns: Sequence[str]) -> np.ndarray:
    """A dense integer per distinct key tuple (NULL counts as a value, like the anti joins)."""
    codes = []
    for name in columns:
        encoded = pc.dictionary_encode(table.column(name).combine_chunks(), null_encoding="encode")
        codes.append(encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64))
    if len(codes) == 1:
        return codes[0]
    _, inverse = np.unique(np.stack(codes, axis=1), axis=0, return_inverse=True)
    return np.asarray(inverse).reshape(-1)


def select_one_to_one(
    candidates: pa.Table, rank_by: str, left_keys: Sequence[str], right_keys: Sequence[str]
) -> pa.BooleanArray:
    """A mask over ``candidates``: True for the pairs kept as final matches."""
    n = candidates.num_rows
    if n == 0:
        return pa.array([], pa.bool_())
    sort_keys = [(name, "ascending", "at_end") for name in (rank_by, *left_keys, *right_keys)]
    order = pc.sort_indices(candidates, sort_keys=sort_keys)
    left_ids = _group_ids(candidates, left_keys).tolist()
    right_ids = _group_ids(candidates, right_keys).tolist()
    used_left = bytearray(max(left_ids) + 1)
    used_right = bytearray(max(right_ids) + 1)
    keep = bytearray(n)
    for i in order.to_pylist():
        lid, rid = left_ids[i], right_ids[i]
        if not used_left[lid] and not used_right[rid]:
            used_left[lid] = used_right[rid] = keep[i] = 1
    return pa.array(np.frombuffer(bytes(keep), dtype=np.bool_))
