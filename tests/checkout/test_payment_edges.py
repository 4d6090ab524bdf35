"""Orders the gateway has nothing to charge for, refuses outright, or charges while the
buyer cancels."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.order.service import cancelled_during_payment
from emporium.order.tasks import PaymentReconciler
from emporium.payment.gateway import (
    Card,
    GatewayPayment,
    GatewayUnreachable,
    PaymentError,
    PaymentTransientError,
    PaymentUnavailable,
)
from emporium.payment.resilience import CircuitBreaker, ResilientGateway
from emporium.payment.simulated import SimulatedGateway
from tests.checkout.helpers import (
    DECLINED,
    VISA,
    HeldGateway,
    body,
    cart_state,
    charges,
    fill_cart,
    gateway_payments,
    stock_of,
    use_gateway,
)
from tests.fixtures import auth

API = "/api/v1"


async def _price(maker: async_sessionmaker[AsyncSession], product_id: int, price: str) -> None:
    async with maker() as s, s.begin():
        await s.execute(
            text("UPDATE products SET price = :p WHERE id = :i"),
            {"p": Decimal(price), "i": product_id},
        )


async def _payment(maker: async_sessionmaker[AsyncSession], order_id: int) -> tuple[Any, ...]:
    async with maker() as s:
        row = await s.execute(
            text("SELECT status, amount, gateway_payment_id FROM payments WHERE order_id = :i"),
            {"i": order_id},
        )
    return tuple(row.one())


async def test_a_free_order_is_paid_without_a_charge_and_cancelled_without_a_refund(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    cable = catalog["product"]["cable"]
    await _price(maker, cable, "0.00")
    await fill_cart(maker, catalog["user"]["customer"], {cable: 2})
    headers = {**auth("customer"), "Idempotency-Key": "free-1"}
    r = await client.post(f"{API}/checkout", json=body(), headers=headers)
    assert r.status_code == 201, r.text
    order = r.json()
    assert (order["status"], order["total"]) == ("paid", "0.00")
    assert order["payment"] == {
        "status": "captured",
        "amount": "0.00",
        "card_last4": "4242",
        "error_code": None,
    }
    assert charges(app) == 0
    assert await gateway_payments(app) == []
    assert await stock_of(maker, cable) == [(48, 0), (50, 0)]
    assert await _payment(maker, order["id"]) == ("captured", Decimal("0.00"), None)

    r = await client.post(f"{API}/orders/{order['id']}/cancel", headers=auth("customer"))
    assert r.status_code == 200, r.text
    assert (r.json()["status"], r.json()["payment"]["status"]) == ("cancelled", "voided")
    assert await stock_of(maker, cable) == [(50, 0), (50, 0)]
    assert await gateway_payments(app) == []


class _Refusing(SimulatedGateway):
    """A gateway that refuses every charge as a malformed request."""

    async def charge(
        self, *, idempotency_key: str, amount: Decimal, currency: str, card: Card
    ) -> GatewayPayment:
        raise PaymentError("currency must be a 3-letter ISO code")


async def test_a_charge_the_gateway_refuses_outright_fails_the_payment_with_402(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    refusing = ResilientGateway(_Refusing(), CircuitBreaker(timeout=5, volume=100))
    use_gateway(app, refusing)
    cable = catalog["product"]["cable"]
    user = catalog["user"]["customer"]
    await fill_cart(maker, user, {cable: 2})
    headers = {**auth("customer"), "Idempotency-Key": "refused-1"}
    r = await client.post(f"{API}/checkout", json=body(), headers=headers)
    assert r.status_code == 402, r.text
    assert (r.json()["error"], r.json()["decline_code"]) == ("payment_declined", "processing_error")
    assert r.json()["order"]["status"] == "payment_failed"
    # The held units went back to the cart, to try again.
    assert await stock_of(maker, cable) == [(50, 2), (50, 0)]
    assert await cart_state(maker, user) == {"lines": {cable: 2}, "reserved": {cable: 2}}
    again = await client.post(f"{API}/checkout", json=body(), headers=headers)
    assert (again.status_code, again.content) == (402, r.content)
    await refusing.aclose()


async def _pending_order(maker: async_sessionmaker[AsyncSession]) -> int:
    async with maker() as s:
        found = await s.scalar(text("SELECT id FROM orders WHERE status = 'pending_payment'"))
    assert found is not None
    return int(found)


@pytest.mark.parametrize(
    ("card", "payment", "gateway_after"),
    [
        (VISA, ("refunded", "4242"), [("refunded", Decimal("25.98"), Decimal("25.98"))]),
        (DECLINED, ("voided", "0002"), [("declined", Decimal("25.98"), Decimal("0"))]),
    ],
)
async def test_an_order_cancelled_while_its_card_is_charged_answers_409_for_good(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
    card: dict[str, str],
    payment: tuple[str, str],
    gateway_after: list[tuple[Any, ...]],
) -> None:
    held = HeldGateway(app.state.checkout.gateway)
    use_gateway(app, held)
    cable = catalog["product"]["cable"]
    user = catalog["user"]["customer"]
    await fill_cart(maker, user, {cable: 2})
    headers = {**auth("customer"), "Idempotency-Key": "during-1"}
    checkout = asyncio.create_task(client.post(f"{API}/checkout", json=body(card), headers=headers))
    await held.charging.wait()
    oid = await _pending_order(maker)
    r = await client.post(f"{API}/orders/{oid}/cancel", headers=auth("customer"))
    assert (r.status_code, r.json()["status"]) == (200, "cancelled")
    held.release.set()
    r = await checkout
    assert r.status_code == 409, r.text
    assert r.json() == {
        "error": "order_cancelled",
        "detail": "the order was cancelled during payment",
        "order_id": oid,
    }
    assert (await client.post(f"{API}/checkout", json=body(card), headers=headers)).content == (
        r.content
    )
    r = await client.get(f"{API}/orders/{oid}", headers=auth("customer"))
    assert r.json()["status"] == "cancelled"
    assert (r.json()["payment"]["status"], r.json()["payment"]["card_last4"]) == payment
    assert await gateway_payments(app) == gateway_after
    assert await stock_of(maker, cable) == [(50, 0), (50, 0)]
    assert await cart_state(maker, user) == {"lines": {}, "reserved": {}}


class _Silent:
    """A gateway whose charges time out: their outcome is unknown to the checkout."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def charge(self, **kwargs: Any) -> Any:
        raise PaymentUnavailable("timed out")


