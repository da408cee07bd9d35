"""The conversation with the model: the official ``anthropic`` SDK, Messages API, tool use,
streaming.

A turn sends the history with the tools, streams the reply's text as it comes, runs the tools
the model asks for (``run_tool`` in a child process; ``save_recipe`` in the session), hands
their answers back, and goes on until the model ends its turn. Budgets bound a session: at
most ``KALLA_AGENT_MAX_TURNS`` model calls and ``KALLA_AGENT_MAX_TOKENS`` tokens. The SDK
retries 429, 5xx and 529 (overloaded) answers with exponential backoff, honouring
``retry-after``, ``KALLA_AGENT_MAX_RETRIES`` times; what still fails ends the turn with an
``error`` event that says what happened and what to do, and the session is kept.

The model sees what the tools answer: schemas, statistics and (unless
``KALLA_AGENT_SHARE_ROWS=false``) capped samples; never a credential or a server path.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic

from kalla.agent.context import ToolContext
from kalla.agent.events import Done, ErrorEvent, Event, TextDelta, ToolCall, ToolResult
from kalla.agent.prompts import SYSTEM_PROMPT
from kalla.agent.runner import ToolRunner
from kalla.agent.session import ASSISTANT, SaveFn, SessionState, record_tool, save_tool
from kalla.agent.tools import SESSION_TOOLS, is_error, tool_schemas
from kalla.settings import Settings

MAX_REPLY_TOKENS = 4096
_INTERRUPTED = "the app restarted before this tool finished; call it again if it is still needed"


def make_client(settings: Settings) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        api_key=settings.anthropic_api_key,
        base_url=settings.anthropic_base_url,
        max_retries=settings.agent_max_retries,
        timeout=300.0,
    )


def _append_user(messages: list[dict[str, Any]], blocks: list[dict[str, Any]]) -> None:
    """Add user content, merged into a trailing user message (after a failed turn)."""
    if messages and messages[-1]["role"] == "user":
        messages[-1]["content"].extend(blocks)
    else:
        messages.append({"role": "user", "content": blocks})


def repair(messages: list[dict[str, Any]]) -> None:
    """A tool call left without its result (the app stopped mid-turn) gets an error result,
    so the history stays valid for the API."""
    if not messages or messages[-1]["role"] != "assistant":
        return
    pending = [b for b in messages[-1]["content"] if b.get("type") == "tool_use"]
    if pending:
        messages.append(
            {
                "role": "user",
                "content": [
                    {
                        "type": "tool_result",
                        "tool_use_id": b["id"],
                        "content": json.dumps({"error": _INTERRUPTED}),
                        "is_error": True,
                    }
                    for b in pending
                ],
            }
        )


def _blocks(message: Any) -> list[dict[str, Any]]:
    """The reply's content as plain JSON for the history (text and tool calls)."""
    blocks: list[dict[str, Any]] = []
    for block in message.content:
        if block.type == "text":
            blocks.append({"type": "text", "text": block.text})
        elif block.type == "tool_use":
            blocks.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
            )
    return blocks


def describe_api_error(exc: anthropic.APIError, settings: Settings) -> tuple[str, bool]:
    """A message that says what failed and what to do, and whether trying later may work."""
    retries = settings.agent_max_retries
    tried = f"after {retries} retries with backoff" if retries else "(retries are off)"
    if isinstance(exc, anthropic.APIConnectionError):
        where = settings.anthropic_base_url or "api.anthropic.com"
        return (
            f"cannot reach the Anthropic API at {where} {tried}: check the network "
            "(or ANTHROPIC_BASE_URL) and send your message again; the session is kept",
            True,
        )
    if isinstance(exc, anthropic.APIStatusError):
        status = exc.status_code
        body = exc.body if isinstance(exc.body, dict) else {}
        kind = str((body.get("error") or {}).get("type", ""))
        if status == 529 or kind == "overloaded_error":
            return (
                f"the Anthropic API is overloaded (HTTP 529) and still was {tried}; wait a "
                "few minutes and send your message again; the session is kept",
                True,
            )
        if status == 429 or kind == "rate_limit_error":
            return (
                f"the Anthropic API is rate-limiting this key (HTTP 429) and still was {tried};"
                " wait a minute and send your message again; the session is kept",
                True,
            )
        if status in (401, 403):
            return (
                f"the Anthropic API refused ANTHROPIC_API_KEY (HTTP {status}): check the key",
                False,
            )
        if status >= 500 or kind == "api_error":
            return (
                f"the Anthropic API failed (HTTP {status}) {tried}; send your message again "
                "later; the session is kept",
                True,
            )
        detail = str((body.get("error") or {}).get("message", "")) or type(exc).__name__
        return f"the Anthropic API refused the request (HTTP {status}): {detail[:300]}", False
    return f"the Anthropic API failed: {type(exc).__name__}", False


