"""Secrets in URIs: redaction keeps placeholders and masks literals, the warnings say how to
fix it, ``${ENV}`` errors name the placeholder, scrubbing masks what a text may carry, the
manifest never holds a password, and the app's credential lookup lends only placeholders."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from kalla.app.jobs import resolve_uri
from kalla.app.storage.models import SourceRow
from kalla.errors import RecipeError, SourceError
from kalla.evidence.manifest import build_manifest, canonical_json
from kalla.secrets import (
    Scrubber,
    has_masked_secret,
    literal_secret_warnings,
    literal_secrets,
    redact_recipe,
    redact_uri,
    resolve_env,
    scrub,
)

REDACTED = [
    (
        "postgres://user:s3cret@db.example:5432/ledger?table=invoices",
        "postgres://user:***@db.example:5432/ledger?table=invoices",
    ),
    (
        "postgresql://user:p%40ss@host/db?table=public.t",
        "postgresql://user:***@host/db?table=public.t",
    ),
    ("postgres://user@host/db?table=t", "postgres://user@host/db?table=t"),
    (
        "postgres://host/db?table=My%20Table&password=hunter2&sslmode=require",
        "postgres://host/db?table=My%20Table&password=***&sslmode=require",
    ),
    ("s3://AKIAKEY:wJalrXUtn@bucket/x.csv", "s3://AKIAKEY:***@bucket/x.csv"),
    ("s3://bucket/dir/file.csv", "s3://bucket/dir/file.csv"),
    ("/data/payments.csv", "/data/payments.csv"),
    ("not a uri: user:pw@[host", "not a uri: user:***@[host"),
    ("http://[::1", "http://[::1"),
    ("http://u:pw@[::1", "***"),
]
KEPT = [
    "postgres://u:${PG_PASSWORD}@host/db?table=t",
    "postgres://${PG_USER}:${PG_PASSWORD}@host/db?table=t",
    "postgres://u:%24%7BPG_PASSWORD%7D@host/db?table=t",  # a placeholder, percent-encoded
    "mysql://root:@127.0.0.1:3306/db?table=t",  # an empty password reveals nothing
    "mysql://h/db?table=t&password=${MYSQL_PW}",
    "postgres://u:***@host/db?table=t",  # already masked
]


@pytest.mark.parametrize(("uri", "expected"), REDACTED)
def test_redact_uri_masks_literal_secrets(uri: str, expected: str) -> None:
    assert redact_uri(uri) == expected
    for secret in ("s3cret", "p%40ss", "hunter2", "wJalrXUtn", "pw@"):
        assert secret not in redact_uri(uri)


@pytest.mark.parametrize("uri", KEPT)
def test_redact_uri_keeps_placeholders_as_written(uri: str) -> None:
    assert redact_uri(uri) == uri
    assert literal_secrets(uri) == []


def test_literal_secrets_say_what_is_literal() -> None:
    assert literal_secrets("postgres://u:pw@h/db?table=t") == ["password"]
    assert literal_secrets("mysql://h/db?table=t&token=abc&pwd=${X}") == ["'token' parameter"]
    assert has_masked_secret("postgres://u:***@h/db") and has_masked_secret("s3://b/k?sig=***")
    assert not has_masked_secret("postgres://u:${PW}@h/db")


def test_warnings_name_the_source_and_show_the_placeholder_form() -> None:
    recipe = {
        "sources": {
            "left": {"alias": "invoices", "uri": "postgres://app:Hunter2@db:5432/erp?table=inv"},
            "right": {"alias": "payments", "uri": "postgres://app:${PGPASSWORD}@db/erp?table=p"},
        }
    }
    (note,) = literal_secret_warnings(recipe)
    assert note.startswith("source 'invoices': its URI holds a literal password;")
    assert "postgres://app:${ENV_NAME}@db:5432/erp?table=inv" in note
    assert "Hunter2" not in note
    job = {"sources": [{"alias": "a", "uri": "s3://K:S3cr3t@b/x.csv"}]}
    assert "S3cr3t" not in literal_secret_warnings(job)[0]


def test_redact_recipe_redacts_every_uri_in_either_shape() -> None:
    data = {
        "match_sql": "SELECT 'postgres://u:keep@h' AS literal_in_sql",
        "sources": {
            "left": {"alias": "a", "uri": "postgres://u:pw1@h/db?table=t"},
            "right": {"alias": "b", "uri": "mysql://u:${PW}@h/db?table=t"},
        },
        "jobs": [{"sources": [{"uri": "s3://K:pw2@b/x.csv"}]}],
    }
    redacted = redact_recipe(data)
    text = json.dumps(redacted)
    assert "pw1" not in text and "pw2" not in text
    assert redacted["sources"]["right"]["uri"] == "mysql://u:${PW}@h/db?table=t"
    assert redacted["match_sql"] == data["match_sql"]  # only URIs are touched
    assert data["sources"]["left"]["uri"].endswith("pw1@h/db?table=t")  # a copy


def test_unset_placeholder_is_named_never_a_value(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("KALLA_TEST_PGPASSWORD", raising=False)
    monkeypatch.setenv("KALLA_TEST_USER", "Sekrit-user-value")
    with pytest.raises(SourceError) as info:
        resolve_env("${KALLA_TEST_USER}:${KALLA_TEST_PGPASSWORD}", alias="inv")
    assert str(info.value).startswith("source 'inv': ${KALLA_TEST_PGPASSWORD} is not set")
    assert "Sekrit" not in str(info.value)
    monkeypatch.setenv("KALLA_TEST_PGPASSWORD", "x/y@z")
    assert resolve_env("${KALLA_TEST_USER}:${KALLA_TEST_PGPASSWORD}", alias="i") == (
        "Sekrit-user-value:x/y@z"
    )


def test_scrubber_masks_what_the_uris_carry_and_keeps_placeholder_names() -> None:
    scrubber = Scrubber.for_uris(
        [
            "postgres://kalla:p%40ss-word@db:5432/books?table=t",
            "mysql://root:${DB_PASSWORD}@db/x?table=t",
            "s3://bucket/f.csv?token=tok-123456",
        ],
        environ={"DB_PASSWORD": "from-env-999"},
    )
    text = scrubber(
        "failed: p@ss-word p%40ss-word from-env-999 tok-123456 and "
        "https://someone:else@host/x?api_key=k-1 still table=t; ${DB_PASSWORD} is not set"
    )
    for secret in ("p@ss-word", "p%40ss-word", "from-env-999", "tok-123456", "else@", "k-1"):
        assert secret not in text
    assert "https://someone:***@host/x?api_key=***" in text
    assert "table=t" in text and "${DB_PASSWORD} is not set" in text


@pytest.mark.parametrize(
    "value",
    ["PASSWORD", "PGPASSWORD", "the environment"],
)
def test_a_secret_spelling_part_of_a_placeholder_never_hides_its_name(value: str) -> None:
    """The value of one placeholder may spell part of another's name, or of the message
    around it (``${PGPASSWORD}`` while ``PGUSER=PASSWORD``): the error still names the
    placeholder that is not set, and the value is still masked wherever it stands alone."""
    scrubber = Scrubber.for_uris(
        ["postgres://${PGUSER}:${PGPASSWORD}@db/erp?table=t"], environ={"PGUSER": value}
    )
    with pytest.raises(SourceError) as info:
        resolve_env("${PGPASSWORD}", alias="invoices")
    shown = scrubber(f"{info.value.message}; as user {value}")
    assert shown.startswith("source 'invoices': ${PGPASSWORD} is not set"), shown
    assert shown.endswith("as user ***"), shown


def test_scrub_without_known_secrets() -> None:
    assert scrub("at postgres://u:pw@h/db\x00 and mysql://u:${X}@h") == (
        "at postgres://u:***@h/db and mysql://u:${X}@h"
    )
    assert scrub("GET /x?Password=abc&page=2") == "GET /x?Password=***&page=2"


def test_manifest_records_and_hashes_the_redacted_recipe(tmp_path: Path) -> None:
    out = tmp_path / "matched.parquet"
    pq.write_table(pa.table({"id": [1]}), out)
    recipe = {
        "recipe_id": "r",
        "sources": {"left": {"alias": "a", "uri": "postgres://u:Manifest-Pw-1@h/db?table=t"}},
    }
    summary = {
        "control_totals": [],
        "passes": [],
        "timings": {},
        **{
            k: 0
            for k in (
                "matched_count",
                "unmatched_left_count",
                "unmatched_right_count",
                "ambiguous_left_count",
                "ambiguous_right_count",
                "ambiguous_count",
                "left_rows",
                "right_rows",
            )
        },
    }
    manifest = build_manifest(
        recipe=recipe,
        sql=[],
        inputs=[],
        outputs={"matched": out},
        summary=summary,
        started_at=datetime.now(UTC),
        engine={"datafusion": "test"},
    )
    assert "Manifest-Pw-1" not in json.dumps(manifest)
    assert manifest["recipe"]["sources"]["left"]["uri"] == "postgres://u:***@h/db?table=t"
    import hashlib

    assert (
        manifest["recipe_sha256"]
        == hashlib.sha256(canonical_json(manifest["recipe"]).encode()).hexdigest()
    )
    assert manifest["recipe_sha256_of"] == "recipe with literal secrets redacted"


def source(uri: str) -> SourceRow:
    return SourceRow(name="s", type="postgres", uri=uri, description="")


def test_credential_lookup_lends_the_registered_placeholder() -> None:
    registered = [
        source("postgres://app:${OTHER}@db:6432/ledger?table=x"),  # another port
        source("postgresql://app:${LEDGER_PW}@DB:5432/other?table=y"),  # same server and user
    ]
    assert (
        resolve_uri("postgres://app:***@db:5432/ledger?table=t", "inv", registered)
        == "postgres://app:${LEDGER_PW}@db:5432/ledger?table=t"
    )
    query = [source("mysql://db/shop?table=o&password=${SHOP_PW}")]
    assert (
        resolve_uri("mariadb://db/shop?table=p&password=***", "p", query)
        == "mariadb://db/shop?table=p&password=${SHOP_PW}"
    )
    plain = "postgres://app:${PW}@db/ledger?table=t"
    assert resolve_uri(plain, "inv", []) == plain


def test_credential_lookup_never_lends_a_mask() -> None:
    stored = [source("postgres://app:***@db:5432/ledger?table=x")]  # a literal, not stored
    with pytest.raises(RecipeError, match="no registered source for that server and user"):
        resolve_uri("postgres://app:***@db:5432/ledger?table=t", "inv", stored)
