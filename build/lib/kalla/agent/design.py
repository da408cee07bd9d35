"""The deterministic builder's reasoning: two tables in, a match design out.

Every decision is taken from the data, by a rule that does not depend on names:

1. **Primary keys**: the first column (or pair) that is unique on each side, preferring
   text or integer columns named like an identifier.
2. **Join key**: every pair of text/integer columns is compared under each normalisation
   (``normalize.LADDER``). A key links many rows (*coverage*) about one-to-one
   (*specificity*). A candidate must be *corroborated*: among the pairs it links, amounts or
   dates must agree far more often than among random pairs; a row number on both sides or a
   shared category has overlap but no corroboration, so it is never taken for a key. When
   no single column links one-to-one, pairs of columns are tried (composite keys).
3. **Amount**: among key-linked pairs, the measure pair and sign convention (same, opposite,
   absolute) under which most amounts agree. The differences of the linked pairs give the
   **tolerance**: the natural break between small differences (rounding, fees) and the
   large ones, which stay unmatched as breaks.
4. **No key**: amounts (with their sign convention) and a **date window** learnt from the
   lags of amount-equal pairs against the background of chance pairs, plus a
   **counterparty** condition when a text column agrees for most such pairs.
5. **Cardinality**: when a record has more than one candidate, one-to-one with the closest
   candidate first.
"""

from __future__ import annotations

import itertools
import math
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from enum import StrEnum

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from kalla.agent.columns import ColumnInfo, Kind, as_days, as_float
from kalla.agent.compare import Overlap, best_overlap, counts_overlap, value_counts
from kalla.agent.normalize import LADDER, normalisation
from kalla.agent.profile import SourceProfile, id_name_score, profile_table
from kalla.errors import KallaError

MIN_COVERAGE = 0.2  # a key must link at least this share of one side's rows
MIN_SPECIFICITY = 0.5  # ... at about one partner per row (a composite is tried below 0.8)
MIN_EVIDENCE = 0.25  # corroboration: agreement above chance among the linked pairs
PAIR_LIMIT = 2_000_000  # linked pairs examined at most (a sample of the left beyond)
DESIGN_ROWS = 300_000  # left rows the design looks at (a random sample beyond; 4x on the right)
_SEED = 20240611  # fixed: the same inputs always give the same recipe


class BuilderError(KallaError):
    """The two sources give the builder nothing to match on; the message says what is missing."""

    status = 422
    exit_code = 2
    kind = "builder"


class Sign(StrEnum):
    SAME = "same"
    NEGATED = "negated"
    ABSOLUTE = "absolute"


class TextRule(StrEnum):
    EQUAL = "equal"  # identical once spaces, punctuation and case are ignored
    CONTAINS = "contains"  # one contains the other (same folding)
    FIRST_WORD = "first_word"  # the first word of the left value appears in the right one
    FIRST_WORD_RIGHT = "first_word_right"  # the first word of the right value in the left one


@dataclass(frozen=True)
class KeyLink:
    left: ColumnInfo
    right: ColumnInfo
    normalisation: str  # a normalize.LADDER name, or "same_day" for two dates
    overlap: Overlap


@dataclass(frozen=True)
class AmountLink:
    left: ColumnInfo
    right: ColumnInfo
    sign: Sign
    tolerance: Decimal | None  # None: amounts must be equal
    exact_share: float  # linked pairs whose amounts are exactly equal
    within_share: float  # ... equal or within the tolerance
    breaks: int = 0  # linked pairs whose amounts differ by more than the tolerance
    relative: bool = False  # the tolerance is a share of the left amount (0.01 = 1%)


@dataclass(frozen=True)
class DateLink:
    left: ColumnInfo
    right: ColumnInfo
    low: int  # right date minus left date, in days
    high: int


@dataclass(frozen=True)
class TextLink:
    left: ColumnInfo
    right: ColumnInfo
    rule: TextRule
    agreement: float


@dataclass(frozen=True)
class Design:
    left_alias: str
    right_alias: str
    left_columns: tuple[ColumnInfo, ...]
    right_columns: tuple[ColumnInfo, ...]
    left_key: tuple[str, ...]
    right_key: tuple[str, ...]
    left_ids: tuple[str, ...] = ()  # every column that identifies a row (shown in matches)
    right_ids: tuple[str, ...] = ()
    keys: tuple[KeyLink, ...] = ()
    amount: AmountLink | None = None
    window: DateLink | None = None  # a condition: dates within low..high days
    rank_date: DateLink | None = None  # breaks ties between candidates when keyed
    counterparty: TextLink | None = None
    one_to_one: bool = False
    findings: tuple[str, ...] = field(default_factory=tuple)


# --- the two sides ---------------------------------------------------------------------------


def _rng() -> np.random.Generator:
    return np.random.default_rng(_SEED)


def _sample(table: pa.Table, rows: int) -> pa.Table:
    if table.num_rows <= rows:
        return table
    keep = np.sort(_rng().choice(table.num_rows, size=rows, replace=False))
    return table.take(pa.array(keep))


