"""What a run produced, as frozen value objects (the CLI, worker and app all show these)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class Value(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class PassStats(Value):
    name: str
    candidate_count: int  # rows the pass's SQL returned
    matched_count: int  # rows kept as final matches (fewer than candidates only for one_to_one)
    ambiguous_left_count: int  # left keys in more than one candidate row
    ambiguous_right_count: int
    left_rows_in: int  # records this pass could still match
    right_rows_in: int
    seconds: float


class ControlTotal(Value):
    """input rows = distinct keys in final matches + unmatched rows, for one side."""

    alias: str
    input_rows: int
    matched_keys: int
    unmatched_rows: int

    @property
    def holds(self) -> bool:
        return self.input_rows == self.matched_keys + self.unmatched_rows


class BreakReason(Value):
    """How many unmatched rows of one side share one reason (its numbers left out)."""

    reason: str
    count: int


class Breaks(Value):
    """One side's unmatched rows counted by why they did not match, most frequent first."""

    alias: str
    output: str  # "unmatched_left" or "unmatched_right"
    reasons: tuple[BreakReason, ...]


class RunSummary(Value):
    matched_count: int
    unmatched_left_count: int
    unmatched_right_count: int
    ambiguous_left_count: int
    ambiguous_right_count: int
    ambiguous_count: int  # rows in ambiguous.parquet (one_to_one only)
    left_rows: int
    right_rows: int
    left_alias: str
    right_alias: str
    cardinality: str
    passes: tuple[PassStats, ...]
    control_totals: tuple[ControlTotal, ControlTotal]
    timings: dict[str, float] = Field(description="seconds per stage")
    output_paths: dict[str, str]
    breaks: tuple[Breaks, ...] = ()  # empty when breaks were not explained

    def top_reasons(self, limit: int = 5) -> list[tuple[str, BreakReason]]:
        """The most frequent reasons over both sides: (source alias, reason)."""
        found = [(b.alias, r) for b in self.breaks for r in b.reasons]
        return sorted(found, key=lambda item: (-item[1].count, item[0], item[1].reason))[:limit]
