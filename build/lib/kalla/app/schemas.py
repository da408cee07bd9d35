"""API models, named by role: ``…Create`` comes in, ``…Public`` goes out."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Generic, TypeVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

T = TypeVar("T")
MAX_INT = 2**31 - 1  # ids, versions and offsets fit a 32-bit INTEGER column everywhere


def no_nul(value: str) -> str:
    if "\x00" in value:
        raise ValueError("text must not contain NUL characters")
    return value


Text = Annotated[str, AfterValidator(no_nul)]


class ErrorBody(BaseModel):
    error: str
    kind: str = "error"
    problems: list[str] = Field(default_factory=list)


class Page(BaseModel, Generic[T]):
    items: list[T]
    total: int
    limit: int
    offset: int


class Column(BaseModel):
    name: str
    type: str


# --- sources --------------------------------------------------------------------------------


class SourceCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, pattern=r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
    uri: Text = Field(
        min_length=1,
        max_length=4000,
        description="postgres://, mysql:// or s3:// URI; write its password as ${ENV_NAME}. "
        "A password written literally is used for ?test=true only: it is stored and shown "
        "as ***.",
    )
    description: Text = Field(default="", max_length=4000)


class SourcePublic(BaseModel):
    id: int
    name: str
    type: str = Field(description="its source kind (postgres, mysql, s3)")
    uri: str = Field(
        description="as stored: literal credentials are ***, ${ENV_NAME} placeholders kept"
    )
    description: str
    created_at: datetime
    warnings: list[str] = Field(
        default_factory=list,
        description="what to fix, e.g. a password that was written literally (not stored)",
    )


class SourceProbe(BaseModel):
    """A connection test: the source read through the staging flow, first rows only."""

    ok: bool = Field(description="false when the source cannot be read; ``error`` says why")
    columns: list[Column]
    sample: list[dict[str, Any]]
    error: str | None = None


class SourceTest(SourceProbe):
    source: SourcePublic


class SourceRegistered(SourcePublic):
    test: SourceProbe | None = Field(
        default=None, description="with ?test=true: the test, run with the URI as given"
    )


# --- recipes --------------------------------------------------------------------------------


class RecipeVersionPublic(BaseModel):
    recipe_id: str
    version: int
    name: str
    sha256: str = Field(description="sha256 of the recipe's canonical JSON, as stored")
    created_at: datetime


class RecipePublic(RecipeVersionPublic):
    versions: int = Field(description="how many versions this recipe has")
    recipe: dict[str, Any] = Field(
        description="the recipe (seed shape) as stored: literal secrets in URIs are ***, "
        "${ENV_NAME} placeholders kept"
    )
    warnings: list[str] = Field(
        default_factory=list,
        description="on save: e.g. a password written literally (stored as ***)",
    )


# --- runs -----------------------------------------------------------------------------------


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    recipe_id: Text = Field(min_length=1, max_length=200)
    version: int | None = Field(
        default=None, ge=1, le=MAX_INT, description="recipe version; the latest when omitted"
    )


class RunCounts(BaseModel):
    matched: int | None = None
    unmatched_left: int | None = None
    unmatched_right: int | None = None
    ambiguous_left: int | None = None
    ambiguous_right: int | None = None
    ambiguous: int | None = None


class RunTimings(BaseModel):
    created_at: datetime
    started_at: datetime | None = None
    finished_at: datetime | None = None
    updated_at: datetime
    seconds: float | None = Field(default=None, description="started → finished")
    stages: dict[str, float] = Field(
        default_factory=dict, description="seconds per stage, from the manifest"
    )


class RunPublic(BaseModel):
    id: str
    recipe_id: str
    recipe_version: int
    status: str = Field(description="queued | running | completed | failed")
    stage: str = Field(description="queued | staging | matching | done | failed")
    progress: float = Field(description="0..1 over staging and matching")
    mode: str = Field(description="embedded | worker")
    attempts: int
    counts: RunCounts
    error: str | None
    timings: RunTimings
    results: dict[str, str] = Field(description="output name → results URL (completed runs)")
    manifest: dict[str, Any] | None = None


class RunEventPublic(BaseModel):
    kind: str
    payload: dict[str, Any]
    created_at: datetime


class ResultPage(BaseModel):
    columns: list[Column]
    rows: list[dict[str, Any]]
    total: int = Field(description="rows matching the filter")
    offset: int
    limit: int


class CallbackAck(BaseModel):
    run_id: str
    outcome: str = Field(description="applied | ignored | duplicate")
    status: str
