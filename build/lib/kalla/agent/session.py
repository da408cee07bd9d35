"""A builder session: its state (plain JSON, stored by the app after every step) and a turn.

``run_turn(state, text, ...)`` answers one user message with a stream of typed events
(``kalla.agent.events``). With ``ANTHROPIC_API_KEY`` set the assistant answers
(``conversation``); without it Kalla's deterministic builder does, and says so. Either way
the session keeps the latest valid proposal and its preview; ``accept`` marks the previewed
proposal as the one the user accepted, which is the only recipe ``save_recipe`` will save.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

from kalla.agent.context import ToolContext
from kalla.agent.events import (
    Done,
    ErrorEvent,
    Event,
    Preview,
    Proposal,
    TextDelta,
    ToolCall,
    ToolResult,
)
from kalla.agent.runner import ToolRunner
from kalla.agent.tools import is_error
from kalla.errors import ConflictError, MissingDependencyError
from kalla.settings import Settings

ASSISTANT = "assistant"
BUILDER = "builder"
SaveFn = Callable[[dict[str, Any]], dict[str, Any]]
"""Saves a recipe (a new version if its id exists); answers ``{recipe_id, version, sha256}``."""


@dataclass
class SessionState:
    mode: str = BUILDER
    messages: list[dict[str, Any]] = field(default_factory=list)  # the Messages API history
    transcript: list[dict[str, str]] = field(default_factory=list)  # what was said, for people
    usage: dict[str, int] = field(default_factory=lambda: {"input_tokens": 0, "output_tokens": 0})
    turns: int = 0  # model calls so far
    proposal: dict[str, Any] | None = None  # the latest valid recipe: recipe, sha256, ...
    preview: dict[str, Any] | None = None  # {"sha256", "preview"} of the latest preview
    accepted: str | None = None  # sha256 of the proposal the user accepted
    saved: dict[str, Any] | None = None  # {"recipe_id", "version", "sha256"}

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SessionState:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)

    @property
    def previewed(self) -> bool:
        """Whether the current proposal has been run on the data."""
        return bool(
            self.proposal and self.preview and self.preview["sha256"] == self.proposal["sha256"]
        )

    def accept(self) -> dict[str, Any]:
        """The proposal the user accepts; it must have been previewed."""
        if self.proposal is None:
            raise ConflictError("there is no proposal to accept yet: send a message first")
        if not self.previewed:
            raise ConflictError(
                "the current proposal has not been previewed on the data yet; preview it first"
            )
        self.accepted = self.proposal["sha256"]
        return self.proposal

    def note(self, role: str, text: str) -> None:
        if text:
            self.transcript.append({"role": role, "text": text})


def record_tool(state: SessionState, name: str, result: dict[str, Any]) -> list[Event]:
    """Keep a valid proposal or preview from a tool's answer; the events that announce it."""
    if is_error(result) or not result.get("valid"):
        return []
    proposal = {k: result[k] for k in ("recipe", "sha256", "match_description", "sql")}
    events: list[Event] = []
    if state.proposal is None or state.proposal["sha256"] != proposal["sha256"]:
        state.proposal = proposal
        events.append(Proposal(**proposal))
    if name == "preview_recipe":
        state.preview = {"sha256": proposal["sha256"], "preview": result["preview"]}
        events.append(Preview(sha256=proposal["sha256"], preview=result["preview"]))
    return events


def _match_of(recipe: dict[str, Any]) -> tuple[Any, ...]:
    """What decides the matches: the SQL, cardinality and each side's alias and key."""
    given = recipe.get("sources")
    sources: dict[str, Any] = given if isinstance(given, dict) else {}
    sides = tuple(
        (s.get("alias"), tuple(s.get("primary_key") or []), json.dumps(s.get("filters") or []))
        for s in (sources.get("left") or {}, sources.get("right") or {})
        if isinstance(s, dict)
    )
    passes = tuple(
        (p.get("name"), p.get("match_sql"))
        for p in recipe.get("passes") or []
        if isinstance(p, dict)
    )
    return (
        recipe.get("match_sql"),
        passes,
        recipe.get("cardinality") or "many_to_many",
        recipe.get("rank_by"),
        sides,
    )


def _same_match(given: dict[str, Any], accepted: dict[str, Any]) -> bool:
    return _match_of(given) == _match_of(accepted)


def save_tool(state: SessionState, arguments: Any, save: SaveFn | None) -> dict[str, Any]:
    """``save_recipe``: only the exact proposal the user accepted."""
    recipe = arguments.get("recipe") if isinstance(arguments, dict) else None
    proposal = state.proposal
    if proposal is None or state.accepted != proposal["sha256"]:
        return {
            "error": "not saved: the user has not accepted a previewed proposal; show them "
            "the proposal and its preview, and ask them to press Accept",
            "problems": [],
        }
    if isinstance(recipe, dict) and not _same_match(recipe, proposal["recipe"]):
        return {
            "error": "not saved: this is not the recipe the user accepted; only the accepted "
            "proposal can be saved",
            "problems": [],
        }
    if state.saved and state.saved.get("sha256") == proposal["sha256"]:
        return {"saved": True, **state.saved}
    if save is None:
        return {"error": "saving is not available in this session", "problems": []}
    state.saved = save(proposal["recipe"])
    return {"saved": True, **state.saved}


