"""pandas: merge on Arrow-backed columns (exact decimals), isin anti joins, to_parquet."""

from __future__ import annotations

from decimal import Decimal
from typing import TYPE_CHECKING

from kalla.bench.peers._common import PeerJob, arrow_type, columns
from kalla.bench.schema import LEFT_ALIAS, MATCH_COLUMN_NAMES, RIGHT_ALIAS, TOLERANCE

if TYPE_CHECKING:
    import pandas as pd


def read(job: PeerJob, side: str) -> pd.DataFrame:
    """One input as a DataFrame with Arrow dtypes: decimal128(12,2) amounts, date32 dates."""
    import pandas as pd

    path = job.left if side == LEFT_ALIAS else job.right
    if job.fmt == "parquet":
        return pd.read_parquet(path, dtype_backend="pyarrow")
    # Read every column as text (the C parser never sees a float), then cast exactly.
    frame = pd.read_csv(path, dtype=pd.ArrowDtype(arrow_type("string")), keep_default_na=True)
    for name, logical in columns(side).items():
        if logical != "string":
            frame[name] = frame[name].astype(pd.ArrowDtype(arrow_type(logical)))
    return frame


def run(job: PeerJob) -> dict[str, int]:
    invoices, payments = read(job, LEFT_ALIAS), read(job, RIGHT_ALIAS)
    pairs = invoices.merge(payments, left_on="invoice_id", right_on="reference_number")
    within = (pairs["amount"] - pairs["paid_amount"]).abs() <= Decimal(TOLERANCE)
    matched = pairs.loc[within, list(MATCH_COLUMN_NAMES)]
    unmatched_left = invoices[~invoices["invoice_id"].isin(matched["invoice_id"])]
    unmatched_right = payments[~payments["payment_id"].isin(matched["payment_id"])]
    outputs = (
        (matched, job.matched_path),
        (unmatched_left, job.unmatched_left_path),
        (unmatched_right, job.unmatched_right_path),
    )
    for frame, path in outputs:
        frame.to_parquet(path, compression="zstd", index=False)
    return job.output_counts()
