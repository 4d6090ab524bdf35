"""Merging a guest cart at login, through the real login endpoint."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from prometheus_client import REGISTRY
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.models import AuditLog, Cart, OutboxEvent
from tests.cart import (
    CART,
    ITEMS,
    assert_reserved_matches,
    execute,
    line_rows,
    reservation_rows,
    stock_rows,
)

LOGIN = "/api/v1/auth/login"
PASSWORD = "correct horse battery"
B = {"email": "b@example.com", "password": PASSWORD}


def _released() -> float:
    labels = {"status": "released"}
    return REGISTRY.get_sample_value("inventory_reservations_total", labels) or 0.0


async def _user_b(client: AsyncClient) -> tuple[int, dict[str, str]]:
    """Register b and sign in without a guest cart: (user id, bearer headers)."""
    r = await client.post("/api/v1/auth/register", json={**B, "name": "b"})
    assert r.status_code == 201, r.text
    r = await client.post(LOGIN, json=B)
    assert r.status_code == 200, r.text
    return r.json()["user"]["id"], {"Authorization": f"Bearer {r.json()['token']}"}


async def _cart_id(maker: async_sessionmaker[AsyncSession], user_id: int) -> int:
    async with maker() as s:
        cart_ids = list(await s.scalars(select(Cart.id).where(Cart.user_id == user_id)))
    assert len(cart_ids) == 1
    return int(cart_ids[0])


async def _stock(maker: async_sessionmaker[AsyncSession], product_id: int) -> None:
    """2500 units in each of W1 and W2."""
    await execute(maker, "UPDATE stock SET quantity = 2500 WHERE product_id = :p", p=product_id)


async def _lines(client: AsyncClient, headers: dict[str, str]) -> list[tuple[int, int, int]]:
    r = await client.get(CART, headers=headers)
    assert r.status_code == 200, r.text
    return [(x["product_id"], x["quantity"], x["available"]) for x in r.json()["lines"]]


async def _released_audits(maker: async_sessionmaker[AsyncSession]) -> list[tuple[Any, ...]]:
    async with maker() as s:
        rows = await s.scalars(
            select(AuditLog).where(AuditLog.action == "inventory.released").order_by(AuditLog.id)
        )
        return [(a.entity_id, a.actor_user_id, a.old_values, a.new_values) for a in rows]


async def test_merge_caps_the_line_at_the_limit_and_releases_the_guest_excess(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony, w1, w2 = (
        catalog["product"]["sony"],
        catalog["warehouse"]["W1"],
        catalog["warehouse"]["W2"],
    )
    await _stock(maker, sony)
    b, headers = await _user_b(client)
    r = await client.post(ITEMS, json={"product_id": sony, "quantity": 800}, headers=headers)
    assert r.status_code == 200, r.text
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as guest:
        # Most free first: b's 800 went to W1, so both guest holds go to W2.
        for quantity in (500, 400):
            r = await guest.post(ITEMS, json={"product_id": sony, "quantity": quantity})
            assert r.status_code == 200, r.text
        assert await stock_rows(maker, sony) == [(w1, 2500, 800), (w2, 2500, 900)]
        released = _released()

        r = await guest.post(LOGIN, json=B)
        assert r.status_code == 200, r.text
        signed_in = {"Authorization": f"Bearer {r.json()['token']}"}

    cart_id = await _cart_id(maker, b)
    assert await _lines(client, signed_in) == [(sony, 1000, 4000)]
    assert await line_rows(maker) == [(cart_id, sony, 1000)]
    # The 700 units past the limit come off the guest's holds, newest first: all of the
    # 400 and 300 of the 500.
    assert await reservation_rows(maker) == [(cart_id, sony, w1, 800), (cart_id, sony, w2, 200)]
    assert await stock_rows(maker, sony) == [(w1, 2500, 800), (w2, 2500, 200)]
    assert await _released_audits(maker) == [
        (str(sony), b, {"reserved": {str(w2): 900}}, {"reserved": {str(w2): 200}})
    ]
    async with maker() as s:
        assert list(await s.scalars(select(Cart.user_id))) == [b]
        last = await s.scalar(
            select(OutboxEvent.payload)
            .where(OutboxEvent.topic == "stock.changed")
            .order_by(OutboxEvent.id.desc())
            .limit(1)
        )
    assert last == {"reserved": {str(w2): 200}}
    assert _released() == released + 2
    # The line is full: another unit is refused and changes nothing.
    r = await client.post(ITEMS, json={"product_id": sony, "quantity": 1}, headers=signed_in)
    assert (r.status_code, r.json()["error"]) == (422, "quantity_limit_exceeded")
    assert await stock_rows(maker, sony) == [(w1, 2500, 800), (w2, 2500, 200)]
    await assert_reserved_matches(maker)


async def test_merge_into_a_full_line_releases_all_the_guest_holds(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony, galaxy = catalog["product"]["sony"], catalog["product"]["galaxy"]
    w1, w2 = catalog["warehouse"]["W1"], catalog["warehouse"]["W2"]
    await _stock(maker, sony)
    b, headers = await _user_b(client)
    r = await client.post(ITEMS, json={"product_id": sony, "quantity": 1000}, headers=headers)
    assert r.status_code == 200, r.text
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as guest:
        for product_id in (sony, galaxy):
            r = await guest.post(ITEMS, json={"product_id": product_id, "quantity": 5})
            assert r.status_code == 200, r.text
        released = _released()
        r = await guest.post(LOGIN, json=B)
        assert r.status_code == 200, r.text

    cart_id = await _cart_id(maker, b)
    # Other lines merge as before.
    assert await line_rows(maker) == [(cart_id, sony, 1000), (cart_id, galaxy, 5)]
    assert await reservation_rows(maker) == [(cart_id, sony, w1, 1000), (cart_id, galaxy, w1, 5)]
    assert await stock_rows(maker, sony) == [(w1, 2500, 1000), (w2, 2500, 0)]
    assert await stock_rows(maker, galaxy) == [(w1, 7, 5), (w2, 0, 0)]
    assert await _released_audits(maker) == [
        (str(sony), b, {"reserved": {str(w2): 5}}, {"reserved": {str(w2): 0}})
    ]
    assert _released() == released + 1
    await assert_reserved_matches(maker)


async def test_merge_below_the_limit_adds_up_and_moves_no_stock(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony, w1, w2 = (
        catalog["product"]["sony"],
        catalog["warehouse"]["W1"],
        catalog["warehouse"]["W2"],
    )
    await _stock(maker, sony)
    b, headers = await _user_b(client)
    r = await client.post(ITEMS, json={"product_id": sony, "quantity": 300}, headers=headers)
    assert r.status_code == 200, r.text
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as guest:
        r = await guest.post(ITEMS, json={"product_id": sony, "quantity": 44})
        assert r.status_code == 200, r.text
        released = _released()
        r = await guest.post(LOGIN, json=B)
        assert r.status_code == 200, r.text
        signed_in = {"Authorization": f"Bearer {r.json()['token']}"}

    cart_id = await _cart_id(maker, b)
    assert await _lines(client, signed_in) == [(sony, 344, 4656)]
    assert await line_rows(maker) == [(cart_id, sony, 344)]
    assert await reservation_rows(maker) == [(cart_id, sony, w1, 300), (cart_id, sony, w2, 44)]
    assert await stock_rows(maker, sony) == [(w1, 2500, 300), (w2, 2500, 44)]
    assert await _released_audits(maker) == []
    assert _released() == released
    await assert_reserved_matches(maker)
