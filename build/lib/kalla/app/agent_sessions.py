"""Recipe-builder sessions in the app: stored, resumable, one turn at a time.

A session's sources are uploads (saved under ``STAGING_PATH/agent/<id>/uploads``) and
registered sources (by id; their URI is read from the sources table when a tool needs it).
A turn runs on a thread of its own: every event it produces is stored (``agent_events``,
numbered) and handed to the SSE response that asked for it, and the session's state is
stored after each step, so a client that goes away loses nothing and an app that restarts
resumes the session from its last step. The tools run in child processes
(``kalla.agent.runner.ChildProcessTools``).
"""

from __future__ import annotations

import hashlib
import logging
import queue
import shutil
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from kalla.agent.context import SessionSource, ToolContext
from kalla.agent.events import Done, ErrorEvent, Event, parse_event, sse
from kalla.agent.runner import ChildProcessTools, ToolRunner
from kalla.agent.session import ASSISTANT, BUILDER, SessionState, run_turn
from kalla.app.api.recipes import parse_body
from kalla.app.storage import Database, RecipeRepository, SourceRepository
from kalla.app.storage.models import AgentEventRow, AgentSessionRow, utcnow
from kalla.errors import ConflictError, NotFoundError, RecipeError
from kalla.evidence.manifest import canonical_json
from kalla.settings import Settings

log = logging.getLogger("kalla.app.agent")
IDLE, RUNNING = "idle", "running"
_END = object()


@dataclass
class _Turn:
    """The events of a running turn, for the SSE response that started it."""

    events: queue.Queue[Any]


