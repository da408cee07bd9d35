"""``kalla suggest LEFT RIGHT``: the deterministic builder on two local files, then a preview.

The aliases are the files' stems as identifiers (``Bank Statement.csv`` → ``bank_statement``);
both sources are ``type: file`` with their columns in ``schema``, so ``kalla run recipe.json
--source <alias>=<file> …`` reproduces the preview on the same files.
"""

from __future__ import annotations

import json
import shutil
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kalla.agent.builder import Suggestion, alias_for, suggest
from kalla.agent.context import SessionSource, ToolContext
from kalla.agent.preview import preview
from kalla.errors import OutputError, SourceError
from kalla.recipe import parse_recipe
from kalla.settings import Settings, get_settings


@dataclass(frozen=True)
class FileSuggestion:
    suggestion: Suggestion
    preview: dict[str, Any]
    sources: dict[str, str]  # alias → file path

    def run_command(self, recipe_path: Path) -> str:
        given = " ".join(f"--source {alias}={path}" for alias, path in self.sources.items())
        return f"kalla run {recipe_path} {given} --output run"

    def to_dict(self, recipe_path: Path) -> dict[str, Any]:
        return {
            "recipe_path": str(recipe_path),
            "recipe": self.suggestion.recipe,
            "findings": list(self.suggestion.findings),
            "preview": self.preview,
            "run": self.run_command(recipe_path),
        }


def suggest_files(left: Path, right: Path, *, settings: Settings | None = None) -> FileSuggestion:
    """Stage both files, design and write the recipe, preview it on the whole files."""
    settings = settings or get_settings()
    for path in (left, right):
        if not path.is_file():
            raise SourceError(f"file not found: {path}")
    la = alias_for(left.name)
    ra = alias_for(right.name, {la})
    work_dir = Path(settings.staging_path) / f"suggest-{uuid.uuid4().hex[:12]}"
    context = ToolContext(
        sources=(
            SessionSource(la, str(left), "file", left.name, "file"),
            SessionSource(ra, str(right), "file", right.name, "file"),
        ),
        work_dir=work_dir,
        preview_rows=settings.agent_preview_rows,
    )
    try:
        found = suggest(la, context.table(la), ra, context.table(ra))
        shown = preview(parse_recipe(found.recipe), context)
    finally:
        shutil.rmtree(work_dir, ignore_errors=True)
    return FileSuggestion(found, shown, {la: str(left), ra: str(right)})


def write_recipe(recipe: dict[str, Any], path: Path, *, overwrite: bool) -> None:
    if path.exists() and not overwrite:
        raise OutputError(f"{path} already exists; choose another --output or pass --overwrite")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(recipe, indent=2) + "\n", encoding="utf-8")
    except OSError as exc:
        raise OutputError(f"cannot write the recipe to {path}: {exc.strerror}") from None
