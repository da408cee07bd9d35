"""The session API's event stream and the builder's documentation agree with the code."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from kalla.agent.events import (
    KINDS,
    Done,
    ErrorEvent,
    Event,
    Preview,
    Proposal,
    TextDelta,
    ToolCall,
    ToolResult,
    parse_event,
    sse,
)
from kalla.agent.session import SessionState
from kalla.agent.tools import TOOLS
from kalla.errors import ConflictError

DOC = (Path(__file__).parents[2] / "docs" / "agent.md").read_text()

EXAMPLES: list[Event] = [
    TextDelta(text="Let me look"),
    ToolCall(id="t1", name="describe_source", arguments={"alias": "ledger"}),
    ToolResult(id="t1", name="describe_source", ok=False, result={"error": "x", "problems": []}),
    Proposal(recipe={"recipe_id": "r"}, sha256="ab", match_description="m", sql=[]),
    Preview(sha256="ab", preview={"counts": {}}),
    ErrorEvent(message="overloaded", retryable=True),
    Done(stop_reason="end_turn", mode="builder", usage={"input_tokens": 0}, turns=1),
]


@pytest.mark.parametrize("event", EXAMPLES, ids=[e.kind for e in EXAMPLES])
def test_each_event_is_one_server_sent_event_that_parses_back(event: Event) -> None:
    text = sse(event, 7)
    lines = text.split("\n")
    assert lines[:2] == ["id: 7", f"event: {event.kind}"]
    assert lines[2].startswith("data: ") and text.endswith("\n\n")
    data = json.loads(lines[2].removeprefix("data: "))
    assert parse_event({"kind": event.kind, **data}) == event


def test_every_kind_has_an_example_and_the_docs_list_exactly_the_kinds() -> None:
    assert [e.kind for e in EXAMPLES] == list(KINDS)
    section = DOC.split("### The event stream", 1)[1].split("\n## ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)` \|", section, flags=re.M)
    assert documented == list(KINDS)


def test_the_docs_describe_every_tool() -> None:
    section = DOC.split("### The tools", 1)[1].split("\n### ", 1)[0]
    documented = re.findall(r"^\| `([a-z_]+)(?:\(|`)", section, flags=re.M)
    assert documented == list(TOOLS)


def test_a_proposal_can_only_be_accepted_once_previewed() -> None:
    state = SessionState()
    with pytest.raises(ConflictError, match="no proposal"):
        state.accept()
    state.proposal = {"recipe": {}, "sha256": "a", "match_description": "", "sql": []}
    with pytest.raises(ConflictError, match="not been previewed"):
        state.accept()
    state.preview = {"sha256": "b", "preview": {}}
    with pytest.raises(ConflictError, match="not been previewed"):
        state.accept()
    state.preview = {"sha256": "a", "preview": {}}
    assert state.accept()["sha256"] == "a"
    assert state.accepted == "a"
    assert SessionState.from_dict(json.loads(json.dumps(state.to_dict()))) == state
