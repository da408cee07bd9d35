"""S3 staging against moto's S3 server on loopback (real HTTP, real ranged GETs)."""

from __future__ import annotations

import logging
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from callback_receiver import free_port
from kalla_test_services import Bucket

from kalla.connectors import s3 as s3_connector
from kalla.connectors import stage_source
from kalla.errors import SourceError, SourceUnavailableError
from kalla.secrets import redact_uri
from kalla.settings import Settings

SETTINGS = Settings()

pytestmark = pytest.mark.s3

PART = 256 * 1024


def big_csv(rows: int) -> bytes:
    """A CSV with quoted fields (commas, doubled quotes, CRLF newlines) throughout, and one
    long quoted field with a newline straddling every ``PART`` boundary, where a range
    reader that split on raw newlines would cut a record in two."""
    out = bytearray(b"id,memo,amount\r\n")
    for i in range(rows):
        boundary = (len(out) // PART + 1) * PART
        if boundary - len(out) < 40:
            memo = '"' + "straddles, " * 5 + '\r\n""quoted"" ' + "y" * 60 + '"'
        elif i % 7 == 0:
            memo = f'"line one, of {i}\r\nline ""two"" ✓"'
        else:
            memo = f"memo {i}"
        out += f"{i},{memo},{i}.{i % 100:02d}\r\n".encode()
    return bytes(out)


def test_csv_spanning_many_ranges(
    tmp_path: Path,
    s3_bucket: Bucket,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.setattr(s3_connector, "_PART_BYTES", PART)
    body = big_csv(60_000)
    assert len(body) > 6 * PART
    uri = s3_bucket.put("exports/2024/payments.csv", body)
    local = tmp_path / "same.csv"
    local.write_bytes(body)

    seen: list[float] = []
    with caplog.at_level(logging.INFO, logger="werkzeug"):
        remote = stage_source(
            uri, alias="pay", settings=SETTINGS, staging_dir=tmp_path / "s", progress=seen.append
        )
    ranged_gets = [r for r in caplog.messages if "GET /" in r and "payments.csv" in r]
    assert len(ranged_gets) >= len(body) // PART  # fetched as parallel byte ranges
    here = stage_source(str(local), alias="pay", settings=SETTINGS, staging_dir=tmp_path / "l")

    assert remote.uri == uri
    assert remote.fingerprint == here.fingerprint  # sha256 of the same bytes
    table = pq.read_table(remote.path)
    assert table.equals(pq.read_table(here.path))
    assert table.schema.field("amount").type == pa.decimal128(7, 2)
    assert table.column("memo")[7].as_py() == 'line one, of 7\r\nline "two" ✓'
    straddling = [m for m in table.column("memo").to_pylist() if m.startswith("straddles")]
    assert len(straddling) >= len(body) // PART
    assert table.column("amount")[59_999].as_py() == Decimal("59999.99")
    assert len(seen) > 5 and seen[0] == 0.0 and seen[-1] == 1.0 and seen == sorted(seen)
    # Only the staged Parquet is left behind, not the fetched CSV.
    assert [p.name for p in (tmp_path / "s").iterdir()] == [remote.path.name]


def test_parquet_object(tmp_path: Path, s3_bucket: Bucket) -> None:
    table = pa.table({"k": ["a", "b"], "v": pa.array([Decimal("1.50"), None], pa.decimal128(9, 2))})
    local = tmp_path / "t.parquet"
    pq.write_table(table, local)
    uri = s3_bucket.put("t.parquet", local.read_bytes())
    staged = stage_source(
        uri, alias="t", settings=SETTINGS, staging_dir=tmp_path / "s", expected_columns=["k"]
    )
    assert staged.path.parent == tmp_path / "s"
    assert pq.read_table(staged.path).equals(table)
    assert (
        staged.fingerprint["kind"] == "file" and staged.fingerprint["bytes"] == local.stat().st_size
    )


def test_missing_object_and_bucket(tmp_path: Path, s3_bucket: Bucket) -> None:
    uri = f"s3://{s3_bucket.name}/nope.csv"
    with pytest.raises(SourceError, match=f"object not found: {uri} \\(source 'x'\\)"):
        stage_source(uri, alias="x", settings=SETTINGS, staging_dir=tmp_path)
    with pytest.raises(SourceError, match=r"bucket 'kalla-no-such-bucket' does not exist"):
        stage_source(
            "s3://kalla-no-such-bucket/a.csv", alias="x", settings=SETTINGS, staging_dir=tmp_path
        )
    assert not list(tmp_path.iterdir())


def test_wrong_schema_is_reported_before_matching(tmp_path: Path, s3_bucket: Bucket) -> None:
    uri = s3_bucket.put("p.csv", b"Payment ID,amount\n1,2.50\n")
    with pytest.raises(SourceError, match=r"'payment_id' \(did you mean 'Payment ID'"):
        stage_source(
            uri, alias="p", settings=SETTINGS, staging_dir=tmp_path, expected_columns=["payment_id"]
        )


def test_plain_http_endpoint_needs_allow_http(
    tmp_path: Path, s3_bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = s3_bucket.put("a.csv", b"a\n1\n")
    monkeypatch.delenv("AWS_ALLOW_HTTP")
    with pytest.raises(SourceError, match="set AWS_ALLOW_HTTP=true"):
        stage_source(uri, alias="a", settings=SETTINGS, staging_dir=tmp_path)


def test_endpoint_down(tmp_path: Path, s3_bucket: Bucket, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    with pytest.raises(
        SourceUnavailableError, match=r"cannot reach S3 at http://127\.0\.0\.1"
    ) as info:
        stage_source(
            f"s3://{s3_bucket.name}/a.csv", alias="a", settings=SETTINGS, staging_dir=tmp_path
        )
    assert "kalla-test-secret" not in str(info.value)


def test_a_key_in_the_uri_is_used_resolved_late_and_never_shown(
    tmp_path: Path, s3_bucket: Bucket, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri = s3_bucket.put("k.csv", b"a\n1\n")
    for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(name)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    with pytest.raises(SourceUnavailableError, match="no AWS credentials"):
        stage_source(uri, alias="k", settings=SETTINGS, staging_dir=tmp_path / "s")

    keyed = uri.replace("s3://", "s3://${KALLA_TEST_KEY_ID}:${KALLA_TEST_SECRET}@", 1)
    with pytest.raises(SourceError, match=r"source 'k': \$\{KALLA_TEST_KEY_ID\} is not set"):
        stage_source(keyed, alias="k", settings=SETTINGS, staging_dir=tmp_path / "s")
    monkeypatch.setenv("KALLA_TEST_KEY_ID", "kalla-test")
    monkeypatch.setenv("KALLA_TEST_SECRET", "Uri-Secret-93f1")
    staged = stage_source(keyed, alias="k", settings=SETTINGS, staging_dir=tmp_path / "s")
    assert staged.row_count == 1 and staged.uri == keyed  # placeholders shown as written

    literal = uri.replace("s3://", "s3://kalla-test:Uri-Secret-93f1@", 1)
    staged = stage_source(literal, alias="k", settings=SETTINGS, staging_dir=tmp_path / "s")
    assert staged.row_count == 1 and staged.uri == uri.replace("s3://", "s3://kalla-test:***@")
    with pytest.raises(SourceError, match=r"the secret is \*\*\* \(a redacted URI\)"):
        stage_source(redact_uri(literal), alias="k", settings=SETTINGS, staging_dir=tmp_path)
    with pytest.raises(SourceError, match="ACCESS_KEY_ID:SECRET") as info:
        stage_source(uri.replace("s3://", "s3://Uri-Secret-93f1@", 1), alias="k", settings=SETTINGS)
    assert "Uri-Secret-93f1" not in str(info.value)
