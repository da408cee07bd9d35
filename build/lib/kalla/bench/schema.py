"""The workload's shape, shared by the generator, the peers and the harness.

Stdlib only, so that a peer process imports nothing it does not use.
"""

from __future__ import annotations

LEFT_ALIAS = "invoices"
RIGHT_ALIAS = "payments"

#: Column name → logical type, in file order. Amounts are decimal(12,2), dates are dates.
INVOICE_COLUMNS: dict[str, str] = {
    "invoice_id": "string",
    "customer_id": "string",
    "amount": "decimal(12,2)",
    "currency": "string",
    "issue_date": "date",
    "description": "string",
}
PAYMENT_COLUMNS: dict[str, str] = {
    "payment_id": "string",
    "reference_number": "string",
    "paid_amount": "decimal(12,2)",
    "payment_date": "date",
    "payer_name": "string",
}

LEFT_KEY = "invoice_id"
RIGHT_KEY = "payment_id"
TOLERANCE = "0.02"

#: The 11 columns of the match output, each (side, column), in output order.
MATCH_COLUMNS: tuple[tuple[str, str], ...] = (
    ("i", "invoice_id"),
    ("p", "payment_id"),
    ("i", "customer_id"),
    ("i", "amount"),
    ("p", "paid_amount"),
    ("i", "currency"),
    ("i", "issue_date"),
    ("p", "payment_date"),
    ("p", "reference_number"),
    ("i", "description"),
    ("p", "payer_name"),
)
MATCH_COLUMN_NAMES: tuple[str, ...] = tuple(c for _, c in MATCH_COLUMNS)

#: Output file names, the same as ``kalla run`` writes.
MATCHED_FILE = "matched.parquet"
UNMATCHED_LEFT_FILE = "unmatched_left.parquet"
UNMATCHED_RIGHT_FILE = "unmatched_right.parquet"

#: Input file names inside a size's data directory.
DATA_FILES = {
    ("invoices", "parquet"): "invoices.parquet",
    ("payments", "parquet"): "payments.parquet",
    ("invoices", "csv"): "invoices.csv",
    ("payments", "csv"): "payments.csv",
}
EXPECTED_FILE = "expected.json"

#: The summary keys every peer prints (the same names as ``kalla run --json``).
COUNT_KEYS = ("matched_count", "unmatched_left_count", "unmatched_right_count")


def match_select_sql(left: str = "i", right: str = "p") -> str:
    """``SELECT`` list of the 11 match columns for SQL peers."""
    alias = {"i": left, "p": right}
    return ", ".join(f"{alias[side]}.{col}" for side, col in MATCH_COLUMNS)


def sql_type(logical: str, dialect: str = "duckdb") -> str:
    """A logical column type as an SQL type name."""
    if logical == "string":
        return "VARCHAR"
    if logical == "date":
        return "DATE"
    if logical.startswith("decimal"):
        return logical.upper()
    raise ValueError(f"unknown logical type {logical!r}")
