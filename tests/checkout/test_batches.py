"""Checkouts arriving together are placed, and marked paid, by shared statements."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from prometheus_client import REGISTRY
from sqlalchemy import func, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.checkout.service import CheckoutService
from emporium.kit.db import transaction
from emporium.models import AuditLog, IdempotencyKey, Order, OutboxEvent, Stock, User
from emporium.order.repository import Answer, Capture
from emporium.order.service import CartEmpty, Checkout, cancelled_during_payment, orders
from tests.checkout.helpers import (
    ADDRESS,
    DECLINED,
    VISA,
    add_buyers,
    body,
    cart_state,
    fill_cart,
    stock_of,
    use_gateway,
)
from tests.fixtures import auth

API = "/api/v1"


class Together:
    """A gateway whose charges all return at once, when ``parties`` have been made."""

    def __init__(self, inner: Any, parties: int) -> None:
        self.inner = inner
        self.barrier = asyncio.Barrier(parties)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def charge(self, **kwargs: Any) -> Any:
        captured = await self.inner.charge(**kwargs)
        await self.barrier.wait()
        return captured


def batches(statement: str) -> tuple[float, float]:
    labels = {"statement": statement}
    count = REGISTRY.get_sample_value("checkout_batch_orders_count", labels) or 0.0
    total = REGISTRY.get_sample_value("checkout_batch_orders_sum", labels) or 0.0
    return count, total


async def user(maker: async_sessionmaker[AsyncSession], email: str) -> User:
    async with maker() as s:
        found = await s.scalar(select(User).where(User.email == email))
        assert found is not None
        return found


async def place(service: CheckoutService, buyer: User, key: str) -> int:
    placement = await service.batches.place_one(checkout(buyer, key))
    assert placement.placed is not None
    return placement.placed[0].id


def capture(order_id: int, buyer: User, key: str) -> Capture:
    answer = Answer(buyer.id, key, 201, {"id": order_id, "status": "paid"})
    at = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
    return Capture(order_id, f"pay_{order_id}", buyer, at, answer, f"cid-{key}", "10.0.0.1")


async def test_one_statement_pays_several_orders_and_skips_one_not_pending(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    service: CheckoutService = app.state.checkout
    sony, cable = catalog["product"]["sony"], catalog["product"]["cable"]
    buyer = await user(maker, "customer@example.com")
    await fill_cart(maker, buyer.id, {sony: 1})
    first = await place(service, buyer, "b-1")
    await fill_cart(maker, buyer.id, {sony: 2, cable: 1})
    second = await place(service, buyer, "b-2")
    await fill_cart(maker, buyer.id, {cable: 3})
    third = await place(service, buyer, "b-3")
    r = await client.post(f"{API}/orders/{third}/cancel", headers=auth("customer"))
    assert r.status_code == 200, r.text
    # Both sony orders hold units of the same stock row: they leave it together.
    assert await stock_of(maker, sony) == [(10, 3), (5, 0)]
    assert await stock_of(maker, cable) == [(50, 1), (50, 0)]

    async with transaction(service.pool, single=True) as db:
        paid = await orders.pay_many(
            db,
            [
                capture(second, buyer, "b-2"),
                capture(third, buyer, "b-3"),
                capture(first, buyer, "b-1"),
            ],
        )

    assert [(o.id, o.status) if o else None for o in paid] == [
        (second, "paid"),
        None,
        (first, "paid"),
    ]
    assert await stock_of(maker, sony) == [(7, 0), (5, 0)]
    assert await stock_of(maker, cable) == [(49, 0), (50, 0)]
    async with maker() as s:
        statuses = dict((await s.execute(select(Order.id, Order.status))).all())
        assert statuses == {first: "paid", second: "paid", third: "cancelled"}
        audit = (
            await s.execute(
                select(
                    AuditLog.correlation_id,
                    AuditLog.action,
                    AuditLog.entity_id,
                    AuditLog.new_values,
                    AuditLog.ip,
                )
                .where(AuditLog.correlation_id.like("cid-%"))
                .order_by(AuditLog.id)
            )
        ).all()
        assert [(c, a, e, v, str(ip)) for c, a, e, v, ip in audit] == [
            (
                "cid-b-1",
                "payment.completed",
                str(first),
                {"amount": "349.99", "gateway_payment_id": f"pay_{first}"},
                "10.0.0.1",
            ),
            (
                "cid-b-1",
                "inventory.adjusted",
                str(sony),
                {"warehouse_id": catalog["warehouse"]["W1"], "quantity": -1},
                "10.0.0.1",
            ),
            (
                "cid-b-2",
                "payment.completed",
                str(second),
                {"amount": "712.97", "gateway_payment_id": f"pay_{second}"},
                "10.0.0.1",
            ),
            (
                "cid-b-2",
                "inventory.adjusted",
                str(sony),
                {"warehouse_id": catalog["warehouse"]["W1"], "quantity": -2},
                "10.0.0.1",
            ),
            (
                "cid-b-2",
                "inventory.adjusted",
                str(cable),
                {"warehouse_id": catalog["warehouse"]["W1"], "quantity": -1},
                "10.0.0.1",
            ),
        ]
        events = (
            (
                await s.execute(
                    select(OutboxEvent.aggregate_id)
                    .where(OutboxEvent.topic == "order.paid")
                    .order_by(OutboxEvent.id)
                )
            )
            .scalars()
            .all()
        )
        assert events == [str(first), str(second)]
        keys = dict((await s.execute(select(IdempotencyKey.key, IdempotencyKey.state))).all())
        # The cancel gave the third checkout its final answer; paying it changed nothing.
        assert keys == {"b-1": "completed", "b-2": "completed", "b-3": "completed"}
        answers = (
            await s.execute(
                select(
                    IdempotencyKey.key,
                    IdempotencyKey.response_status,
                    IdempotencyKey.response_body,
                    IdempotencyKey.order_id,
                )
                .where(IdempotencyKey.state == "completed")
                .order_by(IdempotencyKey.key)
            )
        ).all()
        assert answers == [
            ("b-1", 201, {"id": first, "status": "paid"}, first),
            ("b-2", 201, {"id": second, "status": "paid"}, second),
            ("b-3", 409, cancelled_during_payment(third), third),
        ]
        timeline = (
            await s.execute(
                text(
                    "SELECT order_id, status, created_at FROM order_events "
                    "WHERE status = 'paid' ORDER BY order_id"
                )
            )
        ).all()
        at = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)
        assert timeline == [(first, "paid", at), (second, "paid", at)]


async def test_payments_ready_together_ride_one_statement(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    use_gateway(app, Together(app.state.checkout.gateway, 4), pay_calls=1)
    sony = catalog["product"]["sony"]
    tokens = await add_buyers(maker, 3)
    for email in tokens:
        await fill_cart(maker, (await user(maker, email)).id, {sony: 1})
    assert await stock_of(maker, sony) == [(10, 4), (5, 0)]
    before = batches("pay")

    responses = await asyncio.gather(
        *(
            client.post(
                f"{API}/checkout",
                json=body(),
                headers={"Authorization": f"Bearer {token}", "Idempotency-Key": "together"},
            )
            for token in tokens.values()
        )
    )

    assert [(r.status_code, r.json()["status"]) for r in responses] == [(201, "paid")] * 4
    # The first to arrive goes alone; the three queued behind it share the next statement.
    count, total = batches("pay")
    assert (count - before[0], total - before[1]) == (2, 4)
    assert await stock_of(maker, sony) == [(6, 0), (5, 0)]
    r = await client.get(f"{API}/orders/{responses[0].json()['id']}", headers=auth("customer"))
    assert [t["status"] for t in r.json()["timeline"]] == ["pending_payment", "paid"]


async def test_a_failing_order_does_not_fail_the_others_in_its_statement(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    service: CheckoutService = app.state.checkout
    sony, cable = catalog["product"]["sony"], catalog["product"]["cable"]
    buyer = await user(maker, "customer@example.com")
    await fill_cart(maker, buyer.id, {sony: 1})
    good = await place(service, buyer, "g-1")
    await fill_cart(maker, buyer.id, {cable: 2})
    bad = await place(service, buyer, "g-2")
    # A stock row that no longer shows the order's hold: taking it would break the CHECK.
    async with maker() as s, s.begin():
        await s.execute(update(Stock).where(Stock.product_id == cable).values(reserved=0))

    outcomes = await service.batches._pay_many(
        [capture(good, buyer, "g-1"), capture(bad, buyer, "g-2")]
    )

    assert isinstance(outcomes[0], Order)
    assert (outcomes[0].id, outcomes[0].status) == (good, "paid")
    assert isinstance(outcomes[1], asyncpg.CheckViolationError)
    assert await stock_of(maker, sony) == [(9, 0), (5, 0)]
    assert await stock_of(maker, cable) == [(50, 0), (50, 0)]
    async with maker() as s:
        statuses = dict((await s.execute(select(Order.id, Order.status))).all())
    assert statuses == {good: "paid", bad: "pending_payment"}


def checkout(buyer: User, key: str) -> Checkout:
    return Checkout.now(
        buyer,
        ADDRESS,
        idempotency_key=key,
        request_digest="d" * 64,
        gateway_name="simulated",
        card_last4="4242",
        reservation_ttl=timedelta(minutes=30),
    )


async def test_one_call_places_several_checkouts_refusing_one_and_replaying_one(
    app: FastAPI,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    service: CheckoutService = app.state.checkout
    sony, cable = catalog["product"]["sony"], catalog["product"]["cable"]
    await add_buyers(maker, 2)
    customer = await user(maker, "customer@example.com")
    full, empty = await user(maker, "buyer0@example.com"), await user(maker, "buyer1@example.com")
    await fill_cart(maker, customer.id, {sony: 1})
    await fill_cart(maker, full.id, {cable: 2, sony: 1})

    async with transaction(service.pool, single=True) as db:
        outcomes = await orders.place_many(
            db,
            [
                checkout(full, "p-1"),
                checkout(empty, "p-2"),
                checkout(customer, "p-3"),
                checkout(customer, "p-3"),  # the same key again: already claimed
            ],
        )

    assert outcomes[1] is None  # the empty cart: refused, and alone it says why
    first, third, again = outcomes[0], outcomes[2], outcomes[3]
    assert first is not None
    assert first.placed is not None
    assert third is not None
    assert third.placed is not None
    summary = [
        (order.user_id, order.total, key, [(i.product_id, i.quantity) for i in items])
        for order, key, items in (first.placed, third.placed)
    ]
    assert summary == [
        (
            full.id,
            Decimal("375.97"),
            f"order-{first.placed[0].id}",
            sorted([(sony, 1), (cable, 2)]),
        ),
        (customer.id, Decimal("349.99"), f"order-{third.placed[0].id}", [(sony, 1)]),
    ]
    assert again is not None
    assert again.replay is not None
    assert (again.replay["state"], again.replay["status"]) == ("processing", None)
    # The holds became the orders' allocations: the stock rows are as they were.
    assert await stock_of(maker, sony) == [(10, 2), (5, 0)]
    assert await stock_of(maker, cable) == [(50, 2), (50, 0)]
    async with maker() as s:
        rows = (await s.execute(select(Order.user_id, Order.status).order_by(Order.id))).all()
        # Carts are taken in user order, so two calls never cross.
        assert [tuple(r) for r in rows] == [
            (customer.id, "pending_payment"),
            (full.id, "pending_payment"),
        ]
        keys = (
            await s.execute(
                select(IdempotencyKey.user_id, IdempotencyKey.key).order_by(IdempotencyKey.id)
            )
        ).all()
        assert [tuple(k) for k in keys] == [(customer.id, "p-3"), (full.id, "p-1")]
    with pytest.raises(CartEmpty):
        await service.batches.place_one(checkout(empty, "p-2"))
    async with maker() as s:
        assert await s.scalar(select(func.count()).select_from(IdempotencyKey)) == 2


async def test_checkouts_arriving_together_each_get_their_own_answer_declines_included(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony, cable = catalog["product"]["sony"], catalog["product"]["cable"]
    tokens = await add_buyers(maker, 7)
    emails = list(tokens)
    for n, email in enumerate(emails[:-1]):
        await fill_cart(maker, (await user(maker, email)).id, {sony if n % 2 else cable: 1})
    before = batches("place")

    responses = await asyncio.gather(
        *(
            client.post(
                f"{API}/checkout",
                json=body(DECLINED if n == 2 else VISA),
                headers={"Authorization": f"Bearer {tokens[e]}", "Idempotency-Key": "k"},
            )
            for n, e in enumerate(emails)
        )
    )

    statuses = [r.status_code for r in responses]
    assert statuses == [201, 201, 402, 201, 201, 201, 201, 409]
    assert responses[-1].json()["error"] == "cart_empty"
    assert responses[2].json()["order"]["status"] == "payment_failed"
    orders_items = [r.json()["items"] for r in responses[:2] + responses[3:-1]]
    assert [items[0]["product_id"] for items in orders_items] == [
        cable,
        sony,
        sony,
        cable,
        sony,
        cable,
    ]
    assert batches("place")[1] - before[1] == 8
    assert await stock_of(maker, sony) == [(7, 0), (5, 0)]
    # Most free units first, the cable holds alternated between equal warehouses; the
    # declined buyer's unit is held for its cart again.
    assert await stock_of(maker, cable) == [(48, 0), (49, 1)]
    assert await cart_state(maker, (await user(maker, emails[2])).id) == {
        "lines": {cable: 1},
        "reserved": {cable: 1},
    }
    async with maker() as s:
        statuses_by_order = (await s.execute(select(Order.status).order_by(Order.id))).scalars()
        assert sorted(statuses_by_order) == ["paid"] * 6 + ["payment_failed"]
