"""Sources → staged Parquet files for the engine (the SOURCE seam).

``registry`` declares every source type once (``SourceKind``) and routes a URI to its
connector; ``stage_source(uri, alias=..., settings=...)`` reads it with exact types, writes it
to the staging directory and fingerprints it (``base``); ``preview_source`` reads its first
rows through the same flow.
"""

from kalla.connectors.base import ProgressFn, SourcePreview, StagedSource
from kalla.connectors.registry import (
    KINDS,
    SourceKind,
    connector_for,
    locate,
    preview_source,
    stage_source,
)
from kalla.secrets import redact_uri

__all__ = [
    "KINDS",
    "ProgressFn",
    "SourceKind",
    "SourcePreview",
    "StagedSource",
    "connector_for",
    "locate",
    "preview_source",
    "redact_uri",
    "stage_source",
]
