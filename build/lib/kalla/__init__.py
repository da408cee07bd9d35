"""Kalla: reconcile two data sources with SQL on Apache DataFusion."""

__version__ = "0.1.0"
