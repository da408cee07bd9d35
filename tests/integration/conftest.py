"""Real services for integration tests: a database of their own on the local PostgreSQL and
MariaDB servers, and moto's S3 server on a free loopback port. Nothing is mocked."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from callback_receiver import free_port
from kalla_test_services import (
    MYSQL_HOST,
    MYSQL_PORT,
    PG_SERVER,
    Bucket,
    Database,
)
from ui_browser import browser, page, ui_app  # noqa: F401 - the browser tests' fixtures


@pytest.fixture
def pg_database() -> Iterator[Database]:
    psycopg = pytest.importorskip("psycopg")
    name = f"kalla_test_{uuid.uuid4().hex[:10]}"
    with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
        admin.execute(f'CREATE DATABASE "{name}"')
    try:
        yield Database(name, f"{PG_SERVER}/{name}")
    finally:
        with psycopg.connect(f"{PG_SERVER}/postgres", autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def mysql_database() -> Iterator[Database]:
    pymysql = pytest.importorskip("pymysql")
    name = f"kalla_test_{uuid.uuid4().hex[:10]}"
    admin = pymysql.connect(host=MYSQL_HOST, port=MYSQL_PORT, user="root", password="")
    try:
        with admin.cursor() as cursor:
            cursor.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4")
        yield Database(name, f"mysql://root@{MYSQL_HOST}:{MYSQL_PORT}/{name}")
    finally:
        with admin.cursor() as cursor:
            cursor.execute(f"DROP DATABASE IF EXISTS `{name}`")
        admin.close()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """moto's S3 server on loopback; yields its endpoint URL."""
    server_mod = pytest.importorskip("moto.server")
    port = free_port()
    server = server_mod.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(s3_server: str, monkeypatch: pytest.MonkeyPatch) -> Bucket:
    """A fresh bucket, with the AWS_* environment pointing Kalla at the moto server."""
    boto3 = pytest.importorskip("boto3")
    for name, value in {
        "AWS_ACCESS_KEY_ID": "kalla-test",
        "AWS_SECRET_ACCESS_KEY": "kalla-test-secret",
        "AWS_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": s3_server,
        "AWS_ALLOW_HTTP": "true",
    }.items():
        monkeypatch.setenv(name, value)
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    name = f"kalla-test-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=name)
    return Bucket(name, client)
