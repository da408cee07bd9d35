"""The builder's rules one at a time, on small tables built here: each test names the rule."""

from __future__ import annotations

import random
from datetime import date, timedelta
from decimal import Decimal

import numpy as np
import pyarrow as pa
import pytest

from kalla.agent.builder import alias_for, suggest
from kalla.agent.design import (
    BuilderError,
    Sign,
    TextRule,
    design_match,
    nice_ceiling,
    tolerance_from,
    window_from_lags,
)
from kalla.recipe import parse_recipe


def _amounts(rng: random.Random, n: int) -> list[Decimal]:
    return [Decimal(f"{rng.uniform(20, 5000):.2f}") for _ in range(n)]


@pytest.mark.parametrize(
    ("value", "expected"),
    [(0.03, 0.05), (0.05, 0.05), (0.011, 0.02), (0.2, 0.2), (0.31, 0.5), (7, 10), (120, 200)],
)
def test_nice_ceiling_rounds_up_to_a_1_2_5_step(value: float, expected: float) -> None:
    assert nice_ceiling(value) == pytest.approx(expected)


def test_tolerance_is_the_break_between_small_differences_and_breaks() -> None:
    differences = np.array([0.0] * 50 + [0.01, -0.02, 0.03, 0.04, -0.01] + [5.0, -25.0, 100.0])
    assert tolerance_from(differences, scale=800.0) == pytest.approx(0.05)


def test_small_differences_without_a_break_give_their_largest_rounded_up() -> None:
    differences = np.array([0.0, -0.04, 0.07, 0.12, -0.15, 0.18])
    assert tolerance_from(differences, scale=1000.0) == pytest.approx(0.2)


def test_no_tolerance_when_amounts_agree_or_only_differ_a_lot() -> None:
    assert tolerance_from(np.zeros(20), scale=100.0) is None
    assert tolerance_from(np.array([0.0, 250.0, 900.0]), scale=1000.0) is None


def test_window_is_the_run_of_lags_above_chance() -> None:
    rng = np.random.default_rng(1)
    true_lags = rng.integers(0, 5, 400)
    chance = rng.integers(-100, 100, 300)
    found = window_from_lags(
        np.concatenate([true_lags, chance]).astype(float), chance.astype(float)
    )
    assert found is not None
    assert (found[0], found[1]) == (0, 4)


def test_no_window_when_lags_are_all_chance() -> None:
    rng = np.random.default_rng(2)
    lags = rng.integers(-100, 100, 500).astype(float)
    assert window_from_lags(lags, rng.integers(-100, 100, 2000).astype(float)) is None


@pytest.mark.parametrize(
    ("name", "taken", "alias"),
    [
        ("Bank Statement 2024.csv", set(), "bank_statement_2024"),
        ("2024-ledger.xlsx", set(), "s_2024_ledger"),
        ("payments.csv", {"payments"}, "payments_2"),
        ("data.tar.csv", set(), "data"),
    ],
)
def test_alias_is_the_file_stem_as_an_identifier(name: str, taken: set[str], alias: str) -> None:
    assert alias_for(name, taken) == alias


def _keyed_pair(n: int = 300, seed: int = 5) -> tuple[pa.Table, pa.Table]:
    """Invoices and payments sharing a reference; both files also number their rows 1..n."""
    rng = random.Random(seed)
    amounts = _amounts(rng, n)
    refs = [f"INV-{i * 7 + 3:06d}" for i in range(n)]
    left = pa.table(
        {
            "row": list(range(1, n + 1)),
            "reference": refs,
            "amount": pa.array(amounts, pa.decimal128(10, 2)),
            "currency": ["EUR"] * n,
        }
    )
    order = list(range(n))
    rng.shuffle(order)
    keep = order[: int(n * 0.9)]
    right = pa.table(
        {
            "row": list(range(1, len(keep) + 1)),
            "payment_id": [f"P{rng.randrange(10**7, 10**8)}" for _ in keep],
            "ref": [str(int(refs[i][4:])) for i in keep],
            "paid": pa.array([-amounts[i] for i in keep], pa.decimal128(10, 2)),
            "currency": ["EUR"] * len(keep),
        }
    )
    return left, right


