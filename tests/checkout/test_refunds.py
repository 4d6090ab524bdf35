"""Refunds through the built-in gateway, whichever server process took the payment."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import timedelta
from decimal import Decimal
from typing import Any
from unittest.mock import ANY

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.config import Settings
from emporium.main import create_app
from emporium.models import AuditLog, OrderEvent
from emporium.order.tasks import PaymentReconciler
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


async def _payment_row(maker: async_sessionmaker[AsyncSession], order_id: int) -> tuple[Any, ...]:
    async with maker() as s:
        row = (
            await s.execute(
                text("SELECT status, error_code FROM payments WHERE order_id = :i"),
                {"i": order_id},
            )
        ).one()
    return tuple(row)


async def _trail(maker: async_sessionmaker[AsyncSession], order_id: int) -> list[tuple[Any, ...]]:
    """The order's audit rows about its payment: action, old and new values."""
    async with maker() as s:
        rows = await s.execute(
            text(
                "SELECT action, old_values, new_values FROM audit_logs"
                " WHERE entity_type = 'order' AND entity_id = :i AND action LIKE 'payment.%'"
                " ORDER BY id"
            ),
            {"i": str(order_id)},
        )
    return [tuple(r) for r in rows.all()]


@pytest.mark.parametrize(
    ("gateway_change", "reason", "gateway_after"),
    [
        (forget_payments, "payment_not_found", []),
        (void_payments, "payment_refused", [("voided", SONY_X3, Decimal("0"))]),
    ],
)
async def test_a_cancel_whose_refund_the_gateway_refuses_is_left_for_an_operator(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
    gateway_change: Callable[[FastAPI], Awaitable[None]],
    reason: str,
    gateway_after: list[tuple[Any, ...]],
) -> None:
    sony = catalog["product"]["sony"]
    order = await _paid_order(client, maker, catalog, {sony: 3}, "r-2")
    await gateway_change(app)
    r = await client.post(f"{API}/orders/{order['id']}/cancel", headers=auth("customer"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert r.json()["payment"] == {
        "status": "refund_failed",
        "amount": "1049.97",
        "card_last4": "4242",
        "error_code": reason,
    }
    assert await stock_of(maker, sony) == [(10, 0), (5, 0)]
    assert await _payment_row(maker, order["id"]) == ("refund_failed", reason)
    assert await _trail(maker, order["id"]) == [
        ("payment.completed", None, {"amount": "1049.97", "gateway_payment_id": ANY}),
        (
            "payment.refund_failed",
            {"status": "refund_pending"},
            {"status": "refund_failed", "amount": "1049.97", "reason": reason},
        ),
    ]
    assert await gateway_payments(app) == gateway_after


async def test_cancel_while_the_gateway_is_down_refunds_once_it_is_back(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony = catalog["product"]["sony"]
    order = await _paid_order(client, maker, catalog, {sony: 3}, "r-4")
    app.state.gateway.breaker._open()
    r = await client.post(f"{API}/orders/{order['id']}/cancel", headers=auth("customer"))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["payment"]["status"]) == ("cancelled", "refund_pending")
    assert await stock_of(maker, sony) == [(10, 0), (5, 0)]
    assert await gateway_payments(app) == [("captured", SONY_X3, Decimal("0"))]
    reconciler = PaymentReconciler(maker, app.state.gateway, stale_after=timedelta(0))
    assert await reconciler.run_once() == {}  # still down: the refund stays owed
    assert await _payment_row(maker, order["id"]) == ("refund_pending", None)
    app.state.gateway.breaker._close()
    assert await reconciler.run_once() == {"refund:refunded": 1}
    assert await reconciler.run_once() == {}
    assert await gateway_payments(app) == [("refunded", SONY_X3, SONY_X3)]
    assert await _payment_row(maker, order["id"]) == ("refunded", None)
    assert [action for action, _, _ in await _trail(maker, order["id"])] == [
        "payment.completed",
        "payment.refunded",
    ]
    r = await client.get(f"{API}/orders/{order['id']}", headers=auth("customer"))
    assert r.json()["payment"]["status"] == "refunded"


async def test_a_cancel_and_a_shipment_racing_never_both_win(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    """Whichever takes the order first wins; the other changes nothing, and money goes
    back only for an order that ends cancelled."""
    sony = catalog["product"]["sony"]
    ship = {"warehouse_id": catalog["warehouse"]["W1"], "tracking_number": "TRK-R"}
    outcomes = set()
    for n in range(8):
        order = await _paid_order(client, maker, catalog, {sony: 1}, f"race-{n}")
        oid = order["id"]
        cancel, shipped = await asyncio.gather(
            client.post(f"{API}/orders/{oid}/cancel", headers=auth("customer")),
            client.post(f"{API}/orders/{oid}/ship", headers=auth("admin"), json=ship),
        )
        r = await client.get(f"{API}/orders/{oid}", headers=auth("customer"))
        status, payment = r.json()["status"], r.json()["payment"]["status"]
        if status == "cancelled":
            assert (cancel.status_code, shipped.status_code) == (200, 409)
            assert payment == "refunded"
        else:
            assert (status, cancel.status_code, shipped.status_code) == ("shipped", 409, 200)
            assert payment == "captured"
        outcomes.add(status)
    held = await gateway_payments(app)
    assert len(held) == 8
    assert sum(1 for status, _, _ in held if status == "refunded") == await _count_status(
        maker, "cancelled"
    )
    assert outcomes <= {"cancelled", "shipped"}


async def _count_status(maker: async_sessionmaker[AsyncSession], status: str) -> int:
    async with maker() as s:
        n = await s.scalar(text("SELECT count(*) FROM orders WHERE status = :s"), {"s": status})
    return int(n or 0)


async def test_a_shipped_order_cannot_be_cancelled_and_keeps_its_charge(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony = catalog["product"]["sony"]
    order = await _paid_order(client, maker, catalog, {sony: 3}, "r-6")
    ship = {"warehouse_id": catalog["warehouse"]["W1"], "tracking_number": "TRK-6"}
    r = await client.post(f"{API}/orders/{order['id']}/ship", headers=auth("admin"), json=ship)
    assert r.json()["status"] == "shipped"
    before = await _unchanged(maker, order["id"], sony)
    r = await client.post(f"{API}/orders/{order['id']}/cancel", headers=auth("customer"))
    assert (r.status_code, r.json()["error"]) == (409, "invalid_transition")
    assert await _unchanged(maker, order["id"], sony) == before
    assert await gateway_payments(app) == [("captured", SONY_X3, Decimal("0"))]
    assert await _payment_row(maker, order["id"]) == ("captured", None)


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