class Side:
    """One source as the builder sees it: its table, profile and cached column views."""

    def __init__(self, alias: str, table: pa.Table, profile: SourceProfile | None = None) -> None:
        self.alias = alias
        self.table = table
        self.profile = profile or profile_table(alias, table)
        self.infos = {c.name: c.info for c in self.profile.columns}
        self.rows = table.num_rows
        self._normalised: dict[tuple[str, str], pa.ChunkedArray] = {}
        self._counts: dict[tuple[str, str], pa.Table] = {}
        self._floats: dict[str, np.ndarray] = {}
        self._days: dict[str, np.ndarray] = {}
        self._folded: dict[str, list[str]] = {}
        self._measures: list[ColumnInfo] | None = None

    def columns(self) -> list[ColumnInfo]:
        return list(self.infos.values())

    def keyable(self) -> list[ColumnInfo]:
        return [c for c in self.columns() if c.is_keyable and self._informative(c.name)]

    def measures(self) -> list[ColumnInfo]:
        """Amount columns, and amounts split in two (debit / credit) as one signed value."""
        if self._measures is None:
            plain = [c for c in self.columns() if c.is_measure and self._informative(c.name)]
            self._measures = plain + self._split_amounts(plain)
        return self._measures

    def _split_amounts(self, plain: list[ColumnInfo]) -> list[ColumnInfo]:
        """Two amount columns of which each row fills exactly one (the other empty or zero),
        as in a statement with Debit and Credit columns: together one signed amount."""
        found = []
        for a, b in itertools.combinations(plain, 2):
            fa, fb = self.floats(a.name), self.floats(b.name)
            with np.errstate(invalid="ignore"):
                set_a = np.isfinite(fa) & (fa != 0)
                set_b = np.isfinite(fb) & (fb != 0)
            if not set_a.any() or not set_b.any():
                continue
            if float(np.mean(set_a ^ set_b)) >= 0.95 and float(np.mean(set_a & set_b)) <= 0.01:
                name = f"{a.name} minus {b.name}"
                found.append(ColumnInfo(name, "decimal", Kind.DECIMAL, parts=(a.name, b.name)))
                self._floats[name] = np.where(
                    set_a | set_b, np.nan_to_num(fa) - np.nan_to_num(fb), np.nan
                )
        return found

    def dates(self) -> list[ColumnInfo]:
        return [c for c in self.columns() if c.is_date and self._informative(c.name)]

    def texts(self) -> list[ColumnInfo]:
        return [
            c
            for c in self.columns()
            if c.kind is Kind.TEXT and c.date_format is None and self._informative(c.name)
        ]

    def _informative(self, name: str) -> bool:
        profile = self.profile.column(name)
        return profile.distinct > 1 and profile.non_null > 0

    def normalised(self, name: str, norm: str) -> pa.ChunkedArray:
        key = (name, norm)
        if key not in self._normalised:
            column = self.table.column(name)
            if norm == "same_day":
                self._normalised[key] = pc.cast(as_days(column, self.infos[name]), pa.string())
            else:
                self._normalised[key] = normalisation(norm).apply(column)
        return self._normalised[key]

    def counts(self, name: str, norm: str) -> pa.Table:
        key = (name, norm)
        if key not in self._counts:
            self._counts[key] = value_counts(self.normalised(name, norm))
        return self._counts[key]

    def floats(self, name: str) -> np.ndarray:
        if name not in self._floats:
            values = as_float(self.table.column(name))
            self._floats[name] = values.to_numpy().astype(np.float64, copy=False)
        return self._floats[name]

    def days(self, name: str) -> np.ndarray:
        if name not in self._days:
            values = as_days(self.table.column(name), self.infos[name])
            self._days[name] = pc.cast(values, pa.float64()).to_numpy()
        return self._days[name]

    def folded(self, name: str) -> list[str]:
        """Text upper-cased with everything but letters and digits removed ('' for NULL)."""
        if name not in self._folded:
            values = self.table.column(name).to_pylist()
            self._folded[name] = [_fold(v) for v in values]
        return self._folded[name]

    def first_words(self, name: str) -> list[str]:
        values = self.table.column(name).to_pylist()
        return [_first_word(v) for v in values]


def _fold(value: object) -> str:
    return re.sub(r"[^A-Z0-9]", "", str(value).upper()) if value is not None else ""


def _first_word(value: object) -> str:
    if value is None:
        return ""
    words = str(value).strip(" ").split(" ")
    return _fold(words[0]) if words else ""


# --- primary keys ----------------------------------------------------------------------------


def _unique_in(table: pa.Table, columns: tuple[str, ...]) -> bool:
    if table.num_rows == 0:
        return True
    groups = table.select(list(columns)).group_by(list(columns)).aggregate([]).num_rows
    return bool(groups == table.num_rows)


def primary_key(side: Side, whole: pa.Table) -> tuple[tuple[str, ...], str | None]:
    """The side's primary key (checked unique on the whole table when the design looked at a
    sample) and, when none is strictly unique, a warning."""
    candidates = side.profile.key_candidates
    if not candidates:
        raise BuilderError(
            f"no column or pair of columns identifies each row of '{side.alias}' "
            "(every candidate repeats); add a row id column to the file"
        )
    for candidate in candidates:
        if candidate.unique and (whole is side.table or _unique_in(whole, candidate.columns)):
            return candidate.columns, None
    best = candidates[0]
    return best.columns, (
        f"'{side.alias}' has no strictly unique key; {', '.join(best.columns)} identifies "
        f"{best.distinct_share:.1%} of its rows"
    )


def _ids(side: Side) -> tuple[str, ...]:
    return tuple(
        c.name
        for c in side.profile.columns
        if c.unique and c.info.kind in (Kind.TEXT, Kind.INTEGER, Kind.DECIMAL)
    )


# --- linked pairs and corroboration ----------------------------------------------------------


