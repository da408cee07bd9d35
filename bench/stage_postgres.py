"""Staging rate from PostgreSQL: the bench's invoices table (1M rows) → staged Parquet.

    .venv/bin/python bench/stage_postgres.py [--rows 1000000] [--partitions 1 2 4] [--repeat 3]

Loads the workload's invoices (text key, numeric(12,2) amounts, dates) into database
``kalla_bench_stage`` on $KALLA_BENCH_PG (default postgres://postgres@127.0.0.1:5432) once,
then times ``stage_source`` end to end — catalog, parallel ADBC read, exact decimal
casts, Parquet write, content hash — and reports rows/s (target: ≥ 1.2M rows/s).

Run side by side, interleaved, as a peer: connectorx's bare read of the same rows into Arrow
(2 partitions by heap pages, amounts as scaled integers, nothing written), the reader Kalla
used before. Its ratio is the peer's median over Kalla's: below 1 means the peer is faster.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pyarrow as pa
import pyarrow.csv as pacsv

from kalla.bench.generate import generate
from kalla.connectors import connector_for, stage_source
from kalla.engine import EngineOptions, make_executor
from kalla.settings import Settings

SETTINGS = Settings()
# Stage as `kalla run` does: with the engine's Parquet writer.
WRITER = make_executor(EngineOptions.from_settings(SETTINGS)).write_table

DATABASE = "kalla_bench_stage"
SERVER = os.environ.get("KALLA_BENCH_PG", "postgres://postgres@127.0.0.1:5432")


def ensure_table(rows: int) -> None:
    """Create and fill ``invoices`` unless it already holds ``rows`` rows."""
    with psycopg.connect(f"{SERVER}/postgres", autocommit=True) as admin:
        exists = admin.execute("SELECT 1 FROM pg_database WHERE datname = %s", (DATABASE,))
        if exists.fetchone() is None:
            admin.execute(f"CREATE DATABASE {DATABASE}")
    with psycopg.connect(f"{SERVER}/{DATABASE}", autocommit=True) as conn:
        try:
            count = conn.execute("SELECT count(*) FROM invoices").fetchone()
            if count is not None and count[0] == rows:
                return
        except psycopg.errors.UndefinedTable:
            pass
        print(f"loading {rows:,} invoices …", flush=True)
        invoices, _ = generate(rows)
        conn.execute("DROP TABLE IF EXISTS invoices")
        conn.execute(
            "CREATE TABLE invoices (invoice_id text PRIMARY KEY, customer_id text NOT NULL,"
            " amount numeric(12,2) NOT NULL, currency text NOT NULL, issue_date date NOT NULL,"
            " description text NOT NULL)"
        )
        buffer = io.BytesIO()
        pacsv.write_csv(invoices, buffer)
        with (
            conn.cursor() as cursor,
            cursor.copy("COPY invoices FROM STDIN (FORMAT csv, HEADER true)") as copy,
        ):
            copy.write(buffer.getvalue())
        conn.execute("VACUUM ANALYZE invoices")


def connectorx_read(uri: str) -> int:
    """The peer: connectorx reading Kalla's own partition queries into Arrow, in parallel."""
    import connectorx as cx

    connector: Any = connector_for(uri, alias="peer", settings=SETTINGS)
    catalog = connector.catalog()
    queries = [
        f"{connector._select(catalog)} WHERE {part}" for part in connector._partitions(catalog)
    ]
    connector.close()
    tables = cx.read_sql(connector._driver_url(), queries, return_type="arrow")
    return int(tables.num_rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--partitions", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    ensure_table(args.rows)
    peer_uri = f"{SERVER}/{DATABASE}?table=invoices&partitions=2"
    times: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="kalla-stage-bench-") as tmp:
        staging = Path(tmp)
        stage_source(
            peer_uri, alias="warm", settings=SETTINGS, staging_dir=staging, writer=WRITER
        ).path.unlink()  # imports
        connectorx_read(peer_uri)
        for _ in range(args.repeat):  # interleaved, so both see the same machine
            for partitions in args.partitions:
                uri = f"{SERVER}/{DATABASE}?table=invoices&partitions={partitions}"
                start = time.perf_counter()
                staged = stage_source(
                    uri, alias="invoices", settings=SETTINGS, staging_dir=staging, writer=WRITER
                )
                times.setdefault(f"kalla partitions={partitions}", []).append(
                    time.perf_counter() - start
                )
                staged.path.unlink()
                assert staged.row_count == args.rows
                assert staged.schema.field("amount").type == pa.decimal128(12, 2)
            start = time.perf_counter()
            assert connectorx_read(peer_uri) == args.rows
            times.setdefault("connectorx bare read, 2 partitions", []).append(
                time.perf_counter() - start
            )
    kalla_default = statistics.median(times["kalla partitions=2"]) if 2 in args.partitions else None
    for name, runs in times.items():
        median = statistics.median(runs)
        ratio = f", peer/Kalla(2) {median / kalla_default:.2f}x" if kalla_default else ""
        print(
            f"{name}: median {median:.3f} s ({args.rows / median / 1e6:.2f}M rows/s), "
            f"min {min(runs):.3f} s, max {max(runs):.3f} s"
            + (ratio if name.startswith("connectorx") else ""),
            flush=True,
        )


if __name__ == "__main__":
    main()
