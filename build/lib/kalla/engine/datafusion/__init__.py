"""The DataFusion engine: the only package that imports ``datafusion`` (besides the
benchmark's raw-DataFusion peer)."""

from kalla.engine.datafusion.executor import DataFusionExecutor
from kalla.engine.datafusion.results import ParquetView

__all__ = ["DataFusionExecutor", "ParquetView"]