def _joined(
    left: pa.ChunkedArray, right: pa.ChunkedArray, expected: int
) -> tuple[np.ndarray, np.ndarray]:
    """Row indices (left, right) of every pair with equal values; a sample beyond PAIR_LIMIT."""
    lt = pa.table({"v": left, "li": pa.array(np.arange(len(left), dtype=np.int64))})
    rt = pa.table({"v": right, "ri": pa.array(np.arange(len(right), dtype=np.int64))})
    lt = lt.filter(pc.is_valid(lt["v"]))
    rt = rt.filter(pc.is_valid(rt["v"]))
    if expected > PAIR_LIMIT and lt.num_rows:
        keep = max(1, int(lt.num_rows * PAIR_LIMIT / expected))
        lt = lt.take(pa.array(np.sort(_rng().choice(lt.num_rows, size=keep, replace=False))))
    joined = lt.join(rt, "v", join_type="inner")
    li = joined["li"].to_numpy()
    ri = joined["ri"].to_numpy()
    order = np.lexsort((ri, li))
    return li[order], ri[order]


def _key_values(side: Side, links: Sequence[KeyLink], left: bool) -> pa.ChunkedArray:
    parts = [side.normalised(k.left.name if left else k.right.name, k.normalisation) for k in links]
    if len(parts) == 1:
        return parts[0]
    return pc.binary_join_element_wise(*parts, "\x1f")


def linked_pairs(
    left: Side, right: Side, links: Sequence[KeyLink]
) -> tuple[np.ndarray, np.ndarray]:
    expected = links[0].overlap.pairs if len(links) == 1 else PAIR_LIMIT + 1
    return _joined(_key_values(left, links, True), _key_values(right, links, False), expected)


def _diff(lv: np.ndarray, rv: np.ndarray, sign: Sign) -> np.ndarray:
    if sign is Sign.SAME:
        return lv - rv
    if sign is Sign.NEGATED:
        return lv + rv
    return np.abs(lv) - np.abs(rv)


