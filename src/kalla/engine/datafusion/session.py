"""The DataFusion session every run uses: exact decimals, read-only SQL, bounded memory."""

from __future__ import annotations

import os
from pathlib import Path

from datafusion import RuntimeEnvBuilder, SessionConfig, SessionContext, SQLOptions

from kalla.engine.executor import EngineOptions

# Hash joins are fastest but keep their build side in memory (no spilling in DataFusion 55);
# sort-merge joins spill. ``auto`` switches when the inputs, at a generous ~150 bytes a row
# in memory, would not fit in the memory limit.
_BYTES_PER_ROW = 150

# Why each setting:
_CONFIG = {
    # 0.02 in SQL must be an exact decimal, never a float (tolerance boundaries).
    "datafusion.sql_parser.parse_float_as_decimal": "true",
    # Column names match exactly as written: CSV headers are often mixed case.
    "datafusion.sql_parser.enable_ident_normalization": "false",
    # View types cost ~1.5x time and memory on this workload (measured on the benchmark).
    "datafusion.execution.parquet.schema_force_view_types": "false",
    "datafusion.execution.parquet.pushdown_filters": "false",
    # Outputs are read by every tool there is: plain strings, not string views.
    "datafusion.sql_parser.map_string_types_to_utf8view": "false",
    "datafusion.optimizer.expand_views_at_output": "true",
    # DataFusion 55 takes a float column whose Parquet statistics say min == max (writers
    # leave NaN out of them) for a constant: [NaN, 5.5] was read as [5.5, 5.5]. Reading
    # without statistics reads the values (no cost measured on the 1M benchmark).
    "datafusion.execution.collect_statistics": "false",
}


def location(path: str | os.PathLike[str]) -> str:
    """The ``file://`` URL DataFusion should read or write for a local path.

    A plain path holding ``[``, ``*``, ``?`` or ``{`` is a glob to DataFusion: reading
    ``runs[1]/x.parquet`` finds nothing, and writing it puts a randomly named file in
    ``runs``'s parent. A percent-encoded URL names exactly the one file."""
    return Path(path).absolute().as_uri()


def prefer_hash_join(options: EngineOptions, rows: int) -> bool:
    """Whether joins over inputs of ``rows`` rows in all should be hash joins."""
    if options.join_strategy == "auto":
        return rows * _BYTES_PER_ROW <= options.memory_limit
    return options.join_strategy == "hash"


def partitions(options: EngineOptions) -> int:
    return options.target_partitions or os.cpu_count() or 2


def make_context(options: EngineOptions, *, input_rows: int = 0) -> SessionContext:
    config = (
        SessionConfig().with_target_partitions(partitions(options)).with_information_schema(False)
    )
    for key, value in _CONFIG.items():
        config = config.set(key, value)
    hash_join = prefer_hash_join(options, input_rows)
    config = config.set("datafusion.optimizer.prefer_hash_join", str(hash_join).lower())
    runtime = RuntimeEnvBuilder().with_fair_spill_pool(options.memory_limit)
    if options.spill_path is not None:
        options.spill_path.mkdir(parents=True, exist_ok=True)
        runtime = runtime.with_temp_file_path(str(options.spill_path))
    else:
        runtime = runtime.with_disk_manager_os()
    return SessionContext(config, runtime)


def read_only() -> SQLOptions:
    """Queries only: no DDL, no DML (COPY, INSERT), no SET or other statements."""
    return SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)
