"""Engine, sessions and migrations for the metadata store."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

from kalla.errors import ConfigError

MIGRATIONS = Path(__file__).parent / "migrations"
DEFAULT_SQLITE = "sqlite:///./kalla.db"
_MIGRATION_LOCK = 0x4B414C4C41  # "KALLA": serialises migrations of app instances sharing a DB

log = logging.getLogger("kalla.app.storage")


def database_url(value: str | None) -> str:
    """``DATABASE_URL`` → a SQLAlchemy URL; ``postgres://`` (seed style) uses psycopg 3."""
    if not value:
        return DEFAULT_SQLITE
    for prefix in ("postgres://", "postgresql://"):
        if value.startswith(prefix):
            return "postgresql+psycopg://" + value.removeprefix(prefix)
    return value


class Database:
    """One engine and session factory; ``migrate()`` brings the schema to the latest version."""

    def __init__(self, url: str | None) -> None:
        self.url = database_url(url)
        try:
            parsed = make_url(self.url)
        except Exception:  # the URL may hold a password: never echo it
            raise ConfigError("DATABASE_URL is not a valid database URL") from None
        self.dialect = parsed.get_backend_name()
        # hide_parameters: a failed statement's message never carries the values (a source
        # URI may hold a password)
        kwargs: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
        if self.dialect == "sqlite":
            kwargs["connect_args"] = {"check_same_thread": False, "timeout": 30}
            if parsed.database and parsed.database != ":memory:":
                Path(parsed.database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        try:
            self.engine: Engine = create_engine(parsed, **kwargs)
        except Exception as exc:  # e.g. an unknown driver in the URL
            raise ConfigError(f"DATABASE_URL cannot be used: {type(exc).__name__}") from None
        if self.dialect == "sqlite":
            event.listen(self.engine, "connect", _sqlite_pragmas)
        self.sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def display_url(self) -> str:
        return self.engine.url.render_as_string(hide_password=True)

    @contextmanager
    def session(self) -> Iterator[Session]:
        """A session that commits on success and rolls back on error."""
        with self.sessions() as session, session.begin():
            yield session

    def migrate(self) -> None:
        """Apply every Alembic migration not yet applied (one instance at a time on PostgreSQL)."""
        from alembic import command
        from alembic.config import Config

        logging.getLogger("alembic.runtime.plugins").setLevel(logging.WARNING)
        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            if self.dialect == "postgresql":
                connection.execute(
                    text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK}
                )
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
        log.info("metadata store ready (%s)", self.display_url)

    def dispose(self) -> None:
        self.engine.dispose()


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()
