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
from kalla.hashing import sha256_file
from kalla.secrets import redact_recipe


def canonical_json(data: Any) -> str:
    return json.dumps(data, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def build_manifest(
    *,
    recipe: Mapping[str, Any],
    sql: Sequence[Mapping[str, str]],
    inputs: Sequence[Mapping[str, Any]],
    outputs: Mapping[str, Path],
    digests: Mapping[str, Future[str]] | None = None,
    summary: Mapping[str, Any],
    started_at: datetime,
    engine: Mapping[str, str],
    executor: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The manifest as a dict; outputs are fingerprinted here, after they are complete.

    The recipe is recorded, and hashed, with every literal secret in its URIs redacted
    (``${ENV}`` placeholders kept): a manifest never holds a password. ``engine``: the
    executor's library versions; ``executor``: the settings it ran with."""
    recipe = redact_recipe(recipe)
    files = {}
    for name, path in outputs.items():
        digest = digests.get(name) if digests else None
        files[name] = {
            "file": path.name,
            "rows": pq.ParquetFile(path).metadata.num_rows,
            "sha256": digest.result() if digest is not None else sha256_file(path),
            "bytes": path.stat().st_size,
        }
    return {
        "manifest_version": 1,
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(UTC).isoformat(),
        "recipe": dict(recipe),
        "recipe_sha256": hashlib.sha256(canonical_json(recipe).encode()).hexdigest(),
        "recipe_sha256_of": "recipe with literal secrets redacted",
        "sql": list(sql),
        "engine": {
            "kalla": kalla.__version__,
            **engine,
            "pyarrow": pa.__version__,
            "python": platform.python_version(),
        },
        "executor": dict(executor or {}),
        "inputs": list(inputs),
        "outputs": files,
        "control_totals": summary["control_totals"],
        "passes": summary["passes"],
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