def _near(lv: np.ndarray, d: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        return np.abs(d) <= 0.01 + 0.05 * np.abs(lv)


def corroboration(left: Side, right: Side, li: np.ndarray, ri: np.ndarray) -> float | None:
    """How much more often amounts or dates agree among linked pairs than among random ones.

    None when neither side has an informative amount or date to compare."""
    if len(li) == 0:
        return 0.0
    shuffled = _rng().permutation(ri)
    best: float | None = None
    for lm, rm in itertools.product(left.measures(), right.measures()):
        lv, rv = left.floats(lm.name)[li], right.floats(rm.name)
        for sign in Sign:
            linked = float(np.mean(_near(lv, _diff(lv, rv[ri], sign))))
            chance = float(np.mean(_near(lv, _diff(lv, rv[shuffled], sign))))
            if chance < 0.5:
                best = max(best if best is not None else -1.0, linked - chance)
    for ld, rd in itertools.product(left.dates(), right.dates()):
        lv, rv = left.days(ld.name)[li], right.days(rd.name)
        with np.errstate(invalid="ignore"):
            linked = float(np.mean(np.abs(rv[ri] - lv) <= 7))
            chance = float(np.mean(np.abs(rv[shuffled] - lv) <= 7))
        if chance < 0.5:
            best = max(best if best is not None else -1.0, linked - chance)
    return best


# --- keys ------------------------------------------------------------------------------------


def key_links(left: Side, right: Side) -> list[KeyLink]:
    """Every text/integer column pair that links enough rows, best first."""
    links = []
    for lc, rc in itertools.product(left.keyable(), right.keyable()):
        overlaps = [
            counts_overlap(
                n.name,
                left.counts(lc.name, n.name),
                right.counts(rc.name, n.name),
                left.rows,
                right.rows,
            )
            for n in LADDER
        ]
        best = best_overlap(overlaps)
        if best.coverage >= MIN_COVERAGE and best.pairs:
            links.append(KeyLink(lc, rc, best.normalisation, best))
    links.sort(key=lambda k: (-k.overlap.score, -_name_affinity(k)))
    return links


def date_links(left: Side, right: Side) -> list[KeyLink]:
    links = []
    for lc, rc in itertools.product(left.dates(), right.dates()):
        overlap = counts_overlap(
            "same_day",
            left.counts(lc.name, "same_day"),
            right.counts(rc.name, "same_day"),
            left.rows,
            right.rows,
        )
        if overlap.coverage >= 0.5:
            links.append(KeyLink(lc, rc, "same_day", overlap))
    return links


def _name_affinity(link: KeyLink) -> int:
    return id_name_score(link.left.name) + id_name_score(link.right.name)


def composite_overlap(left: Side, right: Side, links: Sequence[KeyLink]) -> Overlap:
    lv, rv = _key_values(left, links, True), _key_values(right, links, False)
    return counts_overlap(
        "composite", value_counts(lv, "l"), value_counts(rv, "r"), len(lv), len(rv)
    )


def choose_keys(
    left: Side, right: Side, findings: list[str]
) -> tuple[tuple[KeyLink, ...], DateLink | None]:
    """The key links (one, or two for a composite) and, when a date is part of the key but
    the two sides' dates lag, the window that replaces its equality."""
    singles = key_links(left, right)
    accepted: list[KeyLink] = []
    for link in singles[:8]:
        if link.overlap.specificity < MIN_SPECIFICITY / 2:
            continue
        li, ri = linked_pairs(left, right, [link])
        evidence = corroboration(left, right, li, ri)
        if evidence is not None and evidence < MIN_EVIDENCE:
            findings.append(
                f"{_pair_name(link)} share values ({link.overlap.coverage:.0%} of rows) but "
                "amounts and dates of the rows they link do not agree: not a key"
            )
            continue
        accepted.append(link)
    best = next((k for k in accepted if k.overlap.specificity >= MIN_SPECIFICITY), None)
    if best is not None and best.overlap.specificity >= 0.8:
        return (best,), None
    composite = _composite(left, right, singles + date_links(left, right), best)
    if composite is not None:
        return composite
    return ((best,) if best is not None else ()), None


def _amounts_agree(left: Side, right: Side, li: np.ndarray, ri: np.ndarray) -> np.ndarray:
    """Which linked pairs agree (within 1%) on the measure pair and sign that agrees most.

    When every store has a deposit every day, the lags of store-linked pairs are spread
    evenly; the lags of those whose amounts also agree show where the true pairs sit."""
    best: np.ndarray | None = None
    for lm, rm in itertools.product(left.measures(), right.measures()):
        lv, rv = left.floats(lm.name)[li], right.floats(rm.name)[ri]
        for sign in Sign:
            with np.errstate(invalid="ignore"):
                agree = np.abs(_diff(lv, rv, sign)) <= 0.01 + 0.01 * np.abs(lv)
            if best is None or agree.sum() > best.sum():
                best = agree
    return best if best is not None else np.ones(len(li), dtype=bool)


@dataclass(frozen=True)
class _Linked:
    """Rows linked by some links (and a window), with the overlap figures of a key."""

    coverage: float
    specificity: float

    @property
    def score(self) -> float:
        return self.coverage * self.specificity


def _linked_stats(left: Side, right: Side, li: np.ndarray, ri: np.ndarray) -> _Linked:
    if len(li) == 0:
        return _Linked(0.0, 0.0)
    found_l, found_r = len(np.unique(li)), len(np.unique(ri))
    coverage = max(found_l / left.rows, found_r / right.rows)
    return _Linked(coverage, min(found_l, found_r) / len(li))


_Pairs = Callable[[], tuple[np.ndarray, np.ndarray]]
_Candidate = tuple[tuple[KeyLink, ...], "DateLink | None", "_Linked", _Pairs]


def _pair_candidate(left: Side, right: Side, a: KeyLink, b: KeyLink) -> _Candidate | None:
    """Two links as one key; with a date among them, equality only when the lags of the rows
    the other link joins (and whose amounts agree) pile up on the same day."""
    dated = [k for k in (a, b) if k.normalisation == "same_day"]
    if len(dated) == 2:
        return None
    if dated:
        date = dated[0]
        other = b if a is date else a
        li, ri = linked_pairs(left, right, [other])
        ldays, rdays = left.days(date.left.name), right.days(date.right.name)
        lags = rdays[ri] - ldays[li]
        agree = _amounts_agree(left, right, li, ri)
        learnt = window_from_lags(lags[agree], chance_lags(ldays, rdays, li[agree], ri[agree]))
        if learnt is None:
            return None
        low, high, _ = learnt
        if (low, high) != (0, 0):
            with np.errstate(invalid="ignore"):
                keep = (lags >= low) & (lags <= high)
            kept = (li[keep], ri[keep])
            window = DateLink(date.left, date.right, low, high)
            return (other,), window, _linked_stats(left, right, *kept), lambda: kept
    overlap = composite_overlap(left, right, (a, b))
    stats = _Linked(overlap.coverage, overlap.specificity)

    def pairs() -> tuple[np.ndarray, np.ndarray]:
        li, ri = linked_pairs(left, right, (a, b))
        return li, ri

    return (a, b), None, stats, pairs


def _composite(
    left: Side, right: Side, links: list[KeyLink], single: KeyLink | None
) -> tuple[tuple[KeyLink, ...], DateLink | None] | None:
    """Two links that together identify records (``_pair_candidate``), corroborated, and
    clearly better than the best single link."""
    pool = sorted(
        (k for k in links if k.overlap.coverage >= 0.5), key=lambda k: -k.overlap.coverage
    )[:10]
    best_score = (single.overlap.score if single is not None else 0.0) + 0.05
    found: tuple[tuple[KeyLink, ...], DateLink | None] | None = None
    for a, b in itertools.combinations(pool, 2):
        if a.left.name == b.left.name or a.right.name == b.right.name:
            continue
        candidate = _pair_candidate(left, right, a, b)
        if candidate is None:
            continue
        keys, window, stats, pairs = candidate
        if stats.specificity < 0.8 or stats.coverage < MIN_COVERAGE or stats.score <= best_score:
            continue
        evidence = corroboration(left, right, *pairs())
        if evidence is not None and evidence < MIN_EVIDENCE:
            continue
        found, best_score = (keys, window), stats.score
    return found


# --- amounts and tolerance -------------------------------------------------------------------

_NICE = (1, 2, 5)


def nice_ceiling(value: float) -> float:
    """The smallest 1, 2 or 5 × 10^k at or above ``value``."""
    exponent = math.floor(math.log10(value))
    for step in (*_NICE, 10):
        candidate = step * 10.0**exponent
        if candidate >= value * (1 - 1e-9):
            return round(candidate, 10)
    return value


def tolerance_from(differences: np.ndarray, scale: float, *, spread: float = 0.01) -> float | None:
    """The natural break in the absolute differences of linked pairs, or None.

    Small differences (rounding, charges) form a dense cluster; true mismatches sit an order
    of magnitude or more above it. Among differences up to 5% of a typical amount
    (``scale``), the first gap of 10× (else the largest of at least 3×) above which no more
    than half of them lie ends the cluster. Without such a gap the small differences are one
    cluster only if they are dense (their median within ``spread`` of ``scale``); spread-out
    differences are breaks, not noise. The tolerance is the cluster's largest difference
    rounded up to a 1-2-5 step that stays below the next difference."""
    absolute = np.abs(differences[np.isfinite(differences)])
    absolute = np.round(absolute[absolute > 1e-9], 9)
    if len(absolute) == 0:
        return None
    limit = 0.05 * scale if scale > 0 else float(absolute.max())
    small = absolute[absolute <= limit]
    if len(small) == 0:
        return None
    values, counts = np.unique(small, return_counts=True)
    cumulative = np.cumsum(counts)
    cut: int | None = None
    largest = 0.0
    for i in range(len(values) - 1):
        if cumulative[i] < 0.5 * len(small):
            continue  # the cluster holds most of the small differences
        gap = values[i + 1] / values[i]
        if gap >= 10:
            cut = i
            break
        if gap >= 3 and gap > largest:
            cut, largest = i, gap
    if cut is None:
        if scale > 0 and float(np.median(small)) > spread * scale:
            return None
        cut = len(values) - 1
    value = float(values[cut])
    bigger = absolute[absolute > value]
    above = float(bigger.min()) if len(bigger) else math.inf
    nice = nice_ceiling(value)
    return nice if nice < above else value


def _beats_chance(real: np.ndarray, chance: np.ndarray, tolerance: float) -> bool:
    """Whether differences within the tolerance are far more common among linked pairs than
    among the same rows paired at random (else they are coincidences, not a tolerance)."""
    if len(real) == 0:
        return False
    with np.errstate(invalid="ignore"):
        found = int(np.sum((real > 1e-9) & (real <= tolerance + 1e-9)))
        by_chance = float(np.sum((chance > 1e-9) & (chance <= tolerance + 1e-9)))
    by_chance *= len(real) / max(len(chance), 1)
    return found >= 1 and found >= 3 * by_chance


def _decimal(value: float) -> Decimal:
    return Decimal(repr(round(value, 6))).normalize()


def amount_link(left: Side, right: Side, li: np.ndarray, ri: np.ndarray) -> AmountLink | None:
    """The measure pair and sign under which linked amounts agree, with its tolerance:
    absolute (rounding, charges) or, when the differences grow with the amount (currency
    conversion), relative."""
    best: tuple[tuple[float, float, int], AmountLink] | None = None
    for lm, rm in itertools.product(left.measures(), right.measures()):
        lv, rv = left.floats(lm.name)[li], right.floats(rm.name)[ri]
        for preference, sign in enumerate(Sign):
            d = _diff(lv, rv, sign)
            with np.errstate(invalid="ignore"):
                exact = float(np.mean(np.abs(d) < 1e-9))
            near = float(np.mean(_near(lv, d)))
            rank = (near, exact, -preference)
            if best is None or rank > best[0]:
                best = (rank, AmountLink(lm, rm, sign, None, exact, exact))
    if best is None or best[0][0] < 0.5:
        return None
    link = best[1]
    lv = left.floats(link.left.name)[li]
    rv = right.floats(link.right.name)[ri]
    d = np.abs(_diff(lv, rv, link.sign))
    chance = np.abs(_diff(lv, rv[_rng().permutation(len(rv))], link.sign))
    with np.errstate(invalid="ignore", divide="ignore"):
        ratios = np.where(np.abs(lv) > 0, d / np.abs(lv), np.nan)
        chance_ratios = np.where(np.abs(lv) > 0, chance / np.abs(lv), np.nan)
    scale = float(np.nanmedian(np.abs(lv))) if len(lv) else 0.0
    absolute = tolerance_from(d, scale)
    if absolute is not None and not _beats_chance(d, chance, absolute):
        absolute = None
    relative = tolerance_from(ratios, 1.0, spread=0.02)
    if relative is not None and not _beats_chance(ratios, chance_ratios, relative):
        relative = None
    finite = np.isfinite(d)
    is_relative = relative is not None and _grows_with_amount(d, lv, ratios)
    tolerance = relative if is_relative else absolute
    with np.errstate(invalid="ignore"):
        if is_relative:
            kept = ratios[finite] <= (relative or 0.0) + 1e-12
        else:
            kept = d[finite] <= (absolute or 0.0) + 1e-9
    within = float(np.mean(kept)) if len(kept) else 0.0
    breaks = int(np.sum(~kept))
    return AmountLink(
        link.left,
        link.right,
        link.sign,
        _decimal(tolerance) if tolerance is not None else None,
        link.exact_share,
        max(within, link.exact_share),
        breaks,
        relative=is_relative,
    )


def _ranks(values: np.ndarray) -> np.ndarray:
    return np.argsort(np.argsort(values)).astype(float)


def _grows_with_amount(d: np.ndarray, lv: np.ndarray, ratios: np.ndarray) -> bool:
    """Whether the small differences grow with the amount (a conversion rate) rather than
    staying the same size whatever the amount (rounding, a fixed charge): their rank
    correlation with the amount is strong."""
    with np.errstate(invalid="ignore"):
        small = np.isfinite(ratios) & (d > 1e-9) & (ratios <= 0.05)
    if int(small.sum()) < 10:
        return False
    x, y = _ranks(d[small]), _ranks(np.abs(lv[small]))
    if x.std() == 0 or y.std() == 0:
        return False
    return float(np.corrcoef(x, y)[0, 1]) >= 0.5


def tolerance_words(amount: AmountLink) -> str:
    if amount.tolerance is None:
        return "0"
    if amount.relative:
        return f"{float(amount.tolerance) * 100:g}% of '{amount.left.name}'"
    return str(amount.tolerance)


def _amount_pairs_ok(
    link: AmountLink | None, left: Side, right: Side, li: np.ndarray, ri: np.ndarray
) -> np.ndarray:
    """Which linked pairs the amount condition keeps."""
    if link is None:
        return np.ones(len(li), dtype=bool)
    lv = left.floats(link.left.name)[li]
    d = _diff(lv, right.floats(link.right.name)[ri], link.sign)
    limit = float(link.tolerance) if link.tolerance is not None else 0.0
    with np.errstate(invalid="ignore"):
        if link.relative:
            return np.abs(d) <= limit * np.abs(lv) + 1e-9
        return np.abs(d) <= limit + 1e-9


def best_rank_date(left: Side, right: Side, li: np.ndarray, ri: np.ndarray) -> DateLink | None:
    best: tuple[float, DateLink] | None = None
    for ld, rd in itertools.product(left.dates(), right.dates()):
        lag = right.days(rd.name)[ri] - left.days(ld.name)[li]
        with np.errstate(invalid="ignore"):
            share = float(np.mean(np.abs(lag) <= 31)) if len(lag) else 0.0
        if share >= 0.5 and (best is None or share > best[0]):
            best = (share, DateLink(ld, rd, 0, 0))
    return best[1] if best else None


def _ambiguous(li: np.ndarray, ri: np.ndarray) -> bool:
    return bool(len(np.unique(li)) < len(li) or len(np.unique(ri)) < len(ri))


# --- no key: amount, date window, counterparty ----------------------------------------------


def _cents(values: np.ndarray) -> pa.Array:
    with np.errstate(invalid="ignore"):
        cents = np.round(values * 100.0)
    return pa.array(cents, mask=~np.isfinite(cents)).cast(pa.int64())


def _signed_cents(side: Side, name: str, sign: Sign, right: bool) -> pa.Array:
    values = side.floats(name)
    if sign is Sign.ABSOLUTE:
        values = np.abs(values)
    elif sign is Sign.NEGATED and right:
        values = -values
    return _cents(values)


def amount_pairing(left: Side, right: Side) -> tuple[AmountLink, Overlap] | None:
    best: tuple[tuple[float, float, int], AmountLink, Overlap] | None = None
    for lm, rm in itertools.product(left.measures(), right.measures()):
        for preference, sign in enumerate(Sign):
            lv = _signed_cents(left, lm.name, sign, right=False)
            rv = _signed_cents(right, rm.name, sign, right=True)
            overlap = counts_overlap(
                sign.value, value_counts(lv, "l"), value_counts(rv, "r"), len(lv), len(rv)
            )
            rank = (overlap.coverage, overlap.specificity, -preference)
            if overlap.coverage >= 0.3 and (best is None or rank > best[0]):
                best = (rank, AmountLink(lm, rm, sign, None, 0.0, 0.0), overlap)
    return (best[1], best[2]) if best else None


def chance_lags(
    left_days: np.ndarray, right_days: np.ndarray, li: np.ndarray, ri: np.ndarray
) -> np.ndarray:
    """Lags of the same rows paired at random (four shuffles): what chance alone gives."""
    rng = _rng()
    return (
        np.concatenate([right_days[rng.permutation(ri)] - left_days[li] for _ in range(4)])
        if len(li)
        else np.array([])
    )


def window_from_lags(lags: np.ndarray, chance: np.ndarray) -> tuple[int, int, float] | None:
    """The run of days around the lag that stands out most above chance.

    True pairs pile up on a few lags (0-4 days, say); pairs that are linked by chance (an
    amount that repeats, a store that has a deposit every day) spread as the dates do. The
    expected count per lag comes from the same rows paired at random (``chance``); the
    window is the contiguous run (gaps up to 2 days) of lags whose excess over it is above
    3 sigma and at least 2% of the largest excess. Returns (low, high, share of pairs in
    the excess) or None when no lag stands out."""
    lags = lags[np.isfinite(lags)].astype(np.int64)
    chance = chance[np.isfinite(chance)].astype(np.int64)
    if len(lags) == 0 or len(chance) == 0:
        return None
    span = 120
    bins = 2 * span + 1
    counts = np.bincount(lags[np.abs(lags) <= span] + span, minlength=bins).astype(float)
    expected = np.bincount(chance[np.abs(chance) <= span] + span, minlength=bins).astype(float)
    expected *= len(lags) / len(chance)
    excess = counts - expected
    mode = int(np.argmax(excess))
    threshold = 3 * np.sqrt(expected) + max(0.02 * excess[mode], 0.5)
    if excess[mode] <= threshold[mode] or counts[mode] < 2:
        return None
    above = excess > threshold
    low = high = mode
    while True:
        ahead = [k for k in range(high + 1, min(high + 4, bins)) if above[k]]
        if not ahead:
            break
        high = ahead[0]
    while True:
        behind = [k for k in range(low - 1, max(low - 4, -1), -1) if above[k]]
        if not behind:
            break
        low = behind[0]
    signal = float(excess[low : high + 1].sum()) / len(lags)
    return low - span, high - span, signal


def date_window(
    left: Side, right: Side, li: np.ndarray, ri: np.ndarray
) -> tuple[DateLink, float] | None:
    best: tuple[float, DateLink] | None = None
    for ld, rd in itertools.product(left.dates(), right.dates()):
        ldays, rdays = left.days(ld.name), right.days(rd.name)
        found = window_from_lags(rdays[ri] - ldays[li], chance_lags(ldays, rdays, li, ri))
        if found is None:
            continue
        low, high, signal = found
        if best is None or signal > best[0]:
            best = (signal, DateLink(ld, rd, low, high))
    if best is None:
        return None
    return best[1], best[0]


def _text_agrees(rule: TextRule, a: str, b: str, a_first: str, b_first: str) -> bool:
    if rule is TextRule.EQUAL:
        return bool(a) and a == b
    if rule is TextRule.CONTAINS:
        return (len(a) >= 3 and a in b) or (len(b) >= 3 and b in a)
    if rule is TextRule.FIRST_WORD:
        return len(a_first) >= 3 and a_first in b
    return len(b_first) >= 3 and b_first in a


def _found_share(agrees: np.ndarray, li: np.ndarray) -> float:
    """Share of left records (among those with candidates) with at least one agreeing one."""
    records = np.unique(li)
    return len(np.unique(li[agrees])) / len(records) if len(records) else 0.0


def counterparty(left: Side, right: Side, li: np.ndarray, ri: np.ndarray) -> TextLink | None:
    """A text pair (names, codes, narratives) that finds a record's counterpart among its
    candidates far more often than the same column shuffled does; the weakest rule that does.

    Candidates are compared per record, not per pair: a customer paying the same amount
    every month has many candidates and only one is right, but the right one agrees."""
    if len(li) == 0:
        return None
    records = np.unique(li)
    if len(records) > 2000:  # a sample of records, with all their candidates
        chosen = np.sort(_rng().choice(records, size=2000, replace=False))
        keep = np.isin(li, chosen)
        li, ri = li[keep], ri[keep]
    shuffle = _rng().permutation(right.rows)
    left_keys = (
        set(left.profile.key_candidates[0].columns) if left.profile.key_candidates else set()
    )
    best: tuple[float, TextLink] | None = None
    for lc, rc in itertools.product(left.texts(), right.texts()):
        if lc.name in left_keys:
            continue
        lf, rf = left.folded(lc.name), right.folded(rc.name)
        lw, rw = left.first_words(lc.name), right.first_words(rc.name)
        for rule in TextRule:
            agrees = np.array(
                [
                    _text_agrees(rule, lf[i], rf[j], lw[i], rw[j])
                    for i, j in zip(li, ri, strict=True)
                ],
                dtype=bool,
            )
            by_chance = np.array(
                [
                    _text_agrees(rule, lf[i], rf[shuffle[j]], lw[i], rw[shuffle[j]])
                    for i, j in zip(li, ri, strict=True)
                ],
                dtype=bool,
            )
            found, chance = _found_share(agrees, li), _found_share(by_chance, li)
            if found >= 0.6 and found - chance >= 0.3:
                gain = found - chance
                if best is None or gain > best[0] + 0.02:
                    best = (gain, TextLink(lc, rc, rule, found))
                break  # the weakest rule that works for this pair
    return best[1] if best else None


def _text_ok(
    link: TextLink | None, left: Side, right: Side, li: np.ndarray, ri: np.ndarray
) -> np.ndarray:
    if link is None:
        return np.ones(len(li), dtype=bool)
    lf, rf = left.folded(link.left.name), right.folded(link.right.name)
    lw, rw = left.first_words(link.left.name), right.first_words(link.right.name)
    return np.array(
        [_text_agrees(link.rule, lf[i], rf[j], lw[i], rw[j]) for i, j in zip(li, ri, strict=True)],
        dtype=bool,
    )


# --- the design ------------------------------------------------------------------------------


def _pair_name(link: KeyLink) -> str:
    return f"'{link.left.name}' and '{link.right.name}'"


def design_match(
    left_alias: str, left_table: pa.Table, right_alias: str, right_table: pa.Table
) -> Design:
    """A match design for two staged tables (see the module docstring for the rules)."""
    findings: list[str] = []
    # A sample of the left side against (most of) the right keeps each sampled record's
    # partner, so coverage and corroboration stay true; sampling both would lose most pairs.
    left = Side(left_alias, _sample(left_table, DESIGN_ROWS))
    right = Side(right_alias, _sample(right_table, 4 * DESIGN_ROWS))
    if left.rows < left_table.num_rows or right.rows < right_table.num_rows:
        findings.append(
            f"designed on a random sample of {left.rows:,} of {left_table.num_rows:,} "
            f"'{left_alias}' rows against {right.rows:,} of {right_table.num_rows:,} "
            f"'{right_alias}' rows"
        )
    if left.rows == 0 or right.rows == 0:
        empty = left_alias if left.rows == 0 else right_alias
        raise BuilderError(f"'{empty}' has no rows: there is nothing to learn a match from")
    left_key, warning = primary_key(left, left_table)
    right_key, warning_right = primary_key(right, right_table)
    findings += [w for w in (warning, warning_right) if w]
    base: dict[str, object] = {
        "left_alias": left_alias,
        "right_alias": right_alias,
        "left_columns": tuple(left.columns()),
        "right_columns": tuple(right.columns()),
        "left_key": left_key,
        "right_key": right_key,
        "left_ids": _ids(left),
        "right_ids": _ids(right),
    }
    keys, window = choose_keys(left, right, findings)
    if keys:
        return _keyed(left, right, keys, window, base, findings)
    return _unkeyed(left, right, base, findings)


def _keyed(
    left: Side,
    right: Side,
    keys: tuple[KeyLink, ...],
    window: DateLink | None,
    base: dict[str, object],
    findings: list[str],
) -> Design:
    li, ri = linked_pairs(left, right, keys)
    names = " + ".join(_pair_name(k) for k in keys)
    if window is not None:
        inside = _in_window(window, left, right, li, ri)
        li, ri = li[inside], ri[inside]
    found_l, found_r = len(np.unique(li)) / left.rows, len(np.unique(ri)) / right.rows
    findings.append(
        f"key: {names} ({', '.join(k.normalisation for k in keys)}) links "
        f"{found_l:.0%} of '{left.alias}' and {found_r:.0%} of '{right.alias}'"
        + (
            f" when '{window.right.name}' falls {_days(window.low, window.high)} "
            f"'{window.left.name}'"
            if window is not None
            else ""
        )
    )
    amount = amount_link(left, right, li, ri)
    if amount is None:
        findings.append("no amount agrees for most linked records: matching on the key alone")
    else:
        findings.append(
            f"amount: '{amount.left.name}' vs '{amount.right.name}' ({amount.sign.value} sign); "
            f"{amount.exact_share:.0%} of linked pairs equal"
            + (
                f", {amount.within_share:.0%} within {tolerance_words(amount)}"
                if amount.tolerance
                else ""
            )
        )
        if amount.breaks:
            findings.append(
                f"{amount.breaks} linked pair(s) differ by more than the tolerance: left "
                "unmatched as breaks"
            )
    keep = _amount_pairs_ok(amount, left, right, li, ri)
    rank_date = window or best_rank_date(left, right, li, ri)
    one_to_one = _ambiguous(li[keep], ri[keep])
    if one_to_one:
        findings.append("some records have more than one candidate: one-to-one, closest first")
    return Design(
        **base,  # type: ignore[arg-type]
        keys=keys,
        amount=amount,
        window=window,
        rank_date=rank_date,
        one_to_one=one_to_one,
        findings=tuple(findings),
    )


def _in_window(
    link: DateLink | None, left: Side, right: Side, li: np.ndarray, ri: np.ndarray
) -> np.ndarray:
    if link is None:
        return np.ones(len(li), dtype=bool)
    lags = right.days(link.right.name)[ri] - left.days(link.left.name)[li]
    with np.errstate(invalid="ignore"):
        return (lags >= link.low) & (lags <= link.high)


def _unkeyed(left: Side, right: Side, base: dict[str, object], findings: list[str]) -> Design:
    """Amount pairs, narrowed by a counterparty and a date window learnt from them."""
    pairing = amount_pairing(left, right)
    if pairing is None:
        raise BuilderError(
            f"'{left.alias}' and '{right.alias}' share no key column and no amounts: "
            "there is nothing to match on (compare their columns with describe_source)"
        )
    amount, overlap = pairing
    findings.append(
        f"no shared key; amounts '{amount.left.name}' vs '{amount.right.name}' "
        f"({amount.sign.value} sign) are equal for {overlap.coverage:.0%} of rows"
    )
    lv = _signed_cents(left, amount.left.name, amount.sign, right=False)
    rv = _signed_cents(right, amount.right.name, amount.sign, right=True)
    li, ri = _joined(pa.chunked_array([lv]), pa.chunked_array([rv]), overlap.pairs)
    # A first window over every amount pair (chance pairs blur it), then the counterparty
    # among the pairs inside it, then the window again among the pairs the counterparty keeps.
    first = date_window(left, right, li, ri)
    rough = _in_window(first[0] if first else None, left, right, li, ri)
    text = counterparty(left, right, li[rough], ri[rough])
    keep = _text_ok(text, left, right, li, ri)
    if text is not None:
        findings.append(
            f"counterparty: '{text.left.name}' and '{text.right.name}' agree ({text.rule.value}) "
            f"for {text.agreement:.0%} of records with a matching amount"
        )
    window = date_window(left, right, li[keep], ri[keep]) if text is not None else first
    link = window[0] if window else None
    if link is not None:
        keep &= _in_window(link, left, right, li, ri)
        findings.append(
            f"dates: '{link.right.name}' falls {_days(link.low, link.high)} "
            f"'{link.left.name}' for matching amounts"
        )
    amount = AmountLink(
        amount.left, amount.right, amount.sign, None, overlap.coverage, overlap.coverage
    )
    one_to_one = _ambiguous(li[keep], ri[keep])
    if one_to_one:
        findings.append("some records have more than one candidate: one-to-one, closest date first")
    return Design(
        **base,  # type: ignore[arg-type]
        amount=amount,
        window=link,
        counterparty=text,
        one_to_one=one_to_one,
        findings=tuple(findings),
    )


def _days(low: int, high: int) -> str:
    if low == high == 0:
        return "on the same day as"
    if low >= 0:
        return f"{low} to {high} days after"
    if high <= 0:
        return f"{-high} to {-low} days before"
    return f"between {-low} days before and {high} days after"
