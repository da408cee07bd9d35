"""What the tools may touch: a session's sources and its scratch directory.

A ``ToolContext`` is plain data (it crosses into the child process that runs the tools). A
session's sources are the only data a tool reads: an alias that is not one of them is an
error naming the ones that are, and a URI never comes from the model. Each source is
staged once per session (``stage_source``) and kept under ``work_dir/staged``.
"""

from __future__ import annotations

import json
import os
import shutil
from collections import OrderedDict
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from kalla.connectors import redact_uri, stage_source
from kalla.errors import RecipeError
from kalla.settings import get_settings
from kalla.suggest import did_you_mean

PREVIEW_ROWS = 2_000_000


@dataclass(frozen=True)
class SessionSource:
    """One source of a session: an upload, a registered source or a local file (CLI)."""

    alias: str
    uri: str  # local path or registered URI (may hold ${ENV}); never shown as is
    type: str = "file"  # the recipe's source type: file | postgres | mysql | s3
    name: str = ""  # what the user calls it: the file's name or the registered name
    origin: str = "upload"  # upload | registered | file

    def public(self) -> dict[str, Any]:
        """What the model and the API see: never a path on the server, never a credential."""
        data: dict[str, Any] = {
            "alias": self.alias,
            "name": self.name or self.alias,
            "type": self.type,
            "origin": self.origin,
        }
        if self.type != "file":
            data["uri"] = redact_uri(self.uri)
        return data

    def recipe_fields(self, columns: list[str]) -> dict[str, Any]:
        """The recipe's source entry for this source (without alias and primary key).

        A registered source's URI goes in redacted: the app takes the password from the
        registered source when a run starts, so none is ever written into a recipe."""
        if self.type == "file":
            return {"type": "file", "schema": columns}
        return {"type": self.type, "uri": redact_uri(self.uri)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionSource:
        return cls(**{k: data[k] for k in ("alias", "uri", "type", "name", "origin") if k in data})

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class ToolContext:
    sources: tuple[SessionSource, ...]
    work_dir: Path
    share_rows: bool = True
    preview_rows: int = PREVIEW_ROWS
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def aliases(self) -> list[str]:
        return [s.alias for s in self.sources]

    def source(self, alias: object) -> SessionSource:
        for s in self.sources:
            if s.alias == alias:
                return s
        raise RecipeError(
            f"'{alias}' is not a source of this session{did_you_mean(str(alias), self.aliases)}; "
            f"its sources are: {', '.join(self.aliases) or 'none'}"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "sources": [s.to_dict() for s in self.sources],
            "work_dir": str(self.work_dir),
            "share_rows": self.share_rows,
            "preview_rows": self.preview_rows,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ToolContext:
        return cls(
            sources=tuple(SessionSource.from_dict(s) for s in data["sources"]),
            work_dir=Path(data["work_dir"]),
            share_rows=bool(data.get("share_rows", True)),
            preview_rows=int(data.get("preview_rows", PREVIEW_ROWS)),
        )

    # --- staged data ---------------------------------------------------------------------

    @property
    def staged_dir(self) -> Path:
        return self.work_dir / "staged"

    def staged_path(self, alias: str) -> Path:
        """The source as Parquet, staged on first use and reused for the whole session."""
        source = self.source(alias)
        index_path = self.staged_dir / "index.json"
        index: dict[str, Any] = {}
        if index_path.exists():
            index = json.loads(index_path.read_text())
        known = index.get(alias)
        if known and known.get("uri") == source.uri and Path(known["path"]).exists():
            return Path(known["path"])
        scratch = self.staged_dir / "scratch"
        staged = stage_source(source.uri, alias=alias, staging_dir=scratch, settings=get_settings())
        path = staged.path
        if path.resolve().is_relative_to(scratch.resolve()):
            kept = self.staged_dir / f"{alias}.parquet"
            shutil.move(path, kept)
            path = kept
        index[alias] = {"uri": source.uri, "path": str(path)}
        self.staged_dir.mkdir(parents=True, exist_ok=True)  # a Parquet file stays where it is
        tmp = index_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(index))
        os.replace(tmp, index_path)
        return path

    def table(self, alias: str) -> pa.Table:
        path = self.staged_path(alias)
        key = (str(path), path.stat().st_mtime_ns)
        table = _TABLES.pop(key, None)
        if table is None:
            table = pq.read_table(path)
        _TABLES[key] = table  # most recent last; a pool worker keeps a few tables at most
        while len(_TABLES) > _CACHED_TABLES:
            _TABLES.popitem(last=False)
        return table


_CACHED_TABLES = 4
_TABLES: OrderedDict[tuple[str, int], pa.Table] = OrderedDict()
