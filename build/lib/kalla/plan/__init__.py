"""Engine-neutral: a recipe and its inputs' schemas → the whole run as data.

``build_plan`` returns a frozen ``ReconciliationPlan``: the registered inputs and their base
views (floats read as decimals, filters as typed predicates), each pass's SQL with
``tolerance_match`` rewritten and the position of each side's keys derived from the SQL text
(sqlglot, not an engine's plan), the anti joins, key statistics, one-to-one selection,
control totals and the outputs to write. Every statement is a sqlglot expression that an
executor renders in its own dialect (``kalla.engine``).
"""

from kalla.plan.dialect import RecipeSQL
from kalla.plan.floats import exact_types, float_columns, probe
from kalla.plan.layout import MatchLayout, OutputColumn
from kalla.plan.reconciliation import (
    Combine,
    OneToOne,
    PassPlan,
    PlanInput,
    ReconciliationPlan,
    SourcePlan,
    UnmatchedPlan,
    build_plan,
    check_rank_by,
    source_table,
)

__all__ = [
    "Combine",
    "MatchLayout",
    "OneToOne",
    "OutputColumn",
    "PassPlan",
    "PlanInput",
    "RecipeSQL",
    "ReconciliationPlan",
    "SourcePlan",
    "UnmatchedPlan",
    "build_plan",
    "check_rank_by",
    "exact_types",
    "float_columns",
    "probe",
    "source_table",
]
