"""The benchmark generator: deterministic, the stated distribution, exact decimals and counts."""

from __future__ import annotations

import re
from collections import Counter, defaultdict
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pacsv
import pyarrow.parquet as pq
import pytest

from kalla.bench.generate import (
    INVOICES_SCHEMA,
    PAYMENTS_SCHEMA,
    expected_counts,
    generate,
    plan_block,
    write_dataset,
)

TOL = Decimal("0.02")


def reference_counts(invoices: pa.Table, payments: pa.Table) -> dict[str, int]:
    """The workload computed row by row with Python Decimals: the independent oracle."""
    amount = dict(
        zip(invoices["invoice_id"].to_pylist(), invoices["amount"].to_pylist(), strict=True)
    )
    matched_invoices: set[str] = set()
    matched_payments: set[str] = set()
    matched = 0
    for pid, ref, paid in zip(
        payments["payment_id"].to_pylist(),
        payments["reference_number"].to_pylist(),
        payments["paid_amount"].to_pylist(),
        strict=True,
    ):
        if ref in amount and abs(amount[ref] - paid) <= TOL:
            matched += 1
            matched_invoices.add(ref)
            matched_payments.add(pid)
    return {
        "matched_count": matched,
        "unmatched_left_count": invoices.num_rows - len(matched_invoices),
        "unmatched_right_count": payments.num_rows - len(matched_payments),
    }


def classify(invoices: pa.Table, payments: pa.Table) -> Counter[str]:
    """Each invoice's category, judged from the payments that reference it."""
    amount = dict(
        zip(invoices["invoice_id"].to_pylist(), invoices["amount"].to_pylist(), strict=True)
    )
    paid: defaultdict[str, list[Decimal]] = defaultdict(list)
    for ref, value in zip(
        payments["reference_number"].to_pylist(), payments["paid_amount"].to_pylist(), strict=True
    ):
        if ref in amount:
            paid[ref].append(value)
    kinds: Counter[str] = Counter()
    for invoice_id, value in amount.items():
        got = paid.get(invoice_id, [])
        if not got:
            kinds["none"] += 1
        elif len(got) == 2 and all(abs(value - g) <= TOL for g in got):
            kinds["duplicate"] += 1
        elif len(got) == 1 and got[0] == value:
            kinds["exact"] += 1
        elif len(got) == 1 and abs(got[0] - value) <= TOL:
            kinds["tolerance"] += 1
        elif len(got) == 1:
            kinds["off"] += 1
        else:  # pragma: no cover - the generator never does this
            kinds["other"] += 1
    return kinds


def test_deterministic_for_a_seed() -> None:
    a_inv, a_pay = generate(4000, seed=7)
    b_inv, b_pay = generate(4000, seed=7)
    assert a_inv.equals(b_inv)
    assert a_pay.equals(b_pay)
    c_inv, c_pay = generate(4000, seed=8)
    assert not a_inv.equals(c_inv)
    assert not a_pay.equals(c_pay)


def test_schema_and_formats() -> None:
    invoices, payments = generate(3000, seed=1)
    assert invoices.schema == INVOICES_SCHEMA
    assert payments.schema == PAYMENTS_SCHEMA
    assert invoices.schema.field("amount").type == pa.decimal128(12, 2)
    assert payments.schema.field("paid_amount").type == pa.decimal128(12, 2)
    assert invoices.schema.field("issue_date").type == pa.date32()
    assert invoices.num_rows == payments.num_rows == 3000
    ids = invoices["invoice_id"].to_pylist()
    assert ids[0] == "INV-000000001" and ids[-1] == "INV-000003000"
    assert all(re.fullmatch(r"PAY-\d{9}", p) for p in payments["payment_id"].to_pylist())
    assert len(set(payments["payment_id"].to_pylist())) == 3000
    assert all(a > 0 for a in invoices["amount"].to_pylist())
    assert all(a > 0 for a in payments["paid_amount"].to_pylist())
    # realistic text for the demo: names and descriptions, not placeholders
    assert any(" " in n for n in payments["payer_name"].to_pylist()[:20])
    assert all(" - " in d for d in invoices["description"].to_pylist()[:20])
    # payments are not in invoice order
    refs = [r for r in payments["reference_number"].to_pylist()[:50] if r and r.startswith("INV-")]
    assert refs != sorted(refs)