def _over_budget(state: SessionState, settings: Settings) -> str | None:
    if state.turns >= settings.agent_max_turns:
        return (
            f"this session has used its budget of {settings.agent_max_turns} assistant turns "
            "(KALLA_AGENT_MAX_TURNS): accept the current proposal or start a new session"
        )
    used = state.usage["input_tokens"] + state.usage["output_tokens"]
    if used >= settings.agent_max_tokens:
        return (
            f"this session has used its budget of {settings.agent_max_tokens:,} tokens "
            f"(KALLA_AGENT_MAX_TOKENS; {used:,} used): accept the current proposal or start a "
            "new session"
        )
    return None


def assistant_turn(
    state: SessionState,
    text: str,
    *,
    context: ToolContext,
    tools: ToolRunner,
    settings: Settings,
    save: SaveFn | None = None,
    client: anthropic.Anthropic | None = None,
) -> Iterator[Event]:
    state.mode = ASSISTANT
    state.note("user", text)
    repair(state.messages)
    _append_user(state.messages, [{"type": "text", "text": text}])
    client = client or make_client(settings)
    said: list[str] = []
    stop = "end_turn"
    while True:
        refused = _over_budget(state, settings)
        if refused:
            yield ErrorEvent(message=refused)
            stop = "budget"
            break
        try:
            with client.messages.stream(
                model=settings.agent_model,
                max_tokens=MAX_REPLY_TOKENS,
                system=SYSTEM_PROMPT,
                tools=tool_schemas(),  # type: ignore[arg-type]
                messages=state.messages,  # type: ignore[arg-type]
            ) as stream:
                for event in stream:
                    if event.type == "text":
                        said.append(event.text)
                        yield TextDelta(text=event.text)
                reply = stream.get_final_message()
        except anthropic.APIError as exc:
            message, retryable = describe_api_error(exc, settings)
            yield ErrorEvent(message=message, retryable=retryable)
            stop = "error"
            break
        state.turns += 1
        state.usage["input_tokens"] += int(reply.usage.input_tokens or 0)
        state.usage["output_tokens"] += int(reply.usage.output_tokens or 0)
        blocks = _blocks(reply)
        state.messages.append({"role": "assistant", "content": blocks})
        calls = [b for b in blocks if b["type"] == "tool_use"]
        if reply.stop_reason != "tool_use" or not calls:
            stop = str(reply.stop_reason or "end_turn")
            break
        results = []
        for call in calls:
            yield ToolCall(id=call["id"], name=call["name"], arguments=dict(call["input"] or {}))
            if call["name"] in SESSION_TOOLS:
                result = save_tool(state, call["input"], save)
            else:
                result = tools.run(call["name"], call["input"], context)
            ok = not is_error(result)
            yield ToolResult(id=call["id"], name=call["name"], ok=ok, result=result)
            yield from record_tool(state, call["name"], result)
            results.append(
                {
                    "type": "tool_result",
                    "tool_use_id": call["id"],
                    "content": json.dumps(result, default=str),
                    "is_error": not ok,
                }
            )
        state.messages.append({"role": "user", "content": results})
    state.note("assistant", "".join(said))
    yield Done(stop_reason=stop, mode=ASSISTANT, usage=dict(state.usage), turns=state.turns)
