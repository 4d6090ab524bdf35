from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from prometheus_client import REGISTRY
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.kit.outbox import OutboxDispatcher, signal
from emporium.models import OutboxEvent
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
