"""The DataFusion session every run uses: exact decimals, read-only SQL, bounded memory."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from datafusion import RuntimeEnvBuilder, SessionConfig, SessionContext, SQLOptions

from kalla.settings import Settings


@dataclass(frozen=True)
class EngineOptions:
    """What a run may tune; defaults come from Settings."""

    memory_limit: int
    spill_path: Path | None = None
    target_partitions: int = 0
    compression: str = "zstd(1)"
    join_strategy: str = "auto"  # auto | hash | sort_merge
    sorted_outputs: bool = False  # outputs ordered by key, then every column: same bytes each run
    content_digests: bool = True  # digests of every input and output in the manifest

    @classmethod
    def from_settings(cls, settings: Settings) -> EngineOptions:
        return cls(
            memory_limit=settings.memory_limit,
            spill_path=settings.spill_path,
            target_partitions=settings.target_partitions,
            compression=settings.parquet_compression,
            join_strategy=settings.join_strategy,
            content_digests=settings.content_digests,
        )

    def prefer_hash_join(self, rows: int) -> bool:
        """Hash joins are fastest but keep their build side in memory (no spilling in
        DataFusion 55); sort-merge joins spill. ``auto`` switches when the inputs, at a
        generous ~150 bytes a row in memory, would not fit in the memory limit."""
        if self.join_strategy == "auto":
            return rows * _BYTES_PER_ROW <= self.memory_limit
        return self.join_strategy == "hash"


_BYTES_PER_ROW = 150

# Why each setting: see PERF-NOTES.md and the reconciliation semantics in DESIGN.md.
_CONFIG = {
    # 0.02 in SQL must be an exact decimal, never a float (tolerance boundaries).
    "datafusion.sql_parser.parse_float_as_decimal": "true",
    # Column names match exactly as written: CSV headers are often mixed case.
    "datafusion.sql_parser.enable_ident_normalization": "false",
    # View types cost ~1.5x time and memory on this workload (PERF-NOTES).
    "datafusion.execution.parquet.schema_force_view_types": "false",
    "datafusion.execution.parquet.pushdown_filters": "false",
    # Outputs are read by every tool there is: plain strings, not string views.
    "datafusion.sql_parser.map_string_types_to_utf8view": "false",
    "datafusion.optimizer.expand_views_at_output": "true",
}


def make_context(options: EngineOptions, *, input_rows: int = 0) -> SessionContext:
    partitions = options.target_partitions or os.cpu_count() or 2
    config = SessionConfig().with_target_partitions(partitions).with_information_schema(False)
    for key, value in _CONFIG.items():
        config = config.set(key, value)
    hash_join = options.prefer_hash_join(input_rows)
    config = config.set("datafusion.optimizer.prefer_hash_join", str(hash_join).lower())
    runtime = RuntimeEnvBuilder().with_fair_spill_pool(options.memory_limit)
    if options.spill_path is not None:
        options.spill_path.mkdir(parents=True, exist_ok=True)
        runtime = runtime.with_temp_file_path(str(options.spill_path))
    else:
        runtime = runtime.with_disk_manager_os()
    return SessionContext(config, runtime)


def read_only() -> SQLOptions:
    """Recipe SQL may only query: no DDL, no DML (COPY, INSERT), no SET or other statements."""
    return SQLOptions().with_allow_ddl(False).with_allow_dml(False).with_allow_statements(False)
