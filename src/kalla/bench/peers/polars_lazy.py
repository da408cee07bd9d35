"""Polars, lazy: join + tolerance filter, anti joins against the matched keys, three sinks."""

from __future__ import annotations

from decimal import Decimal

from kalla.bench.peers._common import PeerJob, columns
from kalla.bench.schema import LEFT_ALIAS, MATCH_COLUMN_NAMES, RIGHT_ALIAS, TOLERANCE


def run(job: PeerJob) -> dict[str, int]:
    import polars as pl

    def scan(side: str) -> pl.LazyFrame:
        path = job.left if side == LEFT_ALIAS else job.right
        if job.fmt == "parquet":
            return pl.scan_parquet(path)
        types: dict[str, pl.DataType | type[pl.DataType]] = {
            "string": pl.String,
            "date": pl.Date,
            "decimal(12,2)": pl.Decimal(12, 2),
        }
        schema = {name: types[t] for name, t in columns(side).items()}
        return pl.scan_csv(path, schema=schema)

    invoices, payments = scan(LEFT_ALIAS), scan(RIGHT_ALIAS)
    matched = (
        invoices.join(payments, left_on="invoice_id", right_on="reference_number", coalesce=False)
        .filter((pl.col("amount") - pl.col("paid_amount")).abs() <= pl.lit(Decimal(TOLERANCE)))
        .select(MATCH_COLUMN_NAMES)
    )
    unmatched_left = invoices.join(matched.select("invoice_id"), on="invoice_id", how="anti")
    unmatched_right = payments.join(matched.select("payment_id"), on="payment_id", how="anti")
    pl.collect_all(
        [
            matched.sink_parquet(job.matched_path, compression="zstd", lazy=True),
            unmatched_left.sink_parquet(job.unmatched_left_path, compression="zstd", lazy=True),
            unmatched_right.sink_parquet(job.unmatched_right_path, compression="zstd", lazy=True),
        ]
    )
    return job.output_counts()
