"""An add to cart commits without waiting for the WAL flush; the setting stays inside its
own transaction, so nothing else on the connection commits that way."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.cart.service import _ADD
from emporium.inventory.reservations import _sold_out
from emporium.kit import sql
from tests.cart import ITEMS, line_rows, stock_rows
from tests.fixtures import auth


class Undo(Exception):
    pass


async def test_add_to_cart_alone_commits_unflushed(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    iphone = catalog["product"]["iphone"]  # 3 units in W1, 3 in W2
    w1, w2 = catalog["warehouse"]["W1"], catalog["warehouse"]["W2"]
    _sold_out.pop(iphone, None)  # as an earlier test may have left it
    calls: list[tuple[str, tuple[Any, ...]]] = []

    def record(query: str, args: tuple[Any, ...]) -> None:
        calls.append((query, args))

    sql.listen(record)
    try:
        r = await client.post(
            ITEMS, json={"product_id": iphone, "quantity": 2}, headers=auth("customer")
        )
    finally:
        sql.unlisten(record)
    assert r.status_code == 200
    # One statement makes the change (the others are the caller's token lookup).
    adds = [args for query, args in calls if query == _ADD]
    assert len(adds) == 1
    lines, stock = await line_rows(maker), await stock_rows(maker, iphone)
    assert [(p, q) for _, p, q in lines] == [(iphone, 2)]
    assert stock == [(w1, 3, 2), (w2, 3, 0)]

    pool = app.state.pool
    async with pool.acquire() as conn:
        assert await conn.fetchval("SHOW synchronous_commit") == "on"

        async def add_again_then_undo() -> None:
            async with conn.transaction():
                assert (await conn.fetchval(_ADD, *adds[0]))["lines"][0]["quantity"] == 4
                assert await conn.fetchval("SHOW synchronous_commit") == "off"
                raise Undo

        # The same statement, inside a transaction: the setting holds until its end...
        with pytest.raises(Undo):
            await add_again_then_undo()
        # ...and not one statement after it.
        assert await conn.fetchval("SHOW synchronous_commit") == "on"

    # Every connection the request may have used commits durably again.
    held = [await pool.acquire() for _ in range(pool.get_size())]
    try:
        settings = await asyncio.gather(*(c.fetchval("SHOW synchronous_commit") for c in held))
    finally:
        for conn in held:
            await pool.release(conn)
    assert settings == ["on"] * len(held)
    # The rolled-back add left the cart and the stock as the request did.
    assert await line_rows(maker) == lines
    assert await stock_rows(maker, iphone) == stock
