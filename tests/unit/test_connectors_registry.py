"""URI routing and redaction."""

from __future__ import annotations

from pathlib import Path

import pytest

from kalla.connectors import connector_for, redact_uri, stage_source
from kalla.errors import SourceError


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        (
            "postgres://user:s3cret@db.example:5432/ledger?table=invoices",
            "postgres://user:***@db.example:5432/ledger?table=invoices",
        ),
        (
            "postgresql://user:p%40ss@host/db?table=public.t",
            "postgresql://user:***@host/db?table=public.t",
        ),
        ("mysql://root:@127.0.0.1:3306/db?table=t", "mysql://root:***@127.0.0.1:3306/db?table=t"),
        ("postgres://user@host/db?table=t", "postgres://user@host/db?table=t"),
        (
            "postgres://host/db?table=t&password=hunter2&sslmode=require",
            "postgres://host/db?table=t&password=***&sslmode=require",
        ),
        (
            "postgres://u:${PG_PASSWORD}@host/db?table=t",
            "postgres://u:***@host/db?table=t",
        ),
        ("s3://bucket/dir/file.csv", "s3://bucket/dir/file.csv"),
        ("/data/payments.csv", "/data/payments.csv"),
    ],
)
def test_redact_uri(uri: str, expected: str) -> None:
    assert redact_uri(uri) == expected
    for secret in ("s3cret", "p%40ss", "hunter2"):
        assert secret not in redact_uri(uri)


def test_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.csv"
    with pytest.raises(SourceError) as info:
        stage_source(str(missing), alias="payments")
    assert str(info.value) == f"file not found: {missing} (source 'payments')"


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("payments.cvs", "did you mean '.csv'?"),
        ("payments.parqet", "did you mean '.parquet'?"),
        ("payments.jsn", "did you mean '.json'?"),
        ("notes.txt", "unsupported file type '.txt'"),
    ],
)
def test_unknown_extension_names_closest(tmp_path: Path, name: str, message: str) -> None:
    path = tmp_path / name
    path.write_text("a,b\n1,2\n")
    with pytest.raises(SourceError, match=r"supported: \.csv") as info:
        connector_for(str(path), alias="p")
    assert message in str(info.value)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("postgress://u:pw@h/db?table=t", "did you mean 'postgres://'?"),
        ("mysqll://u@h/db?table=t", "did you mean 'mysql://'?"),
        ("gs://bucket/x.csv", "unsupported URI scheme 'gs://'"),
        ("s3://bucket/x.xml", "unsupported file type '.xml'"),
        ("s3://bucket/x.csvv", "did you mean '.csv'?"),
    ],
)
def test_unknown_scheme_names_closest(uri: str, message: str) -> None:
    with pytest.raises(SourceError) as info:
        connector_for(uri, alias="p")
    assert message in str(info.value)
    assert "pw@" not in str(info.value)


def test_file_uri_and_env_placeholder_in_path(tmp_path: Path, monkeypatch) -> None:
    path = tmp_path / "p.csv"
    path.write_text("a\n1\n")
    assert connector_for(f"file://{path}", alias="p").kind == "csv"
    monkeypatch.setenv("KALLA_TEST_DIR", str(tmp_path))
    assert connector_for("${KALLA_TEST_DIR}/p.csv", alias="p").kind == "csv"
    monkeypatch.delenv("KALLA_TEST_DIR")
    with pytest.raises(SourceError, match="KALLA_TEST_DIR is not set"):
        connector_for("${KALLA_TEST_DIR}/p.csv", alias="p")


def test_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="is a directory"):
        connector_for(str(tmp_path), alias="p")


@pytest.mark.parametrize(
    ("uri", "url"),
    [
        (
            "postgres://app:p%40ss@[::1]:6432/ledger?table=t&sslmode=require",
            "postgresql://app:p%40ss@[::1]:6432/ledger?sslmode=require",
        ),
        ("mysql://root@db.internal/shop?table=orders", "mysql://root@db.internal:3306/shop"),
    ],
)
def test_reader_url_keeps_credentials_host_and_driver_options(uri: str, url: str) -> None:
    connector = connector_for(uri, alias="t")
    assert connector._driver_url() == url  # type: ignore[attr-defined]