def test_distribution_and_boundaries() -> None:
    n = 20_000
    invoices, payments = generate(n, seed=3)
    kinds = classify(invoices, payments)
    shares = {k: v / n for k, v in kinds.items()}
    assert shares["exact"] == pytest.approx(0.80, abs=0.005)
    assert shares["tolerance"] == pytest.approx(0.08, abs=0.005)
    assert shares["off"] == pytest.approx(0.04, abs=0.005)
    assert shares["duplicate"] == pytest.approx(0.03, abs=0.005)
    assert shares["none"] == pytest.approx(0.05, abs=0.005)
    assert "other" not in kinds
    # stray payments: NULL references and references that name no invoice
    refs = payments["reference_number"].to_pylist()
    ids = set(invoices["invoice_id"].to_pylist())
    strays = [r for r in refs if r not in ids]
    assert len(strays) == pytest.approx(0.02 * n, abs=1)
    assert any(r is None for r in strays) and any(r is not None for r in strays)
    # the exact boundaries are present: ±0.01 and ±0.02 in, ±0.03 out
    amount = dict(
        zip(invoices["invoice_id"].to_pylist(), invoices["amount"].to_pylist(), strict=True)
    )
    diffs = {
        paid - amount[ref]
        for ref, paid in zip(refs, payments["paid_amount"].to_pylist(), strict=True)
        if ref in amount
    }
    for edge in ("0.01", "-0.01", "0.02", "-0.02", "0.03", "-0.03"):
        assert Decimal(edge) in diffs, edge


@pytest.mark.parametrize("n", [0, 1, 7, 3000])
def test_expected_counts_match_an_independent_computation(n: int) -> None:
    invoices, payments = generate(n, seed=11)
    expected = expected_counts(n, seed=11)
    assert reference_counts(invoices, payments) == {
        k: expected[k] for k in ("matched_count", "unmatched_left_count", "unmatched_right_count")
    }
    assert expected["left_rows"] == invoices.num_rows == n
    assert expected["right_rows"] == payments.num_rows == n


def test_block_plan_keeps_both_sides_the_same_size() -> None:
    for n in (1, 2, 19, 20, 101, 999, 1_000_000, 1_234_567):
        plan = plan_block(n)
        assert plan.payments == n
        assert min(plan.exact, plan.tolerance, plan.off, plan.duplicate, plan.none) >= 0
        assert plan.stray >= 0


def test_chunks_are_independent_streams(tmp_path: Path) -> None:
    """Several blocks: ids continue across blocks and the counts still add up exactly."""
    invoices, payments = generate(2500, seed=5, chunk_rows=1000)
    assert invoices["invoice_id"].to_pylist()[-1] == "INV-000002500"
    assert len(set(payments["payment_id"].to_pylist())) == 2500
    expected = expected_counts(2500, seed=5, chunk_rows=1000)
    got = reference_counts(invoices, payments)
    assert got == {k: expected[k] for k in got}
    write_dataset(tmp_path, 2500, formats=("parquet",), seed=5, chunk_rows=1000)
    assert pq.read_table(tmp_path / "invoices.parquet").equals(invoices)
    assert pq.read_table(tmp_path / "payments.parquet").equals(payments)


def test_write_dataset_parquet_and_csv(tmp_path: Path) -> None:
    info = write_dataset(tmp_path, 2000, seed=9)
    invoices, payments = generate(2000, seed=9)
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "expected.json",
        "invoices.csv",
        "invoices.parquet",
        "payments.csv",
        "payments.parquet",
    ]
    assert info["expected"] == expected_counts(2000, seed=9)
    assert pq.read_table(tmp_path / "invoices.parquet").equals(invoices)
    assert pq.read_table(tmp_path / "payments.parquet").equals(payments)

    lines = (tmp_path / "invoices.csv").read_text().splitlines()
    assert lines[0] == '"invoice_id","customer_id","amount","currency","issue_date","description"'
    for line in lines[1:50]:
        assert re.search(r',\d+\.\d{2},"[A-Z]{3}",\d{4}-\d{2}-\d{2},', line), line
    # read back with decimal types, the CSV holds exactly the same values
    csv_invoices = pacsv.read_csv(
        tmp_path / "invoices.csv",
        convert_options=pacsv.ConvertOptions(column_types=INVOICES_SCHEMA),
    )
    assert csv_invoices.cast(INVOICES_SCHEMA).equals(invoices)
    csv_payments = pacsv.read_csv(
        tmp_path / "payments.csv",
        convert_options=pacsv.ConvertOptions(
            column_types=PAYMENTS_SCHEMA, strings_can_be_null=True
        ),
    )
    assert csv_payments.cast(PAYMENTS_SCHEMA).equals(payments)
