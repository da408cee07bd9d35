"""No literal password reaches ``manifest.json``, an API response, the app's store or a log
line: real runs against the local PostgreSQL, MariaDB and moto's S3 server.

For each kind the invoices live behind a password only this test knows (a MariaDB user
created with it; the key of the S3 URI; PostgreSQL's local trust auth ignores the password,
which is still written in the URI and handed to both drivers) and the payments are a CSV:

* ``kalla run`` (a real CLI process) with the password written literally in the recipe: the
  run completes, stderr warns to write ``${ENV_NAME}`` instead, and neither ``manifest.json``
  nor anything the process printed holds the password.
* ``kalla serve`` (a real app process, its log captured): the source is registered with the
  literal password and tested at registration (ok), the recipe saved with it (stored
  redacted, with a warning), and a run completes with the password lent by a registered
  source that holds it as ``${ENV_NAME}`` in the app's environment. No response body, no log
  line, no byte of the store (SQLite) and no output file holds the password.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest
from kalla_test_services import (
    MYSQL_HOST,
    MYSQL_PORT,
    Bucket,
    Database,
    mysql_execute,
    pg_execute,
)
from test_app_harness import RESPONSES, app_process, base_env, client, upload, wait_for_run

INVOICES = [("I1", "10.00"), ("I2", "20.00"), ("I3", "30.00")]
PAYMENTS_CSV = "payment_id,reference_number,amount\nP1,I1,10.00\nP2,I2,20.00\nP9,I9,1.00\n"
ENV_NAME = "KALLA_TEST_SOURCE_PASSWORD"


@dataclass(frozen=True)
class Secured:
    """Invoices behind ``password``: the source's URI with it written literally, and the
    environment a process needs to reach the server (besides the password)."""

    kind: str
    password: str
    literal_uri: str
    env: dict[str, str]

    def with_password(self, text: str) -> str:
        return self.literal_uri.replace(self.password, text, 1)


def _password(kind: str) -> str:
    return f"Lit-{kind}-{uuid.uuid4().hex[:12]}"


def postgres_source(request: pytest.FixtureRequest) -> Secured:
    database: Database = request.getfixturevalue("pg_database")
    pg_execute(
        database,
        "CREATE TABLE invoices (invoice_id text PRIMARY KEY, amount numeric(10,2))",
        ("INSERT INTO invoices VALUES (%s, %s)", INVOICES),
    )
    password = _password("pg")
    uri = database.uri.replace("postgres@", f"postgres:{password}@", 1) + "?table=invoices"
    return Secured("postgres", password, uri, {})


def mysql_source(request: pytest.FixtureRequest) -> Secured:
    import pymysql

    database: Database = request.getfixturevalue("mysql_database")
    mysql_execute(
        database,
        "CREATE TABLE invoices (invoice_id varchar(10) PRIMARY KEY, amount decimal(10,2))",
        ("INSERT INTO invoices VALUES (%s, %s)", INVOICES),
    )
    user, password = f"kalla_s_{uuid.uuid4().hex[:8]}", _password("my")
    hosts = ("%", "localhost", "127.0.0.1")
    admin = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", password="")
    with admin.cursor() as cursor:
        for host in hosts:
            cursor.execute(f"CREATE USER '{user}'@'{host}' IDENTIFIED BY '{password}'")
            cursor.execute(f"GRANT SELECT ON `{database.name}`.* TO '{user}'@'{host}'")

    def drop() -> None:
        with admin.cursor() as cursor:
            for host in hosts:
                cursor.execute(f"DROP USER IF EXISTS '{user}'@'{host}'")
        admin.close()

    request.addfinalizer(drop)
    uri = f"mysql://{user}:{password}@{MYSQL_HOST}:{MYSQL_PORT}/{database.name}?table=invoices"
    return Secured("mysql", password, uri, {})


def s3_source(request: pytest.FixtureRequest) -> Secured:
    bucket: Bucket = request.getfixturevalue("s3_bucket")
    body = "invoice_id,amount\n" + "".join(f"{i},{a}\n" for i, a in INVOICES)
    bucket.put("ledger/invoices.csv", body.encode())
    password = _password("s3")
    uri = f"s3://kalla-test:{password}@{bucket.name}/ledger/invoices.csv"
    env = {  # no AWS_ACCESS_KEY_ID: only the URI's key can read the object
        "AWS_ENDPOINT_URL": request.getfixturevalue("s3_server"),
        "AWS_ALLOW_HTTP": "true",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent",
        "AWS_CONFIG_FILE": "/nonexistent",
    }
    return Secured("s3", password, uri, env)


KINDS: list = [
    pytest.param(postgres_source, id="postgres", marks=pytest.mark.postgres),
    pytest.param(mysql_source, id="mysql", marks=pytest.mark.mysql),
    pytest.param(s3_source, id="s3", marks=pytest.mark.s3),
]


@pytest.fixture(params=KINDS)
def secured(request: pytest.FixtureRequest) -> Iterator[Secured]:
    make: Callable[[pytest.FixtureRequest], Secured] = request.param
    yield make(request)


def recipe(recipe_id: str, uri: str, kind: str) -> dict[str, object]:
    return {
        "recipe_id": recipe_id,
        "name": "invoices vs payments",
        "match_sql": (
            "SELECT i.invoice_id, p.payment_id FROM invoices i JOIN payments p"
            " ON i.invoice_id = p.reference_number"
        ),
        "sources": {
            "left": {"alias": "invoices", "type": kind, "uri": uri, "primary_key": ["invoice_id"]},
            "right": {
                "alias": "payments",
                "type": "file",
                "schema": ["payment_id", "reference_number"],
                "primary_key": ["payment_id"],
            },
        },
    }


def files_under(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file()]


def assert_nowhere(password: str, *texts: bytes | str, paths: Sequence[Path] = ()) -> None:
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        assert password.encode() not in data, data[:400]
    for path in paths:
        assert password.encode() not in path.read_bytes(), path


def test_kalla_run_keeps_a_literal_password_out_of_the_manifest_and_the_output(
    tmp_path: Path, secured: Secured
) -> None:
    recipe_path = tmp_path / "recipe.json"
    recipe_path.write_text(json.dumps(recipe("cli", secured.literal_uri, secured.kind)))
    payments = tmp_path / "payments.csv"
    payments.write_text(PAYMENTS_CSV)
    output = tmp_path / "out"
    env = base_env(tmp_path, **secured.env)
    result = subprocess.run(
        [sys.executable, "-m", "kalla.cli", "run", str(recipe_path), "--source",
         f"payments={payments}", "--output", str(output), "--json"],
        env=env, capture_output=True, timeout=120, check=False,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr.decode()
    summary = json.loads(result.stdout)
    assert (summary["matched_count"], summary["unmatched_left_count"]) == (2, 1)
    stderr = result.stderr.decode()
    assert "warning: source 'invoices': its URI holds a literal password" in stderr
    assert "${ENV_NAME}" in stderr

    manifest = json.loads((output / "manifest.json").read_text())
    assert manifest["recipe"]["sources"]["left"]["uri"] == secured.with_password("***")
    assert manifest["recipe_sha256_of"] == "recipe with literal secrets redacted"
    assert_nowhere(secured.password, result.stdout, result.stderr, paths=files_under(output))


def test_the_app_never_stores_returns_or_logs_a_literal_password(
    tmp_path: Path, secured: Secured
) -> None:
    payments = tmp_path / "payments.csv"
    payments.write_text(PAYMENTS_CSV)
    app = app_process(tmp_path, **secured.env, **{ENV_NAME: secured.password}).start()
    seen = len(RESPONSES)
    try:
        http = client(app.url)
        registered = http.post(
            "/api/sources",
            params={"test": "true", "rows": 2},
            json={"name": "ledger", "uri": secured.literal_uri},
        )
        assert registered.status_code == 201, registered.text
        body = registered.json()
        assert body["test"]["ok"] is True, body  # the literal served the test at registration
        assert len(body["test"]["sample"]) == 2
        assert body["uri"] == secured.with_password("***") and body["warnings"]

        # the server's password as a placeholder, resolved from the app's environment
        lender = secured.with_password("${" + ENV_NAME + "}")
        lent = http.post("/api/sources", json={"name": "ledger-env", "uri": lender})
        assert lent.status_code == 201 and lent.json()["uri"] == lender, lent.text
        tested = http.post(f"/api/sources/{lent.json()['id']}/test").json()
        assert tested["ok"] is True, tested

        saved = http.post("/api/recipes", json=recipe("app", secured.literal_uri, secured.kind))
        assert saved.status_code == 201, saved.text
        assert saved.json()["recipe"]["sources"]["left"]["uri"] == secured.with_password("***")
        assert "literal password" in saved.json()["warnings"][0]

        started = upload(http, "app", {"payments": payments})
        assert started.status_code == 202, started.text
        run = wait_for_run(http, started.json()["id"])
        assert run["status"] == "completed", run
        assert (run["counts"]["matched"], run["counts"]["unmatched_left"]) == (2, 1)
        manifest_uri = run["manifest"]["recipe"]["sources"][0]["uri"]
        assert manifest_uri == lender  # what the job ran with, its placeholder as written
        for path in ("/api/sources", "/api/recipes/app", f"/api/runs/{run['id']}/events"):
            assert http.get(path).status_code == 200
    finally:
        app.stop()

    assert len(RESPONSES) - seen >= 8
    assert_nowhere(
        secured.password,
        *RESPONSES[seen:],
        app.log(),
        paths=[tmp_path / "kalla.db", *files_under(tmp_path / "runs")],
    )
    assert "registered: " + secured.with_password("***") in app.log()  # logged, masked
