"""datacompy as its users run it: PandasCompare on the join key with abs_tol=0.02.

datacompy pairs duplicate keys one to one and compares amounts as floats, so its answer
differs from the workload's (second payments of an invoice and some boundary cases end up
unmatched); the harness reports that as WRONG.
"""

from __future__ import annotations

import pandas as pd

from kalla.bench.peers._common import PeerJob
from kalla.bench.peers.pandas_merge import read
from kalla.bench.schema import (
    INVOICE_COLUMNS,
    LEFT_ALIAS,
    MATCH_COLUMN_NAMES,
    PAYMENT_COLUMNS,
    RIGHT_ALIAS,
    TOLERANCE,
)


def run(job: PeerJob) -> dict[str, int]:
    import datacompy

    invoices = read(job, LEFT_ALIAS)
    payments = read(job, RIGHT_ALIAS).rename(
        columns={"reference_number": "invoice_id", "paid_amount": "amount"}
    )
    compare = datacompy.PandasCompare(
        invoices, payments, join_columns="invoice_id", abs_tol=float(TOLERANCE)
    )
    both = compare.intersect_rows
    hit = both["amount_match"].astype(bool)
    matched = both[hit].rename(columns={"amount_df1": "amount", "amount_df2": "paid_amount"})
    matched["reference_number"] = matched["invoice_id"]
    matched = matched[list(MATCH_COLUMN_NAMES)]

    missed = both[~hit]
    left_missed = missed.rename(columns={"amount_df1": "amount"})[list(INVOICE_COLUMNS)]
    right_missed = missed.rename(
        columns={"amount_df2": "paid_amount", "invoice_id": "reference_number"}
    )[list(PAYMENT_COLUMNS)]
    left_only = compare.df1_unq_rows[list(INVOICE_COLUMNS)]
    right_only = compare.df2_unq_rows.rename(
        columns={"amount": "paid_amount", "invoice_id": "reference_number"}
    )[list(PAYMENT_COLUMNS)]
    unmatched_left = pd.concat([left_only, left_missed], ignore_index=True)
    unmatched_right = pd.concat([right_only, right_missed], ignore_index=True)
    outputs = (
        (matched, job.matched_path),
        (unmatched_left, job.unmatched_left_path),
        (unmatched_right, job.unmatched_right_path),
    )
    for frame, path in outputs:
        frame.to_parquet(path, compression="zstd", index=False)
    return job.output_counts()