class AgentSessions:
    def __init__(self, db: Database, settings: Settings, tools: ToolRunner | None = None) -> None:
        self.db = db
        self.settings = settings
        self.tools = tools or ChildProcessTools(settings)
        self.root = (Path(settings.staging_path) / "agent").resolve()
        self._live: set[str] = set()
        self._lock = threading.Lock()

    @property
    def mode(self) -> str:
        return ASSISTANT if self.settings.anthropic_api_key else BUILDER

    # --- sessions ----------------------------------------------------------------------------

    def new_id(self) -> str:
        return str(uuid.uuid4())

    def upload_dir(self, session_id: str) -> Path:
        return self.root / session_id / "uploads"

    def create(
        self,
        session_id: str,
        *,
        title: str,
        uploads: dict[str, tuple[Path, str]],
        registered: list[str],
    ) -> AgentSessionRow:
        """A new session over ``uploads`` (alias → (path, file name)) and registered sources."""
        sources: list[dict[str, Any]] = [
            {"alias": alias, "uri": str(path), "type": "file", "name": name, "origin": "upload"}
            for alias, (path, name) in uploads.items()
        ]
        with self.db.session() as session:
            repo = SourceRepository(session)
            known = [row.name for row in repo.all()]
            problems = []
            for name in registered:
                row = repo.by_name(name)
                if row is None:
                    from kalla.suggest import did_you_mean

                    problems.append(
                        f"no registered source named '{name}'{did_you_mean(name, known)}"
                    )
                    continue
                sources.append(
                    {
                        "alias": _alias(name, {s["alias"] for s in sources}),
                        "type": row.type,
                        "name": row.name,
                        "origin": "registered",
                        "source_id": row.id,
                    }
                )
            if problems:
                raise NotFoundError("unknown source(s)", problems=problems)
            aliases = [s["alias"] for s in sources]
            if len(set(aliases)) != len(aliases):
                raise RecipeError(f"two sources share an alias: {', '.join(aliases)}")
            created = AgentSessionRow(
                id=session_id,
                title=title or " ↔ ".join(s["name"] for s in sources) or "new session",
                mode=self.mode,
                status=IDLE,
                sources={"items": sources},
                state=SessionState(mode=self.mode).to_dict(),
                work_dir=str(self.root / session_id),
            )
            session.add(created)
        log.info(
            "agent session %s created (%s, %d sources)", session_id, created.mode, len(sources)
        )
        return created

    def get(self, session: Session, session_id: str) -> AgentSessionRow:
        row = session.get(AgentSessionRow, session_id)
        if row is None:
            raise NotFoundError(f"builder session {session_id} not found")
        if row.status == RUNNING and session_id not in self._live:
            # the turn died with an earlier app process: the session goes on from its last step
            row.status = IDLE
            self._add_event(
                session,
                row,
                ErrorEvent(
                    message="the app restarted during this turn; the session resumes from its "
                    "last completed step: send your message again",
                    retryable=True,
                ),
            )
        return row

    def page(
        self, session: Session, *, limit: int, offset: int
    ) -> tuple[list[AgentSessionRow], int]:
        total = session.scalar(select(func.count()).select_from(AgentSessionRow)) or 0
        rows = session.scalars(
            select(AgentSessionRow)
            .order_by(AgentSessionRow.created_at.desc(), AgentSessionRow.id)
            .limit(limit)
            .offset(offset)
        ).all()
        return list(rows), total

    def events(self, session: Session, session_id: str, after: int) -> list[AgentEventRow]:
        return list(
            session.scalars(
                select(AgentEventRow)
                .where(AgentEventRow.session_id == session_id, AgentEventRow.seq > after)
                .order_by(AgentEventRow.seq)
            ).all()
        )

    def follow(self, session_id: str, after: int, poll: float = 0.25) -> Iterator[str]:
        """The stored events after ``after`` as SSE, then the live ones while a turn runs
        (for ``EventSource``, which reconnects with ``Last-Event-ID``)."""
        last = after
        while True:
            with self.db.session() as session:
                rows = self.events(session, session_id, last)
                running = session_id in self._live
                found = [(row.seq, parse_event(row.payload)) for row in rows]
            for seq, event in found:
                last = seq
                yield sse(event, seq)
                if event.kind == "done":
                    return
            if not found and not running:
                return
            time.sleep(poll)

    def event_count(self, session: Session, session_id: str) -> int:
        return int(
            session.scalar(
                select(func.count())
                .select_from(AgentEventRow)
                .where(AgentEventRow.session_id == session_id)
            )
            or 0
        )

    def context(self, session: Session, row: AgentSessionRow) -> ToolContext:
        items = []
        repo = SourceRepository(session)
        for item in row.sources.get("items", []):
            if item.get("origin") == "registered":
                source = repo.get(int(item["source_id"]))
                if source is None:
                    raise ConflictError(
                        f"registered source '{item['name']}' of this session was deleted"
                    )
                items.append(
                    SessionSource(item["alias"], source.uri, source.type, source.name, "registered")
                )
            else:
                items.append(SessionSource.from_dict(item))
        return ToolContext(
            sources=tuple(items),
            work_dir=Path(row.work_dir),
            share_rows=self.settings.agent_share_rows if row.mode == ASSISTANT else True,
            preview_rows=self.settings.agent_preview_rows,
        )

    def delete_files(self, session_id: str) -> None:
        shutil.rmtree(self.root / session_id, ignore_errors=True)

    # --- turns -------------------------------------------------------------------------------

    def start_turn(self, session_id: str, text: str) -> Iterator[str]:
        """Start a turn; the SSE text of its events as they come."""
        with self._lock:
            if session_id in self._live:
                raise ConflictError(
                    f"builder session {session_id} is answering a message; wait for its "
                    "'done' event"
                )
            with self.db.session() as session:
                row = self.get(session, session_id)
                row.status = RUNNING
                row.updated_at = utcnow()
            self._live.add(session_id)
        turn = _Turn(queue.Queue())
        thread = threading.Thread(
            target=self._run,
            args=(session_id, text, turn),
            name=f"kalla-agent-{session_id[:8]}",
            daemon=True,
        )
        thread.start()
        return self._stream(turn)

    @staticmethod
    def _stream(turn: _Turn) -> Iterator[str]:
        while True:
            item = turn.events.get()
            if item is _END:
                return
            yield item

    def _run(self, session_id: str, text: str, turn: _Turn) -> None:
        try:
            with self.db.session() as session:
                row = self.get(session, session_id)
                state = SessionState.from_dict(row.state)
                context = self.context(session, row)
            events = run_turn(
                state,
                text,
                context=context,
                tools=self.tools,
                settings=self.settings,
                save=lambda recipe: self.save_recipe(recipe),
            )
            for event in events:
                self._record(session_id, state, event, turn)
        except Exception as exc:  # the last resort: a turn never takes the app down
            log.error("builder turn of session %s failed: %s", session_id, type(exc).__name__)
            message = getattr(exc, "message", None) or f"the turn failed: {type(exc).__name__}"
            state = locals().get("state") or SessionState()
            self._record(session_id, state, ErrorEvent(message=str(message)), turn, persist=False)
            self._record(
                session_id,
                state,
                Done(stop_reason="error", mode=state.mode, usage=state.usage, turns=state.turns),
                turn,
                persist=False,
            )
        finally:
            with self.db.session() as session:
                ended = session.get(AgentSessionRow, session_id)
                if ended is not None:
                    ended.status = IDLE
                    ended.updated_at = utcnow()
            with self._lock:
                self._live.discard(session_id)
            turn.events.put(_END)

    def _record(
        self,
        session_id: str,
        state: SessionState,
        event: Event,
        turn: _Turn,
        *,
        persist: bool = True,
    ) -> None:
        with self.db.session() as session:
            row = session.get(AgentSessionRow, session_id)
            if row is None:
                return
            if persist or event.kind != "text_delta":
                row.state = state.to_dict()
            seq = self._add_event(session, row, event)
        turn.events.put(sse(event, seq))

    @staticmethod
    def _add_event(session: Session, row: AgentSessionRow, event: Event) -> int:
        last = session.scalar(
            select(func.max(AgentEventRow.seq)).where(AgentEventRow.session_id == row.id)
        )
        seq = int(last or 0) + 1
        session.add(
            AgentEventRow(session_id=row.id, seq=seq, kind=event.kind, payload=event.to_dict())
        )
        row.updated_at = utcnow()
        return seq

    # --- accepting and saving ----------------------------------------------------------------

    def accept(
        self, session_id: str, *, recipe_id: str | None, name: str | None
    ) -> tuple[dict[str, Any], bool]:
        """Save the session's previewed proposal as a recipe (a new version if it exists)."""
        with self.db.session() as session:
            if session_id in self._live:
                raise ConflictError("the session is answering a message; accept after 'done'")
            row = self.get(session, session_id)
            state = SessionState.from_dict(row.state)
            proposal = state.accept()
            recipe = dict(proposal["recipe"])
            if recipe_id:
                recipe["recipe_id"] = recipe_id
            if name:
                recipe["name"] = name
            saved, created = self._save(session, recipe)
            state.saved = saved
            row.state = state.to_dict()
            row.updated_at = utcnow()
        log.info(
            "builder session %s: recipe %s v%d saved",
            session_id,
            saved["recipe_id"],
            saved["version"],
        )
        return saved, created

    def save_recipe(self, recipe: dict[str, Any]) -> dict[str, Any]:
        with self.db.session() as session:
            saved, _ = self._save(session, recipe)
        return saved

    @staticmethod
    def _save(session: Session, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """As ``POST /api/recipes``: validated, and a new version unless identical to the latest."""
        import json

        recipe = parse_body(json.dumps(body).encode())
        data = recipe.to_dict()
        digest = hashlib.sha256(canonical_json(data).encode()).hexdigest()
        repo = RecipeRepository(session)
        for _ in range(3):
            latest = repo.latest(recipe.recipe_id)
            if latest is not None and latest.sha256 == digest:
                return _saved(latest.recipe_id, latest.version, digest), False
            added = repo.add(recipe_id=recipe.recipe_id, name=recipe.name, body=data, sha256=digest)
            if added is not None:
                session.flush()
                return _saved(added.recipe_id, added.version, digest), True
        raise ConflictError(f"recipe '{recipe.recipe_id}' is being saved concurrently; try again")

    def close(self) -> None:
        close = getattr(self.tools, "close", None)
        if callable(close):
            close()


def _saved(recipe_id: str, version: int, sha256: str) -> dict[str, Any]:
    return {"recipe_id": recipe_id, "version": version, "sha256": sha256}


def _alias(name: str, taken: set[str]) -> str:
    from kalla.agent.builder import alias_for

    return alias_for(name, taken)
