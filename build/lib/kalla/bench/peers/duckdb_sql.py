"""DuckDB, plain SQL: a join and two anti joins, each COPY TO Parquet (zstd).

``ANTI JOIN`` rather than ``NOT EXISTS``: DuckDB 2.0 plans the correlated ``NOT EXISTS``
with the tolerance predicate as a delim join + mark join, about 2x slower at 1M rows.
"""

from __future__ import annotations

from kalla.bench.peers._common import PeerJob, columns, counts
from kalla.bench.schema import LEFT_ALIAS, RIGHT_ALIAS, match_select_sql, sql_type

_ON = "i.invoice_id = p.reference_number AND abs(i.amount - p.paid_amount) <= 0.02"


def _quote(path: object) -> str:
    return "'" + str(path).replace("'", "''") + "'"


def _source_sql(job: PeerJob, side: str) -> str:
    path = job.left if side == LEFT_ALIAS else job.right
    if job.fmt == "parquet":
        return f"read_parquet({_quote(path)})"
    struct = ", ".join(f"'{name}': '{sql_type(t)}'" for name, t in columns(side).items())
    return f"read_csv({_quote(path)}, header = true, columns = {{{struct}}})"


def run(job: PeerJob) -> dict[str, int]:
    import duckdb

    con = duckdb.connect()
    if job.memory_limit:
        con.execute(f"SET memory_limit = '{job.memory_limit // 2**20}MiB'")
    # Parquet is scanned in place; CSV is parsed once into tables (a view would parse it
    # three times).
    kind = "VIEW" if job.fmt == "parquet" else "TABLE"
    for side in (LEFT_ALIAS, RIGHT_ALIAS):
        con.execute(f"CREATE {kind} {side} AS SELECT * FROM {_source_sql(job, side)}")
    opts = "(FORMAT parquet, COMPRESSION zstd)"
    statements = [
        f"SELECT {match_select_sql()} FROM invoices i JOIN payments p ON {_ON}",
        f"SELECT i.* FROM invoices i ANTI JOIN payments p ON {_ON}",
        f"SELECT p.* FROM payments p ANTI JOIN invoices i ON {_ON}",
    ]
    paths = (job.matched_path, job.unmatched_left_path, job.unmatched_right_path)
    rows = []
    for sql, path in zip(statements, paths, strict=True):
        result = con.execute(f"COPY ({sql}) TO {_quote(path)} {opts}").fetchone()
        rows.append(int(result[0]) if result else 0)
    con.close()
    return counts(*rows)
