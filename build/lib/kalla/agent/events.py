"""The typed events a builder turn produces, as the session API streams them (SSE).

Each event is one Server-Sent Event: ``event:`` is its ``kind``, ``data:`` its JSON, ``id:`` its
sequence number in the session (a client that reconnects can skip what it has seen).

| kind          | data                                                                   |
|---------------|------------------------------------------------------------------------|
| `text_delta`  | `{"text"}`: the next piece of the assistant's reply                    |
| `tool_call`   | `{"id", "name", "arguments"}`: a tool the assistant (or builder) runs  |
| `tool_result` | `{"id", "name", "ok", "result"}`: its answer (`error`, `problems` when not ok) |
| `proposal`    | `{"recipe", "sha256", "match_description", "sql"}`: a valid recipe     |
| `preview`     | `{"sha256", "preview"}`: that recipe run on the data                   |
| `error`       | `{"message", "retryable"}`: the turn could not go on; the session is kept |
| `done`        | `{"stop_reason", "mode", "usage", "turns"}`: the turn is over           |
"""

from __future__ import annotations

import json
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Event(BaseModel):
    model_config = ConfigDict(frozen=True)

    def to_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json")


class TextDelta(_Event):
    kind: Literal["text_delta"] = "text_delta"
    text: str


class ToolCall(_Event):
    kind: Literal["tool_call"] = "tool_call"
    id: str
    name: str
    arguments: dict[str, Any]


class ToolResult(_Event):
    kind: Literal["tool_result"] = "tool_result"
    id: str
    name: str
    ok: bool
    result: dict[str, Any]


class Proposal(_Event):
    kind: Literal["proposal"] = "proposal"
    recipe: dict[str, Any]
    sha256: str
    match_description: str
    sql: list[dict[str, str]]


class Preview(_Event):
    kind: Literal["preview"] = "preview"
    sha256: str
    preview: dict[str, Any]


class ErrorEvent(_Event):
    kind: Literal["error"] = "error"
    message: str
    retryable: bool = False


class Done(_Event):
    kind: Literal["done"] = "done"
    stop_reason: str
    mode: str
    usage: dict[str, int]
    turns: int


Event = Annotated[
    TextDelta | ToolCall | ToolResult | Proposal | Preview | ErrorEvent | Done,
    Field(discriminator="kind"),
]
EVENT = TypeAdapter(Event)
KINDS = ("text_delta", "tool_call", "tool_result", "proposal", "preview", "error", "done")


def parse_event(data: dict[str, Any]) -> Event:
    return EVENT.validate_python(data)


def sse(event: Event, seq: int) -> str:
    """One Server-Sent Event (the JSON on a single ``data:`` line)."""
    body = json.dumps({k: v for k, v in event.to_dict().items() if k != "kind"})
    return f"id: {seq}\nevent: {event.kind}\ndata: {body}\n\n"