def test_row_numbers_that_overlap_are_not_taken_for_a_key() -> None:
    left, right = _keyed_pair()
    design = design_match("invoices", left, "payments", right)
    assert [(k.left.name, k.right.name) for k in design.keys] == [("reference", "ref")]
    assert any("'row' and 'row'" in f and "not a key" in f for f in design.findings)


def test_a_key_needing_digits_only_is_normalised_and_opposite_signs_are_found() -> None:
    left, right = _keyed_pair()
    design = design_match("invoices", left, "payments", right)
    assert design.keys[0].normalisation == "digits"
    assert design.amount is not None
    assert design.amount.sign is Sign.NEGATED
    assert design.amount.tolerance is None


def test_the_recipe_is_valid_and_says_what_it_does_in_plain_words() -> None:
    left, right = _keyed_pair()
    found = suggest("invoices", left, "payments", right)
    recipe = parse_recipe(found.recipe)
    assert recipe.sources.left.primary_key == ["row"] or recipe.sources.left.primary_key == [
        "reference"
    ]
    assert "opposite signs" in recipe.match_description
    assert "leading zeros" in recipe.match_description
    assert '"invoices"."reference"' in (recipe.match_sql or "")


def test_duplicate_candidates_make_the_recipe_one_to_one() -> None:
    left, right = _keyed_pair()
    doubled = pa.concat_tables([right, right.slice(0, 10)])
    doubled = doubled.set_column(
        1, "payment_id", pa.array([f"X{i}" for i in range(doubled.num_rows)])
    )
    doubled = doubled.set_column(0, "row", pa.array(range(doubled.num_rows)))
    found = suggest("invoices", left, "payments", doubled)
    assert found.recipe["cardinality"] == "one_to_one"
    assert found.recipe["rank_by"] == "match_rank"


def _unkeyed_pair(seed: int = 9) -> tuple[pa.Table, pa.Table]:
    """Receipts and a bank statement: no shared id; amounts repeat; bank books 1-3 days later."""
    rng = random.Random(seed)
    names = ["Acme Corporation", "Globex Ltd", "Initech GmbH", "Hooli Inc", "Pied Piper"]
    rows, lines = [], []
    for i in range(250):
        amount = (
            Decimal(rng.choice(["500.00", "1000.00"]))
            if rng.random() < 0.4
            else _amounts(rng, 1)[0]
        )
        when = date(2024, 1, 1) + timedelta(days=rng.randrange(200))
        customer = rng.choice(names)
        rows.append(
            {
                "entry": f"E{rng.randrange(10**6)}-{i}",
                "customer": customer,
                "date": when,
                "amount": amount,
            }
        )
        lines.append(
            {
                "line": f"L{rng.randrange(16**6, 16**7):x}",
                "booked": when + timedelta(days=rng.randint(1, 3)),
                "text": f"TRANSFER {customer.upper()} {rng.randrange(1000, 9999)}",
                "amount": amount,
            }
        )
    rng.shuffle(lines)
    return pa.Table.from_pylist(rows), pa.Table.from_pylist(lines)


def test_without_a_key_amount_date_window_and_counterparty_are_learnt() -> None:
    left, right = _unkeyed_pair()
    design = design_match("receipts", left, "bank", right)
    assert design.keys == ()
    assert design.window is not None
    assert (design.window.low, design.window.high) == (1, 3)
    assert design.counterparty is not None
    assert design.counterparty.rule is TextRule.CONTAINS
    assert design.one_to_one


def test_sources_with_nothing_in_common_are_refused_with_the_reason() -> None:
    left = pa.table({"id": ["a", "b", "c"], "colour": ["red", "green", "blue"]})
    right = pa.table({"code": ["x", "y", "z"], "size": ["s", "m", "l"]})
    with pytest.raises(BuilderError, match="share no key column and no amounts"):
        design_match("left", left, "right", right)


