"""Peer engines for the benchmark, each run as its own process.

``python -m kalla.bench.peers <engine> --left L --right R --out DIR --format parquet|csv``
performs the complete workload (match with exact decimal tolerance, both unmatched sides as
full rows, three zstd Parquet outputs in DIR) and prints one JSON line with the output row
counts. Engine modules are imported only when chosen, so each process pays only for its
own library.
"""

from __future__ import annotations

#: engine name → module (under this package) that implements ``run(job)``.
ENGINES: dict[str, str] = {
    "duckdb": "duckdb_sql",
    "polars": "polars_lazy",
    "datafusion": "datafusion_sql",
    "pandas": "pandas_merge",
    "datacompy": "datacompy_compare",
    "floor": "floor",
}

#: What each peer does, for reports and ``--help``.
DESCRIPTIONS: dict[str, str] = {
    "duckdb": "DuckDB SQL: join + two ANTI JOINs, COPY TO Parquet (zstd); CSV loaded as tables",
    "polars": "Polars lazy: join + filter, anti joins on matched keys, one collect_all, 3 writes",
    "datafusion": "raw DataFusion SQL, default settings: join + two NOT EXISTS, write_parquet",
    "pandas": "pandas merge on Arrow-backed decimals, isin anti joins, to_parquet",
    "datacompy": "datacompy PandasCompare(join invoice_id, abs_tol=0.02), outputs from its rows",
    "floor": "I/O floor: pyarrow reads both inputs, writes three Parquet files of output size",
}
