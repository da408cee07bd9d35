"""Seeded, vectorised generator for the invoices-vs-payments workload.

Every invoice falls in exactly one category, in exact proportions per block:

=============  =====  ==========================================================
category       share  payments
=============  =====  ==========================================================
exact          80 %   one, same amount
tolerance       8 %   one, off by exactly ±0.01 or ±0.02 (the boundaries)
off             4 %   one, off by more than 0.02 (a quarter exactly ±0.03)
duplicate       3 %   two, both within 0.02 (paid twice)
none            5 %   none
=============  =====  ==========================================================

and the payments side is topped up with *stray* payments (reference NULL, a typo such as
``INV000000123`` or a bank reference) so that both sides have ``n_per_side`` rows. The
matched / unmatched counts are therefore known exactly without running any engine (see
:func:`expected_counts`).

Data is produced in blocks of ``chunk_rows`` invoices, each from its own random stream
(``seed``, block index), so a 100M-row data set is generated and written block by block
in bounded memory, and ``generate(n, seed)`` equals what ``write_dataset(n, seed)`` writes.
Strings are built from fixed-width byte buffers or taken from small pools: no per-row
Python code.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kalla.bench.schema import DATA_FILES, EXPECTED_FILE

GENERATOR_VERSION = 1
DEFAULT_CHUNK_ROWS = 1_000_000
DEFAULT_ROW_GROUP_ROWS = 256 * 1024

AMOUNT_TYPE = pa.decimal128(12, 2)

INVOICES_SCHEMA = pa.schema(
    [
        pa.field("invoice_id", pa.string(), nullable=False),
        pa.field("customer_id", pa.string(), nullable=False),
        pa.field("amount", AMOUNT_TYPE, nullable=False),
        pa.field("currency", pa.string(), nullable=False),
        pa.field("issue_date", pa.date32(), nullable=False),
        pa.field("description", pa.string(), nullable=False),
    ]
)
PAYMENTS_SCHEMA = pa.schema(
    [
        pa.field("payment_id", pa.string(), nullable=False),
        pa.field("reference_number", pa.string(), nullable=True),
        pa.field("paid_amount", AMOUNT_TYPE, nullable=False),
        pa.field("payment_date", pa.date32(), nullable=False),
        pa.field("payer_name", pa.string(), nullable=False),
    ]
)

# Category codes, in the order their counts are laid out before shuffling.
EXACT, TOLERANCE, OFF, DUPLICATE, NONE = range(5)
SHARES = {"exact": 0.80, "tolerance": 0.08, "off": 0.04, "duplicate": 0.03}

_EPOCH = date(1970, 1, 1)
_FIRST_ISSUE = (date(2023, 1, 1) - _EPOCH).days
_LAST_ISSUE = (date(2025, 6, 30) - _EPOCH).days

_CURRENCIES = ["EUR", "USD", "GBP", "SEK", "CHF"]
_CURRENCY_P = [0.45, 0.30, 0.15, 0.05, 0.05]

_NAME_HEADS = [
    "Acme", "Northwind", "Contoso", "Globex", "Initech", "Umbrella", "Stark", "Wayne",
    "Tyrell", "Cyberdyne", "Soylent", "Hooli", "Vandelay", "Wonka", "Gringotts", "Oceanic",
    "Aperture", "Massive", "Prestige", "Sterling", "Nordic", "Baltic", "Alpine", "Atlas",
    "Meridian", "Pioneer", "Summit", "Harbor", "Granite", "Silverline", "Blue Fjord",
    "Red Oak", "Evergreen", "Lakeside", "Riverbend", "Highland", "Kestrel", "Falcon",
    "Juniper", "Copperfield", "Linden", "Aurora", "Polaris", "Orion", "Vega", "Lumen",
    "Brightwater", "Ironwood", "Westbrook", "Eastgate",
]  # fmt: skip
_NAME_TRADES = [
    "Logistics", "Foods", "Textiles", "Engineering", "Consulting", "Systems", "Trading",
    "Pharma", "Energy", "Motors", "Media", "Analytics", "Construction", "Retail", "Freight",
    "Software", "Hospitality", "Packaging", "Chemicals", "Electronics", "Furniture",
    "Agritech", "Marine", "Medical", "Security", "Printing", "Outdoor", "Bakeries",
    "Optics", "Robotics",
]  # fmt: skip
_NAME_SUFFIXES = ["Ltd", "GmbH", "AB", "Inc.", "BV", "Oy", "S.r.l.", "LLC", "plc", "SA", "AS"]

_PRODUCTS = [
    "Consulting services", "Software licence", "Support contract", "Office supplies",
    "Freight charges", "Warehouse rental", "Cloud hosting", "Maintenance", "Training day",
    "Spare parts", "Catering", "Cleaning services", "Legal advice", "Audit fee",
    "Marketing campaign", "Hardware", "Subscription", "Installation", "Travel expenses",
    "Packaging material", "Raw materials", "Translation", "Design work", "Insurance premium",
]  # fmt: skip
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


@dataclass(frozen=True)
class BlockPlan:
    """How many invoices of each category one block holds (exact, not sampled)."""

    invoices: int
    exact: int
    tolerance: int
    off: int
    duplicate: int
    none: int
    stray: int

    @property
    def payments(self) -> int:
        return self.exact + self.tolerance + self.off + 2 * self.duplicate + self.stray

    @property
    def matched(self) -> int:
        return self.exact + self.tolerance + 2 * self.duplicate

    @property
    def unmatched_left(self) -> int:
        return self.off + self.none

    @property
    def unmatched_right(self) -> int:
        return self.off + self.stray


def plan_block(n: int) -> BlockPlan:
    """Category counts for a block of ``n`` invoices; payments also total ``n``."""
    exact = int(n * SHARES["exact"])
    tolerance = int(n * SHARES["tolerance"])
    off = int(n * SHARES["off"])
    duplicate = int(n * SHARES["duplicate"])
    none = n - exact - tolerance - off - duplicate
    stray = none - duplicate  # >= 0: none is at least 5 % of n, duplicate at most 3 %
    return BlockPlan(n, exact, tolerance, off, duplicate, none, stray)


def _blocks(n_per_side: int, chunk_rows: int) -> Iterator[tuple[int, int, int]]:
    """(block index, first row, rows) for every block."""
    if n_per_side < 0:
        raise ValueError("n_per_side must be >= 0")
    if chunk_rows <= 0:
        raise ValueError("chunk_rows must be > 0")
    for index, start in enumerate(range(0, n_per_side, chunk_rows)):
        yield index, start, min(chunk_rows, n_per_side - start)


def expected_counts(
    n_per_side: int, seed: int = 42, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> dict[str, int]:
    """Exact output row counts of the workload on ``generate(n_per_side, seed)``.

    The counts follow from the generator's bookkeeping (category counts per block), so they
    do not depend on ``seed``; it is accepted to keep the signature of the other functions.
    """
    del seed
    plans = [plan_block(rows) for _, _, rows in _blocks(n_per_side, chunk_rows)]
    return {
        "matched_count": sum(p.matched for p in plans),
        "unmatched_left_count": sum(p.unmatched_left for p in plans),
        "unmatched_right_count": sum(p.unmatched_right for p in plans),
        "left_rows": sum(p.invoices for p in plans),
        "right_rows": sum(p.payments for p in plans),
    }


# ----------------------------------------------------------------------------- building blocks


def fixed_width_strings(prefix: str, numbers: np.ndarray, width: int = 9) -> pa.Array:
    """``prefix`` + zero-padded ``numbers`` as a string array, built in one byte buffer."""
    head = prefix.encode("ascii")
    n = len(numbers)
    row = len(head) + width
    buf = np.empty((n, row), dtype=np.uint8)
    if head:
        buf[:, : len(head)] = np.frombuffer(head, dtype=np.uint8)
    rest = numbers.astype(np.int64, copy=True)
    if n and (rest.min() < 0 or rest.max() >= 10**width):
        raise ValueError(f"numbers do not fit in {width} digits")
    for k in range(width - 1, -1, -1):
        buf[:, len(head) + k] = 48 + rest % 10
        rest //= 10
    offsets = np.arange(0, (n + 1) * row, row, dtype=np.int32)
    return pa.Array.from_buffers(
        pa.string(), n, [None, pa.py_buffer(offsets), pa.py_buffer(buf.reshape(-1))]
    )


def cents_to_decimal(cents: np.ndarray) -> pa.Array:
    """int64 cents → decimal128(12,2), exactly (the 16-byte storage written directly)."""
    cents = np.ascontiguousarray(cents, dtype=np.int64)
    if len(cents) and np.abs(cents).max() >= 10**12:
        raise ValueError("amount does not fit decimal(12,2)")
    words = np.empty((len(cents), 2), dtype=np.int64)
    words[:, 0] = cents
    words[:, 1] = cents >> 63  # sign extension of the upper 64 bits
    return pa.Array.from_buffers(AMOUNT_TYPE, len(cents), [None, pa.py_buffer(words)])


def _dates(days: np.ndarray) -> pa.Array:
    return pa.array(days.astype(np.int32), type=pa.date32())


@dataclass(frozen=True)
class _Pools:
    """Small per-data-set value pools that rows index into."""

    customers: int
    customer_ids: pa.Array  # CUST-000123, one per customer
    payer_names: pa.Array  # 3 variants per customer: name, NAME, name without suffix
    descriptions: pa.Array
    currencies: pa.Array


def _pools(n_per_side: int, seed: int) -> _Pools:
    rng = np.random.default_rng([seed, 0])
    customers = min(max(n_per_side // 25, 20), 50_000)
    heads = rng.integers(0, len(_NAME_HEADS), customers)
    trades = rng.integers(0, len(_NAME_TRADES), customers)
    suffixes = rng.integers(0, len(_NAME_SUFFIXES), customers)
    short = [f"{_NAME_HEADS[h]} {_NAME_TRADES[t]}" for h, t in zip(heads, trades, strict=True)]
    full = [f"{s} {_NAME_SUFFIXES[x]}" for s, x in zip(short, suffixes, strict=True)]
    names = full + [f.upper() for f in full] + short
    descriptions: list[str] = []
    for year in (2023, 2024, 2025):
        for month in _MONTHS:
            for product in _PRODUCTS:
                descriptions.append(f"{product} - {month} {year}")
    po = rng.integers(10_000, 99_999, len(descriptions))
    descriptions += [f"{d} (PO {n})" for d, n in zip(descriptions, po, strict=True)]
    return _Pools(
        customers=customers,
        customer_ids=fixed_width_strings("CUST-", np.arange(1, customers + 1), 6),
        payer_names=pa.array(names, pa.string()),
        descriptions=pa.array(descriptions, pa.string()),
        currencies=pa.array(_CURRENCIES, pa.string()),
    )


def _description_index(issue_days: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A product and the issue month (a third of them with a PO number) as a pool index."""
    months = issue_days.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
    month = np.clip(months - (2023 - 1970) * 12, 0, 3 * 12 - 1)
    product = rng.integers(0, len(_PRODUCTS), len(issue_days))
    with_po = rng.random(len(issue_days)) < 1 / 3
    return (with_po * (36 * len(_PRODUCTS)) + month * len(_PRODUCTS) + product).astype(np.int64)


