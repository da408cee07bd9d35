"""What the database says about a table: its columns with their declared types."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Column:
    """One column as the catalog declares it. ``kind`` groups types for filter checks."""

    name: str
    data_type: str  # the catalog's type name, lower case
    kind: str  # "int", "decimal", "float", "text", "date", "timestamp", "bool", "other"
    precision: int | None = None
    scale: int | None = None


@dataclass(frozen=True)
class Catalog:
    """What the database says about the table, read once per staging."""

    schema: str
    table: str
    columns: tuple[Column, ...]
    estimated_rows: int
    primary_key: tuple[str, ...]
    physical_blocks: int = 0  # PostgreSQL heap pages, for ctid ranges; 0 = not available
