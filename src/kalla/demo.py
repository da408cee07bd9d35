"""``kalla demo``: a realistic seeded sample and a two-pass recipe, run end to end."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.csv as pacsv

from kalla import pipeline
from kalla.bench.generate import generate
from kalla.engine import RunSummary
from kalla.recipe import parse_recipe

_SELECT = (
    "SELECT i.invoice_id, p.payment_id, i.customer_id, i.amount, p.paid_amount, "
    "i.amount - p.paid_amount AS difference, i.issue_date, p.payment_date "
    "FROM invoices i JOIN payments p ON i.invoice_id = p.reference_number"
)

DEMO_RECIPE = {
    "recipe_id": "demo-invoices-payments",
    "name": "Invoices vs payments (demo)",
    "description": "Match customer invoices to the payments received against them.",
    "match_description": (
        "First exact amounts by reference, then amounts within 2 cents. Each invoice takes "
        "one payment and each payment pays one invoice (an exact payment before one within "
        "2 cents, then the earliest): a "
        "second payment for an invoice already paid stays unmatched (its nearest_reason "
        "says the invoice is already matched; when both payments tie in one pass, the pair "
        "left out is also listed in ambiguous.parquet). Anything else stays unmatched too."
    ),
    "cardinality": "one_to_one",
    "rank_by": "payment_date",
    "passes": [
        {
            "name": "exact",
            "description": "reference and amount identical",
            "match_sql": f"{_SELECT} AND i.amount = p.paid_amount",
        },
        {
            "name": "within_2_cents",
            "description": "reference identical, amounts within 0.02",
            "match_sql": f"{_SELECT} AND tolerance_match(i.amount, p.paid_amount, 0.02)",
        },
    ],
    "sources": {
        "left": {
            "alias": "invoices",
            "type": "file",
            "schema": ["invoice_id", "customer_id", "amount", "issue_date"],
            "primary_key": ["invoice_id"],
        },
        "right": {
            "alias": "payments",
            "type": "file",
            "schema": ["payment_id", "reference_number", "paid_amount", "payment_date"],
            "primary_key": ["payment_id"],
        },
    },
}


def run_demo(directory: Path, *, rows: int = 3000, seed: int = 7) -> RunSummary:
    """Write the sample as CSV (how users receive it) and the recipe, then run it."""
    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    invoices, payments = generate(rows, seed=seed)
    paths = {"invoices": data / "invoices.csv", "payments": data / "payments.csv"}
    pacsv.write_csv(invoices, paths["invoices"])
    pacsv.write_csv(payments, paths["payments"])
    recipe_path = directory / "recipe.json"
    recipe_path.write_text(json.dumps(DEMO_RECIPE, indent=2) + "\n", encoding="utf-8")
    recipe = parse_recipe(DEMO_RECIPE)
    left, right = pipeline.sources_from_recipe(recipe, {k: str(v) for k, v in paths.items()})
    return pipeline.run(
        pipeline.RunRequest(
            spec=recipe,
            left=left,
            right=right,
            output_dir=directory / "run",
            recipe=DEMO_RECIPE,
            overwrite=True,
            staging_dir=directory / "staging",
        )
    )
