"""Kalla's optional extras: what each installs and enables, and the one line a missing one
ends in, wherever it is missed (the CLI, the app, the worker, a job's process, a connector).

``EXTRAS`` mirrors ``[project.optional-dependencies]`` in pyproject.toml (a unit test keeps
them in step): each extra names the top-level modules Kalla imports from it. ``require``
checks an extra before a command that needs it starts; ``missing_extra`` turns the
``ModuleNotFoundError`` of a module that an extra provides into a ``MissingDependencyError``
naming the extra and the exact ``pip install 'kalla[…]'`` command, so that a missing driver
never surfaces as an internal error.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass

from kalla.errors import MissingDependencyError


@dataclass(frozen=True)
class Extra:
    """One pip extra: its name, the modules Kalla imports from it, what it enables."""

    name: str
    modules: tuple[str, ...]
    enables: str = ""

    @property
    def install(self) -> str:
        return f"pip install 'kalla[{self.name}]'"

    def missing_modules(self) -> list[str]:
        """Its modules that cannot be imported here."""
        return [module for module in self.modules if not importable(module)]

    def message(self, what: str) -> str:
        """``"<what> needs the '<name>' extra: pip install 'kalla[<name>]'"``."""
        verb = "need" if what.endswith("sources") else "needs"
        return f"{what} {verb} the '{self.name}' extra: {self.install}"


# Source extras come first: a module two extras provide (psycopg) is named by the first.
EXTRAS: dict[str, Extra] = {
    extra.name: extra
    for extra in (
        Extra("postgres", ("psycopg", "adbc_driver_postgresql"), "PostgreSQL sources"),
        Extra("mysql", ("pymysql", "connectorx"), "MySQL and MariaDB sources"),
        Extra("s3", ("boto3", "botocore"), "S3 sources (s3://bucket/key.csv or .parquet)"),
        Extra(
            "xlsx",
            ("fastexcel", "python_calamine", "xlsxwriter"),
            "Excel sources (.xlsx, .xlsm, .xls, .xlsb, .ods); kalla run --format xlsx",
        ),
        Extra(
            "server",
            (
                "fastapi",
                "starlette",
                "anyio",
                "uvicorn",
                "httpx",
                "prometheus_client",
                "sqlalchemy",
                "alembic",
                "jinja2",
                "python_multipart",
                "xlsxwriter",
                "psycopg",
                "itsdangerous",
            ),
            "kalla serve (web UI, REST API, metadata store) and kalla worker (job API, "
            "callbacks, metrics)",
        ),
        Extra("nats", ("nats",), "scaled mode over NATS JetStream (coming)"),
        Extra("agent", ("anthropic",), "the recipe builder's assistant (Claude, tool use)"),
        Extra(
            "bench",
            ("duckdb", "polars", "pandas", "datacompy", "psutil"),
            "kalla bench's peers (DuckDB, Polars, pandas, datacompy)",
        ),
    )
}


def importable(module: str) -> bool:
    """Whether ``module`` can be imported here, without importing it."""
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # ValueError: a module set to None in sys.modules
        return False


def require(name: str, what: str) -> None:
    """A MissingDependencyError naming the extra and its pip command when any module of
    extra ``name`` is missing: ``require("server", "kalla serve")``."""
    extra = EXTRAS[name]
    if extra.missing_modules():
        raise MissingDependencyError(extra.message(what))


def extra_providing(module: str) -> Extra | None:
    """The extra whose modules include ``module``'s top-level package, if any."""
    top = module.partition(".")[0]
    return next((extra for extra in EXTRAS.values() if top in extra.modules), None)


def missing_extra(exc: BaseException) -> MissingDependencyError | None:
    """The error an ImportError of an extra's module should have been: one line naming the
    module, the extra and the pip command; None for anything else (a bug, not an install)."""
    if not isinstance(exc, ImportError) or not exc.name:
        return None
    extra = extra_providing(exc.name)
    if extra is None:
        return None
    top = exc.name.partition(".")[0]
    return MissingDependencyError(
        f"the module '{top}' is not installed; it comes with the '{extra.name}' extra: "
        f"{extra.install}"
    )


__all__ = [
    "EXTRAS",
    "Extra",
    "extra_providing",
    "importable",
    "missing_extra",
    "require",
]
