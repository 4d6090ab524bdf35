"""Prometheus metrics. HTTP labels come from route templates, never raw paths."""

from __future__ import annotations

import os
import time

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = structlog.get_logger("emporium.http")

HTTP_REQUEST_DURATION = Histogram(
    "emporium_http_request_duration_seconds",
    "HTTP request duration by route template",
    ["method", "route", "status"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
HTTP_REQUESTS = Counter(
    "emporium_http_requests_total", "HTTP requests by route template", ["method", "route", "status"]
)
SEARCH_DURATION = Histogram(
    "emporium_search_duration_seconds",
    "Search latency by backend",
    ["backend"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
)
SEARCH_FALLBACKS = Counter(
    "emporium_search_fallbacks_total", "Searches answered by the PostgreSQL fallback"
)
OUTBOX_DISPATCHED = Counter(
    "emporium_outbox_events_dispatched_total", "Outbox events delivered", ["topic"]
)
OUTBOX_PURGED = Counter(
    "emporium_outbox_events_purged_total", "Delivered outbox events deleted after the retention"
)
# Only the process running the dispatcher sets it; with several processes, the live max.
OUTBOX_LAG = Gauge(
    "emporium_outbox_pending_events",
    "Outbox events not yet delivered",
    multiprocess_mode="livemax",
)
DB_STATEMENTS = Counter("emporium_db_statements", "SQL statements sent to PostgreSQL")
CACHE_REQUESTS = Counter("emporium_cache_requests_total", "Product cache lookups", ["result"])


def _route_template(scope: Scope) -> str:
    """The matched route's template, including the prefix of the router that holds it."""
    route = scope.get("route")
    template = getattr(route, "path_format", None) or getattr(route, "path", None)
    if not template:
        return "unmatched"
    # Included routers are not flattened: rebuild the prefix from the concrete path.
    params = {k: str(v) for k, v in scope.get("path_params", {}).items()}
    try:
        suffix = template.format(**params)
    except (KeyError, IndexError, ValueError):
        return str(template)
    path = str(scope.get("path", ""))
    return path[: len(path) - len(suffix)] + template if path.endswith(suffix) else str(template)


class PrometheusMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500

        async def send_wrapper(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            elapsed = time.perf_counter() - start
            route = _route_template(scope)
            labels = (scope["method"], route, str(status))
            HTTP_REQUEST_DURATION.labels(*labels).observe(elapsed)
            HTTP_REQUESTS.labels(*labels).inc()
            log.info(
                "http.request",
                method=scope["method"],
                path=scope["path"],
                route=route,
                status=status,
                duration_ms=round(elapsed * 1000, 2),
            )


MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


def multiprocess_dir() -> str | None:
    """Where server processes share their metrics (set by ``emporium serve --workers``)."""
    return os.environ.get(MULTIPROC_ENV) or None


async def metrics_endpoint(_: Request) -> Response:
    if multiprocess_dir() is None:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
    # Every process writes its values to files; any process answers with the sum.
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)


def process_exited() -> None:
    """Drop this process's live gauges from the shared metrics."""
    if multiprocess_dir() is not None:
        multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]
