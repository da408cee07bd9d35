"""Replay a run for ``kalla verify``: the engine's digests and the pipeline behind
``evidence.verify.Replayer``, and ``verify_run``, which the CLI and the app call.

The re-run is built from the manifest alone: the match spec from its recipe, each side's
alias, primary key and the filters the engine applied from its ``inputs`` (filters a
database applied while staging are already in the data it staged), each file's ``format``
from the recipe's sources (so an input is read, and digested, as the run read it), the
output ordering from ``outputs_sorted``. It writes into a scratch directory that is
removed afterwards.
"""

from __future__ import annotations

import contextlib
import json
import shutil
import uuid
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

from kalla import pipeline
from kalla.connectors import stage_source
from kalla.connectors.format import FileFormat, Reading
from kalla.engine import EngineOptions, digest_parquet, make_executor
from kalla.errors import EvidenceError
from kalla.evidence.manifest import engine_versions
from kalla.evidence.output import MANIFEST
from kalla.evidence.verify import VerifyReport, verify
from kalla.recipe.models import FilterCondition, MatchSpec
from kalla.settings import Settings, get_settings

_SPEC_FIELDS = ("match_sql", "passes", "cardinality", "rank_by")


class PipelineReplayer:
    """``Replayer`` on this Kalla: DataFusion digests, connectors, the pipeline."""

    def __init__(
        self, settings: Settings, workdir: Path, manifest: Mapping[str, Any] | None = None
    ) -> None:
        self.settings = settings
        self.workdir = workdir
        self.readings: dict[str, Reading] = _readings(manifest) if manifest else {}

    def versions(self) -> Mapping[str, str]:
        with make_executor(EngineOptions.from_settings(self.settings)) as executor:
            return engine_versions(executor.versions())

    def digest(self, path: Path) -> str:
        return digest_parquet(path).hexdigest

    def input_digest(self, alias: str, uri: str) -> str:
        staging = self.workdir / f"inputs-{uuid.uuid4().hex[:8]}"
        try:
            staged = stage_source(
                uri,
                alias=alias,
                settings=self.settings,
                staging_dir=staging,
                reading=self.readings.get(alias),
            )
            return digest_parquet(staged.path).hexdigest
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def rerun(self, manifest: Mapping[str, Any], inputs: Mapping[str, str]) -> Mapping[str, Any]:
        recipe = manifest["recipe"]
        spec = MatchSpec.model_validate({k: recipe[k] for k in _SPEC_FIELDS if k in recipe})
        formats = _formats(recipe)
        left, right = (
            pipeline.SourceSpec(
                alias=str(entry["alias"]),
                uri=inputs[str(entry["alias"])],
                primary_key=tuple(entry["primary_key"]),
                filters=tuple(FilterCondition.model_validate(f) for f in entry.get("filters", [])),
                format=formats.get(str(entry["alias"])),
                allow_duplicate_keys=bool(entry.get("allow_duplicate_keys", False)),
            )
            for entry in manifest["inputs"]
        )
        options = replace(
            EngineOptions.from_settings(self.settings),
            sorted_outputs=bool(manifest.get("outputs_sorted")),
            explain_breaks=bool(manifest.get("breaks_explained")),
            content_digests=True,  # what the comparison is made of, whatever the settings
        )
        output = self.workdir / "run"
        pipeline.run(
            pipeline.RunRequest(
                spec=spec,
                left=left,
                right=right,
                output_dir=output,
                recipe=recipe,
                staging_dir=self.workdir / "staging",
                options=options,
            ),
            settings=self.settings,
        )
        data: dict[str, Any] = json.loads((output / MANIFEST).read_text(encoding="utf-8"))
        return data


def verify_run(
    run_dir: Path, sources: Mapping[str, str], *, settings: Settings | None = None
) -> VerifyReport:
    """Verify a run directory (``evidence.verify``), re-running it in a scratch directory
    under the staging path."""
    settings = settings or get_settings()
    workdir = Path(settings.staging_path) / f"verify-{uuid.uuid4().hex[:12]}"
    try:
        workdir.mkdir(parents=True)
    except OSError as exc:
        raise EvidenceError(f"cannot create a scratch directory {workdir}: {exc}") from None
    try:
        manifest = _manifest(Path(run_dir))
        return verify(Path(run_dir), sources, PipelineReplayer(settings, workdir, manifest))
    finally:
        with contextlib.suppress(OSError):
            shutil.rmtree(workdir)


def _manifest(run_dir: Path) -> Mapping[str, Any] | None:
    """The run's manifest when it reads; ``verify`` reports it when it does not."""
    try:
        data = json.loads((run_dir / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def _formats(recipe: Mapping[str, Any]) -> dict[str, FileFormat]:
    """Each file source's ``format`` in a manifest's recipe (a recipe's ``sources`` object,
    or a job's list of sources)."""
    sources = recipe.get("sources") if isinstance(recipe, Mapping) else None
    entries = list(sources.values()) if isinstance(sources, Mapping) else list(sources or [])
    found: dict[str, FileFormat] = {}
    for entry in entries:
        if isinstance(entry, Mapping) and entry.get("format") and entry.get("alias"):
            with contextlib.suppress(ValueError):
                found[str(entry["alias"])] = FileFormat.model_validate(entry["format"])
    return found


def _readings(manifest: Mapping[str, Any]) -> dict[str, Reading]:
    """How the run read each input (``pipeline.readings``), from its manifest."""
    try:
        recipe = manifest["recipe"]
        spec = MatchSpec.model_validate({k: recipe[k] for k in _SPEC_FIELDS if k in recipe})
        formats = _formats(recipe)
        left, right = (
            pipeline.SourceSpec(
                alias=str(entry["alias"]),
                uri="",
                primary_key=tuple(entry["primary_key"]),
                format=formats.get(str(entry["alias"])),
            )
            for entry in manifest["inputs"]
        )
    except (KeyError, TypeError, ValueError):
        return {}  # verify names what is wrong with the manifest
    return pipeline.readings(spec, left, right)
