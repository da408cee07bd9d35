"""The engine seam: run a reconciliation plan on an executor.

``reconcile`` runs a recipe on two staged sources with any ``Executor``; ``make_executor``
builds the one ``EngineOptions.engine`` names (``KALLA_ENGINE``). ``open_parquet`` serves
pages of a run's outputs to the app.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from kalla.engine.executor import EngineOptions, Executor
from kalla.engine.reconcile import ProgressHook, SourceInput, reconcile
from kalla.engine.summary import ControlTotal, PassStats, RunSummary
from kalla.errors import ConfigError
from kalla.evidence.digest import TableDigest
from kalla.suggest import did_you_mean

if TYPE_CHECKING:
    from kalla.engine.datafusion.results import ParquetView

ENGINES = ("datafusion",)
"""Every executor Kalla has; the parity tests run each recipe case on all of them."""


def make_executor(options: EngineOptions) -> Executor:
    """The executor ``options.engine`` names, ready for a run (close it when done)."""
    if options.engine == "datafusion":
        from kalla.engine.datafusion import DataFusionExecutor

        return DataFusionExecutor(options)
    raise ConfigError(
        f"KALLA_ENGINE: unknown engine '{options.engine}'{did_you_mean(options.engine, ENGINES)};"
        f" engines: {', '.join(ENGINES)}"
    )


def digest_parquet(paths: Path | Sequence[Path]) -> TableDigest:
    """The content digest of a table in one or more Parquet files (``kalla.evidence.digest``),
    whichever engine wrote them: DataFusion reads them for every engine."""
    from kalla.engine.datafusion.digest import digest_parquet as digest

    return digest(paths)


def open_parquet(path: Path) -> ParquetView:
    """One output file to filter, sort and page in place (the app's result pages)."""
    from kalla.engine.datafusion.results import ParquetView

    return ParquetView(path)


__all__ = [
    "ENGINES",
    "ControlTotal",
    "EngineOptions",
    "Executor",
    "PassStats",
    "ProgressHook",
    "RunSummary",
    "SourceInput",
    "digest_parquet",
    "make_executor",
    "open_parquet",
    "reconcile",
]