def _block(
    pools: _Pools, seed: int, index: int, start: int, rows: int
) -> tuple[pa.Table, pa.Table, BlockPlan]:
    """One block: ``rows`` invoices numbered from ``start + 1`` and ``rows`` payments."""
    plan = plan_block(rows)
    rng = np.random.default_rng([seed, 1, index])
    category = np.repeat(
        np.arange(5, dtype=np.int8),
        [plan.exact, plan.tolerance, plan.off, plan.duplicate, plan.none],
    )
    rng.shuffle(category)

    # ---- invoices
    numbers = start + 1 + np.arange(rows, dtype=np.int64)
    customer = rng.integers(0, pools.customers, rows)
    cents = np.exp(rng.normal(math.log(45_000), 1.2, rows))
    cents = np.clip(np.rint(cents), 100, 500_000_000).astype(np.int64)
    round_units = rng.random(rows) < 0.2
    cents = np.where(round_units, np.maximum(cents // 100 * 100, 100), cents)
    issue = rng.integers(_FIRST_ISSUE, _LAST_ISSUE + 1, rows)
    invoices = pa.Table.from_arrays(
        [
            fixed_width_strings("INV-", numbers),
            pools.customer_ids.take(pa.array(customer)),
            cents_to_decimal(cents),
            pools.currencies.take(pa.array(rng.choice(len(_CURRENCIES), rows, p=_CURRENCY_P))),
            _dates(issue),
            pools.descriptions.take(pa.array(_description_index(issue, rng))),
        ],
        schema=INVOICES_SCHEMA,
    )

    # ---- payments for invoices: one per paid invoice, a second one for duplicates
    paid = np.flatnonzero(category != NONE)
    second = np.flatnonzero(category == DUPLICATE)
    source = np.concatenate([paid, second])
    kind = category[source]
    delta = np.zeros(len(source), dtype=np.int64)
    is_tol = kind == TOLERANCE
    delta[is_tol] = rng.choice(np.array([-2, -1, 1, 2]), int(is_tol.sum()))
    is_off = kind == OFF
    n_off = int(is_off.sum())
    magnitude = np.where(rng.random(n_off) < 0.25, 3, rng.integers(3, 50_000, n_off))
    base = cents[source[is_off]]
    negative = (rng.random(n_off) < 0.5) & (magnitude < base)
    delta[is_off] = np.where(negative, -magnitude, magnitude)
    # the second payment of a duplicate: exact or a cent or two off, still within tolerance
    delta[len(paid) :] = rng.choice(np.array([-2, -1, 0, 0, 0, 1, 2]), len(second))
    paid_cents = cents[source] + delta
    pay_days = issue[source] + rng.integers(0, 60, len(source))
    pay_days[len(paid) :] += rng.integers(1, 30, len(second))
    variant = rng.choice(3, len(source), p=[0.75, 0.15, 0.10])
    payer = variant * pools.customers + customer[source]

    # ---- stray payments: NULL reference, a typo of an invoice number, or a bank reference
    n_stray = plan.stray
    stray_kind = rng.choice(3, n_stray, p=[0.4, 0.3, 0.3])
    typo = fixed_width_strings("INV", rng.integers(1, max(rows, 2) + start, n_stray))
    bank = fixed_width_strings("BANK-", rng.integers(0, 10**8, n_stray), 8)
    stray_ref = pc.if_else(
        pa.array(stray_kind == 0),
        pa.scalar(None, pa.string()),
        pc.if_else(pa.array(stray_kind == 1), typo, bank),
    )
    stray_cents = np.clip(np.rint(np.exp(rng.normal(math.log(30_000), 1.4, n_stray))), 100, 10**8)
    stray_days = rng.integers(_FIRST_ISSUE, _LAST_ISSUE + 60, n_stray)
    stray_payer = rng.integers(0, 3 * pools.customers, n_stray)

    # ---- assemble, shuffle the payments, number them in file order
    order = rng.permutation(rows)
    refs = pa.concat_arrays([fixed_width_strings("INV-", numbers[source]), stray_ref])
    all_cents = np.concatenate([paid_cents, stray_cents.astype(np.int64)])[order]
    all_days = np.concatenate([pay_days, stray_days])[order]
    all_payer = np.concatenate([payer, stray_payer])[order]
    payments = pa.Table.from_arrays(
        [
            fixed_width_strings("PAY-", numbers),
            refs.take(pa.array(order)),
            cents_to_decimal(all_cents),
            _dates(all_days),
            pools.payer_names.take(pa.array(all_payer)),
        ],
        schema=PAYMENTS_SCHEMA,
    )
    return invoices, payments, plan


def iter_blocks(
    n_per_side: int, seed: int = 42, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> Iterator[tuple[pa.Table, pa.Table, BlockPlan]]:
    """Blocks of (invoices, payments, plan), in order."""
    pools = _pools(n_per_side, seed)
    for index, start, rows in _blocks(n_per_side, chunk_rows):
        yield _block(pools, seed, index, start, rows)


def generate(
    n_per_side: int, seed: int = 42, chunk_rows: int = DEFAULT_CHUNK_ROWS
) -> tuple[pa.Table, pa.Table]:
    """(invoices, payments) with ``n_per_side`` rows each, in memory (for small sizes)."""
    blocks = list(iter_blocks(n_per_side, seed, chunk_rows))
    if not blocks:
        return INVOICES_SCHEMA.empty_table(), PAYMENTS_SCHEMA.empty_table()
    invoices = pa.concat_tables([b[0] for b in blocks])
    payments = pa.concat_tables([b[1] for b in blocks])
    return invoices, payments


# ----------------------------------------------------------------------------- writing


def write_dataset(
    out_dir: Path,
    n_per_side: int,
    formats: Sequence[str] = ("parquet", "csv"),
    seed: int = 42,
    chunk_rows: int = DEFAULT_CHUNK_ROWS,
    row_group_rows: int = DEFAULT_ROW_GROUP_ROWS,
) -> dict[str, object]:
    """Write invoices/payments as Parquet (snappy) and/or CSV, block by block.

    Files are written under temporary names and renamed when complete; ``expected.json``
    (counts and generation parameters) is written last. Returns what it wrote.
    """
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    unknown = set(formats) - {"parquet", "csv"}
    if unknown:
        raise ValueError(f"unknown format(s): {sorted(unknown)}; use parquet or csv")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    tmp_suffix = f".tmp-{os.getpid()}"
    writers: dict[tuple[str, str], pq.ParquetWriter | pacsv.CSVWriter] = {}
    final: dict[tuple[str, str], Path] = {}
    schemas = {"invoices": INVOICES_SCHEMA, "payments": PAYMENTS_SCHEMA}
    try:
        for fmt in formats:
            for side, schema in schemas.items():
                path = out_dir / DATA_FILES[(side, fmt)]
                final[(side, fmt)] = path
                tmp = path.with_name(path.name + tmp_suffix)
                if fmt == "parquet":
                    writers[(side, fmt)] = pq.ParquetWriter(tmp, schema, compression="snappy")
                else:
                    writers[(side, fmt)] = pacsv.CSVWriter(tmp, schema)
        for invoices, payments, _ in iter_blocks(n_per_side, seed, chunk_rows):
            for (side, fmt), writer in writers.items():
                table = invoices if side == "invoices" else payments
                if fmt == "parquet":
                    writer.write_table(table, row_group_size=row_group_rows)
                else:
                    writer.write_table(table)
        for writer in writers.values():
            writer.close()
        for path in final.values():
            os.replace(path.with_name(path.name + tmp_suffix), path)
    except BaseException:
        for key, writer in writers.items():
            with contextlib.suppress(Exception):
                writer.close()
            final[key].with_name(final[key].name + tmp_suffix).unlink(missing_ok=True)
        raise
    info = dataset_info(n_per_side, seed, chunk_rows)
    info["formats"] = sorted(set(formats) | set(_existing_formats(out_dir)))
    info["seconds"] = round(time.perf_counter() - started, 3)
    info["files"] = {f"{side}.{fmt}": str(path) for (side, fmt), path in final.items()}
    tmp = out_dir / (EXPECTED_FILE + tmp_suffix)
    tmp.write_text(json.dumps(info, indent=2) + "\n")
    os.replace(tmp, out_dir / EXPECTED_FILE)
    return info


def dataset_info(n_per_side: int, seed: int, chunk_rows: int) -> dict[str, object]:
    """What identifies a generated data set, and its expected counts."""
    totals = plan_totals(n_per_side, chunk_rows)
    categories = {k: v for k, v in totals.items() if k != "invoices"}
    return {
        "generator_version": GENERATOR_VERSION,
        "n_per_side": n_per_side,
        "seed": seed,
        "chunk_rows": chunk_rows,
        "expected": expected_counts(n_per_side, seed, chunk_rows),
        "categories": categories,
    }


def _existing_formats(out_dir: Path) -> list[str]:
    return [
        fmt
        for fmt in ("parquet", "csv")
        if all((out_dir / DATA_FILES[(side, fmt)]).exists() for side in ("invoices", "payments"))
    ]


def block_plans(n_per_side: int, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> list[BlockPlan]:
    """The plan of every block (for reports and tests)."""
    return [plan_block(rows) for _, _, rows in _blocks(n_per_side, chunk_rows)]


def plan_totals(n_per_side: int, chunk_rows: int = DEFAULT_CHUNK_ROWS) -> dict[str, int]:
    """Category totals over all blocks."""
    totals: dict[str, int] = {}
    for plan in block_plans(n_per_side, chunk_rows):
        for key, value in asdict(plan).items():
            totals[key] = totals.get(key, 0) + value
    return totals
