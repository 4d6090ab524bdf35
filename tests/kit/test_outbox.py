from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from prometheus_client import REGISTRY
from pydantic import ValidationError
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.config import Settings
from emporium.kit.outbox import OutboxDispatcher, signal
from emporium.kit.sql import create_pool, to_libpq_url
from emporium.models import OutboxEvent
from emporium.search.indexer import SearchIndexer
from tests.fixtures import auth


async def test_failed_delivery_is_retried_not_lost(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    pid = catalog["product"]["sony"]
    await client.patch(f"/api/v1/products/{pid}", json={"price": "300.00"}, headers=auth("acme"))
    seen: list[list[str]] = []

    async def broken(events: Sequence[OutboxEvent]) -> None:
        seen.append([e.topic for e in events])
        raise RuntimeError("consumer down")

    async def working(events: Sequence[OutboxEvent]) -> None:
        seen.append([e.topic for e in events])

    with pytest.raises(RuntimeError):
        await OutboxDispatcher(app.state.pool, [broken]).dispatch_once()
    async with maker() as s:
        pending = await s.scalar(
            select(func.count()).select_from(OutboxEvent).where(OutboxEvent.processed_at.is_(None))
        )
    assert pending == 1
    dispatched = {"topic": "product.updated"}
    before = REGISTRY.get_sample_value("emporium_outbox_events_dispatched_total", dispatched) or 0
    assert await OutboxDispatcher(app.state.pool, [working]).drain() == 1
    after = REGISTRY.get_sample_value("emporium_outbox_events_dispatched_total", dispatched)
    assert after == before + 1
    assert await OutboxDispatcher(app.state.pool, [working]).drain() == 0
    assert seen == [["product.updated"], ["product.updated"]]


async def test_rolled_back_write_leaves_no_event(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    w1 = catalog["warehouse"]["W1"]
    pid = catalog["product"]["sony"]
    # The second warehouse id is unknown: the whole request fails after validation.
    r = await client.put(
        f"/api/v1/products/{pid}/stock",
        json=[{"warehouse_id": w1, "quantity": 1}, {"warehouse_id": 99999, "quantity": 1}],
        headers=auth("acme"),
    )
    assert r.status_code == 404
    async with maker() as s:
        assert await s.scalar(select(func.count()).select_from(OutboxEvent)) == 0


async def test_a_woken_dispatcher_lingers_and_delivers_one_batch(
    app: FastAPI, client: AsyncClient, catalog: dict[str, Any]
) -> None:
    pid = catalog["product"]["sony"]
    batches: list[list[str]] = []

    async def record(events: Sequence[OutboxEvent]) -> None:
        batches.append([e.topic for e in events])

    dispatcher = OutboxDispatcher(app.state.pool, [record], linger_seconds=0.5)
    dispatcher.start()
    try:
        await asyncio.sleep(0.1)  # its first, empty drain
        for price in ("301.00", "302.00", "303.00"):
            r = await client.patch(
                f"/api/v1/products/{pid}", json={"price": price}, headers=auth("acme")
            )
            assert r.status_code == 200
        # The first commit woke it; the next two came within its linger.
        for _ in range(40):
            if await dispatcher.pending() == 0:
                break
            await asyncio.sleep(0.05)
    finally:
        await dispatcher.stop()
    assert batches == [["product.updated"] * 3]


async def test_stopping_a_dispatcher_just_woken_still_stops_it(app: FastAPI) -> None:
    # A wake-up and the stop's cancellation landing in one loop turn: the wait must not
    # take the wake-up and drop the cancellation, or stop() never returns.
    async def nothing(events: Sequence[OutboxEvent]) -> None:
        pass

    dispatcher = OutboxDispatcher(app.state.pool, [nothing], poll_seconds=30.0)
    dispatcher.start()
    for _ in range(40):
        await asyncio.sleep(0.05)  # its first, empty drain; then it waits
    await signal.fire()  # sets its wake-up without yielding
    stopped = asyncio.ensure_future(dispatcher.stop())
    done, _ = await asyncio.wait([stopped], timeout=5)
    assert (done == {stopped}, dispatcher.running) == (True, False)


async def test_delivery_runs_on_the_smallest_pool_a_server_may_have(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    # The dispatcher holds one connection for its batch while the search indexer reads
    # the products' free units on another: two is the least a server's pool may have.
    with pytest.raises(ValidationError, match="db_pool_size"):
        Settings(db_pool_size=1)
    pid, w1, w2 = (catalog["product"]["sony"], *map(catalog["warehouse"].get, ("W1", "W2")))
    r = await client.put(
        f"/api/v1/products/{pid}/stock",
        json=[{"warehouse_id": w1, "quantity": 0}, {"warehouse_id": w2, "quantity": 0}],
        headers=auth("acme"),
    )
    assert r.status_code == 200, r.text
    pool = await create_pool(to_libpq_url(str(settings.database_url)), 2)
    try:
        indexer = SearchIndexer(app.state.search.index, maker, pool)
        dispatcher = OutboxDispatcher(pool, [indexer.handle])
        pending = await dispatcher.pending()
        async with asyncio.timeout(60):
            assert await dispatcher.drain() == pending
        assert await dispatcher.pending() == 0
    finally:
        await pool.close()
    # The stock event reached the index: the product is out of stock there now.
    assert app.state.search.index.in_stock([pid]) == {pid: False}


async def test_a_cancellation_swallowed_below_still_stops_the_dispatcher(
    app: FastAPI, client: AsyncClient, catalog: dict[str, Any]
) -> None:
    # stop() landing while a batch was delivered was once lost below the dispatcher: the
    # batch returned normally and stop() waited for ever. A handler that swallows the
    # cancellation stands in for that.
    entered = asyncio.Event()

    async def swallowing(events: Sequence[OutboxEvent]) -> None:
        entered.set()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(30)

    pid = catalog["product"]["sony"]
    await client.patch(f"/api/v1/products/{pid}", json={"price": "300.00"}, headers=auth("acme"))
    dispatcher = OutboxDispatcher(app.state.pool, [swallowing], poll_seconds=0.05)
    dispatcher.start()
    await asyncio.wait_for(entered.wait(), 10)
    stopped = asyncio.ensure_future(dispatcher.stop())
    done, _ = await asyncio.wait([stopped], timeout=10)
    assert stopped in done
    assert await dispatcher.pending() == 0  # the batch itself was delivered