async def _unknown_outcome(
    app: FastAPI, client: AsyncClient, catalog: dict[str, Any], maker: Any, key: str
) -> int:
    """A checkout whose charge timed out; its order is left pending_payment."""
    gateway = app.state.checkout.gateway
    use_gateway(app, _Silent(gateway))
    await fill_cart(maker, catalog["user"]["customer"], {catalog["product"]["cable"]: 2})
    headers = {**auth("customer"), "Idempotency-Key": key}
    r = await client.post(f"{API}/checkout", json=body(), headers=headers)
    assert (r.status_code, r.json()["error"]) == (503, "payment_unavailable")
    use_gateway(app, gateway)
    return int(r.json()["order_id"])


async def _land_late_charge(app: FastAPI, order_id: int) -> None:
    """The timed-out request reaches the gateway after all."""
    card = Card(number=VISA["card_number"], exp=VISA["exp"], cvc=VISA["cvc"])
    await app.state.gateway.charge(
        idempotency_key=f"order-{order_id}", amount=Decimal("25.98"), currency="USD", card=card
    )


async def _payment_status(client: AsyncClient, order_id: int) -> tuple[str, str]:
    r = await client.get(f"{API}/orders/{order_id}", headers=auth("customer"))
    return r.json()["status"], r.json()["payment"]["status"]


