"""A cap on request bodies, applied before FastAPI reads one into memory.

A job request is a recipe and a few URIs (kilobytes); without a cap a client could make the
worker hold any number of bytes while it parses them. A body declared larger than the cap is
refused at once; one sent without a length (chunked) is counted as it arrives and refused as
soon as it passes the cap. Either way the answer is the usual error JSON with 413.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kalla.errors import PayloadTooLargeError
from kalla.settings import format_size

MAX_JOB_BODY = 16 * 1024**2  # far above any real job (match_sql is checked on its own)


class BodyLimit:
    """ASGI middleware: bodies over ``limit`` bytes get 413 without reaching the app."""

    def __init__(self, app: ASGIApp, limit: int = MAX_JOB_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"")
        if declared.isdigit():
            if int(declared) > self.limit:
                await self._refuse(send)
                return
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] != "http.request":
                return  # the client went away
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.limit:
                await self._refuse(send)
                return
            chunks.append(chunk)
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        error = PayloadTooLargeError(
            f"request body over {format_size(self.limit)}: a job request is a recipe and its "
            "sources' URIs, not data"
        )
        payload = json.dumps(error.to_dict()).encode()
        await send(
            {
                "type": "http.response.start",
                "status": error.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(payload)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send({"type": "http.response.body", "body": payload})
