"""The I/O floor: read both inputs into Arrow, write three Parquet files of the output sizes.

No matching at all: the matched file is the first ``matched`` rows of both inputs side by
side (the same 11 columns), the unmatched files are slices of the inputs. What any engine
must at least spend to read these inputs and write outputs this large.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kalla.bench.peers._common import PeerJob, counts, read_arrow
from kalla.bench.schema import LEFT_ALIAS, MATCH_COLUMNS, RIGHT_ALIAS

if TYPE_CHECKING:
    import pyarrow as pa


def _rows(table: pa.Table, n: int) -> pa.Table:
    """The first ``n`` rows, repeating the table if it is shorter."""
    import pyarrow as pa

    if n <= table.num_rows or table.num_rows == 0:
        return table.slice(0, n)
    parts = [table] * (n // table.num_rows) + [table.slice(0, n % table.num_rows)]
    return pa.concat_tables(parts)


def run(job: PeerJob) -> dict[str, int]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    invoices = read_arrow(job.left, LEFT_ALIAS, job.fmt)
    payments = read_arrow(job.right, RIGHT_ALIAS, job.fmt)
    n_matched, n_left, n_right = job.expected_counts()
    inv, pay = _rows(invoices, n_matched), _rows(payments, n_matched)
    matched = pa.table({col: (inv if side == "i" else pay)[col] for side, col in MATCH_COLUMNS})
    pq.write_table(matched, job.matched_path, compression="zstd")
    pq.write_table(_rows(invoices, n_left), job.unmatched_left_path, compression="zstd")
    pq.write_table(_rows(payments, n_right), job.unmatched_right_path, compression="zstd")
    return counts(n_matched, n_left, n_right)
