"""The reservation primitives the cart and checkout share, and their expiry."""

from __future__ import annotations

import asyncio
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from prometheus_client import REGISTRY
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.cart.repository import CartRepository
from emporium.cart.tasks import ReservationReaper
from emporium.inventory.reservations import (
    InsufficientStock,
    plan_allocation,
    release,
    release_expired,
    reserve,
    reserve_units,
)
from emporium.kit.db import UnitOfWork
from emporium.models import AuditLog, Cart
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

UNTIL = datetime.now(UTC) + timedelta(hours=1)


def test_plan_takes_most_free_first_ties_by_warehouse() -> None:
    assert plan_allocation([(1, 10), (2, 5)], 12) == [(1, 10), (2, 2)]
    assert plan_allocation([(1, 3), (2, 3)], 4) == [(1, 3), (2, 1)]
    assert plan_allocation([(1, 0), (2, 4), (3, 7)], 4) == [(3, 4)]
    with pytest.raises(ValueError, match="not enough"):
        plan_allocation([(1, 2)], 3)


async def test_the_database_splits_a_reservation_like_plan_allocation(
    catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    """The reservation statement plans in SQL; plan_allocation is its reference."""
    product = catalog["product"]["cable"]
    await execute(
        maker,
        "INSERT INTO warehouses (code, name) VALUES ('W3', 'Warehouse W3'), ('W4', 'W4')",
    )
    async with maker() as s:
        warehouses = list(
            await s.scalars(text("SELECT id FROM warehouses ORDER BY id"))  # W1..W4
        )
    cart_id = await _cart(maker, "p" * 64)
    rng = random.Random(7)
    cases = [[rng.choice([0, 0, 1, 2, 3, 5, 8]) for _ in warehouses] for _ in range(40)]
    cases += [[4, 4, 4, 4], [0, 6, 6, 1], [9, 0, 0, 0]]  # ties and single rows
    checked = 0
    for quantities in cases:
        free = list(zip(warehouses, quantities, strict=True))
        total = sum(quantities)
        quantity = rng.randint(1, max(total, 1))
        async with maker() as s:
            await s.execute(text("DELETE FROM stock WHERE product_id = :p"), {"p": product})
            for warehouse_id, units in free:
                await s.execute(
                    text(
                        "INSERT INTO stock (product_id, warehouse_id, quantity) VALUES (:p, :w, :q)"
                    ),
                    {"p": product, "w": warehouse_id, "q": units},
                )
            if total == 0:
                with pytest.raises(InsufficientStock):
                    await reserve(s, cart_id=cart_id, product_id=product, quantity=1, until=UNTIL)
            else:
                rows = await reserve(
                    s, cart_id=cart_id, product_id=product, quantity=quantity, until=UNTIL
                )
                got = sorted((r.warehouse_id, r.quantity) for r in rows)
                assert got == sorted(plan_allocation(free, quantity)), (free, quantity)
                checked += 1
            await s.rollback()
    assert checked >= 40


async def _cart_id(maker: async_sessionmaker[AsyncSession], user_id: int) -> int:
    async with maker() as s:
        cart_id = await s.scalar(select(Cart.id).where(Cart.user_id == user_id))
    assert cart_id is not None
    return int(cart_id)


async def _cart(maker: async_sessionmaker[AsyncSession], token: str) -> int:
    async with UnitOfWork(maker) as s:
        return (await CartRepository.from_session(s).create_guest(token)).id


async def test_reserve_release_roundtrip(
    catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    iphone, w1, w2 = (
        catalog["product"]["iphone"],
        catalog["warehouse"]["W1"],
        catalog["warehouse"]["W2"],
    )
    cart_id = await _cart(maker, "a" * 64)
    async with UnitOfWork(maker) as s:
        rows = await reserve(s, cart_id=cart_id, product_id=iphone, quantity=4, until=UNTIL)
        assert [(r.warehouse_id, r.quantity, r.reserved_until) for r in rows] == [
            (w1, 3, UNTIL),
            (w2, 1, UNTIL),
        ]
        ids = [r.id for r in rows]
    assert await stock_rows(maker, iphone) == [(w1, 3, 3), (w2, 3, 1)]
    with pytest.raises(InsufficientStock) as err:
        async with UnitOfWork(maker) as s:
            await reserve(s, cart_id=cart_id, product_id=iphone, quantity=3, until=UNTIL)
    assert (err.value.available, err.value.status_code, err.value.code) == (
        2,
        409,
        "insufficient_stock",
    )
    assert await stock_rows(maker, iphone) == [(w1, 3, 3), (w2, 3, 1)]
    # Release by id; releasing the same rows again returns nothing to stock twice.
    async with UnitOfWork(maker) as s:
        holds = await release(s, [ids[1]])
    assert [(h.warehouse_id, h.quantity) for h in holds] == [(w2, 1)]
    async with UnitOfWork(maker) as s:
        assert await release(s, [ids[1]]) == []
    assert await stock_rows(maker, iphone) == [(w1, 3, 3), (w2, 3, 0)]
    assert await reservation_rows(maker) == [(cart_id, iphone, w1, 3)]


async def test_expired_rows_are_shared_between_workers(
    catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    cable, w1, w2 = (
        catalog["product"]["cable"],
        catalog["warehouse"]["W1"],
        catalog["warehouse"]["W2"],
    )
    cart_id = await _cart(maker, "b" * 64)
    async with UnitOfWork(maker) as s:
        for _ in range(3):
            await reserve(s, cart_id=cart_id, product_id=cable, quantity=2, until=UNTIL)
        await CartRepository.from_session(s).add_to_line(cart_id, cable, 6)
    await execute(maker, "UPDATE reservations SET reserved_until = now() - interval '1 minute'")
    assert await stock_rows(maker, cable) == [(w1, 50, 4), (w2, 50, 2)]
    # Worker A holds two rows (uncommitted); worker B skips them and takes the third.
    async with maker() as a, maker() as b:
        assert await release_expired(a, limit=2) == 2
        # B skips A's locked rows at once; returning units may wait for A's stock locks.
        other = asyncio.create_task(release_expired(b, product_id=cable))
        await asyncio.sleep(0.2)
        await a.commit()
        assert await other == 1
        assert await release_expired(b) == 0
        await b.commit()
    assert await stock_rows(maker, cable) == [(w1, 50, 0), (w2, 50, 0)]
    assert await reservation_rows(maker) == []
    await assert_reserved_matches(maker)


async def test_reaper_releases_expired_holds_and_shrinks_lines(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony, galaxy, iphone = (catalog["product"][k] for k in ("sony", "galaxy", "iphone"))
    w1, w2 = catalog["warehouse"]["W1"], catalog["warehouse"]["W2"]
    headers = auth("customer")
    await client.post(ITEMS, json={"product_id": sony, "quantity": 3}, headers=headers)
    await client.post(ITEMS, json={"product_id": sony, "quantity": 2}, headers=headers)
    await client.post(ITEMS, json={"product_id": galaxy, "quantity": 2}, headers=headers)
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as guest:
        await guest.post(ITEMS, json={"product_id": iphone, "quantity": 4})
        user_cart = await _cart_id(maker, catalog["user"]["customer"])
        async with maker() as s:
            guest_cart = await s.scalar(select(Cart.id).where(Cart.user_id.is_(None)))
        assert await reservation_rows(maker) == [
            (user_cart, sony, w1, 3),
            (user_cart, sony, w1, 2),
            (user_cart, galaxy, w1, 2),
            (guest_cart, iphone, w1, 3),
            (guest_cart, iphone, w2, 1),
        ]
        # The customer's oldest sony hold and the guest's whole cart lapse.
        await execute(
            maker,
            "UPDATE reservations SET reserved_until = now() - interval '1 second'"
            " WHERE id IN (1, 4, 5)",
        )
        abandoned = REGISTRY.get_sample_value("cart_abandonments_total") or 0.0
        expired = (
            REGISTRY.get_sample_value("inventory_reservations_total", {"status": "expired"}) or 0.0
        )
        assert await ReservationReaper(maker, batch=2).run_once() == 3
        assert REGISTRY.get_sample_value("cart_abandonments_total") == abandoned + 2
        assert (
            REGISTRY.get_sample_value("inventory_reservations_total", {"status": "expired"})
            == expired + 3
        )
        assert await stock_rows(maker, sony) == [(w1, 10, 2), (w2, 5, 0)]
        assert await stock_rows(maker, iphone) == [(w1, 3, 0), (w2, 3, 0)]
        assert await reservation_rows(maker) == [
            (user_cart, sony, w1, 2),
            (user_cart, galaxy, w1, 2),
        ]
        assert await line_rows(maker) == [(user_cart, sony, 2), (user_cart, galaxy, 2)]
        assert (await guest.get(CART)).json()["lines"] == []
        assert await ReservationReaper(maker).run_once() == 0
        assert REGISTRY.get_sample_value("cart_abandonments_total") == abandoned + 2
    async with maker() as s:
        released = (
            (
                await s.execute(
                    select(AuditLog)
                    .where(AuditLog.action == "inventory.released")
                    .order_by(AuditLog.id)
                )
            )
            .scalars()
            .all()
        )
    # Batches of 2 in reservation-id order; the reaper acts for nobody.
    assert [(a.entity_id, a.actor_user_id, a.old_values, a.new_values) for a in released] == [
        (str(sony), None, {"reserved": {str(w1): 5}}, {"reserved": {str(w1): 2}}),
        (str(iphone), None, {"reserved": {str(w1): 3}}, {"reserved": {str(w1): 0}}),
        (str(iphone), None, {"reserved": {str(w2): 1}}, {"reserved": {str(w2): 0}}),
    ]
    await assert_reserved_matches(maker)


async def test_only_an_expired_hold_blocks_and_it_is_released_on_demand(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    timer, w1 = catalog["product"]["timer"], catalog["warehouse"]["W1"]
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as guest:
        assert (
            await guest.post(ITEMS, json={"product_id": timer, "quantity": 1})
        ).status_code == 200
        # A live hold blocks.
        r = await client.post(
            ITEMS, json={"product_id": timer, "quantity": 1}, headers=auth("customer")
        )
        assert (r.status_code, r.json()["available"]) == (409, 0)
        await execute(maker, "UPDATE reservations SET reserved_until = now() - interval '1 second'")
        # Even with the lapsed unit freed, two are not there: the release is undone too.
        r = await client.post(
            ITEMS, json={"product_id": timer, "quantity": 2}, headers=auth("customer")
        )
        assert (r.status_code, r.json()["available"]) == (409, 1)
        assert len(await reservation_rows(maker)) == 1
        assert await stock_rows(maker, timer) == [(w1, 1, 1), (catalog["warehouse"]["W2"], 0, 0)]
        r = await client.post(
            ITEMS, json={"product_id": timer, "quantity": 1}, headers=auth("customer")
        )
        assert r.status_code == 200, r.text
        user_cart = await _cart_id(maker, catalog["user"]["customer"])
        assert await reservation_rows(maker) == [(user_cart, timer, w1, 1)]
        assert await line_rows(maker) == [(user_cart, timer, 1)]
        assert await stock_rows(maker, timer) == [(w1, 1, 1), (catalog["warehouse"]["W2"], 0, 0)]
        assert (await guest.get(CART)).json()["lines"] == []
    await assert_reserved_matches(maker)


async def test_a_reservation_waiting_for_a_stock_lock_uses_what_was_freed_meanwhile(
    catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    """The reservation plans from the rows as locked, not from its statement's snapshot."""
    cable, w1, w2 = (
        catalog["product"]["cable"],
        catalog["warehouse"]["W1"],
        catalog["warehouse"]["W2"],
    )
    await execute(maker, f"UPDATE stock SET quantity = 2 WHERE product_id = {cable}")
    cart_id = await _cart(maker, "w" * 64)
    async with maker() as restock, maker() as buyer:
        await restock.execute(
            text("UPDATE stock SET quantity = 12 WHERE product_id = :p AND warehouse_id = :w"),
            {"p": cable, "w": w1},
        )
        # The buyer saw enough free stock; its reservation waits for the restock's lock.
        waiting = asyncio.create_task(
            reserve_units(
                buyer,
                cart_id=cart_id,
                product_id=cable,
                quantity=9,
                until=UNTIL,
                checked=(99, False),
            )
        )
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await restock.commit()
        rows, free_after = await waiting
        await buyer.commit()
    assert ([(r.warehouse_id, r.quantity) for r in rows], free_after) == ([(w1, 9)], 5)
    assert await stock_rows(maker, cable) == [(w1, 12, 9), (w2, 2, 0)]
