"""Replays of a checkout's Idempotency-Key while the payment breaker is open: the key's
answer recorded in PostgreSQL wins over the fast refusals (503, cart_empty)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.models import Payment
from emporium.order.service import cancelled_during_payment
from emporium.payment.gateway import PaymentUnavailable
from tests.checkout.helpers import (
    Order,
    body,
    cart_state,
    charges,
    count,
    fill_cart,
    key,
    stock_of,
    use_gateway,
)
from tests.fixtures import auth

API = "/api/v1"


def _open_breaker(app: FastAPI) -> None:
    app.state.gateway.breaker._open()


async def _lapse_marker(app: FastAPI, user_id: int, k: str) -> None:
    """The key's Valkey marker expires, as it does a few minutes after a checkout."""
    idem = app.state.checkout.idempotency
    await idem.cache.client.delete(idem._vkey(user_id, k))


async def test_a_paid_checkout_replays_its_201_while_the_breaker_is_open(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    sony, cable = catalog["product"]["sony"], catalog["product"]["cable"]
    customer = catalog["user"]["customer"]
    await fill_cart(maker, customer, {sony: 1})
    first = await client.post(f"{API}/checkout", json=body(), headers=key("paid-1"))
    assert first.status_code == 201, first.text
    _open_breaker(app)

    # The cart is empty now: the replay is not told cart_empty.
    r = await client.post(f"{API}/checkout", json=body(), headers=key("paid-1"))
    assert (r.status_code, r.content) == (201, first.content)
    # Nor, with something in the cart again, to wait for the gateway.
    await fill_cart(maker, customer, {cable: 1})
    r = await client.post(f"{API}/checkout", json=body(), headers=key("paid-1"))
    assert (r.status_code, r.content) == (201, first.content)
    # Nor once the Valkey marker has lapsed.
    await _lapse_marker(app, customer, "paid-1")
    r = await client.post(f"{API}/checkout", json=body(), headers=key("paid-1"))
    assert (r.status_code, r.content) == (201, first.content)
    # Another body under the key is refused as before.
    await _lapse_marker(app, customer, "paid-1")
    other = body()
    other["shipping_address"] = {**other["shipping_address"], "city": "Paris"}
    r = await client.post(f"{API}/checkout", json=other, headers=key("paid-1"))
    assert (r.status_code, r.json()["error"]) == (422, "idempotency_key_reused")
    # A new key still fails fast, leaving the cart as it is.
    r = await client.post(f"{API}/checkout", json=body(), headers=key("paid-2"))
    assert (r.status_code, r.json()["error"]) == (503, "payment_unavailable")

    assert (await count(maker, Order), await count(maker, Payment), charges(app)) == (1, 1, 1)
    assert await stock_of(maker, sony) == [(9, 0), (5, 0)]
    assert await stock_of(maker, cable) == [(50, 1), (50, 0)]
    assert await cart_state(maker, customer) == {"lines": {cable: 1}, "reserved": {cable: 1}}


class _Silent:
    """A gateway whose charges time out: their outcome is unknown to the checkout."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def charge(self, **kwargs: Any) -> Any:
        raise PaymentUnavailable("timed out")


async def _unknown_outcome(app: FastAPI, client: AsyncClient, k: str) -> int:
    """A checkout whose charge timed out; its order is left pending_payment."""
    gateway = app.state.checkout.gateway
    use_gateway(app, _Silent(gateway))
    r = await client.post(f"{API}/checkout", json=body(), headers=key(k))
    assert (r.status_code, r.json()["error"]) == (503, "payment_unavailable")
    use_gateway(app, gateway)
    return int(r.json()["order_id"])


async def test_a_key_whose_payment_is_unsettled_is_in_progress_while_the_breaker_is_open(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    cable, customer = catalog["product"]["cable"], catalog["user"]["customer"]
    await fill_cart(maker, customer, {cable: 2})
    oid = await _unknown_outcome(app, client, "unsettled-1")
    _open_breaker(app)
    for lapsed in (False, True):
        if lapsed:
            await _lapse_marker(app, customer, "unsettled-1")
        r = await client.post(f"{API}/checkout", json=body(), headers=key("unsettled-1"))
        assert (r.status_code, r.json()["error"]) == (409, "idempotency_key_in_progress")
    other = body()
    other["shipping_address"] = {**other["shipping_address"], "city": "Paris"}
    r = await client.post(f"{API}/checkout", json=other, headers=key("unsettled-1"))
    assert (r.status_code, r.json()["error"]) == (422, "idempotency_key_reused")

    assert (await count(maker, Order), charges(app)) == (1, 0)
    r = await client.get(f"{API}/orders/{oid}", headers=auth("customer"))
    assert (r.json()["status"], r.json()["payment"]["status"]) == ("pending_payment", "pending")
    assert await stock_of(maker, cable) == [(50, 2), (50, 0)]
    assert await cart_state(maker, customer) == {"lines": {}, "reserved": {}}


async def test_an_order_cancelled_during_payment_replays_its_409_while_the_breaker_is_open(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    cable, customer = catalog["product"]["cable"], catalog["user"]["customer"]
    await fill_cart(maker, customer, {cable: 2})
    oid = await _unknown_outcome(app, client, "cancelled-1")
    r = await client.post(f"{API}/orders/{oid}/cancel", headers=auth("customer"))
    assert (r.status_code, r.json()["status"]) == (200, "cancelled")
    _open_breaker(app)

    # The Valkey marker is still "processing": PostgreSQL has the answer.
    first = await client.post(f"{API}/checkout", json=body(), headers=key("cancelled-1"))
    assert (first.status_code, first.json()) == (409, cancelled_during_payment(oid))
    await _lapse_marker(app, customer, "cancelled-1")
    r = await client.post(f"{API}/checkout", json=body(), headers=key("cancelled-1"))
    assert (r.status_code, r.content) == (409, first.content)
    app.state.gateway.breaker._close()
    r = await client.post(f"{API}/checkout", json=body(), headers=key("cancelled-1"))
    assert (r.status_code, r.content) == (409, first.content)
    assert (await count(maker, Order), charges(app)) == (1, 0)
    assert await stock_of(maker, cable) == [(50, 0), (50, 0)]
    assert await cart_state(maker, customer) == {"lines": {}, "reserved": {}}
