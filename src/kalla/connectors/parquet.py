"""Local Parquet files: registered where they lie (no copy); schema and rows from the footer;
a preview reads only the row groups it needs."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from kalla.connectors.base import (
    FileConnector,
    Filter,
    Progress,
    SupportsLimitedRead,
    check_column_count,
    check_unique_columns,
)
from kalla.errors import SourceError

PARQUET_MAGIC = b"PAR1"


def is_parquet_file(path: Path) -> bool:
    """True when the file starts and ends with Parquet's magic bytes."""
    try:
        with open(path, "rb") as handle:
            if handle.read(4) != PARQUET_MAGIC:
                return False
            handle.seek(-4, 2)
            return handle.read(4) == PARQUET_MAGIC
    except OSError:
        return False


class ParquetConnector(FileConnector, SupportsLimitedRead):
    kind = "parquet"
    _metadata: pq.FileMetaData | None = None

    def _footer(self) -> pq.FileMetaData:
        if self._metadata is None:
            try:
                self._metadata = pq.read_metadata(self.path)
            except (pa.ArrowInvalid, OSError) as exc:
                raise SourceError(f"{self.label}: not a readable Parquet file: {exc}") from exc
        return self._metadata

    def schema(self) -> pa.Schema:
        return self._footer().schema.to_arrow_schema()

    def columns(self) -> list[str]:
        names = list(self.schema().names)
        check_column_count(len(names), label=self.label, settings=self.settings)
        check_unique_columns(names, alias=self.alias, uri=self.shown)
        return names

    def in_place(self) -> tuple[Path, pa.Schema, int]:
        self.columns()
        return self.path, self.schema(), self._footer().num_rows

    def read(self, progress: Progress, filters: Sequence[Filter] = ()) -> pa.Table:
        return pq.read_table(self.path)

    def read_head(self, progress: Progress, filters: Sequence[Filter], rows: int) -> pa.Table:
        schema = self.schema()
        batches = []
        wanted = rows
        if wanted > 0:
            for batch in pq.ParquetFile(self.path).iter_batches(batch_size=max(wanted, 1)):
                batches.append(batch.slice(0, wanted))
                wanted -= batches[-1].num_rows
                if wanted <= 0:
                    break
        return pa.Table.from_batches(batches, schema=schema)
