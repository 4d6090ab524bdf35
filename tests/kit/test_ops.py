from __future__ import annotations

import asyncio
import io
import json
import re
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient

from emporium.kit.logging import configure_logging
from tests.fixtures import auth


async def test_liveness_and_readiness(client: AsyncClient) -> None:
    assert (await client.get("/api/health")).json() == {"status": "ok"}
    r = await client.get("/api/health/ready")
    assert r.status_code == 200
    assert r.json() == {
        "status": "ok",
        "checks": {"postgres": "ok", "valkey": "ok", "search_index": "ok"},
    }


async def test_detailed_health(client: AsyncClient) -> None:
    body = (await client.get("/api/health/detailed")).json()
    assert body["checks"]["search_index"]["circuit_breaker"] == "closed"
    assert body["checks"]["search_index"]["documents"] == 0
    assert body["checks"]["outbox"]["pending_events"] == 0
    assert body["embedded"] == {"postgres": False, "valkey": False}
    assert body["checks"]["payments"] == {
        "status": "ok",
        "gateway": "simulated",
        "circuit_breaker": "closed",
    }
    assert body["checks"]["jobs"] == {
        "status": "ok",
        "reservation_reaper": {"running": False, "last_error": None},
        "payment_reconciler": {"running": False, "last_error": None},
        "idempotency_key_purger": {"running": False, "last_error": None},
        "outbox_purger": {"running": False, "last_error": None},
    }


async def test_correlation_id_echoed_or_generated(client: AsyncClient) -> None:
    r = await client.get("/api/health", headers={"X-Correlation-ID": "abc-123"})
    assert r.headers["x-correlation-id"] == "abc-123"
    r = await client.get("/api/health")
    assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-correlation-id"])


async def test_metrics_use_route_templates(client: AsyncClient, catalog: dict[str, Any]) -> None:
    await client.get(f"/api/v1/products/{catalog['product']['sony']}")
    text = (await client.get("/metrics")).text
    assert (
        'emporium_http_request_duration_seconds_count{method="GET",route="/api/v1/products/{product_id}",status="200"}'
        in text
    )
    assert f'/api/v1/products/{catalog["product"]["sony"]}"' not in text


async def test_json_logs_carry_correlation_id(client: AsyncClient) -> None:
    buf = io.StringIO()
    configure_logging("INFO", json=True, stream=buf)
    try:
        await client.get("/api/health", headers={"X-Correlation-ID": "log-me"})
    finally:
        configure_logging("WARNING", json=True)
    lines = [json.loads(line) for line in buf.getvalue().splitlines() if line.startswith("{")]
    request_lines = [x for x in lines if x.get("event") == "http.request"]
    assert request_lines[0]["correlation_id"] == "log-me"
    assert request_lines[0]["route"] == "/api/health"
    assert request_lines[0]["status"] == 200


async def test_unknown_route_and_method(client: AsyncClient) -> None:
    r = await client.get("/api/v1/nope")
    assert (r.status_code, r.json()["error"]) == (404, "not_found")
    r = await client.delete("/api/v1/categories")
    assert (r.status_code, r.json()["error"]) == (405, "method_not_allowed")


async def test_background_dispatcher_delivers_within_a_second_or_so(
    app: FastAPI, client: AsyncClient, catalog: dict[str, Any]
) -> None:
    from emporium.search.indexer import rebuild

    await rebuild(app.state.sessionmaker, app.state.search.index)
    app.state.dispatcher.start()
    try:
        body = {
            "title": "Quokka Plush Toy",
            "category_id": catalog["category"]["home"],
            "price": "9.99",
        }
        await client.post("/api/v1/products", json=body, headers=auth("acme"))
        total = 0
        for _ in range(100):  # wait up to 10 s; the after-commit wake-up makes it near-instant
            total = (await client.get("/api/v1/search", params={"q": "quokka"})).json()["total"]
            if total:
                break
            await asyncio.sleep(0.1)
        assert total == 1
    finally:
        await app.state.dispatcher.stop()


class _Writes(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.calls: list[str] = []

    def write(self, s: str) -> int:
        self.calls.append(s)
        return super().write(s)


def test_a_log_line_is_one_write() -> None:
    # Server processes share stderr: a line written in two pieces interleaves with others.
    import structlog

    out = _Writes()
    configure_logging("INFO", json=True, stream=out)
    try:
        structlog.get_logger("t").info("one.line", n=1)
    finally:
        configure_logging("WARNING", json=True)
    assert len(out.calls) == 1
    assert out.calls[0].endswith("}\n")
    assert json.loads(out.calls[0])["event"] == "one.line"
