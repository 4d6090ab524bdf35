"""Request bodies over a limit answer 413 ``payload_too_large``, before being read whole.

Starlette's ``RequestBodyLimitMiddleware`` replaces whatever the app answers with its own
plain-text 413 when the declared length is over the limit, which would break the JSON
error body every client relies on. Here a declared length over the limit is refused
before the app runs; a body without a declared length (chunked) is counted as the app
reads it, and the read that passes the limit raises the HTTP error the app's handlers
render. A declared length within the limit needs no counting: the server frames the
body by it.
"""

from __future__ import annotations

from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

DETAIL = "the request body is larger than {limit} bytes"


class BodyLimitMiddleware:
    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _declared_length(scope)
        if length is not None:
            if length > self.max_bytes:
                response = JSONResponse(
                    {"error": "payload_too_large", "detail": DETAIL.format(limit=self.max_bytes)},
                    status_code=413,
                    headers={"Connection": "close"},  # the unread body is not drained
                )
                await response(scope, receive, send)
                return
            await self.app(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise HTTPException(413, DETAIL.format(limit=self.max_bytes))
            return message

        await self.app(scope, limited, send)


def _declared_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # the server refuses a malformed length before this
    return None
