"""Raw DataFusion SQL with default settings: the pre-Kalla baseline of PERF-NOTES."""

from __future__ import annotations

from kalla.bench.peers._common import PeerJob, arrow_schema
from kalla.bench.schema import LEFT_ALIAS, RIGHT_ALIAS, match_select_sql

_ON = "i.invoice_id = p.reference_number AND abs(i.amount - p.paid_amount) <= 0.02"


def run(job: PeerJob) -> dict[str, int]:
    from datafusion import RuntimeEnvBuilder, SessionConfig, SessionContext

    if job.memory_limit:
        runtime = RuntimeEnvBuilder().with_disk_manager_os().with_fair_spill_pool(job.memory_limit)
        ctx = SessionContext(SessionConfig(), runtime)
    else:
        ctx = SessionContext()
    for side in (LEFT_ALIAS, RIGHT_ALIAS):
        path = job.left if side == LEFT_ALIAS else job.right
        if job.fmt == "parquet":
            ctx.register_parquet(side, str(path))
        else:
            ctx.register_csv(side, str(path), schema=arrow_schema(side), has_header=True)
    statements = [
        f"SELECT {match_select_sql()} FROM invoices i JOIN payments p ON {_ON}",
        f"SELECT i.* FROM invoices i WHERE NOT EXISTS (SELECT 1 FROM payments p WHERE {_ON})",
        f"SELECT p.* FROM payments p WHERE NOT EXISTS (SELECT 1 FROM invoices i WHERE {_ON})",
    ]
    paths = (job.matched_path, job.unmatched_left_path, job.unmatched_right_path)
    for sql, path in zip(statements, paths, strict=True):
        ctx.sql(sql).write_parquet(str(path), compression="zstd")
    return job.output_counts()
