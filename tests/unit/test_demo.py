"""``kalla demo`` does what its recipe's ``match_description`` says."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pyarrow.parquet as pq

from kalla.demo import DEMO_RECIPE, run_demo


def test_a_second_payment_for_an_invoice_already_paid_stays_unmatched(tmp_path: Path) -> None:
    assert "a second payment for an invoice already paid stays unmatched" in str(
        DEMO_RECIPE["match_description"]
    )
    summary = run_demo(tmp_path, rows=3000)
    matched = pq.read_table(tmp_path / "run" / "matched.parquet")
    invoices = Counter(matched.column("invoice_id").to_pylist())
    payments = Counter(matched.column("payment_id").to_pylist())
    assert max(invoices.values()) == 1, "an invoice matched twice"
    assert max(payments.values()) == 1, "a payment matched twice"
    # the generator pays 3 % of invoices twice: the later payment of each stays unmatched,
    # said to be for an invoice already matched
    unmatched = pq.read_table(tmp_path / "run" / "unmatched_right.parquet").to_pylist()
    taken = [r for r in unmatched if r["nearest_reason"].endswith("already matched")]
    assert len(taken) == 90
    paid = {
        r["payment_id"]: r for r in pq.read_table(tmp_path / "run" / "matched.parquet").to_pylist()
    }
    by_invoice = {r["invoice_id"]: r for r in paid.values()}
    for row in taken:
        kept = by_invoice[row["nearest_key"]]  # an exact payment, else the earliest
        assert kept["match_pass"] == "exact" or kept["payment_date"] <= row["payment_date"]
    reasons = {
        r.reason: r.count for b in summary.breaks for r in b.reasons if b.alias == "payments"
    }
    assert reasons["same reference_number, but that record is already matched"] == 90
