"""Queries over the metadata store, one repository per aggregate; callers own the session."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from kalla.app.storage.models import RecipeVersionRow, RunEventRow, RunRow, SourceRow, utcnow


def _insert(session: Session, row: object) -> bool:
    """Add ``row`` in a savepoint; False (and nothing added) when it breaks a unique key."""
    try:
        with session.begin_nested():
            session.add(row)
    except IntegrityError:
        return False
    return True


class SourceRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def page(self, *, limit: int, offset: int) -> tuple[Sequence[SourceRow], int]:
        total = self.session.scalar(select(func.count()).select_from(SourceRow)) or 0
        rows = self.session.scalars(
            select(SourceRow).order_by(SourceRow.id).limit(limit).offset(offset)
        ).all()
        return rows, total

    def all(self) -> Sequence[SourceRow]:
        return self.session.scalars(select(SourceRow).order_by(SourceRow.id)).all()

    def get(self, source_id: int) -> SourceRow | None:
        return self.session.get(SourceRow, source_id)

    def by_name(self, name: str) -> SourceRow | None:
        return self.session.scalar(select(SourceRow).where(SourceRow.name == name))

    def add(self, *, name: str, type: str, uri: str, description: str) -> SourceRow | None:
        """The new row, or None when the name is taken."""
        row = SourceRow(name=name, type=type, uri=uri, description=description)
        return row if _insert(self.session, row) else None

    def delete(self, row: SourceRow) -> None:
        self.session.delete(row)


class RecipeRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def latest(self, recipe_id: str) -> RecipeVersionRow | None:
        return self.session.scalar(
            select(RecipeVersionRow)
            .where(RecipeVersionRow.recipe_id == recipe_id)
            .order_by(RecipeVersionRow.version.desc())
            .limit(1)
        )

    def get(self, recipe_id: str, version: int) -> RecipeVersionRow | None:
        return self.session.scalar(
            select(RecipeVersionRow).where(
                RecipeVersionRow.recipe_id == recipe_id, RecipeVersionRow.version == version
            )
        )

    def versions(self, recipe_id: str) -> Sequence[RecipeVersionRow]:
        return self.session.scalars(
            select(RecipeVersionRow)
            .where(RecipeVersionRow.recipe_id == recipe_id)
            .order_by(RecipeVersionRow.version)
        ).all()

    def recipe_ids(self) -> list[str]:
        return list(self.session.scalars(select(RecipeVersionRow.recipe_id).distinct()).all())

    def page_latest(
        self, *, limit: int, offset: int
    ) -> tuple[Sequence[tuple[RecipeVersionRow, int]], int]:
        """The latest version of each recipe with its version count, by recipe_id."""
        counts = (
            select(
                RecipeVersionRow.recipe_id.label("rid"),
                func.max(RecipeVersionRow.version).label("latest"),
                func.count().label("n"),
            )
            .group_by(RecipeVersionRow.recipe_id)
            .subquery()
        )
        total = self.session.scalar(select(func.count()).select_from(counts)) or 0
        query = (
            select(RecipeVersionRow, counts.c.n)
            .join(
                counts,
                (RecipeVersionRow.recipe_id == counts.c.rid)
                & (RecipeVersionRow.version == counts.c.latest),
            )
            .order_by(RecipeVersionRow.recipe_id)
            .limit(limit)
            .offset(offset)
        )
        rows = [(row, int(n)) for row, n in self.session.execute(query).all()]
        return rows, total

    def add(
        self, *, recipe_id: str, name: str, body: dict[str, Any], sha256: str
    ) -> RecipeVersionRow | None:
        """The next version, or None when another writer took that version number first."""
        latest = self.latest(recipe_id)
        row = RecipeVersionRow(
            recipe_id=recipe_id,
            version=(latest.version + 1) if latest else 1,
            name=name,
            body=body,
            sha256=sha256,
        )
        return row if _insert(self.session, row) else None

    def by_pk(self, pk: int) -> RecipeVersionRow | None:
        return self.session.get(RecipeVersionRow, pk)


class RunRepository:
    def __init__(self, session: Session) -> None:
        self.session = session

    def get(self, run_id: str, *, for_update: bool = False) -> RunRow | None:
        if for_update:
            return self.session.scalar(select(RunRow).where(RunRow.id == run_id).with_for_update())
        return self.session.get(RunRow, run_id)

    def add(self, row: RunRow) -> RunRow:
        self.session.add(row)
        self.session.flush()
        return row

    def page(
        self, *, recipe_id: str | None, status: str | None, limit: int, offset: int
    ) -> tuple[Sequence[RunRow], int]:
        query = select(RunRow)
        if recipe_id is not None:
            query = query.where(RunRow.recipe_id == recipe_id)
        if status is not None:
            query = query.where(RunRow.status == status)
        total = self.session.scalar(select(func.count()).select_from(query.subquery())) or 0
        rows = self.session.scalars(
            query.order_by(RunRow.created_at.desc(), RunRow.id).limit(limit).offset(offset)
        ).all()
        return rows, total

    def with_status(self, statuses: Sequence[str]) -> Sequence[RunRow]:
        return self.session.scalars(
            select(RunRow).where(RunRow.status.in_(statuses)).order_by(RunRow.created_at)
        ).all()

    def add_event(
        self, run_id: str, kind: str, payload: dict[str, Any], *, digest: str | None = None
    ) -> bool:
        """Record an event; False (and nothing recorded) when ``digest`` was seen before."""
        event = RunEventRow(run_id=run_id, kind=kind, payload=payload, digest=digest)
        return _insert(self.session, event)

    def seen(self, digest: str) -> bool:
        return (
            self.session.scalar(select(RunEventRow.id).where(RunEventRow.digest == digest))
            is not None
        )

    def events(self, run_id: str) -> Sequence[RunEventRow]:
        return self.session.scalars(
            select(RunEventRow).where(RunEventRow.run_id == run_id).order_by(RunEventRow.id)
        ).all()

    @staticmethod
    def touch(row: RunRow, when: datetime | None = None) -> None:
        row.updated_at = when or utcnow()