# --- without a key: the deterministic builder ------------------------------------------------


def _call(
    state: SessionState,
    tools: ToolRunner,
    context: ToolContext,
    n: int,
    name: str,
    arguments: dict[str, Any],
) -> Iterator[Event | dict[str, Any]]:
    call_id = f"builder_{state.turns}_{n}"
    yield ToolCall(id=call_id, name=name, arguments=arguments)
    result = tools.run(name, arguments, context)
    yield ToolResult(id=call_id, name=name, ok=not is_error(result), result=result)
    yield from record_tool(state, name, result)
    yield result


def _rate(value: Any) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def builder_turn(
    state: SessionState, text: str, context: ToolContext, tools: ToolRunner
) -> Iterator[Event]:
    state.note("user", text)
    state.turns += 1
    said: list[str] = []

    def say(words: str) -> TextDelta:
        said.append(words)
        return TextDelta(text=words)

    if state.previewed:
        yield say(
            "This session has no assistant (ANTHROPIC_API_KEY is not set), so it cannot "
            "discuss changes: the builder's proposal above stands. Accept it to save it, or "
            "edit the recipe and save it through the recipes API.\n"
        )
        state.note("assistant", "".join(said))
        yield Done(stop_reason="end_turn", mode=BUILDER, usage=state.usage, turns=state.turns)
        return
    yield say(
        "ANTHROPIC_API_KEY is not set, so Kalla's deterministic builder answers: it reads both "
        "sources, infers how their records match, and runs the result on the data.\n\n"
    )
    if len(context.sources) != 2:
        message = f"the builder needs exactly two sources; this session has {len(context.sources)}"
        yield ErrorEvent(message=message)
        state.note("assistant", "".join(said))
        yield Done(stop_reason="error", mode=BUILDER, usage=state.usage, turns=state.turns)
        return
    results: dict[str, dict[str, Any]] = {}
    steps: list[tuple[str, dict[str, Any]]] = [
        ("describe_source", {"alias": s.alias}) for s in context.sources
    ]
    steps.append(("suggest_recipe", {}))
    for n, (name, arguments) in enumerate(steps):
        for item in _call(state, tools, context, n, name, arguments):
            if isinstance(item, dict):
                results[name] = item
            else:
                yield item
        if is_error(results[name]):
            yield ErrorEvent(message=str(results[name]["error"]))
            state.note("assistant", "".join(said))
            yield Done(stop_reason="error", mode=BUILDER, usage=state.usage, turns=state.turns)
            return
    proposal = results["suggest_recipe"]
    for item in _call(
        state, tools, context, len(steps), "preview_recipe", {"recipe": proposal["recipe"]}
    ):
        if isinstance(item, dict):
            results["preview_recipe"] = item
        else:
            yield item
    shown = results["preview_recipe"]
    findings = "".join(f"- {f}\n" for f in proposal.get("findings", []))
    yield say(f"What the data shows:\n{findings}\nThe rule: {proposal['match_description']}\n\n")
    if is_error(shown):
        yield ErrorEvent(message=f"the preview failed: {shown['error']}")
    else:
        p = shown["preview"]
        counts, rates = p["counts"], p["match_rate"]
        recipe = proposal["recipe"]
        la, ra = recipe["sources"]["left"]["alias"], recipe["sources"]["right"]["alias"]
        where = "all the data" if p["scope"]["whole"] else "a key-consistent sample"
        yield say(
            f"Run on {where}: {counts['matched_left']:,} of {counts['left_rows']:,} {la} "
            f"records matched ({_rate(rates['left_by_count'])} by count, "
            f"{_rate(rates['left_by_amount'])} by amount) and {counts['matched_right']:,} of "
            f"{counts['right_rows']:,} {ra} records ({_rate(rates['right_by_count'])}, "
            f"{_rate(rates['right_by_amount'])}). Accept the proposal to save it as recipe "
            f"'{recipe['recipe_id']}'.\n"
        )
    state.note("assistant", "".join(said))
    yield Done(stop_reason="end_turn", mode=BUILDER, usage=state.usage, turns=state.turns)


def run_turn(
    state: SessionState,
    text: str,
    *,
    context: ToolContext,
    tools: ToolRunner,
    settings: Settings,
    save: SaveFn | None = None,
) -> Iterator[Event]:
    """One user message, answered as events (the last one is always ``done``)."""
    if state.mode == ASSISTANT:
        try:
            from kalla.agent.conversation import assistant_turn
        except ModuleNotFoundError as exc:
            if exc.name != "anthropic":
                raise
            raise MissingDependencyError(
                "the assistant needs the 'anthropic' package, which is not installed; "
                "install it with: pip install 'kalla[agent]'"
            ) from None

        yield from assistant_turn(
            state, text, context=context, tools=tools, settings=settings, save=save
        )
    else:
        yield from builder_turn(state, text, context, tools)
