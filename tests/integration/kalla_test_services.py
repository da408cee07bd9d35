"""Helpers for integration tests that use real services (imported by conftest and tests)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PG_SERVER = os.environ.get("KALLA_TEST_PG", "postgres://postgres@127.0.0.1:5432")
MYSQL_HOST = os.environ.get("KALLA_TEST_MYSQL_HOST", "127.0.0.1")
MYSQL_PORT = int(os.environ.get("KALLA_TEST_MYSQL_PORT", "3306"))


@dataclass(frozen=True)
class Database:
    """A scratch database: ``uri`` is the server URI with the database, without ``?table``."""

    name: str
    uri: str

    def table_uri(self, table: str, **options: str) -> str:
        query = "&".join(f"{k}={v}" for k, v in {"table": table, **options}.items())
        return f"{self.uri}?{query}"


def pg_execute(database: Database, *statements: str | tuple[str, Any]) -> None:
    """Run statements (or ``(sql, params)`` pairs) in the scratch database."""
    import psycopg

    with psycopg.connect(database.uri, autocommit=True) as conn:
        for statement in statements:
            if isinstance(statement, tuple):
                sql, params = statement
                with conn.cursor() as cursor:
                    cursor.executemany(sql, params)
            else:
                conn.execute(statement)


def mysql_execute(database: Database, *statements: str | tuple[str, Any]) -> None:
    import pymysql

    conn = pymysql.connect(
        host=MYSQL_HOST,
        port=MYSQL_PORT,
        user="root",
        password="",
        database=database.name,
        charset="utf8mb4",
        autocommit=True,
    )
    try:
        with conn.cursor() as cursor:
            for statement in statements:
                if isinstance(statement, tuple):
                    cursor.executemany(*statement)
                else:
                    cursor.execute(statement)
    finally:
        conn.close()


@dataclass(frozen=True)
class Bucket:
    name: str
    client: Any

    def put(self, key: str, body: bytes) -> str:
        self.client.put_object(Bucket=self.name, Key=key, Body=body)
        return f"s3://{self.name}/{key}"


def run_schemathesis(
    openapi_url: str, *, config: Path | None = None, max_examples: int = 8
) -> tuple[int, str, int]:
    """schemathesis' ``not_a_server_error`` check against a running service, bounded.

    Returns (exit code, output, number of generated cases)."""
    command = [str(Path(sys.executable).with_name("st")), "--no-color"]
    if config is not None:
        command += ["--config-file", str(config)]
    command += [
        "run",
        openapi_url,
        "--checks",
        "not_a_server_error",
        "--max-examples",
        str(max_examples),
        "--phases",
        "examples,coverage,fuzzing",
        "--workers",
        "1",  # hypothesis' lambda descriptions are not thread-safe on CPython 3.11
        "--seed",
        "7",
        "--request-timeout",
        "30",
    ]
    result = subprocess.run(command, capture_output=True, text=True, timeout=240, check=False)
    output = result.stdout + result.stderr
    cases = re.search(r"(\d+) generated", output)
    count = int(cases.group(1)) if cases else 0
    print(f"schemathesis: {count} test cases generated")
    return result.returncode, output, count
