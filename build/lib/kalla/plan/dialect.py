"""The SQL dialect recipes are written in, as sqlglot reads and writes it.

Recipe SQL is DataFusion's SQL: PostgreSQL's syntax with case-sensitive identifiers (Kalla
runs DataFusion with identifier normalisation off, so ``Amount`` and ``amount`` are different
columns). ``RecipeSQL`` reads it and writes it back unchanged in meaning: sqlglot's PostgreSQL
writer is kept except where it rewrites for PostgreSQL's own limits — ``ANTI``/``SEMI`` joins
(PostgreSQL has none; DataFusion and Spark do), ``ROUND`` of a float (PostgreSQL has no
``round(double, int)``, so sqlglot adds a cast to decimal) and ``isnan`` (``is_nan`` in
PostgreSQL). Date and time format strings are DataFusion's (chrono's ``%d/%m/%Y``), not
PostgreSQL's (``DD/MM/YYYY``): they are read and written as they are.
"""

from __future__ import annotations

from typing import ClassVar

from sqlglot import exp, transforms
from sqlglot.dialects.dialect import NormalizationStrategy, rename_func
from sqlglot.dialects.postgres import Postgres
from sqlglot.generators.postgres import PostgresGenerator


class RecipeGenerator(PostgresGenerator):
    TRANSFORMS: ClassVar = {
        **PostgresGenerator.TRANSFORMS,
        exp.Select: transforms.preprocess([transforms.eliminate_qualify]),
        exp.Round: lambda self, e: self.func("ROUND", e.this, e.args.get("decimals")),
        exp.IsNan: rename_func("isnan"),
    }


class RecipeSQL(Postgres):
    NORMALIZATION_STRATEGY = NormalizationStrategy.CASE_SENSITIVE
    TIME_MAPPING: dict[str, str] = {}  # noqa: RUF012 - sqlglot's own declaration
    Generator = RecipeGenerator
