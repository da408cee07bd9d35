"""Stage both sources, then reconcile: the one function the CLI, worker and app all call."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa

from kalla.connectors import StagedSource, stage_source
from kalla.connectors.base import TableWriter
from kalla.connectors.format import FileFormat, Reading
from kalla.connectors.registry import locate
from kalla.engine import EngineOptions, RunSummary, SourceInput, make_executor, reconcile
from kalla.engine.executor import Executor
from kalla.errors import RecipeError
from kalla.evidence.digest import TableDigest
from kalla.evidence.export import ExportFormat
from kalla.evidence.output import check_output_target
from kalla.plan.compared import compared_columns
from kalla.recipe.models import FilterCondition, MatchSpec, Recipe
from kalla.settings import Settings, get_settings
from kalla.suggest import did_you_mean

StageProgress = Callable[[str, str | None, float], None]
"""(stage, source alias or None, fraction done): "staging" per source, then "matching"."""


@dataclass(frozen=True)
class SourceSpec:
    """What the pipeline needs to know about one side before staging it."""

    alias: str
    uri: str
    primary_key: tuple[str, ...]
    filters: tuple[FilterCondition, ...] = ()
    expected_columns: tuple[str, ...] | None = None
    format: FileFormat | None = None  # the recipe's format for a file source
    allow_duplicate_keys: bool = False  # else a primary key repeated in the source is refused


@dataclass(frozen=True)
class RunRequest:
    spec: MatchSpec
    left: SourceSpec
    right: SourceSpec
    output_dir: Path
    recipe: Mapping[str, Any] | None = None
    overwrite: bool = False
    staging_dir: Path | None = None
    options: EngineOptions | None = None
    exports: tuple[ExportFormat, ...] = ()  # CSV / XLSX beside the Parquet outputs


def sources_from_recipe(recipe: Recipe, paths: Mapping[str, str]) -> tuple[SourceSpec, SourceSpec]:
    """Both sides of a recipe; file sources take their path from ``paths`` (alias -> path)."""
    aliases = [recipe.sources.left.alias, recipe.sources.right.alias]
    problems = [
        f"--source names '{alias}', which is not a source of this recipe"
        f"{did_you_mean(alias, aliases)}; its sources are: {', '.join(aliases)}"
        for alias in paths
        if alias not in aliases
    ]
    sides = []
    for source in (recipe.sources.left, recipe.sources.right):
        uri = paths.get(source.alias) or source.uri
        if not uri:
            problems.append(
                f"source '{source.alias}' is a file source: give its file with "
                f"--source {source.alias}=PATH"
            )
            uri = ""
        sides.append(
            SourceSpec(
                alias=source.alias,
                uri=uri,
                primary_key=tuple(source.primary_key),
                filters=tuple(source.filters),
                expected_columns=tuple(source.schema_)
                if source.is_file and source.schema_
                else None,
                format=source.format,
                allow_duplicate_keys=source.allow_duplicate_keys,
            )
        )
    if problems:
        raise RecipeError("cannot run the recipe", problems=problems)
    return sides[0], sides[1]


def readings(spec: MatchSpec, left: SourceSpec, right: SourceSpec) -> dict[str, Reading]:
    """How each side is read: its format, and its key columns (its primary key and the
    columns the SQL compares with ``=`` to the other side), typed alike on both sides."""
    compared = compared_columns(spec, [left.alias, right.alias])
    return {
        side.alias: Reading(
            format=side.format or FileFormat(),
            key_columns=frozenset(side.primary_key) | compared[side.alias],
        )
        for side in (left, right)
    }


def _stage(
    side: SourceSpec,
    staging_dir: Path,
    progress: StageProgress,
    settings: Settings,
    writer: TableWriter,
    reading: Reading,
) -> StagedSource:
    return stage_source(
        side.uri,
        alias=side.alias,
        settings=settings,
        staging_dir=staging_dir,
        progress=lambda fraction: progress("staging", side.alias, fraction),
        expected_columns=side.expected_columns,
        filters=side.filters,
        writer=writer,
        reading=reading,
    )


def staging_writer(executor: Executor) -> TableWriter:
    """The engine's writer for staged tables, which digests the rows as it writes them."""

    def write(table: pa.Table, path: Path) -> Future[TableDigest] | None:
        return executor.write_table(table, path, digest=True).digest

    return write


def run(
    request: RunRequest,
    *,
    progress: StageProgress | None = None,
    settings: Settings | None = None,
) -> RunSummary:
    """Stage both sources into the staging dir (written by the engine's Parquet writer),
    reconcile on the engine the options name, and clean up what was staged."""
    settings = settings or get_settings()
    report: StageProgress = progress or (lambda stage, alias, fraction: None)
    staging_dir = request.staging_dir or settings.staging_path
    check_output(request, staging_dir)
    staged: list[StagedSource] = []
    options = request.options or EngineOptions.from_settings(settings)
    reading = readings(request.spec, request.left, request.right)
    try:
        with make_executor(options) as executor:
            for side in (request.left, request.right):
                staged.append(
                    _stage(
                        side,
                        staging_dir,
                        report,
                        settings,
                        staging_writer(executor),
                        reading[side.alias],
                    )
                )
            inputs = [
                SourceInput(
                    alias=side.alias,
                    path=s.path,
                    primary_key=side.primary_key,
                    filters=tuple(f for f in side.filters if f not in s.filters_applied),
                    uri=s.uri,
                    fingerprint=s.fingerprint,
                    allow_duplicate_keys=side.allow_duplicate_keys,
                    digest=s.digest,
                )
                for side, s in zip((request.left, request.right), staged, strict=True)
            ]
            return reconcile(
                request.spec,
                inputs[0],
                inputs[1],
                request.output_dir,
                executor=executor,
                recipe=request.recipe,
                overwrite=request.overwrite,
                progress=lambda stage, fraction: report(stage, None, fraction),
                exports=request.exports,
            )
    finally:
        _remove_staged(staged, staging_dir)


def check_output(request: RunRequest, staging_dir: Path) -> None:
    """Refuse, before anything is read, outputs that would land on or over a local input,
    the staging directory or the working directory (``evidence.output``)."""
    inputs = []
    for side in (request.left, request.right):
        path = locate(side.uri, alias=side.alias).path
        if path is not None:
            inputs.append((f"source '{side.alias}'", path))
    check_output_target(
        request.output_dir,
        inputs,
        overwrite=request.overwrite,
        keep=[("the staging directory", staging_dir), ("the working directory", Path.cwd())],
    )


def _remove_staged(staged: Sequence[StagedSource], staging_dir: Path) -> None:
    """Staged copies are scratch; a source registered where it lies is never touched."""
    root = Path(staging_dir).resolve()
    for s in staged:
        path = s.path.resolve()
        if path.is_relative_to(root):
            with contextlib.suppress(OSError):
                path.unlink()
