"""``manifest.json``: everything an auditor needs to trust and reproduce a run."""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

import kalla
from kalla.errors import EvidenceError
from kalla.evidence.digest import ALGORITHM, TableDigest
from kalla.hashing import sha256_file
from kalla.secrets import redact_recipe


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def engine_versions(engine: Mapping[str, str]) -> dict[str, str]:
    """The versions a run records (``engine``: Kalla's, the executor's libraries', pyarrow's,
    Python's) and a verification compares with its own."""
    return {
        "kalla": kalla.__version__,
        **engine,
        "pyarrow": pa.__version__,
        "python": platform.python_version(),
    }


def manifest_sha256(manifest: Mapping[str, Any]) -> str:
    """sha256 of the manifest's canonical JSON without its own ``manifest_sha256`` field."""
    body = {k: v for k, v in manifest.items() if k != "manifest_sha256"}
    return hashlib.sha256(canonical_json(body).encode()).hexdigest()


def content_digest(digest: Future[TableDigest] | None) -> dict[str, Any]:
    """A table's ``digest`` entry: the hex digest, or null and why there is none."""
    if digest is None:
        return {}
    try:
        return {"digest": digest.result().hexdigest}
    except EvidenceError as exc:
        return {"digest": None, "digest_error": exc.message}


def build_manifest(
    *,
    recipe: Mapping[str, Any],
    sql: Sequence[Mapping[str, str]],
    inputs: Sequence[Mapping[str, Any]],
    outputs: Mapping[str, Path],
    digests: Mapping[str, Future[str]] | None = None,
    input_digests: Mapping[str, Future[TableDigest]] | None = None,
    output_digests: Mapping[str, Future[TableDigest]] | None = None,
    sorted_outputs: bool = False,
    breaks_explained: bool = False,
    exports: Mapping[str, Path] | None = None,
    summary: Mapping[str, Any],
    started_at: datetime,
    engine: Mapping[str, str],
    executor: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest as a dict; outputs are fingerprinted here, after they are complete.

    The recipe is recorded, and hashed, with every literal secret in its URIs redacted
    (``${ENV}`` placeholders kept): a manifest never holds a password. ``engine``: the
    executor's library versions; ``executor``: the settings it ran with. Every input and
    output table carries its content digest (``kalla.evidence.digest``: independent of row
    order and file layout) beside the file's sha256, when the caller computed it
    (``input_digests`` by alias, ``output_digests`` by output name). The last field,
    ``manifest_sha256``, hashes all the others. Without ``output_digests`` (digests switched
    off) ``digest_algorithm`` is null.
    """
    recipe = redact_recipe(recipe)
    files = {}
    for name, path in outputs.items():
        digest = digests.get(name) if digests else None
        files[name] = {
            "file": path.name,
            "rows": pq.ParquetFile(path).metadata.num_rows,
            "sha256": digest.result() if digest is not None else sha256_file(path),
            "bytes": path.stat().st_size,
            **content_digest((output_digests or {}).get(name)),
        }
    entries = [
        {**entry, **content_digest((input_digests or {}).get(str(entry.get("alias"))))}
        for entry in inputs
    ]
    manifest = {
        "manifest_version": 1,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "recipe": dict(recipe),
        "recipe_sha256": hashlib.sha256(canonical_json(recipe).encode()).hexdigest(),
        "recipe_sha256_of": "recipe with literal secrets redacted",
        "sql": list(sql),
        "engine": engine_versions(engine),
        "executor": dict(executor or {}),
        "digest_algorithm": ALGORITHM if output_digests is not None else None,
        "outputs_sorted": sorted_outputs,
        "breaks_explained": breaks_explained,
        "inputs": entries,
        "outputs": files,
        # CSV/XLSX copies of the outputs for people to open: listed, not what verify re-derives
        "exports": {
            name: {"file": path.name, "sha256": sha256_file(path), "bytes": path.stat().st_size}
            for name, path in (exports or {}).items()
        },
        "control_totals": summary["control_totals"],
        "passes": summary["passes"],
        "breaks": summary.get("breaks", []),
        "timings": summary["timings"],
        "counts": {
            k: summary[k]
            for k in (
                "matched_count",
                "unmatched_left_count",
                "unmatched_right_count",
                "ambiguous_left_count",
                "ambiguous_right_count",
                "ambiguous_count",
                "left_rows",
                "right_rows",
            )
        },
    }
    manifest["manifest_sha256"] = manifest_sha256(manifest)
    return manifest
