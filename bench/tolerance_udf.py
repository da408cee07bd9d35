"""How much a Python UDF for tolerance_match costs inside a join, versus Kalla's rewrite.

    python bench/tolerance_udf.py bench/data/1m/invoices.parquet bench/data/1m/payments.parquet

Runs the benchmark join (reference = invoice id and amounts within 0.02) both ways in one
process, alternating, and prints the median of each and their ratio.
"""

from __future__ import annotations

import statistics
import sys
import time

import pyarrow as pa
import pyarrow.compute as pc
from datafusion import udf

from kalla.engine import EngineOptions
from kalla.engine.datafusion.session import make_context
from kalla.plan import RecipeSQL
from kalla.plan.sql import parse_query, rewrite_tolerance
from kalla.settings import get_settings

JOIN = (
    "SELECT COUNT(*) FROM invoices i JOIN payments p ON i.invoice_id = p.reference_number AND {} "
)


def _tolerance(a: pa.Array, b: pa.Array, t: pa.Array) -> pa.Array:
    return pc.less_equal(pc.abs(pc.subtract(a, b)), t)


def main(left: str, right: str, runs: int = 5) -> None:
    ctx = make_context(EngineOptions.from_settings(get_settings()))
    ctx.register_parquet("invoices", left)
    ctx.register_parquet("payments", right)
    amount = pa.decimal128(12, 2)
    ctx.register_udf(
        udf(_tolerance, [amount, amount, pa.decimal128(3, 2)], pa.bool_(), "immutable", "tol_udf")
    )
    native = rewrite_tolerance(
        parse_query(JOIN.format("tolerance_match(i.amount, p.paid_amount, 0.02)"), "bench")
    ).sql(dialect=RecipeSQL)
    python = JOIN.format("tol_udf(i.amount, p.paid_amount, CAST(0.02 AS DECIMAL(3, 2)))")
    times: dict[str, list[float]] = {"native rewrite": [], "python udf": []}
    for _ in range(runs):
        for name, sql in (("native rewrite", native), ("python udf", python)):
            start = time.perf_counter()
            count = ctx.sql(sql).collect()[0].column(0)[0].as_py()
            times[name].append(time.perf_counter() - start)
    medians = {name: statistics.median(t) for name, t in times.items()}
    for name, median in medians.items():
        print(f"{name:<15} median {median:.3f} s over {runs} runs ({count:,} matches)")
    ratio = medians["python udf"] / medians["native rewrite"]
    print(f"python udf / native rewrite = {ratio:.2f}x")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
