"""A charge the gateway answered only with server errors (5xx) is looked up by its key at
once: nothing there gives the cart back, a payment there pays the order."""

from __future__ import annotations

import asyncio
from decimal import Decimal
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.models import Payment
from emporium.payment.gateway import Card, GatewayPayment, GatewayServerError
from emporium.payment.resilience import CircuitBreaker, ResilientGateway
from emporium.payment.simulated import CARD_PROCESSING_ERROR, SimulatedGateway
from tests.checkout.helpers import (
    VISA,
    Order,
    body,
    cart_state,
    charges,
    count,
    fill_cart,
    gateway_payments,
    stock_of,
    use_gateway,
)
from tests.fixtures import auth

API = "/api/v1"
ERRORS = {"card_number": CARD_PROCESSING_ERROR, "exp": "12/30", "cvc": "123"}


async def _gateway_payment_id(maker: async_sessionmaker[AsyncSession]) -> str | None:
    async with maker() as s:
        return await s.scalar(select(Payment.gateway_payment_id))


async def _statuses(client: AsyncClient) -> list[tuple[str, str]]:
    r = await client.get(f"{API}/orders", headers=auth("customer"))
    return [(o["status"], o["payment"]["status"]) for o in r.json()["items"]]


async def test_a_charge_answered_with_5xx_and_not_taken_gives_the_cart_back(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony, cable = catalog["product"]["sony"], catalog["product"]["cable"]
    customer = catalog["user"]["customer"]
    await fill_cart(maker, customer, {sony: 1, cable: 2})
    before = (await cart_state(maker, customer), await stock_of(maker, sony))
    inner = app.state.gateway.inner
    headers = {**auth("customer"), "Idempotency-Key": "5xx-1"}

    r = await client.post(f"{API}/checkout", json=body(ERRORS), headers=headers)
    # Three attempts, each a 5xx, opened the breaker; the look-up went past it.
    assert r.status_code == 503, r.text
    assert r.json() == {
        "error": "payment_unavailable",
        "detail": "the payment service failed; nothing was charged and the cart is as it was",
        "retry_after": 60,
    }
    assert r.headers["retry-after"] == "60"
    assert (inner.calls["charge"], inner.calls["get_by_idempotency_key"]) == (3, 1)
    assert await gateway_payments(app) == []  # the 5xx card records nothing
    assert (await cart_state(maker, customer), await stock_of(maker, sony)) == before
    assert before[0] == {"lines": {sony: 1, cable: 2}, "reserved": {sony: 1, cable: 2}}
    assert await _statuses(client) == [("payment_failed", "failed")]

    # Once the breaker lets a call through, the same key pays with a good card.
    app.state.gateway.breaker._opened_at -= 60
    r = await client.post(f"{API}/checkout", json=body(VISA), headers=headers)
    assert (r.status_code, r.json()["status"], r.json()["total"]) == (201, "paid", "375.97")
    assert await _statuses(client) == [("paid", "captured"), ("payment_failed", "failed")]
    assert charges(app) == 1
    assert await gateway_payments(app) == [("captured", Decimal("375.97"), Decimal("0"))]
    assert await stock_of(maker, sony) == [(9, 0), (5, 0)]
    assert await cart_state(maker, customer) == {"lines": {}, "reserved": {}}


class _TakesThenErrs(SimulatedGateway):
    """Records every charge, then answers it with a 5xx."""

    async def charge(
        self, *, idempotency_key: str, amount: Decimal, currency: str, card: Card
    ) -> GatewayPayment:
        await super().charge(
            idempotency_key=idempotency_key, amount=amount, currency=currency, card=card
        )
        raise GatewayServerError("gateway error 500")


async def test_a_charge_answered_with_5xx_but_taken_pays_the_order(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    inner = _TakesThenErrs()
    use_gateway(app, ResilientGateway(inner, CircuitBreaker(timeout=5, volume=100), backoff_base=0))
    cable, customer = catalog["product"]["cable"], catalog["user"]["customer"]
    await fill_cart(maker, customer, {cable: 2})
    headers = {**auth("customer"), "Idempotency-Key": "5xx-2"}
    r = await client.post(f"{API}/checkout", json=body(), headers=headers)
    assert r.status_code == 201, r.text
    assert (r.json()["status"], r.json()["payment"]["status"]) == ("paid", "captured")
    payment = await inner.ledger.by_key(f"order-{r.json()['id']}")
    assert payment is not None
    assert (payment.id, payment.status.value, payment.amount) == (
        await _gateway_payment_id(maker),
        "captured",
        Decimal("25.98"),
    )
    assert (inner.charges, inner.calls["charge"], inner.calls["get_by_idempotency_key"]) == (
        1,
        3,
        1,
    )
    assert await stock_of(maker, cable) == [(48, 0), (50, 0)]
    assert await cart_state(maker, customer) == {"lines": {}, "reserved": {}}
    again = await client.post(f"{API}/checkout", json=body(), headers=headers)
    assert (again.status_code, again.content) == (201, r.content)
    assert (await count(maker, Order), await count(maker, Payment)) == (1, 1)


class _ErrsAndHangs(SimulatedGateway):
    """Answers every charge with a 5xx, and never answers a look-up."""

    async def charge(self, **kwargs: Any) -> GatewayPayment:
        self.calls["charge"] += 1
        raise GatewayServerError("gateway error 500")

    async def get_by_idempotency_key(self, idempotency_key: str) -> GatewayPayment | None:
        self.calls["get_by_idempotency_key"] += 1
        await asyncio.sleep(60)
        raise AssertionError("unreachable")


async def test_a_look_up_that_fails_leaves_the_order_to_the_reconciler(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    inner = _ErrsAndHangs()
    gateway = ResilientGateway(inner, CircuitBreaker(timeout=5, volume=100), backoff_base=0)
    use_gateway(app, gateway, lookup_seconds=0.05)
    cable, customer = catalog["product"]["cable"], catalog["user"]["customer"]
    await fill_cart(maker, customer, {cable: 2})
    headers = {**auth("customer"), "Idempotency-Key": "5xx-3"}
    r = await client.post(f"{API}/checkout", json=body(), headers=headers)
    assert r.status_code == 503, r.text
    assert r.json() == {
        "error": "payment_unavailable",
        "detail": "the payment service did not answer; the order is settled shortly",
        "order_id": 1,
    }
    assert (inner.calls["charge"], inner.calls["get_by_idempotency_key"]) == (3, 1)
    assert await _statuses(client) == [("pending_payment", "pending")]
    assert await stock_of(maker, cable) == [(50, 2), (50, 0)]  # held by the pending order
    assert await cart_state(maker, customer) == {"lines": {}, "reserved": {}}
    again = await client.post(f"{API}/checkout", json=body(), headers=headers)
    assert (again.status_code, again.json()["error"]) == (409, "idempotency_key_in_progress")
