"""Local Parquet: registered in place, schema and rows from the footer."""

from __future__ import annotations

import hashlib
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kalla.connectors import stage_source
from kalla.errors import SourceError
from kalla.settings import Settings

SETTINGS = Settings()


@pytest.fixture
def invoices(tmp_path: Path) -> Path:
    table = pa.table(
        {
            "invoice_id": ["I1", "I2", None],
            "amount": pa.array([Decimal("1.50"), Decimal("2.00"), None], pa.decimal128(10, 2)),
        }
    )
    path = tmp_path / "invoices.parquet"
    pq.write_table(table, path)
    return path


def test_parquet_is_registered_in_place(tmp_path: Path, invoices: Path) -> None:
    staging = tmp_path / "staging"
    staged = stage_source(str(invoices), alias="invoices", settings=SETTINGS, staging_dir=staging)
    assert staged.path == invoices
    assert staged.row_count == 3
    assert staged.schema.field("amount").type == pa.decimal128(10, 2)
    assert staged.fingerprint == {
        "kind": "file",
        "sha256": hashlib.sha256(invoices.read_bytes()).hexdigest(),
        "bytes": invoices.stat().st_size,
    }
    assert not staging.exists() or not list(staging.iterdir())


def test_parquet_without_extension_is_detected(tmp_path: Path, invoices: Path) -> None:
    other = tmp_path / "export.dat"
    other.write_bytes(invoices.read_bytes())
    staged = stage_source(str(other), alias="x", settings=SETTINGS, staging_dir=tmp_path / "s")
    assert staged.row_count == 3


def test_parquet_expected_columns(tmp_path: Path, invoices: Path) -> None:
    with pytest.raises(SourceError, match=r"missing column 'Invoice ID' \(did you mean"):
        stage_source(
            str(invoices),
            alias="x",
            settings=SETTINGS,
            staging_dir=tmp_path,
            expected_columns=["Invoice ID"],
        )


def test_corrupt_parquet_is_a_source_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(SourceError, match="not a readable Parquet file"):
        stage_source(str(path), alias="x", settings=SETTINGS, staging_dir=tmp_path)
