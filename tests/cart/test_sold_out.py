"""In a sell-out, a refused buyer costs two statements and no transaction, and does not
keep the buyers behind it waiting."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.cart import service as cart_service
from emporium.inventory.gate import gate
from emporium.inventory.reservations import _PRECHECK, _sold_out
from emporium.kit import sql
from emporium.models import Stock
from tests.cart import ITEMS, reservation_rows, stock_rows
from tests.fixtures import auth


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
    seen: list[str] = []

    def record(query: str, _: tuple[Any, ...]) -> None:
        seen.append(query)

    sql.listen(record)
    try:
        r = await client.post(
            ITEMS, json={"product_id": timer, "quantity": 1}, headers=auth("customer")
        )
    finally:
        sql.unlisten(record)
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
    statements: list[str] = []

    def record(query: str, _: tuple[Any, ...]) -> None:
        statements.append(query)

    async def buy() -> tuple[int, int]:
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as guest:
            r = await guest.post(ITEMS, json={"product_id": timer, "quantity": 1})
            return r.status_code, r.json().get("available", -1)

    async with gate.enter(timer):
        buyers = [asyncio.create_task(buy()) for _ in range(3)]
        for _ in range(500):
            if gate.waiting(timer) == 3:
                break
            await asyncio.sleep(0.01)
        # Waiting costs them no connection: the plain pool has none in use.
        pool = app.state.pool
        assert (gate.waiting(timer), pool.get_size() - pool.get_idle_size()) == (3, 0)
        async with maker() as s, s.begin():
            await s.execute(
                update(Stock).where(Stock.product_id == timer).values(reserved=Stock.quantity)
            )
        sql.listen(record)
    try:
        results = await asyncio.gather(*buyers)
    finally:
        sql.unlisten(record)
    assert results == [(409, 0)] * 3
    assert statements == [cart_service._ADD_MANY]
    assert await stock_rows(maker, timer) == [
        (catalog["warehouse"]["W1"], 1, 1),
        (catalog["warehouse"]["W2"], 0, 0),
    ]
    assert await reservation_rows(maker) == []
    assert gate.in_use() == 0
