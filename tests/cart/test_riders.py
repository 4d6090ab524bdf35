"""Buyers queued at a product's gate are served by the one let in, in one database call,
each with the outcome its own call would have had."""

from __future__ import annotations

import asyncio
from typing import Any

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient, Response
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.cart.service import ADD_ITEMS_SQL
from emporium.inventory.gate import gate
from emporium.inventory.reservations import _sold_out
from emporium.kit import sql
from emporium.models import AuditLog, Cart
from tests.cart import ITEMS, assert_reserved_matches, execute, line_rows, stock_rows
from tests.fixtures import auth


async def _queue_then_release(
    app: FastAPI, product_id: int, buyers: list[dict[str, Any]]
) -> tuple[list[Response], list[str]]:
    """Queue the buyers at the product's gate while it is held, in order, then let them in;
    their responses and the statements they made."""
    statements: list[str] = []

    def record(query: str, _: tuple[Any, ...]) -> None:
        statements.append(query)

    async def buy(buyer: dict[str, Any]) -> Response:
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as c:
            return await c.post(ITEMS, json=buyer["line"], headers=buyer["headers"])

    tasks: list[asyncio.Task[Response]] = []
    async with gate.enter(product_id):
        for n, buyer in enumerate(buyers, 1):
            tasks.append(asyncio.create_task(buy(buyer)))
            for _ in range(500):
                if gate.waiting(product_id) == n:
                    break
                await asyncio.sleep(0.01)
        assert gate.waiting(product_id) == len(buyers)
        # Waiting costs them no connection: the plain pool has none in use.
        pool = app.state.pool
        assert pool.get_size() - pool.get_idle_size() == 0
        sql.listen(record)
    try:
        responses = await asyncio.gather(*tasks)
    finally:
        sql.unlisten(record)
    assert gate.in_use() == 0
    return responses, statements


def _guest(quantity: int, product_id: int, cid: str) -> dict[str, Any]:
    return {
        "line": {"product_id": product_id, "quantity": quantity},
        "headers": {"X-Correlation-ID": cid},
    }


async def test_queued_buyers_are_served_in_one_call_each_with_its_own_outcome(
    app: FastAPI,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    iphone = catalog["product"]["iphone"]  # 3 units in W1, 3 in W2
    w1, w2 = catalog["warehouse"]["W1"], catalog["warehouse"]["W2"]
    _sold_out.pop(iphone, None)
    buyers = [
        _guest(2, iphone, "buyer-a"),  # reserved: 4 left
        _guest(5, iphone, "buyer-b"),  # refused: 4 free
        _guest(3, iphone, "buyer-c"),  # reserved: 1 left
        _guest(2, iphone, "buyer-d"),  # refused: 1 free
        {
            "line": {"product_id": iphone, "quantity": 1},
            "headers": {**auth("customer"), "X-Correlation-ID": "buyer-e"},
        },
    ]
    responses, statements = await _queue_then_release(app, iphone, buyers)

    # The first in line was let in and served the four behind it with one statement.
    assert statements == [ADD_ITEMS_SQL]
    assert [r.status_code for r in responses] == [200, 409, 200, 409, 200]
    assert [r.json().get("available") for r in responses[1::2]] == [4, 1]
    assert [r.json()["error"] for r in responses[1::2]] == ["insufficient_stock"] * 2
    assert [
        [(x["quantity"], x["available"]) for x in responses[i].json()["lines"]] for i in (0, 2, 4)
    ] == [
        [(2, 4)],
        [(3, 1)],
        [(1, 0)],
    ]
    # Each guest served gets a cart cookie of its own; the refused ones get none.
    cookies = [r.cookies.get("emporium_cart") for r in responses[:4]]
    assert [len(cookie or "") for cookie in cookies] == [43, 0, 43, 0]
    assert cookies[0] != cookies[2]
    # Most free first: a's 2 from W1 (a tie, by warehouse), c's 3 from W2, then the
    # customer's 1 from W1.
    assert await stock_rows(maker, iphone) == [(w1, 3, 3), (w2, 3, 3)]
    assert sorted(q for _, p, q in await line_rows(maker) if p == iphone) == [1, 2, 3]
    async with maker() as s:
        # A refused guest's new cart was undone with the rest of its change.
        guest_carts = await s.scalar(
            select(func.count()).select_from(Cart).where(Cart.guest_token_hash.is_not(None))
        )
        trail = (
            await s.execute(
                select(AuditLog.correlation_id, AuditLog.new_values)
                .where(AuditLog.action == "inventory.reserved", AuditLog.entity_id == str(iphone))
                .order_by(AuditLog.id)
            )
        ).all()
    assert guest_carts == 2
    # Each reservation is audited under its own buyer's request.
    assert trail == [
        ("buyer-a", {"reserved": {str(w1): 2}}),
        ("buyer-c", {"reserved": {str(w2): 3}}),
        ("buyer-e", {"reserved": {str(w1): 3}}),
    ]
    await assert_reserved_matches(maker)


async def test_a_rider_refused_for_expired_holds_reclaims_them_itself(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    timer, w1 = catalog["product"]["timer"], catalog["warehouse"]["W1"]  # one unit, in W1
    _sold_out.pop(timer, None)
    r = await client.post(
        ITEMS, json={"product_id": timer, "quantity": 1}, headers=auth("customer")
    )
    assert r.status_code == 200
    await execute(maker, "UPDATE reservations SET reserved_until = now() - interval '1 minute'")
    buyers = [_guest(1, timer, "first"), _guest(1, timer, "second")]
    responses, statements = await _queue_then_release(app, timer, buyers)

    # Both were refused by the shared call with expired holds to reclaim; each then tried
    # on its own, and exactly one got the unit the lapsed hold gave back.
    assert statements[0] == ADD_ITEMS_SQL
    assert sorted(r.status_code for r in responses) == [200, 409]
    refused = next(r for r in responses if r.status_code == 409)
    assert (refused.json()["error"], refused.json()["available"]) == ("insufficient_stock", 0)
    assert await stock_rows(maker, timer) == [(w1, 1, 1), (catalog["warehouse"]["W2"], 0, 0)]
    lines = [(p, q) for _, p, q in await line_rows(maker) if p == timer]
    assert lines == [(timer, 1)]  # the customer's lapsed line went with its hold
    r = await client.get("/api/v1/cart", headers=auth("customer"))
    assert r.json()["lines"] == []
    await assert_reserved_matches(maker)
