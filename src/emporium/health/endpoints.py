from __future__ import annotations

import asyncio
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse

from emporium import __version__
from emporium.kit.db import ping

router = APIRouter(prefix="/api/health", tags=["health"])

CHECK_TIMEOUT = 2.0


async def _timed(check: Any) -> dict[str, Any]:
    start = time.perf_counter()
    try:
        async with asyncio.timeout(CHECK_TIMEOUT):  # cancellation-safe, unlike 3.11's wait_for
            detail = await check()
        status = "ok"
    except Exception as exc:
        detail, status = {"error": repr(exc)}, "down"
    return {
        "status": status,
        "latency_ms": round((time.perf_counter() - start) * 1000, 2),
        **(detail or {}),
    }


async def _checks(request: Request) -> dict[str, dict[str, Any]]:
    state = request.app.state

    async def postgres() -> dict[str, Any]:
        await ping(state.engine)
        return {}

    async def valkey() -> dict[str, Any]:
        if state.cache is None or not await state.cache.ping():
            raise RuntimeError("valkey did not answer")
        return {}

    async def search_index() -> dict[str, Any]:
        index = state.search.index
        count = await asyncio.to_thread(index.doc_count)
        return {"documents": count, "generation": await asyncio.to_thread(index.generation)}

    pg, vk, idx = await asyncio.gather(_timed(postgres), _timed(valkey), _timed(search_index))
    return {"postgres": pg, "valkey": vk, "search_index": idx}


@router.get("")
async def liveness() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/ready")
async def readiness(request: Request) -> JSONResponse:
    checks = await _checks(request)
    ok = all(c["status"] == "ok" for c in checks.values())
    return JSONResponse(
        {
            "status": "ok" if ok else "unavailable",
            "checks": {k: v["status"] for k, v in checks.items()},
        },
        status_code=200 if ok else 503,
    )


@router.get("/detailed")
async def detailed(request: Request) -> JSONResponse:
    state = request.app.state
    checks = await _checks(request)
    checks["search_index"]["circuit_breaker"] = state.search.breaker_state
    checks["search_index"]["last_error"] = state.search.last_error
    dispatcher = state.dispatcher
    try:
        pending: int | None = await dispatcher.pending()
    except Exception:
        pending = None
    leader = state.leadership.is_leader
    checks["outbox"] = {
        # Only the elected process runs the dispatcher; the others report its absence as ok.
        "status": "ok" if dispatcher.running or not state.background or not leader else "down",
        "running": dispatcher.running,
        "leader": leader,
        "pending_events": pending,
        "last_error": dispatcher.last_error,
    }
    breaker = getattr(state.gateway, "breaker", None)
    checks["payments"] = {
        "status": "ok" if breaker is None or breaker.state.name != "open" else "down",
        "gateway": state.gateway.name,
        "circuit_breaker": breaker.state.name if breaker is not None else None,
    }
    jobs = {
        "reservation_reaper": state.reaper,
        "payment_reconciler": state.reconciler,
        "idempotency_key_purger": state.purger,
        "outbox_purger": state.outbox_purger,
    }
    checks["jobs"] = {
        "status": "ok",
        **{
            name: {"running": job.running, "last_error": job.last_error}
            for name, job in jobs.items()
        },
    }
    ok = all(c["status"] == "ok" for c in checks.values())
    return JSONResponse(
        {
            "status": "ok" if ok else "degraded",
            "version": __version__,
            "embedded": {
                "postgres": state.settings.database_url is None,
                "valkey": state.settings.valkey_url is None,
            },
            "checks": checks,
        },
        status_code=200,
    )
