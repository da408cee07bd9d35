"""Sources → staged Parquet files for the engine (the staging seam).

``stage_source(uri, alias=...)`` routes a URI to its connector (``registry``), reads it with
exact types, writes it to the staging directory and fingerprints it (``base``).
"""

from kalla.connectors.base import ProgressFn, StagedSource
from kalla.connectors.registry import connector_for, stage_source
from kalla.connectors.uri import redact_uri

__all__ = ["ProgressFn", "StagedSource", "connector_for", "redact_uri", "stage_source"]
