"""The outbox dispatcher is woken after commit, never by a NOTIFY inside the writer's
transaction (that would make PostgreSQL commit such transactions one at a time)."""

from __future__ import annotations

import asyncio
from typing import Any

import asyncpg
from fastapi import FastAPI
from httpx import AsyncClient
from structlog.testing import capture_logs

from emporium.kit.outbox import NOTIFY_CHANNEL, NOTIFY_INTERVAL, signal
from emporium.kit.sql import to_libpq_url
from tests.cart import ITEMS
from tests.fixtures import auth


async def _listener(app: FastAPI) -> tuple[asyncpg.Connection, list[str]]:
    url = app.state.engine.url.render_as_string(hide_password=False)
    conn = await asyncpg.connect(to_libpq_url(url))
    heard: list[str] = []
    await conn.add_listener(NOTIFY_CHANNEL, lambda *a: heard.append(a[2]))
    return conn, heard


async def _delivered(app: FastAPI) -> int:
    for _ in range(100):
        if await app.state.dispatcher.pending() == 0:
            return 0
        await asyncio.sleep(0.05)
    return int(await app.state.dispatcher.pending())


async def test_a_local_dispatcher_is_woken_without_any_notify(
    app: FastAPI, client: AsyncClient, catalog: dict[str, Any]
) -> None:
    conn, heard = await _listener(app)
    app.state.dispatcher.start()
    try:
        sent = signal.notifies
        r = await client.post(
            ITEMS,
            json={"product_id": catalog["product"]["sony"], "quantity": 1},
            headers=auth("customer"),
        )
        assert r.status_code == 200
        # Well within the 1 s poll: the commit itself woke the dispatcher.
        assert await _delivered(app) == 0
        await asyncio.sleep(2 * NOTIFY_INTERVAL)
        assert (heard, signal.notifies - sent) == ([], 0)
    finally:
        await app.state.dispatcher.stop()
        await conn.close()


async def test_other_processes_get_one_notify_per_interval(
    app: FastAPI, client: AsyncClient, catalog: dict[str, Any]
) -> None:
    # No dispatcher runs in this process (background=False): wake-ups go out as NOTIFY.
    conn, heard = await _listener(app)
    try:
        r = await client.post(
            ITEMS,
            json={"product_id": catalog["product"]["sony"], "quantity": 1},
            headers=auth("customer"),
        )
        assert r.status_code == 200
        await asyncio.sleep(4 * NOTIFY_INTERVAL)
        assert heard == [NOTIFY_CHANNEL]
        # A burst is coalesced: the first signal goes out at once, the rest of the
        # interval's as one more at its end.
        await signal.fire()
        await asyncio.sleep(NOTIFY_INTERVAL / 5)
        for _ in range(10):
            await signal.fire()
        await asyncio.sleep(4 * NOTIFY_INTERVAL)
        assert heard == [NOTIFY_CHANNEL] * 3
    finally:
        await conn.close()


async def test_a_refused_add_to_cart_sends_nothing(
    app: FastAPI, client: AsyncClient, catalog: dict[str, Any]
) -> None:
    conn, heard = await _listener(app)
    try:
        r = await client.post(
            ITEMS,
            json={"product_id": catalog["product"]["bose"], "quantity": 1},
            headers=auth("customer"),
        )
        assert (r.status_code, r.json()["error"]) == (409, "insufficient_stock")
        await asyncio.sleep(4 * NOTIFY_INTERVAL)
        assert heard == []
        assert await app.state.dispatcher.pending() == 0
    finally:
        await conn.close()


async def test_no_wake_up_goes_out_after_the_pool_is_unbound(app: FastAPI) -> None:
    # At shutdown a wake-up still pending at the end of its interval must not be sent
    # through the pool being closed.
    url = app.state.engine.url.render_as_string(hide_password=False)
    pool = await asyncpg.create_pool(to_libpq_url(url), min_size=1, max_size=1)
    assert pool is not None
    conn, heard = await _listener(app)
    try:
        signal.bind(pool)
        sent = signal.notifies
        with capture_logs() as logs:
            await signal.fire()
            await asyncio.sleep(NOTIFY_INTERVAL / 5)
            await signal.fire()  # pending: would go at the end of the interval
            signal.unbind(pool)
            await pool.close()
            await asyncio.sleep(3 * NOTIFY_INTERVAL)
        assert (heard, signal.notifies - sent) == ([NOTIFY_CHANNEL], 1)
        assert [e["event"] for e in logs if e["log_level"] == "warning"] == []
    finally:
        signal.bind(app.state.pool)
        await conn.close()