async def test_a_charge_landing_after_the_buyer_cancelled_is_refunded(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    oid = await _unknown_outcome(app, client, catalog, maker, "late-1")
    r = await client.post(f"{API}/orders/{oid}/cancel", headers=auth("customer"))
    assert (r.status_code, r.json()["payment"]["status"]) == (200, "void_pending")
    assert await stock_of(maker, catalog["product"]["cable"]) == [(50, 0), (50, 0)]
    # The checkout's key has its final answer: replays are not told to wait.
    headers = {**auth("customer"), "Idempotency-Key": "late-1"}
    r = await client.post(f"{API}/checkout", json=body(), headers=headers)
    assert (r.status_code, r.json()) == (409, cancelled_during_payment(oid))

    reconciler = PaymentReconciler(maker, app.state.gateway, stale_after=timedelta(0))
    assert await reconciler.run_once() == {}  # nothing at the gateway yet: still watched
    assert await _payment_status(client, oid) == ("cancelled", "void_pending")
    await _land_late_charge(app, oid)
    assert await gateway_payments(app) == [("captured", Decimal("25.98"), Decimal("0"))]
    assert await reconciler.run_once() == {"void:refunded": 1}
    assert await reconciler.run_once() == {}
    assert await gateway_payments(app) == [("refunded", Decimal("25.98"), Decimal("25.98"))]
    assert await _payment_status(client, oid) == ("cancelled", "refunded")


async def test_a_charge_landing_after_the_reconciler_cancelled_is_refunded(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    oid = await _unknown_outcome(app, client, catalog, maker, "late-2")
    reconciler = PaymentReconciler(maker, app.state.gateway, stale_after=timedelta(0))
    assert await reconciler.run_once() == {"cancelled": 1}  # no charge found, for now
    assert await _payment_status(client, oid) == ("cancelled", "void_pending")
    await _land_late_charge(app, oid)
    assert await reconciler.run_once() == {"void:refunded": 1}
    assert await gateway_payments(app) == [("refunded", Decimal("25.98"), Decimal("25.98"))]
    assert await _payment_status(client, oid) == ("cancelled", "refunded")


async def test_a_watched_payment_with_no_charge_is_void_after_the_horizon(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    oid = await _unknown_outcome(app, client, catalog, maker, "late-3")
    r = await client.post(f"{API}/orders/{oid}/cancel", headers=auth("customer"))
    assert r.json()["payment"]["status"] == "void_pending"
    watching = PaymentReconciler(maker, app.state.gateway, stale_after=timedelta(0))
    assert await watching.run_once() == {}
    done = PaymentReconciler(
        maker, app.state.gateway, stale_after=timedelta(0), void_horizon=timedelta(0)
    )
    assert await done.run_once() == {"void:voided": 1}
    assert await done.run_once() == {}
    assert await _payment_status(client, oid) == ("cancelled", "voided")
    assert await gateway_payments(app) == []


class _Unreachable(SimulatedGateway):
    """A gateway whose connections fail before a request is sent; the first ``then``
    charges time out instead (the request may have got there)."""

    def __init__(self, timeouts: int = 0) -> None:
        super().__init__()
        self.timeouts = timeouts
        self.calls = 0

    async def charge(
        self, *, idempotency_key: str, amount: Decimal, currency: str, card: Card
    ) -> GatewayPayment:
        self.calls += 1
        if self.calls <= self.timeouts:
            raise PaymentTransientError("gateway timed out")
        raise GatewayUnreachable("connection refused")


async def test_a_gateway_never_reached_leaves_the_cart_as_it_was_and_the_key_free(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    gateway = app.state.checkout.gateway
    down = _Unreachable()
    use_gateway(app, ResilientGateway(down, CircuitBreaker(timeout=5, volume=100), backoff_base=0))
    cable = catalog["product"]["cable"]
    user = catalog["user"]["customer"]
    await fill_cart(maker, user, {cable: 2})
    before = (await cart_state(maker, user), await stock_of(maker, cable))
    headers = {**auth("customer"), "Idempotency-Key": "down-1"}
    r = await client.post(f"{API}/checkout", json=body(), headers=headers)
    assert r.status_code == 503, r.text
    assert r.json() == {
        "error": "payment_unavailable",
        "detail": "the payment service could not be reached; nothing was charged and the"
        " cart is as it was",
    }
    assert down.calls == 3
    assert (await cart_state(maker, user), await stock_of(maker, cable)) == before
    # The same key, once the gateway is back, places and pays the order.
    use_gateway(app, gateway)
    r = await client.post(f"{API}/checkout", json=body(), headers=headers)
    assert (r.status_code, r.json()["status"]) == (201, "paid")
    assert await stock_of(maker, cable) == [(48, 0), (50, 0)]
    r = await client.get(f"{API}/orders", headers=auth("customer"))
    assert [o["status"] for o in r.json()["items"]] == ["paid", "payment_failed"]


async def test_a_charge_that_may_have_got_there_stays_for_the_reconciler(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    down = _Unreachable(timeouts=1)  # a timeout, then refused connections
    use_gateway(app, ResilientGateway(down, CircuitBreaker(timeout=5, volume=100), backoff_base=0))
    cable = catalog["product"]["cable"]
    await fill_cart(maker, catalog["user"]["customer"], {cable: 2})
    headers = {**auth("customer"), "Idempotency-Key": "maybe-1"}
    r = await client.post(f"{API}/checkout", json=body(), headers=headers)
    assert (r.status_code, r.json()["error"]) == (503, "payment_unavailable")
    assert r.json()["detail"] == "the payment service did not answer; the order is settled shortly"
    assert down.calls == 3
    assert await stock_of(maker, cable) == [(50, 2), (50, 0)]  # held by the pending order
    assert await _payment_status(client, r.json()["order_id"]) == ("pending_payment", "pending")
