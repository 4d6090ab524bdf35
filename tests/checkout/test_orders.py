from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from prometheus_client import REGISTRY
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.checkout.service import CheckoutService
from emporium.kit.db import UnitOfWork
from emporium.models import Order, User
from emporium.order.repository import Answer
from emporium.order.service import orders
from emporium.order.tasks import PaymentReconciler
from emporium.payment.gateway import Card
from tests.checkout.helpers import ADDRESS, body, fill_cart, gateway_payments, stock_of, use_gateway
from tests.fixtures import auth

API = "/api/v1"


def _sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


async def _paid_order(
    client: AsyncClient,
    maker: async_sessionmaker[AsyncSession],
    catalog: dict[str, Any],
    lines: dict[int, int],
    k: str,
) -> dict[str, Any]:
    await fill_cart(maker, catalog["user"]["customer"], lines)
    r = await client.post(
        f"{API}/checkout", json=body(), headers={**auth("customer"), "Idempotency-Key": k}
    )
    assert r.status_code == 201, r.text
    return dict(r.json())


async def test_customer_cancels_a_paid_order_and_is_refunded(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony = catalog["product"]["sony"]
    order = await _paid_order(client, maker, catalog, {sony: 3}, "c-1")
    assert await stock_of(maker, sony) == [(7, 0), (5, 0)]
    r = await client.post(f"{API}/orders/{order['id']}/cancel", headers=auth("customer"))
    assert r.status_code == 200, r.text
    assert r.json()["status"] == "cancelled"
    assert [t["status"] for t in r.json()["timeline"]] == ["pending_payment", "paid", "cancelled"]
    assert await stock_of(maker, sony) == [(10, 0), (5, 0)]
    assert await gateway_payments(app) == [("refunded", Decimal("1049.97"), Decimal("1049.97"))]
    r = await client.post(f"{API}/orders/{order['id']}/cancel", headers=auth("customer"))
    assert (r.status_code, r.json()["error"]) == (409, "invalid_transition")


async def test_ship_deliver_refund_with_restock(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    sony, w1, w2 = (
        catalog["product"]["sony"],
        catalog["warehouse"]["W1"],
        catalog["warehouse"]["W2"],
    )
    order = await _paid_order(client, maker, catalog, {sony: 12}, "s-1")  # 10 from W1, 2 from W2
    oid = order["id"]
    r = await client.post(
        f"{API}/orders/{oid}/ship",
        json={"warehouse_id": w1, "tracking_number": "TRK1"},
        headers=auth("globex"),
    )
    # A seller with no item in the order: as if it did not exist.
    assert (r.status_code, r.json()["error"]) == (404, "order_not_found")
    r = await client.post(
        f"{API}/orders/{oid}/ship",
        json={"warehouse_id": w1, "tracking_number": "TRK1"},
        headers=auth("acme"),
    )
    assert r.json()["status"] == "partially_shipped"
    r = await client.post(
        f"{API}/orders/{oid}/ship",
        json={"warehouse_id": w1, "tracking_number": "TRK9"},
        headers=auth("acme"),
    )
    assert (r.status_code, r.json()["error"]) == (409, "nothing_to_ship")
    r = await client.post(
        f"{API}/orders/{oid}/ship",
        json={"warehouse_id": str(w2), "tracking_number": "TRK2"},
        headers=auth("acme"),
    )
    assert (r.status_code, r.json()["error"]) == (422, "invalid_input")
    r = await client.post(
        f"{API}/orders/{oid}/ship",
        json={"warehouse_id": w2, "tracking_number": "   "},
        headers=auth("acme"),
    )
    assert (r.status_code, r.json()["detail"]) == (
        422,
        [
            {
                "field": "tracking_number",
                "message": "String should have at least 1 character",
                "type": "too_short",
            }
        ],
    )
    r = await client.post(f"{API}/orders/{oid}/deliver", headers=auth("admin"))
    assert (r.status_code, r.json()["error"]) == (409, "invalid_transition")
    r = await client.post(
        f"{API}/orders/{oid}/ship",
        json={"warehouse_id": w2, "tracking_number": "TRK2"},
        headers=auth("admin"),
    )
    assert r.json()["status"] == "shipped"
    assert [(s["warehouse_id"], s["tracking_number"]) for s in r.json()["shipments"]] == [
        (w1, "TRK1"),
        (w2, "TRK2"),
    ]
    r = await client.post(f"{API}/orders/{oid}/cancel", headers=auth("customer"))
    assert (r.status_code, r.json()["error"]) == (409, "invalid_transition")
    r = await client.post(f"{API}/orders/{oid}/deliver", headers=auth("acme"))
    assert r.json()["status"] == "delivered"
    r = await client.post(
        f"{API}/orders/{oid}/refund", json={"restock": True}, headers=auth("globex")
    )
    assert (r.status_code, r.json()["error"]) == (404, "order_not_found")
    r = await client.post(
        f"{API}/orders/{oid}/refund", json={"restock": True}, headers=auth("customer")
    )
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    r = await client.post(
        f"{API}/orders/{oid}/refund", json={"restock": "yes"}, headers=auth("acme")
    )
    assert (r.status_code, r.json()["error"]) == (422, "invalid_input")
    assert await stock_of(maker, sony) == [(0, 0), (3, 0)]
    refunds = _sample("refunds_total", status="refunded")
    r = await client.post(
        f"{API}/orders/{oid}/refund", json={"restock": True}, headers=auth("acme")
    )
    assert (r.json()["status"], r.json()["payment"]) == ("refunded", None)  # the buyer's
    assert _sample("refunds_total", status="refunded") == refunds + 1
    assert await stock_of(maker, sony) == [(10, 0), (5, 0)]
    r = await client.get(f"{API}/orders/{oid}", headers=auth("customer"))
    assert r.json()["payment"]["status"] == "refunded"
    assert [t["status"] for t in r.json()["timeline"]] == [
        "pending_payment",
        "paid",
        "partially_shipped",
        "shipped",
        "delivered",
        "refunded",
    ]
    audit = (
        await client.get(
            f"{API}/admin/audit",
            params={"resource_type": "order", "resource_id": str(oid)},
            headers=auth("admin"),
        )
    ).json()
    assert [a["action"] for a in audit] == [
        "order.refunded",
        "order.delivered",
        "order.shipped",
        "order.shipped",
        "payment.completed",
        "order.created",
    ]
    trail = {"resource_type": "order", "resource_id": str(oid), "limit": 4}
    page = (await client.get(f"{API}/admin/audit", params=trail, headers=auth("admin"))).json()
    assert [a["id"] for a in page] == [a["id"] for a in audit[:4]]
    after = {**trail, "before_id": page[-1]["id"]}
    page = (await client.get(f"{API}/admin/audit", params=after, headers=auth("admin"))).json()
    assert [a["action"] for a in page] == ["payment.completed", "order.created"]
    acme = (await client.get(f"{API}/auth/me", headers=auth("acme"))).json()["id"]
    by_acme = {"actor_id": acme, "resource_type": "order"}
    page = (await client.get(f"{API}/admin/audit", params=by_acme, headers=auth("admin"))).json()
    assert [(a["action"], a["entity_id"]) for a in page] == [
        ("order.refunded", str(oid)),
        ("order.delivered", str(oid)),
        ("order.shipped", str(oid)),
    ]
    assert (await client.get(f"{API}/admin/audit", headers=auth("customer"))).status_code == 403


async def test_shipments_and_delivery_are_audited(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    sony, w1, w2 = (
        catalog["product"]["sony"],
        catalog["warehouse"]["W1"],
        catalog["warehouse"]["W2"],
    )
    order = await _paid_order(client, maker, catalog, {sony: 12}, "a-1")  # 10 from W1, 2 from W2
    oid = order["id"]
    trail = {"resource_type": "order", "resource_id": str(oid)}
    before = (await client.get(f"{API}/admin/audit", params=trail, headers=auth("admin"))).json()
    steps = [
        ("acme", "ship", {"warehouse_id": w1, "tracking_number": "TRK1"}),
        ("admin", "ship", {"warehouse_id": w2, "tracking_number": "TRK2"}),
        ("acme", "deliver", None),
    ]
    for n, (who, step, payload) in enumerate(steps):
        headers = {**auth(who), "X-Correlation-ID": f"cid-{n}"}
        r = await client.post(f"{API}/orders/{oid}/{step}", json=payload, headers=headers)
        assert r.status_code == 200, r.text
    audit = (await client.get(f"{API}/admin/audit", params=trail, headers=auth("admin"))).json()
    assert audit[3:] == before
    user = catalog["user"]
    assert [
        (
            a["action"],
            a["actor_user_id"],
            a["entity_type"],
            a["entity_id"],
            a["old_values"],
            a["new_values"],
            a["ip"],
            a["correlation_id"],
        )
        for a in reversed(audit[:3])
    ] == [
        (
            "order.shipped",
            user["acme"],
            "order",
            str(oid),
            {"status": "paid"},
            {"status": "partially_shipped", "warehouse_id": w1, "tracking_number": "TRK1"},
            "127.0.0.1",
            "cid-0",
        ),
        (
            "order.shipped",
            user["admin"],
            "order",
            str(oid),
            {"status": "partially_shipped"},
            {"status": "shipped", "warehouse_id": w2, "tracking_number": "TRK2"},
            "127.0.0.1",
            "cid-1",
        ),
        (
            "order.delivered",
            user["acme"],
            "order",
            str(oid),
            {"status": "shipped"},
            {"status": "delivered"},
            "127.0.0.1",
            "cid-2",
        ),
    ]


async def _pending_order(
    app: FastAPI,
    maker: async_sessionmaker[AsyncSession],
    catalog: dict[str, Any],
    lines: dict[int, int],
) -> tuple[int, str]:
    await fill_cart(maker, catalog["user"]["customer"], lines)
    async with UnitOfWork(maker) as s:
        user = await s.get(User, catalog["user"]["customer"])
        assert user is not None
        order, gateway_key, _ = await orders.create_from_cart(
            s,
            user,
            ADDRESS,
            idempotency_key=None,
            gateway_name="simulated",
            card_last4="4242",
            reservation_ttl=timedelta(minutes=30),
        )
        return order.id, gateway_key


async def test_reconciler_completes_a_charged_order_and_cancels_an_uncharged_one(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony, cable = catalog["product"]["sony"], catalog["product"]["cable"]
    charged, charged_key = await _pending_order(app, maker, catalog, {sony: 1})
    # The process died after the gateway charged the card but before recording it.
    gateway = app.state.gateway
    from decimal import Decimal

    await gateway.authorize(
        idempotency_key=charged_key,
        amount=Decimal("349.99"),
        currency="USD",
        card=Card(number="4242424242424242", exp="12/30", cvc="123"),
    )
    uncharged, _ = await _pending_order(app, maker, catalog, {cable: 2})
    assert await stock_of(maker, cable) == [(50, 2), (50, 0)]

    reconciler = PaymentReconciler(maker, gateway, stale_after=timedelta(0))
    succeeded = _sample("checkout_success_total")
    assert await reconciler.run_once() == {"paid": 1, "cancelled": 1}
    assert await reconciler.run_once() == {}
    assert _sample("checkout_success_total") == succeeded + 1  # the paid one
    statuses = {
        o: (await client.get(f"{API}/orders/{o}", headers=auth("customer"))).json()["status"]
        for o in (charged, uncharged)
    }
    assert statuses == {charged: "paid", uncharged: "cancelled"}
    assert await stock_of(maker, sony) == [(9, 0), (5, 0)]
    assert await stock_of(maker, cable) == [(50, 0), (50, 0)]
    assert gateway.inner.charges == 1


async def test_gateway_silent_mid_checkout_is_settled_and_replayed(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    from emporium.payment.resilience import CircuitBreaker, ResilientGateway
    from emporium.payment.simulated import SimulatedGateway

    slow = ResilientGateway(
        SimulatedGateway(hang_seconds=5),
        CircuitBreaker(timeout=0.2, volume=100),
        attempts=1,
    )
    use_gateway(app, slow)
    cable = catalog["product"]["cable"]
    await fill_cart(maker, catalog["user"]["customer"], {cable: 2})
    headers = {**auth("customer"), "Idempotency-Key": "silent-1"}
    hang = body({"card_number": "4000000000000259", "exp": "12/30", "cvc": "123"})

    r = await client.post(f"{API}/checkout", json=hang, headers=headers)
    assert (r.status_code, r.json()["error"]) == (503, "payment_unavailable")
    order_id = r.json()["order_id"]
    r = await client.post(f"{API}/checkout", json=hang, headers=headers)
    assert (r.status_code, r.json()["error"]) == (409, "idempotency_key_in_progress")
    assert await stock_of(maker, cable) == [(50, 2), (50, 0)]

    assert await PaymentReconciler(maker, slow, stale_after=timedelta(0)).run_once() == {
        "cancelled": 1
    }
    assert await stock_of(maker, cable) == [(50, 0), (50, 0)]
    await (
        app.state.cache.client.flushdb()
    )  # the fast-path marker would otherwise still say "processing"
    r = await client.post(f"{API}/checkout", json=hang, headers=headers)
    assert r.status_code == 409
    assert r.json() == {
        "error": "payment_not_completed",
        "detail": "the payment did not go through; the order was cancelled",
        "order_id": order_id,
    }
    await slow.aclose()


async def test_paying_waits_for_a_stock_lock_and_keeps_the_other_writers_units(
    app: FastAPI,
    maker: async_sessionmaker[AsyncSession],
    catalog: dict[str, Any],
) -> None:
    """Paying takes its units from the stock rows as they are once locked: a reservation
    committed while it waited is neither lost nor taken twice."""
    cable = catalog["product"]["cable"]
    await execute_sql(maker, f"UPDATE stock SET quantity = 20 WHERE product_id = {cable}")
    await execute_sql(
        maker,
        f"UPDATE stock SET quantity = 0 WHERE product_id = {cable} AND warehouse_id = "
        f"{catalog['warehouse']['W2']}",
    )
    order_id, _ = await _pending_order(app, maker, catalog, {cable: 3})
    assert await stock_of(maker, cable) == [(20, 3), (0, 0)]
    async with maker() as other, maker() as payer:
        # Another buyer's reservation holds the stock row while the order is being paid.
        await other.execute(
            text(
                "UPDATE stock SET reserved = reserved + 5 WHERE product_id = :p AND quantity = 20"
            ),
            {"p": cable},
        )
        paying = asyncio.create_task(orders.mark_paid(payer, order_id, "ch_wait", None))
        await asyncio.sleep(0.3)
        assert not paying.done()
        await other.commit()
        paid = await paying
        await payer.commit()
    assert paid.status == "paid"
    # 3 units left with the order; the other buyer's 5 stay reserved.
    assert await stock_of(maker, cable) == [(17, 5), (0, 0)]


async def execute_sql(maker: async_sessionmaker[AsyncSession], sql: str) -> None:
    async with maker() as s, s.begin():
        await s.execute(text(sql))


async def test_a_payment_caught_in_a_deadlock_is_run_again(
    app: FastAPI, maker: async_sessionmaker[AsyncSession], catalog: dict[str, Any]
) -> None:
    """Another writer takes the stock rows in the opposite order: PostgreSQL breaks the
    deadlock by rolling the payment back, and the checkout runs it again."""
    sony, iphone = catalog["product"]["sony"], catalog["product"]["iphone"]
    order_id, _ = await _pending_order(app, maker, catalog, {sony: 1, iphone: 1})
    # Which stock rows the order holds units on: the payment takes them in this order.
    async with maker() as s:
        rows = (
            await s.execute(
                text(
                    "SELECT product_id, warehouse_id FROM order_allocations"
                    " WHERE order_id = :o ORDER BY product_id, warehouse_id"
                ),
                {"o": order_id},
            )
        ).all()
    (first, second) = [tuple(r) for r in rows]
    before = {p: await stock_of(maker, p) for p in (sony, iphone)}
    service: CheckoutService = app.state.checkout
    async with maker() as s:
        user = await s.get(User, catalog["user"]["customer"])
        order = await s.get(Order, order_id)
    assert user is not None
    assert order is not None
    order.paid_at = datetime.now(UTC)
    bump = "UPDATE stock SET quantity = quantity + 1 WHERE product_id = :p AND warehouse_id = :w"
    async with maker() as other:
        await other.execute(text(bump), {"p": second[0], "w": second[1]})
        paying = asyncio.create_task(
            service.mark_paid(order, "ch_deadlock", user, Answer(user.id, "none", 201, {}))
        )
        await asyncio.sleep(0.3)  # the payment holds the first row and waits for the second
        await other.execute(text(bump), {"p": first[0], "w": first[1]})  # the cycle
        await other.commit()
    await paying
    async with maker() as s:
        status = await s.scalar(text("SELECT status FROM orders WHERE id = :o"), {"o": order_id})
    assert status == "paid"
    # Each row: one unit more from the other writer, one unit sold (quantity and reserved).
    for p in (sony, iphone):
        after = await stock_of(maker, p)
        assert sum(q for q, _ in after) == sum(q for q, _ in before[p])  # +1 bumped, -1 sold
        assert sum(r for _, r in after) == sum(r for _, r in before[p]) - 1
