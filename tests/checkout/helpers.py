from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.auth.service import hash_token
from emporium.inventory.reservations import reserve
from emporium.models import Cart, CartItem, Order, Reservation, Stock, User
from emporium.payment.gateway import PaymentNotAttempted
from emporium.payment.ledger import PREFIX
from tests.fixtures import auth

ADDRESS = {
    "name": "Ada Lovelace",
    "line1": "12 Analytical Row",
    "city": "London",
    "postal_code": "N1 9GU",
    "country": "GB",
}
VISA = {"card_number": "4242424242424242", "exp": "12/30", "cvc": "123"}
DECLINED = {"card_number": "4000000000000002", "exp": "12/30", "cvc": "123"}


def key(k: str) -> dict[str, str]:
    return {**auth("customer"), "Idempotency-Key": k}


def charges(app: FastAPI) -> int:
    return int(app.state.gateway.inner.charges)


def use_gateway(app: FastAPI, gateway: Any, **options: Any) -> None:
    """Checkouts of ``app`` go through ``gateway`` from now on."""
    service = app.state.checkout
    app.state.checkout = type(service)(
        maker=service.maker,
        idempotency=service.idempotency,
        gateway=gateway,
        reservation_ttl=service.reservation_ttl,
        pool=service.pool,
        **options,
    )


def body(card: dict[str, str] = VISA) -> dict[str, Any]:
    return {"shipping_address": ADDRESS, "payment": card}


async def fill_cart(
    maker: async_sessionmaker[AsyncSession], user_id: int, lines: dict[int, int]
) -> int:
    async with maker() as s, s.begin():
        cart = await s.scalar(select(Cart).where(Cart.user_id == user_id))
        if cart is None:
            cart = Cart(user_id=user_id)
            s.add(cart)
            await s.flush()
        for product_id, quantity in lines.items():
            s.add(CartItem(cart_id=cart.id, product_id=product_id, quantity=quantity))
            await reserve(
                s,
                cart_id=cart.id,
                product_id=product_id,
                quantity=quantity,
                until=datetime.now(UTC) + timedelta(minutes=30),
            )
        return cart.id


async def stock_of(
    maker: async_sessionmaker[AsyncSession], product_id: int
) -> list[tuple[int, int]]:
    async with maker() as s:
        rows = await s.execute(
            select(Stock.quantity, Stock.reserved)
            .where(Stock.product_id == product_id)
            .order_by(Stock.warehouse_id)
        )
        return [(q, r) for q, r in rows.all()]


async def count(maker: async_sessionmaker[AsyncSession], model: Any) -> int:
    async with maker() as s:
        return int(await s.scalar(select(func.count()).select_from(model)) or 0)


async def cart_state(maker: async_sessionmaker[AsyncSession], user_id: int) -> dict[str, Any]:
    async with maker() as s:
        cart = await s.scalar(select(Cart).where(Cart.user_id == user_id))
        if cart is None:
            return {"lines": {}, "reserved": {}}
        lines = (
            await s.execute(
                select(CartItem.product_id, CartItem.quantity).where(CartItem.cart_id == cart.id)
            )
        ).all()
        held = (
            await s.execute(
                select(Reservation.product_id, func.sum(Reservation.quantity))
                .where(Reservation.cart_id == cart.id)
                .group_by(Reservation.product_id)
            )
        ).all()
        return {"lines": {p: q for p, q in lines}, "reserved": {p: int(q) for p, q in held}}


__all__ = [
    "ADDRESS",
    "DECLINED",
    "VISA",
    "Order",
    "body",
    "cart_state",
    "count",
    "fill_cart",
    "stock_of",
    "use_gateway",
]


async def gateway_payments(app: FastAPI) -> list[tuple[str, Decimal, Decimal]]:
    """(status, amount, refunded) of each payment the built-in gateway holds in Valkey."""
    ledger = app.state.gateway.inner.ledger
    found = []
    async for key in ledger.client.scan_iter(match=f"{PREFIX}pay:*"):
        payment = await ledger.by_id(key.decode().rsplit(":", 1)[1])
        found.append((payment.status.value, payment.amount, payment.refunded_amount))
    return sorted(found)


async def add_buyers(maker: async_sessionmaker[AsyncSession], n: int) -> dict[str, str]:
    """``n`` more customers; every buyer's email and API token, the catalog's first."""
    tokens = {"customer@example.com": "test-customer"}
    async with maker() as s, s.begin():
        for i in range(n):
            s.add(
                User(
                    email=f"buyer{i}@example.com",
                    name=f"buyer{i}",
                    role="customer",
                    api_token_hash=hash_token(f"token-{i}"),
                )
            )
            tokens[f"buyer{i}@example.com"] = f"token-{i}"
    return tokens


class HeldGateway:
    """A gateway whose charges are answered only once ``release`` is set: with a
    refusal before reaching the gateway if ``unreachable``, else by the gateway."""

    def __init__(self, inner: Any, *, unreachable: bool = False) -> None:
        self.inner = inner
        self.unreachable = unreachable
        self.charging = asyncio.Event()
        self.release = asyncio.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def charge(self, **kwargs: Any) -> Any:
        self.charging.set()
        await self.release.wait()
        if self.unreachable:
            raise PaymentNotAttempted("connection refused")
        return await self.inner.charge(**kwargs)
