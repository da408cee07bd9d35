"""Local Parquet files: registered where they lie (no copy); schema and rows from the footer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kalla.connectors.base import Connector, Progress, check_unique_columns, file_fingerprint
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


class ParquetConnector(Connector):
    kind = "parquet"

    def __init__(self, uri: str, *, alias: str, path: Path, shown: str | None = None) -> None:
        super().__init__(uri, alias=alias)
        self.path = path
        self.shown = shown or str(path)  # what messages call the file (an S3 URI for a fetch)
        self._metadata: pq.FileMetaData | None = None

    def _footer(self) -> pq.FileMetaData:
        if self._metadata is None:
            try:
                self._metadata = pq.read_metadata(self.path)
            except (pa.ArrowInvalid, OSError) as exc:
                raise SourceError(
                    f"source '{self.alias}' ({self.shown}): not a readable Parquet file: {exc}"
                ) from exc
        return self._metadata

    def schema(self) -> pa.Schema:
        return self._footer().schema.to_arrow_schema()

    def columns(self) -> list[str]:
        names = list(self.schema().names)
        check_unique_columns(names, alias=self.alias, uri=self.shown)
        return names

    def in_place(self) -> tuple[Path, pa.Schema, int]:
        self.columns()
        return self.path, self.schema(), self._footer().num_rows

    def read(self, progress: Progress, filters: Any = ()) -> pa.Table:
        return pq.read_table(self.path)

    def source_fingerprint(self) -> dict[str, object]:
        return file_fingerprint(self.path)
