"""An order holds money up to numeric(14, 2): a cart worth more is refused, not failed."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.models import Order, User
from tests.cart import execute
from tests.checkout.helpers import (
    add_buyers,
    body,
    cart_state,
    charges,
    count,
    fill_cart,
    key,
    stock_of,
)

API = "/api/v1"


async def test_a_cart_worth_more_than_an_order_can_hold_is_refused_and_kept(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    cable, customer = catalog["product"]["cable"], catalog["user"]["customer"]
    await execute(maker, "UPDATE stock SET quantity = 2000 WHERE product_id = :id", id=cable)
    # The highest price a product may have, times the most units a line may hold.
    await execute(maker, "UPDATE products SET price = 9999999999.99 WHERE id = :id", id=cable)
    await fill_cart(maker, customer, {cable: 1000})
    before = await cart_state(maker, customer)
    assert before == {"lines": {cable: 1000}, "reserved": {cable: 1000}}

    r = await client.post(f"{API}/checkout", json=body(), headers=key("k-huge"))
    assert (r.status_code, r.json()) == (
        422,
        {
            "error": "order_total_too_large",
            "detail": "the cart's total is more than one order can hold; split it into"
            " several orders",
            "limit": "999999999999.99",
        },
    )
    assert (await count(maker, Order), charges(app)) == (0, 0)
    assert await cart_state(maker, customer) == before
    assert await stock_of(maker, cable) == [(2000, 1000), (2000, 0)]

    # Up to the limit it is an order like any other, and the same key may place it.
    await execute(maker, "UPDATE products SET price = 999999999.99 WHERE id = :id", id=cable)
    r = await client.post(f"{API}/checkout", json=body(), headers=key("k-huge"))
    assert r.status_code == 201, r.text
    assert r.json()["total"] == "999999999990.00"
    assert (await count(maker, Order), charges(app)) == (1, 1)


async def test_checkouts_arriving_with_a_cart_too_large_get_their_orders(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    cable, sony = catalog["product"]["cable"], catalog["product"]["sony"]
    await execute(maker, "UPDATE stock SET quantity = 2000 WHERE product_id = :id", id=cable)
    await execute(maker, "UPDATE products SET price = 9999999999.99 WHERE id = :id", id=cable)
    tokens = await add_buyers(maker, 3)
    await fill_cart(maker, catalog["user"]["customer"], {cable: 1000})
    async with maker() as s:
        buyers = list(await s.scalars(select(User.id).where(User.email.like("buyer%"))))
    for buyer in buyers:
        await fill_cart(maker, buyer, {sony: 1})
    responses = await asyncio.gather(
        *(
            client.post(
                f"{API}/checkout",
                json=body(),
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "k"},
            )
            # The large cart last: it rides a shared statement, which it fails alone.
            for token in [*list(tokens.values())[1:], tokens["customer@example.com"]]
        )
    )
    assert [r.status_code for r in responses] == [201, 201, 201, 422]
    assert responses[-1].json()["error"] == "order_total_too_large"
    assert await count(maker, Order) == 3
    assert await cart_state(maker, catalog["user"]["customer"]) == {
        "lines": {cable: 1000},
        "reserved": {cable: 1000},
    }
    assert await stock_of(maker, sony) == [(7, 0), (5, 0)]
