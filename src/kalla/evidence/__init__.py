"""Run outputs: atomic output directories and the manifest an auditor reads."""

from kalla.evidence.manifest import build_manifest
from kalla.evidence.output import AtomicOutputDir

__all__ = ["AtomicOutputDir", "build_manifest"]
