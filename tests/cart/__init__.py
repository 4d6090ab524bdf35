"""Shared look-ups for the cart tests: raw rows, read straight from the database."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.models import CartItem, Reservation, Stock

CART = "/api/v1/cart"
ITEMS = "/api/v1/cart/items"


async def stock_rows(
    maker: async_sessionmaker[AsyncSession], product_id: int
) -> list[tuple[int, int, int]]:
    """(warehouse_id, quantity, reserved) per warehouse."""
    async with maker() as s:
        rows = await s.execute(
            select(Stock.warehouse_id, Stock.quantity, Stock.reserved)
            .where(Stock.product_id == product_id)
            .order_by(Stock.warehouse_id)
        )
        return [(int(w), int(q), int(r)) for w, q, r in rows.all()]


async def reservation_rows(
    maker: async_sessionmaker[AsyncSession],
) -> list[tuple[int, int, int, int]]:
    """(cart_id, product_id, warehouse_id, quantity) in id order."""
    async with maker() as s:
        rows = await s.execute(
            select(
                Reservation.cart_id,
                Reservation.product_id,
                Reservation.warehouse_id,
                Reservation.quantity,
            ).order_by(Reservation.id)
        )
        return [(int(c), int(p), int(w), int(q)) for c, p, w, q in rows.all()]


async def line_rows(maker: async_sessionmaker[AsyncSession]) -> list[tuple[int, int, int]]:
    """(cart_id, product_id, quantity) ordered by cart and product."""
    async with maker() as s:
        rows = await s.execute(
            select(CartItem.cart_id, CartItem.product_id, CartItem.quantity).order_by(
                CartItem.cart_id, CartItem.product_id
            )
        )
        return [(int(c), int(p), int(q)) for c, p, q in rows.all()]


async def execute(maker: async_sessionmaker[AsyncSession], sql: str, **params: object) -> None:
    async with maker() as s, s.begin():
        await s.execute(text(sql), params)


async def assert_reserved_matches(maker: async_sessionmaker[AsyncSession]) -> None:
    """stock.reserved == sum of reservations per row; each cart line == its reservations."""
    async with maker() as s:
        bad_stock = (
            await s.execute(
                text(
                    "SELECT s.product_id, s.warehouse_id, s.reserved, COALESCE(SUM(r.quantity), 0)"
                    " FROM stock s LEFT JOIN reservations r"
                    " ON r.product_id = s.product_id AND r.warehouse_id = s.warehouse_id"
                    " GROUP BY s.product_id, s.warehouse_id, s.reserved, s.quantity"
                    " HAVING s.reserved <> COALESCE(SUM(r.quantity), 0)"
                    " OR s.reserved < 0 OR s.reserved > s.quantity"
                )
            )
        ).all()
        bad_lines = (
            await s.execute(
                text(
                    "SELECT c.cart_id, c.product_id, c.quantity, COALESCE(SUM(r.quantity), 0)"
                    " FROM cart_items c LEFT JOIN reservations r"
                    " ON r.cart_id = c.cart_id AND r.product_id = c.product_id"
                    " GROUP BY c.cart_id, c.product_id, c.quantity"
                    " HAVING c.quantity <> COALESCE(SUM(r.quantity), 0)"
                )
            )
        ).all()
        orphans = (
            await s.execute(
                text(
                    "SELECT r.id FROM reservations r LEFT JOIN cart_items c"
                    " ON c.cart_id = r.cart_id AND c.product_id = r.product_id"
                    " WHERE c.cart_id IS NULL"
                )
            )
        ).all()
    assert (bad_stock, bad_lines, orphans) == ([], [], [])


async def flash_stock(
    maker: async_sessionmaker[AsyncSession], catalog: dict[str, Any]
) -> tuple[int, int, int]:
    """The flash-sale product (cable) with 30 units in W1 and 20 in W2: (id, W1, W2)."""
    cable, w1, w2 = (
        catalog["product"]["cable"],
        catalog["warehouse"]["W1"],
        catalog["warehouse"]["W2"],
    )
    await execute(
        maker,
        "UPDATE stock SET quantity = CASE warehouse_id WHEN :w1 THEN 30 ELSE 20 END"
        " WHERE product_id = :p",
        w1=w1,
        p=cable,
    )
    return cable, w1, w2
