"""The app's metadata store: migrations agree with the models; helpers that guard secrets."""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from kalla.app.jobs import resolve_uri
from kalla.app.server import check_bind
from kalla.app.storage import Database, SourceRow, database_url
from kalla.app.storage.models import Base
from kalla.errors import ConfigError, RecipeError
from kalla.settings import Settings


def _drift(db: Database) -> list[object]:
    with db.engine.connect() as connection:
        return list(compare_metadata(MigrationContext.configure(connection), Base.metadata))


def test_migrations_build_exactly_the_models_on_sqlite(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'kalla.db'}")
    db.migrate()
    db.migrate()  # applying again is a no-op
    assert _drift(db) == []
    db.dispose()


@pytest.mark.postgres
def test_migrations_build_exactly_the_models_on_postgres() -> None:
    psycopg = pytest.importorskip("psycopg")
    name = f"kalla_migrations_{uuid.uuid4().hex[:8]}"
    admin = "postgresql://postgres@127.0.0.1:5432/postgres"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        db = Database(f"postgres://postgres@127.0.0.1:5432/{name}")
        db.migrate()
        assert _drift(db) == []
        db.dispose()
    finally:
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_database_url_defaults_to_sqlite_and_maps_seed_postgres_urls() -> None:
    assert database_url(None) == "sqlite:///./kalla.db"
    assert database_url("postgres://u:p@h/db") == "postgresql+psycopg://u:p@h/db"
    assert database_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert database_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_bad_database_url_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as info:
        Database("postgres//user:Secret-Pw@host/db")
    assert "Secret-Pw" not in str(info.value)


def test_public_bind_needs_a_token() -> None:
    check_bind("127.0.0.1", Settings())
    check_bind("localhost", Settings())
    check_bind("::1", Settings())
    with pytest.raises(ConfigError, match="KALLA_API_TOKEN"):
        check_bind("0.0.0.0", Settings())
    check_bind("0.0.0.0", Settings(KALLA_API_TOKEN="t"))


def test_masked_password_comes_from_the_registered_source() -> None:
    registered = [
        SourceRow(name="a", type="postgres", uri="postgres://app:Pw-1@db:5432/ledger?table=x"),
        SourceRow(name="b", type="mysql", uri="mysql://app:Pw-2@db:3306/shop?table=y"),
    ]
    assert (
        resolve_uri("postgresql://app:***@db:5432/ledger?table=t", "l", registered)
        == "postgresql://app:Pw-1@db:5432/ledger?table=t"
    )
    assert resolve_uri("mysql://app:***@db:3306/x?table=t", "l", registered).startswith(
        "mysql://app:Pw-2@"
    )
    plain = "postgres://app@db/ledger?table=t"
    assert resolve_uri(plain, "l", registered) == plain
    with pytest.raises(RecipeError, match="masked password"):
        resolve_uri("postgres://other:***@db:5432/ledger?table=t", "l", registered)


def test_a_job_finishing_after_its_run_was_cancelled_leaves_no_results(tmp_path: Path) -> None:
    from kalla.app.lifecycle import Lifecycle, Outcome
    from kalla.app.storage import RecipeVersionRow, RunRow
    from kalla.recipe import CompletionCallback

    db = Database(f"sqlite:///{tmp_path / 'kalla.db'}")
    db.migrate()
    run_id = str(uuid.uuid4())
    outputs = tmp_path / "runs" / run_id
    outputs.mkdir(parents=True)
    (outputs / "matched.parquet").write_bytes(b"PAR1")
    with db.session() as session:
        version = RecipeVersionRow(recipe_id="r", version=1, name="r", body={}, sha256="0" * 64)
        session.add(version)
        session.flush()
        session.add(
            RunRow(
                id=run_id,
                recipe_version_id=version.id,
                recipe_id="r",
                recipe_version=1,
                status="running",
                stage="matching",
                mode="embedded",
                output_path=str(outputs),
            )
        )
    lifecycle = Lifecycle(db)
    assert lifecycle.cancelled(run_id, "cancelled on request") is Outcome.APPLIED
    assert lifecycle.cancelled(run_id, "twice") is Outcome.IGNORED
    late = CompletionCallback.model_validate(
        {
            "run_id": run_id,
            "matched_count": 1,
            "unmatched_left_count": 0,
            "unmatched_right_count": 0,
            "output_paths": {
                name: str(outputs / f"{name}.parquet")
                for name in ("matched", "unmatched_left", "unmatched_right")
            },
        }
    )
    assert lifecycle.completed(late) is Outcome.IGNORED
    assert not outputs.exists()
    with db.session() as session:
        run = session.get(RunRow, run_id)
        assert run is not None and (run.status, run.error) == ("cancelled", "cancelled on request")
    db.dispose()
