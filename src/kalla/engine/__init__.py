"""The reconciliation engine on Apache DataFusion."""

from kalla.engine.reconcile import ProgressHook, SourceInput, reconcile
from kalla.engine.session import EngineOptions
from kalla.engine.summary import ControlTotal, PassStats, RunSummary

__all__ = [
    "ControlTotal",
    "EngineOptions",
    "PassStats",
    "ProgressHook",
    "RunSummary",
    "SourceInput",
    "reconcile",
]
