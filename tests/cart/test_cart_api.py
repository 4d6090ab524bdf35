from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from starlette.requests import Request

from emporium.cart.endpoints import install
from emporium.cart.service import merge_guest_cart
from emporium.kit.db import UnitOfWork
from emporium.models import AuditLog, Cart, OutboxEvent, Reservation, User
from tests.cart import (
    CART,
    ITEMS,
    assert_reserved_matches,
    execute,
    line_rows,
    reservation_rows,
    stock_rows,
)
from tests.fixtures import auth

SONY_TITLE = "Sony WH-1000XM5 Wireless Noise Cancelling Headphones"


@pytest.fixture(autouse=True)
def _installed(app: FastAPI) -> None:
    install(app)


async def _cart_id(maker: async_sessionmaker[AsyncSession], user_id: int) -> int:
    async with maker() as s:
        cart_id = await s.scalar(select(Cart.id).where(Cart.user_id == user_id))
    assert cart_id is not None
    return int(cart_id)


async def _count(maker: async_sessionmaker[AsyncSession], model: Any) -> int:
    async with maker() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def test_add_reserves_most_stock_first_and_splits(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    sony, w1, w2 = (
        catalog["product"]["sony"],
        catalog["warehouse"]["W1"],
        catalog["warehouse"]["W2"],
    )
    before = datetime.now(UTC)
    r = await client.post(
        ITEMS, json={"product_id": sony, "quantity": 12}, headers=auth("customer")
    )
    after = datetime.now(UTC)
    assert r.status_code == 200, r.text
    assert "set-cookie" not in r.headers
    body = r.json()
    until = datetime.fromisoformat(body["lines"][0]["reserved_until"])
    assert before + timedelta(seconds=1800) <= until <= after + timedelta(seconds=1800)
    assert body == {
        "lines": [
            {
                "product_id": sony,
                "title": SONY_TITLE,
                "unit_price": "349.99",
                "quantity": 12,
                "line_total": "4199.88",
                "reserved_until": body["lines"][0]["reserved_until"],
                "available": 3,
            }
        ],
        "subtotal": "4199.88",
        "item_count": 12,
    }
    cart_id = await _cart_id(maker, catalog["user"]["customer"])
    assert await stock_rows(maker, sony) == [(w1, 10, 10), (w2, 5, 2)]
    assert await reservation_rows(maker) == [(cart_id, sony, w1, 10), (cart_id, sony, w2, 2)]
    assert await line_rows(maker) == [(cart_id, sony, 12)]
    async with maker() as s:
        audits = (await s.execute(select(AuditLog))).scalars().all()
        events = (
            await s.execute(select(OutboxEvent).where(OutboxEvent.topic == "stock.changed"))
        ).scalars()
        outbox = [(e.aggregate_type, e.aggregate_id, e.payload) for e in events]
    assert [
        (a.action, a.entity_type, a.entity_id, a.actor_user_id, a.old_values, a.new_values)
        for a in audits
    ] == [
        (
            "inventory.reserved",
            "product",
            str(sony),
            catalog["user"]["customer"],
            {"reserved": {str(w1): 0, str(w2): 0}},
            {"reserved": {str(w1): 10, str(w2): 2}},
        )
    ]
    assert outbox == [("product", str(sony), {"reserved": {str(w1): 10, str(w2): 2}})]
    # Free stock everywhere else reflects the hold.
    assert (await client.get(f"/api/v1/products/{sony}/stock")).json()["available"] == 3


async def test_the_cart_returned_by_add_is_the_cart_as_stored(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    """Add answers from what it read and reserved; a fresh read must agree exactly."""
    sony, iphone, cable = (catalog["product"][k] for k in ("sony", "iphone", "cable"))
    steps = [(sony, 3), (iphone, 2), (sony, 9), (cable, 1), (iphone, 1)]
    for product_id, quantity in steps:
        added = await client.post(
            ITEMS, json={"product_id": product_id, "quantity": quantity}, headers=auth("customer")
        )
        assert added.status_code == 200, added.text
        got, stored = added.json(), (await client.get(CART, headers=auth("customer"))).json()
        # Reading the cart slides its holds, so only the expiry may move (forward).
        until = {line["product_id"]: line["reserved_until"] for line in got["lines"]}
        assert {
            line["product_id"]: line["reserved_until"] >= until[line["product_id"]]
            for line in stored["lines"]
        } == dict.fromkeys(until, True)
        for body in (got, stored):
            for line in body["lines"]:
                line.pop("reserved_until")
        assert got == stored
    assert [line["quantity"] for line in stored["lines"]] == [12, 3, 1]
    # Sony: 12 of 15 held, so 3 free; the line order is the order of first adding.
    assert [line["product_id"] for line in stored["lines"]] == [sony, iphone, cable]
    assert stored["lines"][0]["available"] == 3


async def test_a_withdrawn_products_line_shows_no_units_free_to_add(
    client: AsyncClient, catalog: dict[str, Any]
) -> None:
    """Its stock is still free, but the product can no longer be added or bought."""
    sony, iphone = catalog["product"]["sony"], catalog["product"]["iphone"]
    for product_id, quantity in [(sony, 2), (iphone, 1)]:
        added = await client.post(
            ITEMS, json={"product_id": product_id, "quantity": quantity}, headers=auth("customer")
        )
        assert added.status_code == 200, added.text
    withdrawn = await client.delete(f"/api/v1/products/{sony}", headers=auth("admin"))
    assert withdrawn.status_code == 204

    def lines(body: dict[str, Any]) -> list[tuple[int, int, int]]:
        return [(ln["product_id"], ln["quantity"], ln["available"]) for ln in body["lines"]]

    # Sony still has 13 of its 15 units free; of the 6 iPhones 1, then 3, are held.
    viewed = await client.get(CART, headers=auth("customer"))
    assert viewed.status_code == 200, viewed.text
    assert lines(viewed.json()) == [(sony, 2, 0), (iphone, 1, 5)]
    added = await client.post(
        ITEMS, json={"product_id": iphone, "quantity": 2}, headers=auth("customer")
    )
    assert added.status_code == 200, added.text
    assert lines(added.json()) == [(sony, 2, 0), (iphone, 3, 3)]
    assert lines((await client.get(CART, headers=auth("customer"))).json()) == lines(added.json())


async def test_insufficient_stock_changes_nothing(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    sony, w1, w2 = (
        catalog["product"]["sony"],
        catalog["warehouse"]["W1"],
        catalog["warehouse"]["W2"],
    )
    r = await client.post(
        ITEMS, json={"product_id": sony, "quantity": 16}, headers=auth("customer")
    )
    assert (r.status_code, r.json()) == (
        409,
        {
            "error": "insufficient_stock",
            "detail": f"only 15 units of product {sony} are available",
            "available": 15,
        },
    )
    assert await stock_rows(maker, sony) == [(w1, 10, 0), (w2, 5, 0)]
    assert (await _count(maker, Cart), await _count(maker, Reservation)) == (0, 0)
    assert await _count(maker, AuditLog) == 0

    r = await client.post(
        ITEMS, json={"product_id": sony, "quantity": 12}, headers=auth("customer")
    )
    assert r.status_code == 200
    cart_id = await _cart_id(maker, catalog["user"]["customer"])
    # An add answers the units that can still be added.
    for headers in (auth("customer"), auth("admin"), {}):
        r = await client.post(ITEMS, json={"product_id": sony, "quantity": 4}, headers=headers)
        assert (r.status_code, r.json()["error"], r.json()["available"]) == (
            409,
            "insufficient_stock",
            3,
        ), headers
        assert "set-cookie" not in r.headers
    # A PATCH answers the most the line can be set to: its own 12 units and the 3 free.
    r = await client.patch(f"{ITEMS}/{sony}", json={"quantity": 16}, headers=auth("customer"))
    assert (r.status_code, r.json()) == (
        409,
        {
            "error": "insufficient_stock",
            "detail": f"this line can be set to at most 15 units of product {sony}",
            "available": 15,
        },
    )
    bose = catalog["product"]["bose"]
    r = await client.post(ITEMS, json={"product_id": bose, "quantity": 1}, headers=auth("customer"))
    assert (r.status_code, r.json()["available"]) == (409, 0)
    assert await stock_rows(maker, sony) == [(w1, 10, 10), (w2, 5, 2)]
    assert await reservation_rows(maker) == [(cart_id, sony, w1, 10), (cart_id, sony, w2, 2)]
    assert await line_rows(maker) == [(cart_id, sony, 12)]
    assert await _count(maker, Cart) == 1
    assert await _count(maker, AuditLog) == 1


async def test_a_patch_refusal_counts_the_lines_own_hold_as_available(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    sony, w1, w2 = (
        catalog["product"]["sony"],
        catalog["warehouse"]["W1"],
        catalog["warehouse"]["W2"],
    )
    headers = auth("customer")
    r = await client.post(ITEMS, json={"product_id": sony, "quantity": 2}, headers=headers)
    assert (r.status_code, r.json()["lines"][0]["available"]) == (200, 13)
    cart_id = await _cart_id(maker, catalog["user"]["customer"])
    before = (await stock_rows(maker, sony), await reservation_rows(maker))
    assert before == ([(w1, 10, 2), (w2, 5, 0)], [(cart_id, sony, w1, 2)])
    for quantity in (16, 1000):
        r = await client.patch(f"{ITEMS}/{sony}", json={"quantity": quantity}, headers=headers)
        assert (r.status_code, r.json()["error"], r.json()["available"]) == (
            409,
            "insufficient_stock",
            15,
        ), quantity
    assert (await stock_rows(maker, sony), await reservation_rows(maker)) == before
    assert await line_rows(maker) == [(cart_id, sony, 2)]
    assert await _count(maker, AuditLog) == 1
    # The quantity the refusal named is one the line can be set to.
    r = await client.patch(f"{ITEMS}/{sony}", json={"quantity": 15}, headers=headers)
    assert r.status_code == 200, r.text
    assert (r.json()["lines"][0]["quantity"], r.json()["lines"][0]["available"]) == (15, 0)
    assert await stock_rows(maker, sony) == [(w1, 10, 10), (w2, 5, 5)]
    await assert_reserved_matches(maker)


async def test_patch_adjusts_reservations_exactly(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    sony, w1, w2 = (
        catalog["product"]["sony"],
        catalog["warehouse"]["W1"],
        catalog["warehouse"]["W2"],
    )
    headers = auth("customer")
    assert (
        await client.post(ITEMS, json={"product_id": sony, "quantity": 3}, headers=headers)
    ).status_code == 200
    cart_id = await _cart_id(maker, catalog["user"]["customer"])
    r = await client.patch(f"{ITEMS}/{sony}", json={"quantity": 12}, headers=headers)
    assert r.status_code == 200, r.text
    assert (r.json()["lines"][0]["quantity"], r.json()["lines"][0]["available"]) == (12, 3)
    # The difference (9) goes most-free-first: W1 has 7 left, W2 5.
    assert await stock_rows(maker, sony) == [(w1, 10, 10), (w2, 5, 2)]
    assert await reservation_rows(maker) == [
        (cart_id, sony, w1, 3),
        (cart_id, sony, w1, 7),
        (cart_id, sony, w2, 2),
    ]
    # Down by 8: the newest holds go first (W2 2, then 6 of W1's 7).
    r = await client.patch(f"{ITEMS}/{sony}", json={"quantity": 4}, headers=headers)
    assert r.status_code == 200
    assert r.json()["lines"][0] | {"reserved_until": None} == {
        "product_id": sony,
        "title": SONY_TITLE,
        "unit_price": "349.99",
        "quantity": 4,
        "line_total": "1399.96",
        "reserved_until": None,
        "available": 11,
    }
    assert (r.json()["subtotal"], r.json()["item_count"]) == ("1399.96", 4)
    assert await stock_rows(maker, sony) == [(w1, 10, 4), (w2, 5, 0)]
    assert await reservation_rows(maker) == [(cart_id, sony, w1, 3), (cart_id, sony, w1, 1)]
    assert await line_rows(maker) == [(cart_id, sony, 4)]
    r = await client.patch(f"{ITEMS}/{sony}", json={"quantity": 4}, headers=headers)
    assert r.json()["item_count"] == 4
    assert await stock_rows(maker, sony) == [(w1, 10, 4), (w2, 5, 0)]
    async with maker() as s:
        audits = (await s.execute(select(AuditLog).order_by(AuditLog.id))).scalars().all()
    assert [(a.action, a.old_values, a.new_values) for a in audits] == [
        ("inventory.reserved", {"reserved": {str(w1): 0}}, {"reserved": {str(w1): 3}}),
        (
            "inventory.reserved",
            {"reserved": {str(w1): 3, str(w2): 0}},
            {"reserved": {str(w1): 10, str(w2): 2}},
        ),
        (
            "inventory.released",
            {"reserved": {str(w1): 10, str(w2): 2}},
            {"reserved": {str(w1): 4, str(w2): 0}},
        ),
    ]
    await assert_reserved_matches(maker)


async def test_delete_releases_the_line(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    sony, w1, w2 = (
        catalog["product"]["sony"],
        catalog["warehouse"]["W1"],
        catalog["warehouse"]["W2"],
    )
    galaxy = catalog["product"]["galaxy"]
    headers = auth("customer")
    await client.post(ITEMS, json={"product_id": sony, "quantity": 12}, headers=headers)
    await client.post(ITEMS, json={"product_id": galaxy, "quantity": 2}, headers=headers)
    cart_id = await _cart_id(maker, catalog["user"]["customer"])
    r = await client.delete(f"{ITEMS}/{sony}", headers=headers)
    assert (r.status_code, r.content) == (204, b"")
    assert await stock_rows(maker, sony) == [(w1, 10, 0), (w2, 5, 0)]
    assert await reservation_rows(maker) == [(cart_id, galaxy, w1, 2)]
    assert await line_rows(maker) == [(cart_id, galaxy, 2)]
    r = await client.delete(f"{ITEMS}/{sony}", headers=headers)
    assert (r.status_code, r.json()["error"]) == (404, "cart_item_not_found")
    assert [
        line["product_id"] for line in (await client.get(CART, headers=headers)).json()["lines"]
    ] == [galaxy]
    await assert_reserved_matches(maker)


async def test_invalid_requests_change_nothing(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    sony, galaxy, anker = (catalog["product"][k] for k in ("sony", "galaxy", "anker_q20"))
    headers = auth("customer")
    await client.post(ITEMS, json={"product_id": anker, "quantity": 60}, headers=headers)
    await execute(maker, "UPDATE products SET is_active = false WHERE id = :id", id=galaxy)
    snapshot = (await reservation_rows(maker), await line_rows(maker), await _count(maker, Cart))
    cases: list[tuple[str, str, Any, dict[str, str], int, str]] = [
        ("POST", ITEMS, {"product_id": sony, "quantity": 0}, headers, 422, "invalid_input"),
        ("POST", ITEMS, {"product_id": sony, "quantity": -1}, headers, 422, "invalid_input"),
        ("POST", ITEMS, {"product_id": sony, "quantity": 1001}, headers, 422, "invalid_input"),
        ("POST", ITEMS, {"product_id": sony, "quantity": "x"}, headers, 422, "invalid_input"),
        ("POST", ITEMS, {"product_id": sony, "quantity": 1.5}, headers, 422, "invalid_input"),
        ("POST", ITEMS, {"product_id": sony, "quantity": "1"}, headers, 422, "invalid_input"),
        ("POST", ITEMS, {"product_id": sony, "quantity": True}, headers, 422, "invalid_input"),
        ("POST", ITEMS, {"product_id": str(sony), "quantity": 1}, headers, 422, "invalid_input"),
        ("PATCH", f"{ITEMS}/{anker}", {"quantity": "2"}, headers, 422, "invalid_input"),
        ("POST", ITEMS, {"quantity": 1}, headers, 422, "invalid_input"),
        ("POST", ITEMS, {"product_id": 0, "quantity": 1}, headers, 422, "invalid_input"),
        ("POST", ITEMS, {"product_id": 999999, "quantity": 1}, headers, 404, "product_not_found"),
        ("POST", ITEMS, {"product_id": galaxy, "quantity": 1}, headers, 404, "product_not_found"),
        ("POST", ITEMS, {"product_id": 999999, "quantity": 1}, {}, 404, "product_not_found"),
        (
            "POST",
            ITEMS,
            {"product_id": anker, "quantity": 1000},
            headers,
            422,
            "quantity_limit_exceeded",
        ),
        ("PATCH", f"{ITEMS}/{anker}", {"quantity": 0}, headers, 422, "invalid_input"),
        ("PATCH", f"{ITEMS}/{anker}", {"quantity": 1001}, headers, 422, "invalid_input"),
        ("PATCH", f"{ITEMS}/{anker}", {}, headers, 422, "invalid_input"),
        ("PATCH", f"{ITEMS}/{sony}", {"quantity": 1}, headers, 404, "cart_item_not_found"),
        ("PATCH", f"{ITEMS}/{anker}", {"quantity": 1}, {}, 404, "cart_item_not_found"),
        ("PATCH", f"{ITEMS}/0", {"quantity": 1}, headers, 422, "invalid_input"),
        ("DELETE", f"{ITEMS}/{sony}", None, headers, 404, "cart_item_not_found"),
        ("DELETE", f"{ITEMS}/{anker}", None, auth("admin"), 404, "cart_item_not_found"),
        ("GET", CART, None, {"Authorization": "Bearer nope"}, 401, "unauthorized"),
    ]
    for method, url, body, hdrs, status, code in cases:
        r = await client.request(method, url, json=body, headers=hdrs)
        assert (r.status_code, r.json()["error"]) == (status, code), (method, url, body, r.text)
        assert "set-cookie" not in r.headers
    assert (
        await reservation_rows(maker),
        await line_rows(maker),
        await _count(maker, Cart),
    ) == snapshot
    assert (await stock_rows(maker, anker))[0][2] == 60


async def test_guest_cart_cookie_and_merge_at_login(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony, galaxy, w1 = (
        catalog["product"]["sony"],
        catalog["product"]["galaxy"],
        catalog["warehouse"]["W1"],
    )
    customer = catalog["user"]["customer"]
    async with (
        AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as guest,
        AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as other,
    ):
        r = await guest.post(ITEMS, json={"product_id": sony, "quantity": 2})
        assert r.status_code == 200
        cookie = r.headers["set-cookie"].lower()
        assert cookie.startswith("emporium_cart=")
        assert "httponly" in cookie
        assert "samesite=lax" in cookie
        token = guest.cookies["emporium_cart"]
        async with maker() as s:
            guest_cart = (await s.execute(select(Cart))).scalar_one()
        # Only the token's hash is stored.
        assert (guest_cart.user_id, guest_cart.guest_token_hash) == (
            None,
            hashlib.sha256(token.encode()).hexdigest(),
        )
        r = await guest.post(ITEMS, json={"product_id": galaxy, "quantity": 1})
        assert "set-cookie" not in r.headers
        assert [
            (x["product_id"], x["quantity"]) for x in (await guest.get(CART)).json()["lines"]
        ] == [
            (sony, 2),
            (galaxy, 1),
        ]
        # Another guest and a signed-in user see only their own (empty) carts.
        assert (await other.get(CART)).json() == {"lines": [], "subtotal": "0.00", "item_count": 0}
        assert (await client.get(CART, headers=auth("customer"))).json()["lines"] == []
        assert (await client.get(CART, headers={"Cookie": "emporium_cart=forged"})).json()[
            "lines"
        ] == []

        await client.post(ITEMS, json={"product_id": sony, "quantity": 1}, headers=auth("customer"))
        user_cart = await _cart_id(maker, customer)
        stock_before = await stock_rows(maker, sony)
        assert merge_guest_cart in app.state.on_login
        request = Request(
            {
                "type": "http",
                "headers": [(b"cookie", f"emporium_cart={token}".encode())],
                "app": app,
            }
        )
        async with UnitOfWork(maker) as session:
            user = await session.get(User, customer)
            assert user is not None
            for hook in app.state.on_login:
                await hook(session, request, user)

        r = await client.get(CART, headers=auth("customer"))
        assert [(x["product_id"], x["quantity"]) for x in r.json()["lines"]] == [
            (sony, 3),
            (galaxy, 1),
        ]
        assert r.json()["item_count"] == 4
        assert await reservation_rows(maker) == [
            (user_cart, sony, w1, 2),
            (user_cart, galaxy, w1, 1),
            (user_cart, sony, w1, 1),
        ]
        assert await stock_rows(maker, sony) == stock_before
        async with maker() as s:
            assert [c.id for c in (await s.execute(select(Cart))).scalars()] == [user_cart]
        assert (await guest.get(CART)).json()["lines"] == []
        # A second login with the stale cookie is a no-op.
        async with UnitOfWork(maker) as session:
            user = await session.get(User, customer)
            assert user is not None
            await merge_guest_cart(session, request, user)
        assert await line_rows(maker) == [(user_cart, sony, 3), (user_cart, galaxy, 1)]
    await assert_reserved_matches(maker)


async def test_touching_the_cart_slides_reservations(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    sony, galaxy = catalog["product"]["sony"], catalog["product"]["galaxy"]
    headers = auth("customer")
    await client.post(ITEMS, json={"product_id": sony, "quantity": 1}, headers=headers)
    await client.post(ITEMS, json={"product_id": galaxy, "quantity": 1}, headers=headers)

    async def untils() -> list[datetime]:
        async with maker() as s:
            return list(
                await s.scalars(select(Reservation.reserved_until).order_by(Reservation.id))
            )

    for method, url, body in (
        ("GET", CART, None),
        ("POST", ITEMS, {"product_id": sony, "quantity": 1}),
        ("PATCH", f"{ITEMS}/{galaxy}", {"quantity": 2}),
    ):
        await execute(
            maker, "UPDATE reservations SET reserved_until = now() + interval '60 seconds'"
        )
        before = await untils()
        r = await client.request(method, url, json=body, headers=headers)
        assert r.status_code == 200, r.text
        after = await untils()
        assert len(after) >= len(before) >= 2
        for old, new in zip(before, after, strict=False):
            assert new - old > timedelta(seconds=1700), method
        assert {datetime.fromisoformat(x["reserved_until"]) for x in r.json()["lines"]} == {
            min(after)
        }
