"""Metadata store: SQLAlchemy models, repositories and Alembic migrations.

SQLite (``./kalla.db``) when ``DATABASE_URL`` is unset, PostgreSQL when it is set. The
migrations ship inside the package and are applied when the app starts.
"""

from kalla.app.storage.db import Database, database_url
from kalla.app.storage.models import RecipeVersionRow, RunEventRow, RunRow, SourceRow
from kalla.app.storage.repositories import RecipeRepository, RunRepository, SourceRepository

__all__ = [
    "Database",
    "RecipeRepository",
    "RecipeVersionRow",
    "RunEventRow",
    "RunRepository",
    "RunRow",
    "SourceRepository",
    "SourceRow",
    "database_url",
]
