"""Frozen pydantic models for every JSON shape in the seed documents.

The seed contracts are binding: field names, nesting and the callback payloads are kept as
the seeds show them. Kalla's extensions (``passes``, ``cardinality``, ``rank_by``, source
``filters`` and ``format``) are optional, so every seed example parses unchanged.
"""

from __future__ import annotations

import re
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from kalla.connectors.format import FileFormat
from kalla.connectors.registry import (
    FILE_TYPE,
    LOCAL_SCHEMES,
    RECIPE_TYPES,
    SourceKind,
    check_recipe_type,
    kinds_of_type,
    scheme_of,
)
from kalla.secrets import redact_uri
from kalla.suggest import did_you_mean

IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
Scalar = str | int | float | Decimal | bool


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", populate_by_name=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", by_alias=True, exclude_none=True)


class FilterOp(StrEnum):
    EQ = "eq"
    NEQ = "neq"
    GT = "gt"
    GTE = "gte"
    LT = "lt"
    LTE = "lte"
    BETWEEN = "between"
    IN = "in"
    LIKE = "like"


class FilterCondition(Frozen):
    """A pre-filter on one source column, applied before matching (seed 002)."""

    column: str = Field(min_length=1)
    op: FilterOp
    value: Scalar | list[Scalar]

    @field_validator("op", mode="before")
    @classmethod
    def _known_op(cls, value: object) -> object:
        ops = [o.value for o in FilterOp]
        if isinstance(value, str) and value not in ops:
            hint = did_you_mean(value, ops)
            raise ValueError(f"unknown filter op '{value}'{hint}; valid ops: {', '.join(ops)}")
        return value

    @model_validator(mode="after")
    def _value_fits_op(self) -> FilterCondition:
        value = self.value
        if self.op is FilterOp.BETWEEN and not (isinstance(value, list) and len(value) == 2):
            raise ValueError(f"filter 'between' on '{self.column}' needs a list of two values")
        if self.op is FilterOp.IN and not (isinstance(value, list) and value):
            raise ValueError(f"filter 'in' on '{self.column}' needs a non-empty list of values")
        if self.op is FilterOp.LIKE and not isinstance(value, str):
            raise ValueError(f"filter 'like' on '{self.column}' needs a string pattern")
        if self.op not in (FilterOp.BETWEEN, FilterOp.IN) and isinstance(value, list):
            raise ValueError(f"filter '{self.op.value}' on '{self.column}' needs a single value")
        return self


def _check_alias(value: str) -> str:
    if not IDENTIFIER.match(value):
        raise ValueError(
            f"alias '{value}' must be a plain SQL identifier (letters, digits, underscore)"
        )
    return value


class RecipeSource(Frozen):
    """One side of a recipe: a persistent URI, or a file uploaded fresh each run."""

    alias: str
    type: str = Field(
        description="the source type (connectors.registry): 'file' for a file given with "
        "each run, else the database or store its URI names",
        json_schema_extra={"enum": list(RECIPE_TYPES)},
    )
    uri: str | None = None
    schema_: list[str] | None = Field(default=None, alias="schema")
    primary_key: list[str] = Field(min_length=1)
    filters: list[FilterCondition] = Field(default_factory=list)
    format: FileFormat | None = Field(
        default=None,
        description="how to read the file (connectors.format): what is left out is detected",
    )
    allow_duplicate_keys: bool = Field(
        default=False,
        description="run even when primary_key is not unique in this source (by default a "
        "run refuses such a source, naming its duplicate keys)",
    )

    _alias = field_validator("alias")(_check_alias)

    @field_validator("type", mode="before")
    @classmethod
    def _known_type(cls, value: object) -> object:
        return check_recipe_type(value) if isinstance(value, str) else value

    @property
    def is_file(self) -> bool:
        """A file given (uploaded) with each run, rather than read from its URI."""
        return self.type == FILE_TYPE

    @property
    def kinds(self) -> tuple[SourceKind, ...]:
        """The source kinds its ``type`` covers (``connectors.registry``)."""
        return kinds_of_type(self.type)

    @model_validator(mode="after")
    def _uri_or_schema(self) -> RecipeSource:
        if not self.is_file and not self.uri:
            raise ValueError(f"source '{self.alias}' of type '{self.type}' needs a 'uri'")
        if self.uri:
            self._uri_fits_type(self.uri)
        if self.format is not None and not any(k.extensions for k in self.kinds):
            raise ValueError(
                f"source '{self.alias}' of type '{self.type}' has a 'format'; a format applies "
                "to files (type 'file', or an object store's file)"
            )
        if self.schema_ is not None:
            missing = [k for k in self.primary_key if k not in self.schema_]
            if missing:
                hints = "; ".join(f"'{k}'{did_you_mean(k, self.schema_)}" for k in missing)
                raise ValueError(
                    f"primary key of '{self.alias}' not in its schema: {hints}; "
                    f"schema: {', '.join(self.schema_)}"
                )
        return self

    def _uri_fits_type(self, uri: str) -> None:
        """A persistent source's URI has one of its type's schemes (so a recipe cannot read
        a server's files by calling them a database); a file source's is a local path."""
        scheme = scheme_of(uri)
        if self.is_file:
            if scheme is not None and scheme not in LOCAL_SCHEMES:
                raise ValueError(
                    f"source '{self.alias}' of type 'file' has a {scheme}:// URI; a file "
                    f"source's uri is a local path, and {scheme}:// sources have a type of "
                    "their own"
                )
            return
        schemes = [s for kind in self.kinds for s in kind.schemes]
        if scheme not in schemes:
            raise ValueError(
                f"source '{self.alias}' of type '{self.type}' needs a "
                f"{' or '.join(s + '://' for s in schemes)} URI, not {redact_uri(uri)}"
            )


