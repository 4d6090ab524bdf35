"""Checkout bodies are compared by keyed fingerprints: nothing stored reveals the card."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from typing import Any

from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.checkout.idempotency import request_hash
from emporium.checkout.schemas import CheckoutRequest
from emporium.config import Settings
from emporium.models import Order
from tests.checkout.helpers import (
    VISA,
    body,
    cart_state,
    charges,
    count,
    fill_cart,
    key,
    stock_of,
)

API = "/api/v1"


async def stored_fingerprint(maker: async_sessionmaker[AsyncSession], k: str) -> str:
    async with maker() as s:
        value = await s.scalar(
            text("SELECT request_hash FROM idempotency_keys WHERE key = :k"), {"k": k}
        )
    return str(value)


async def test_the_stored_fingerprint_is_keyed_and_leaves_out_the_cvc(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
    settings: Settings,
) -> None:
    await fill_cart(maker, catalog["user"]["customer"], {catalog["product"]["cable"]: 1})
    r = await client.post(f"{API}/checkout", json=body(), headers=key("k-fp"))
    assert r.status_code == 201, r.text

    stored = await stored_fingerprint(maker, "k-fp")
    payload = CheckoutRequest.model_validate(body()).model_dump(mode="json")
    secret = (settings.data_dir / "secret_key").read_text().strip().encode()
    assert len(secret) == 64
    no_cvc = {**payload, "payment": {"card_number": VISA["card_number"], "exp": VISA["exp"]}}
    canonical = json.dumps(no_cvc, sort_keys=True, separators=(",", ":")).encode()
    mac = hmac.digest(secret, canonical, "sha256")
    assert stored == "hmac:" + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()
    assert len(stored) == 48
    # Under another key the same body has another fingerprint: the stored one cannot be
    # recomputed, and so not searched, without the server's key.
    assert request_hash(payload, b"k" * 64) != stored
    full = json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()
    assert hashlib.sha256(full).hexdigest() not in stored


async def test_a_replay_with_another_cvc_is_the_same_purchase(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    cable = catalog["product"]["cable"]
    await fill_cart(maker, catalog["user"]["customer"], {cable: 1})
    first = await client.post(f"{API}/checkout", json=body(), headers=key("k-cvc"))
    assert first.status_code == 201
    again = await client.post(
        f"{API}/checkout", json=body({**VISA, "cvc": "999"}), headers=key("k-cvc")
    )
    assert (again.status_code, again.content) == (201, first.content)
    assert await count(maker, Order) == 1
    assert charges(app) == 1


async def test_a_replay_with_another_card_is_422_and_changes_nothing(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    cable = catalog["product"]["cable"]
    customer = catalog["user"]["customer"]
    await fill_cart(maker, customer, {cable: 1})
    first = await client.post(f"{API}/checkout", json=body(), headers=key("k-card"))
    assert first.status_code == 201
    stock = await stock_of(maker, cable)
    fingerprint = await stored_fingerprint(maker, "k-card")
    other = {"card_number": "5555555555554444", "exp": "12/30", "cvc": "123"}
    r = await client.post(f"{API}/checkout", json=body(other), headers=key("k-card"))
    assert (r.status_code, r.json()["error"]) == (422, "idempotency_key_reused")
    assert await count(maker, Order) == 1
    assert charges(app) == 1
    assert await stock_of(maker, cable) == stock
    assert await stored_fingerprint(maker, "k-card") == fingerprint
    assert await cart_state(maker, customer) == {"lines": {}, "reserved": {}}


async def test_a_key_stored_before_fingerprints_were_keyed_answers_as_stored(
    app: FastAPI,
    client: AsyncClient,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
) -> None:
    cable = catalog["product"]["cable"]
    customer = catalog["user"]["customer"]
    await fill_cart(maker, customer, {cable: 2})
    answer = {"id": 991, "status": "paid"}
    async with maker() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO idempotency_keys"
                " (user_id, key, request_hash, state, response_status, response_body)"
                " VALUES (:u, 'k-legacy', 'legacy', 'completed', 201, :b)"
            ),
            {"u": customer, "b": json.dumps(answer)},
        )
    other = {"card_number": "5555555555554444", "exp": "11/31", "cvc": "321"}
    r = await client.post(f"{API}/checkout", json=body(other), headers=key("k-legacy"))
    assert (r.status_code, r.json()) == (201, answer)
    assert await count(maker, Order) == 0
    assert charges(app) == 0
    assert await cart_state(maker, customer) == {"lines": {cable: 2}, "reserved": {cable: 2}}
