"""In a sell-out, a refused buyer costs two statements and no transaction, and does not
keep the buyers behind it waiting."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.cart import service as cart_service
from emporium.inventory.gate import gate
from emporium.inventory.reservations import _PRECHECK, _sold_out, glances
from emporium.kit import sql
from emporium.kit.gate import Gate
from emporium.models import Stock
from tests.cart import ITEMS, reservation_rows, stock_rows
from tests.fixtures import auth


@contextmanager
def recording() -> Iterator[list[str]]:
    """The statements run through the plain-SQL layer meanwhile."""
    seen: list[str] = []

    def record(query: str, _: tuple[Any, ...]) -> None:
        seen.append(query)

    sql.listen(record)
    try:
        yield seen
    finally:
        sql.unlisten(record)


async def test_a_sold_out_product_is_refused_without_a_transaction(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    timer = catalog["product"]["timer"]  # one unit, in W1
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as guest:
        r = await guest.post(ITEMS, json={"product_id": timer, "quantity": 1})
        assert (r.status_code, r.json()["lines"][0]["available"]) == (200, 0)
    stock, holds = await stock_rows(maker, timer), await reservation_rows(maker)
    with recording() as seen:
        r = await client.post(
            ITEMS, json={"product_id": timer, "quantity": 1}, headers=auth("customer")
        )
    assert (r.status_code, r.json()["error"], r.json()["available"]) == (
        409,
        "insufficient_stock",
        0,
    )
    # The caller's identity, then the free stock: no BEGIN, no ROLLBACK, no cart.
    assert len(seen) == 2
    assert seen[1] == _PRECHECK
    assert "api_token_hash" in seen[0]
    assert (await stock_rows(maker, timer), await reservation_rows(maker)) == (stock, holds)
    r = await client.get("/api/v1/cart", headers=auth("customer"))
    assert r.json()["lines"] == []


async def test_restocked_product_is_sold_again_at_once(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    timer, w1 = catalog["product"]["timer"], catalog["warehouse"]["W1"]
    r = await client.post(
        ITEMS, json={"product_id": timer, "quantity": 1}, headers=auth("customer")
    )
    assert r.status_code == 200
    r = await client.post(
        ITEMS, json={"product_id": timer, "quantity": 1}, headers=auth("customer")
    )
    assert (r.status_code, r.json()["available"]) == (409, 0)
    # The sold-out hint only picks the path: a restock is seen by the next buyer.
    r = await client.put(
        f"/api/v1/products/{timer}/stock",
        json=[{"warehouse_id": w1, "quantity": 3}],
        headers=auth("admin"),
    )
    assert r.status_code == 200, r.text
    r = await client.post(
        ITEMS, json={"product_id": timer, "quantity": 2}, headers=auth("customer")
    )
    assert (r.status_code, r.json()["lines"][0]["quantity"]) == (200, 3)
    assert await stock_rows(maker, timer) == [(w1, 3, 3), (catalog["warehouse"]["W2"], 0, 0)]


async def _guests_queued_at(
    app: FastAPI,
    queue: Gate,
    product_id: int,
    quantities: list[int],
    meanwhile: Callable[[], Awaitable[None]] | None = None,
) -> tuple[list[tuple[int, int]], list[str]]:
    """Guests who ask for the product while the test holds its turn in ``queue``, then
    are let go: their (status, available) and the statements made after they queued."""

    async def buy(quantity: int) -> tuple[int, int]:
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as guest:
            r = await guest.post(ITEMS, json={"product_id": product_id, "quantity": quantity})
            return r.status_code, r.json().get("available", -1)

    with recording() as statements:
        async with queue.enter(product_id):
            buyers = [asyncio.create_task(buy(q)) for q in quantities]
            for _ in range(500):
                if queue.waiting(product_id) == len(quantities):
                    break
                await asyncio.sleep(0.01)
            # Waiting costs them no connection: the plain pool has none in use.
            pool = app.state.pool
            waiting, in_use = queue.waiting(product_id), pool.get_size() - pool.get_idle_size()
            assert (waiting, in_use) == (len(quantities), 0)
            if meanwhile is not None:
                await meanwhile()
        results = await asyncio.gather(*buyers)
    return results, statements


async def test_buyers_queued_when_it_sells_out_get_the_answer_of_the_one_ahead(
    app: FastAPI,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Three buyers wait their turn for the timer's last unit while another server process
    # sells it. The first to get its turn asks the database for itself and the one behind
    # it (one rider at most here); the third is answered with that, with no statement of
    # its own and no turn inside.
    monkeypatch.setattr(cart_service, "RIDERS", 1)
    timer = catalog["product"]["timer"]  # one unit, in W1
    _sold_out.pop(timer, None)

    async def sell_elsewhere() -> None:
        async with maker() as s, s.begin():
            await s.execute(
                update(Stock).where(Stock.product_id == timer).values(reserved=Stock.quantity)
            )

    results, statements = await _guests_queued_at(app, gate, timer, [1, 1, 1], sell_elsewhere)
    assert results == [(409, 0)] * 3
    assert statements == [cart_service.ADD_ITEMS_SQL]
    assert await stock_rows(maker, timer) == [
        (catalog["warehouse"]["W1"], 1, 1),
        (catalog["warehouse"]["W2"], 0, 0),
    ]
    assert await reservation_rows(maker) == []
    assert gate.in_use() == 0


async def test_buyers_arriving_during_a_sold_out_read_share_the_next_one(
    app: FastAPI,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    # The timer is known sold out here. While one read of its stock is on its way (the
    # test holds that turn), three more buyers come: the next read, sent after all of
    # them arrived, answers the three.
    timer = catalog["product"]["timer"]  # one unit, in W1
    async with maker() as s, s.begin():
        await s.execute(
            update(Stock).where(Stock.product_id == timer).values(reserved=Stock.quantity)
        )
    _sold_out[timer] = time.monotonic()
    results, statements = await _guests_queued_at(app, glances, timer, [1, 2, 1])
    assert results == [(409, 0)] * 3
    assert statements == [_PRECHECK]
    assert await stock_rows(maker, timer) == [
        (catalog["warehouse"]["W1"], 1, 1),
        (catalog["warehouse"]["W2"], 0, 0),
    ]
    assert await reservation_rows(maker) == []
    assert (glances.in_use(), gate.in_use()) == (0, 0)