class RecipeSources(Frozen):
    left: RecipeSource
    right: RecipeSource


class MatchPass(Frozen):
    """One step of a waterfall: sees only the records no earlier pass matched."""

    name: str = Field(min_length=1)
    match_sql: str = Field(min_length=1)
    description: str | None = None


class Cardinality(StrEnum):
    MANY_TO_MANY = "many_to_many"
    ONE_TO_ONE = "one_to_one"


class MatchSpec(Frozen):
    """What to match: shared by Recipe and JobRequest (one ``match_sql`` or ``passes``)."""

    match_sql: str | None = None
    passes: list[MatchPass] | None = None
    cardinality: Cardinality = Cardinality.MANY_TO_MANY
    rank_by: str | None = None

    @model_validator(mode="after")
    def _one_way_to_match(self) -> MatchSpec:
        if (self.match_sql is None) == (self.passes is None):
            raise ValueError("give exactly one of 'match_sql' or 'passes'")
        if self.passes is not None:
            if not self.passes:
                raise ValueError("'passes' must list at least one pass")
            names = [p.name for p in self.passes]
            dupes = sorted({n for n in names if names.count(n) > 1})
            if dupes:
                raise ValueError(f"pass names must be unique; repeated: {', '.join(dupes)}")
        if self.cardinality is Cardinality.ONE_TO_ONE and not self.rank_by:
            raise ValueError("cardinality 'one_to_one' needs 'rank_by' (a match output column)")
        return self

    def match_passes(self) -> list[MatchPass]:
        """The passes to run, in order; a plain ``match_sql`` is one pass named ``match_sql``."""
        if self.passes is not None:
            return list(self.passes)
        assert self.match_sql is not None
        return [MatchPass(name="match_sql", match_sql=self.match_sql)]


class Recipe(MatchSpec):
    """A saved reconciliation: two sources and the SQL that says what matches."""

    recipe_id: str = Field(min_length=1)
    name: str = Field(min_length=1)
    description: str = ""
    match_description: str = ""
    sources: RecipeSources

    @model_validator(mode="after")
    def _distinct_aliases(self) -> Recipe:
        if self.sources.left.alias == self.sources.right.alias:
            raise ValueError(f"left and right sources share the alias '{self.sources.left.alias}'")
        return self


class ResolvedSource(Frozen):
    """A source with its URI resolved, ready to stage (seed 002)."""

    alias: str
    uri: str = Field(min_length=1)
    filters: list[FilterCondition] = Field(default_factory=list)
    format: FileFormat | None = None  # Kalla's extension: how to read a file source
    allow_duplicate_keys: bool = False  # Kalla's extension: RecipeSource's

    _alias = field_validator("alias")(_check_alias)


class Job(MatchSpec):
    """What a job runner runs, whatever the transport: ``sources[0]`` is the left side,
    ``[1]`` the right."""

    run_id: UUID
    sources: list[ResolvedSource] = Field(min_length=2, max_length=2)
    output_path: str = Field(min_length=1)
    primary_keys: dict[str, list[str]]

    @model_validator(mode="after")
    def _keys_for_each_source(self) -> Job:
        aliases = [s.alias for s in self.sources]
        if aliases[0] == aliases[1]:
            raise ValueError(f"both sources share the alias '{aliases[0]}'")
        problems = [
            f"primary_keys has no entry for source '{a}'"
            for a in aliases
            if not self.primary_keys.get(a)
        ]
        problems += [
            f"primary_keys names '{k}', which is not a source alias{did_you_mean(k, aliases)}"
            for k in self.primary_keys
            if k not in aliases
        ]
        if problems:
            raise ValueError("; ".join(problems))
        return self


CallbackStyle = Literal["auto", "single", "per_event"]


class JobRequest(Job):
    """The payload of ``POST /api/jobs`` (seed 002): a job and where its events go.

    ``callback_style`` (Kalla's extension; default: the worker's ``KALLA_CALLBACK_STYLE``)
    says how ``callback_url`` is used: ``single`` posts every event to it (seed 002),
    ``per_event`` to ``{callback_url}/progress``, ``/complete`` and ``/error`` (the original
    build's listener), ``auto`` the latter only for a URL whose path ends in ``/api/worker``.
    """

    callback_url: str
    callback_style: CallbackStyle | None = None

    def job(self) -> Job:
        """The job alone, as the runner takes it (the callback fields stay with the
        transport)."""
        return Job.model_validate(self.model_dump(exclude={"callback_url", "callback_style"}))


# --- callback payloads (seed 002) -------------------------------------------------------


class StagingProgress(Frozen):
    stage: Literal["staging"] = "staging"
    run_id: UUID
    progress: float = Field(ge=0.0, le=1.0)
    source: str


class MatchingProgress(Frozen):
    stage: Literal["matching"] = "matching"
    run_id: UUID
    progress: float = Field(ge=0.0, le=1.0)
    matched_count: int | None = None


ProgressCallback = Annotated[StagingProgress | MatchingProgress, Field(discriminator="stage")]


class OutputPaths(Frozen):
    matched: str
    unmatched_left: str
    unmatched_right: str
    ambiguous: str | None = None
    manifest: str | None = None


class CompletionCallback(Frozen):
    run_id: UUID
    matched_count: int
    unmatched_left_count: int
    unmatched_right_count: int
    output_paths: OutputPaths
    ambiguous_left_count: int | None = None
    ambiguous_right_count: int | None = None


class ErrorCallback(Frozen):
    run_id: UUID
    error: str
