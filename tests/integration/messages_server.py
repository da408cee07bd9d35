"""A local server that speaks Anthropic's Messages API with scripted replies (no tests here).

The official ``anthropic`` SDK is pointed at it with ``ANTHROPIC_BASE_URL``; it answers
``POST /v1/messages`` in the real wire format: a JSON ``message`` or, with ``"stream": true``,
Server-Sent Events (``message_start``, ``content_block_start``/``_delta``/``_stop`` with
``text_delta`` and ``input_json_delta``, ``message_delta``, ``message_stop``) sent chunk by
chunk. Scripted errors answer with the API's error JSON and status (429, 529, 500) and a
``retry-after-ms`` header so the SDK's backoff stays short. Every request body is kept, so a
test can check what the model was shown.

A script is a list of replies; a reply may be a function of the request, to act on what the
tools answered (``last_tool_result``).
"""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Text:
    text: str


@dataclass(frozen=True)
class ToolUse:
    name: str
    input: dict[str, Any]
    id: str = field(default_factory=lambda: f"toolu_{uuid.uuid4().hex[:20]}")


@dataclass(frozen=True)
class Reply:
    """One assistant message; ``stop_reason`` is ``tool_use`` when it calls a tool."""

    blocks: tuple[Text | ToolUse, ...]
    input_tokens: int = 120
    output_tokens: int = 40

    @property
    def stop_reason(self) -> str:
        return "tool_use" if any(isinstance(b, ToolUse) for b in self.blocks) else "end_turn"


@dataclass(frozen=True)
class Failure:
    """An error answer, as the API sends it."""

    status: int
    type: str
    message: str
    retry_after_ms: int = 5


def say(text: str) -> Reply:
    return Reply((Text(text),))


def call(name: str, arguments: dict[str, Any], text: str = "") -> Reply:
    blocks: tuple[Text | ToolUse, ...] = (
        (Text(text), ToolUse(name, arguments)) if text else (ToolUse(name, arguments),)
    )
    return Reply(blocks)


OVERLOADED = Failure(529, "overloaded_error", "Overloaded")
RATE_LIMITED = Failure(
    429, "rate_limit_error", "Number of request tokens has exceeded your rate limit"
)

Step = Reply | Failure | Callable[[dict[str, Any]], "Reply | Failure"]


def tool_results(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The tool results in the request's last user message, their content parsed."""
    last = request["messages"][-1]
    found = []
    for block in last["content"] if isinstance(last["content"], list) else []:
        if block.get("type") == "tool_result":
            content = block["content"]
            if isinstance(content, list):
                content = "".join(c.get("text", "") for c in content)
            found.append({**block, "content": json.loads(content)})
    return found


def last_tool_result(request: dict[str, Any]) -> dict[str, Any]:
    return tool_results(request)[-1]["content"]


class MessagesServer:
    """``with MessagesServer(script) as server:`` → ``server.url`` is the base URL."""

    def __init__(self, script: list[Step], *, chunk_delay: float = 0.0) -> None:
        self.script = list(script)
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.chunk_delay = chunk_delay
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> MessagesServer:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._server.shutdown()
        self._server.server_close()

    def add(self, *steps: Step) -> None:
        with self._lock:
            self.script.extend(steps)

    @property
    def remaining(self) -> int:
        return len(self.script)

    def _next(self, request: dict[str, Any]) -> Reply | Failure:
        with self._lock:
            self.requests.append(request)
            if not self.script:
                return Failure(500, "api_error", "the test script has no reply left")
            step = self.script.pop(0)
        return step(request) if callable(step) else step

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_: Any) -> None:  # quiet
                pass

            def do_POST(self) -> None:
                length = int(self.headers.get("content-length", "0"))
                body = json.loads(self.rfile.read(length) or b"{}")
                if self.path.split("?")[0] != "/v1/messages":
                    self._json(
                        404,
                        {
                            "type": "error",
                            "error": {"type": "not_found_error", "message": self.path},
                        },
                    )
                    return
                server.headers.append({k.lower(): v for k, v in self.headers.items()})
                step = server._next(body)
                if isinstance(step, Failure):
                    self._json(
                        step.status,
                        {"type": "error", "error": {"type": step.type, "message": step.message}},
                        {"retry-after-ms": str(step.retry_after_ms)},
                    )
                elif body.get("stream"):
                    self._stream(body, step)
                else:
                    self._json(200, _message(body, step))

            def _json(
                self, status: int, data: dict[str, Any], extra: dict[str, str] | None = None
            ) -> None:
                raw = json.dumps(data).encode()
                self.send_response(status)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(raw)))
                self.send_header("request-id", f"req_{uuid.uuid4().hex[:16]}")
                for k, v in (extra or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(raw)

            def _stream(self, body: dict[str, Any], reply: Reply) -> None:
                self.send_response(200)
                self.send_header("content-type", "text/event-stream")
                self.send_header("transfer-encoding", "chunked")
                self.send_header("request-id", f"req_{uuid.uuid4().hex[:16]}")
                self.end_headers()
                for name, data in _events(body, reply):
                    raw = f"event: {name}\ndata: {json.dumps(data)}\n\n".encode()
                    self.wfile.write(f"{len(raw):x}\r\n".encode() + raw + b"\r\n")
                    self.wfile.flush()
                    if server.chunk_delay:
                        time.sleep(server.chunk_delay)
                self.wfile.write(b"0\r\n\r\n")
                self.wfile.flush()

        return Handler


def _message(body: dict[str, Any], reply: Reply) -> dict[str, Any]:
    content = []
    for block in reply.blocks:
        if isinstance(block, Text):
            content.append({"type": "text", "text": block.text})
        else:
            content.append(
                {"type": "tool_use", "id": block.id, "name": block.name, "input": block.input}
            )
    return {
        "id": f"msg_{uuid.uuid4().hex[:20]}",
        "type": "message",
        "role": "assistant",
        "model": body.get("model", "scripted"),
        "content": content,
        "stop_reason": reply.stop_reason,
        "stop_sequence": None,
        "usage": {"input_tokens": reply.input_tokens, "output_tokens": reply.output_tokens},
    }


def _pieces(text: str, size: int = 12) -> list[str]:
    return [text[i : i + size] for i in range(0, len(text), size)] or [""]


def _events(body: dict[str, Any], reply: Reply) -> list[tuple[str, dict[str, Any]]]:
    start = _message(body, reply)
    start.update(
        content=[], stop_reason=None, usage={"input_tokens": reply.input_tokens, "output_tokens": 1}
    )
    events: list[tuple[str, dict[str, Any]]] = [
        ("message_start", {"type": "message_start", "message": start})
    ]
    events.append(("ping", {"type": "ping"}))
    for index, block in enumerate(reply.blocks):
        if isinstance(block, Text):
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {"type": "text", "text": ""},
                    },
                )
            )
            for piece in _pieces(block.text):
                events.append(
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "text_delta", "text": piece},
                        },
                    )
                )
        else:
            events.append(
                (
                    "content_block_start",
                    {
                        "type": "content_block_start",
                        "index": index,
                        "content_block": {
                            "type": "tool_use",
                            "id": block.id,
                            "name": block.name,
                            "input": {},
                        },
                    },
                )
            )
            for piece in _pieces(json.dumps(block.input), 40):
                events.append(
                    (
                        "content_block_delta",
                        {
                            "type": "content_block_delta",
                            "index": index,
                            "delta": {"type": "input_json_delta", "partial_json": piece},
                        },
                    )
                )
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": reply.stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": reply.output_tokens},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return events
