"""A cap on request bodies, applied before FastAPI reads one into memory (app and worker).

A job request or a recipe is kilobytes of JSON; without a cap a client could make a service
hold, parse and store any number of bytes. Uploads are exempt where the service streams
multipart bodies to disk under its own cap (the app's ``KALLA_MAX_UPLOAD_SIZE``). A body
declared larger than the cap is refused at once; one sent without a length (chunked) is
counted as it arrives and refused as soon as it passes the cap. Either way the answer is
the usual error JSON with 413.
"""

from __future__ import annotations

import json

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from kalla.errors import PayloadTooLargeError
from kalla.settings import format_size

MAX_BODY = 16 * 1024**2  # far above any real job or recipe (match_sql is checked on its own)


class BodyLimit:
    """ASGI middleware: bodies over ``limit`` bytes get 413 without reaching the app;
    ``what`` says in the error what such a body should be."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        what: str,
        limit: int = MAX_BODY,
        exempt_multipart: bool = False,
    ) -> None:
        self.app = app
        self.what = what
        self.limit = limit
        self.exempt_multipart = exempt_multipart

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD", "OPTIONS", "DELETE"):
            await self.app(scope, receive, send)
            return
        headers = dict(scope["headers"])
        media = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
        if self.exempt_multipart and media == b"multipart/form-data":
            await self.app(scope, receive, send)
            return
        declared = headers.get(b"content-length", b"")
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
        error = PayloadTooLargeError(f"request body over {format_size(self.limit)}: {self.what}")
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