def test_a_side_without_any_unique_column_is_refused() -> None:
    left = pa.table({"a": ["x", "x"], "b": [1, 1]})
    right = pa.table({"id": ["p", "q"], "a": ["x", "x"]})
    with pytest.raises(BuilderError, match="identifies each row of 'left'"):
        design_match("left", left, "right", right)


def _fx_pair(seed: int = 11) -> tuple[pa.Table, pa.Table]:
    """Purchase orders paid in another currency: every amount off by up to 0.8% of itself."""
    rng = random.Random(seed)
    orders, paid = [], []
    for i in range(250):
        amount = Decimal(f"{rng.uniform(100, 20000):.2f}")
        orders.append({"po": f"PO-{i * 3 + 1:05d}", "amount": amount})
        rate = Decimal(str(1 + rng.uniform(-0.008, 0.008)))
        paid.append(
            {
                "pid": f"P{rng.randrange(10**7, 10**8)}",
                "po_ref": f"PO-{i * 3 + 1:05d}",
                "paid": (amount * rate).quantize(Decimal("0.01")),
            }
        )
    return pa.Table.from_pylist(orders), pa.Table.from_pylist(paid)


def test_differences_that_grow_with_the_amount_give_a_relative_tolerance() -> None:
    left, right = _fx_pair()
    found = suggest("orders", left, "paid", right)
    amount = found.design.amount
    assert amount is not None and amount.relative
    assert amount.tolerance == Decimal("0.01")
    sql = found.recipe["match_sql"]
    assert 'ABS("orders"."amount" - "paid"."paid") <= 0.01 * ABS("orders"."amount")' in sql
    assert "within 1% of 'amount'" in found.recipe["match_description"]


def test_debit_and_credit_columns_are_read_as_one_signed_amount() -> None:
    rng = random.Random(12)
    ledger, bank = [], []
    for _ in range(200):
        amount = _amounts(rng, 1)[0] * (1 if rng.random() < 0.5 else -1)
        ref = f"D{rng.randrange(10**6, 10**7)}"
        ledger.append({"entry": f"E{rng.randrange(10**8)}", "ref": ref, "amount": amount})
        bank.append(
            {
                "line": rng.randrange(10**8),
                "reference": ref,
                "debit": -amount if amount < 0 else None,
                "credit": amount if amount > 0 else None,
            }
        )
    found = suggest("ledger", pa.Table.from_pylist(ledger), "bank", pa.Table.from_pylist(bank))
    amount = found.design.amount
    assert amount is not None and amount.right.parts is not None
    assert set(amount.right.parts) == {"debit", "credit"}
    assert "COALESCE" in found.recipe["match_sql"]


def test_small_differences_that_chance_explains_are_no_tolerance() -> None:
    from kalla.agent.design import _beats_chance

    real = np.array([0.0] * 95 + [2.0, 3.5, 180.0, 400.0, 950.0])
    chance = np.array([1.5, 2.5, 4.0, 300.0, 700.0] * 20)
    assert not _beats_chance(real, chance, 5.0)
    assert _beats_chance(np.array([0.0] * 70 + [0.01, 0.02] * 15), chance, 0.05)


@pytest.mark.parametrize(
    ("values", "scale"),
    [
        (["$1,234.50", "($80.00)", "12.5"], 2),
        (["1,000", "-2,500", "(300)"], 0),
        (["1.5", "2.25"], None),  # plain numbers: typed when staged, not text amounts
        (["A-100", "1,234.50"], None),
        (["12/03/2024", "(1)"], None),
    ],
)
def test_amounts_written_as_text_are_recognised(values: list[str], scale: int | None) -> None:
    from kalla.agent.columns import as_float, column_info

    column = pa.chunked_array([pa.array(values)])
    info = column_info("amount", column)
    assert info.number_scale == scale
    if scale is not None:
        assert info.is_measure and not info.is_keyable
        numbers = as_float(column).to_pylist()
        assert numbers[1] < 0
