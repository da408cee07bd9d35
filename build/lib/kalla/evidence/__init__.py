"""Run outputs: atomic output directories and the manifest an auditor reads."""

from kalla.evidence.manifest import build_manifest
from kalla.evidence.output import MANIFEST, OUTPUT_NAMES, AtomicOutputDir

__all__ = ["MANIFEST", "OUTPUT_NAMES", "AtomicOutputDir", "build_manifest"]
