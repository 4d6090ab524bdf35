"""Refunds through the built-in gateway, whichever server process took the payment."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.config import Settings
from emporium.main import create_app
from emporium.models import AuditLog, OrderEvent
from emporium.payment.ledger import PREFIX
from tests.checkout.helpers import count, gateway_payments, stock_of
from tests.checkout.test_orders import _paid_order
from tests.fixtures import auth

API = "/api/v1"
SONY_X3 = Decimal("1049.97")  # three at 349.99


async def test_another_server_process_refunds_a_charge_after_a_restart(
    app: FastAPI,
    client: AsyncClient,
    settings: Settings,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony = catalog["product"]["sony"]
    order = await _paid_order(client, maker, catalog, {sony: 3}, "r-1")
    assert app.state.gateway.inner.charges == 1
    # A second server on the same database: another process, or this one restarted.
    other = create_app(settings, background=False)
    async with (
        other.router.lifespan_context(other),
        AsyncClient(transport=ASGITransport(app=other), base_url="http://test") as second,
    ):
        r = await second.post(f"{API}/orders/{order['id']}/cancel", headers=auth("customer"))
        assert other.state.gateway.inner.charges == 0  # it refunded; it never charged
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert await gateway_payments(app) == [("refunded", SONY_X3, SONY_X3)]
    assert await stock_of(maker, sony) == [(10, 0), (5, 0)]


async def _unchanged(
    maker: async_sessionmaker[AsyncSession], order_id: int, sony: int
) -> tuple[Any, ...]:
    async with maker() as s:
        status = await s.scalar(text("SELECT status FROM orders WHERE id = :i"), {"i": order_id})
    return (
        status,
        await stock_of(maker, sony),
        await count(maker, AuditLog),
        await count(maker, OrderEvent),
    )


async def forget_payments(app: FastAPI) -> None:
    """The gateway loses every charge it holds."""
    client = app.state.cache.client
    keys = [k async for k in client.scan_iter(match=f"{PREFIX}*")]
    assert len(keys) == 2  # the payment and its idempotency key
    await client.delete(*keys)


async def void_payments(app: FastAPI) -> None:
    """Every charge the gateway holds is voided there."""
    client = app.state.cache.client
    async for key in client.scan_iter(match=f"{PREFIX}pay:*"):
        await client.hset(key, "status", "voided")


@pytest.mark.parametrize(
    ("gateway_change", "detail", "reason"),
    [
        (
            forget_payments,
            "the payment gateway has no record of this order's charge",
            "payment_not_found",
        ),
        (
            void_payments,
            "the payment gateway refused the refund: cannot refund a voided payment",
            "payment_refused",
        ),
    ],
)
async def test_a_cancel_whose_refund_the_gateway_refuses_changes_nothing(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
    gateway_change: Callable[[FastAPI], Awaitable[None]],
    detail: str,
    reason: str,
) -> None:
    sony = catalog["product"]["sony"]
    order = await _paid_order(client, maker, catalog, {sony: 3}, "r-2")
    await gateway_change(app)
    before = await _unchanged(maker, order["id"], sony)
    assert before == ("paid", [(7, 0), (5, 0)], before[2], 2)
    r = await client.post(f"{API}/orders/{order['id']}/cancel", headers=auth("customer"))
    assert r.status_code == 502, r.text
    assert r.json() == {"error": "refund_failed", "detail": detail, "reason": reason}
    assert await _unchanged(maker, order["id"], sony) == before


async def test_cancel_while_the_gateway_is_down_answers_503_and_changes_nothing(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony = catalog["product"]["sony"]
    order = await _paid_order(client, maker, catalog, {sony: 3}, "r-4")
    before = await _unchanged(maker, order["id"], sony)
    app.state.gateway.breaker._open()
    r = await client.post(f"{API}/orders/{order['id']}/cancel", headers=auth("customer"))
    assert r.status_code == 503, r.text
    assert r.json()["error"] == "payment_unavailable"
    assert (r.json()["retry_after"], r.headers["retry-after"]) == (60, "60")
    assert await _unchanged(maker, order["id"], sony) == before
    assert await gateway_payments(app) == [("captured", SONY_X3, Decimal("0"))]


async def test_an_admin_refund_the_gateway_refuses_changes_nothing(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony = catalog["product"]["sony"]
    order = await _paid_order(client, maker, catalog, {sony: 3}, "r-5")  # all from W1
    admin = auth("admin")
    ship = {"warehouse_id": catalog["warehouse"]["W1"], "tracking_number": "TRK-1"}
    r = await client.post(f"{API}/orders/{order['id']}/ship", headers=admin, json=ship)
    assert r.json()["status"] == "shipped"
    r = await client.post(f"{API}/orders/{order['id']}/deliver", headers=admin)
    assert r.json()["status"] == "delivered"
    await forget_payments(app)
    before = await _unchanged(maker, order["id"], sony)
    assert before[0] == "delivered"
    r = await client.post(
        f"{API}/orders/{order['id']}/refund", headers=admin, json={"restock": True}
    )
    assert r.status_code == 502, r.text
    assert r.json()["reason"] == "payment_not_found"
    assert await _unchanged(maker, order["id"], sony) == before
