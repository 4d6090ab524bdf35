"""Expired idempotency keys are deleted; live ones and the orders they answered stay."""

from __future__ import annotations

from typing import Any

from httpx import AsyncClient
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.checkout.tasks import IdempotencyKeyPurger
from emporium.models import Order
from tests.checkout.helpers import body, count, fill_cart
from tests.fixtures import auth

API = "/api/v1"


async def _keys(maker: async_sessionmaker[AsyncSession]) -> list[tuple[str, str]]:
    async with maker() as s:
        rows = await s.execute(text("SELECT key, state FROM idempotency_keys ORDER BY key"))
        return [(r.key, r.state) for r in rows]


async def test_the_purger_deletes_expired_keys_only(
    client: AsyncClient, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    customer, cable = catalog["user"]["customer"], catalog["product"]["cable"]
    for k in ("k-old", "k-new"):
        await fill_cart(maker, customer, {cable: 1})
        headers = {**auth("customer"), "Idempotency-Key": k}
        assert (
            await client.post(f"{API}/checkout", json=body(), headers=headers)
        ).status_code == 201
    async with maker() as s, s.begin():
        await s.execute(
            text(
                "INSERT INTO idempotency_keys (user_id, key, request_hash)"
                " VALUES (:u, 'k-busy', 'h')"
            ),
            {"u": customer},
        )
        await s.execute(
            text(
                "UPDATE idempotency_keys SET expires_at = now() - interval '1 minute'"
                " WHERE key = 'k-old'"
            )
        )
    purger = IdempotencyKeyPurger(maker, batch=1)
    assert await purger.run_once() == 1
    assert await _keys(maker) == [("k-busy", "processing"), ("k-new", "completed")]
    assert await count(maker, Order) == 2
    # Nothing left to delete: nothing changes.
    assert await purger.run_once() == 0
    assert await _keys(maker) == [("k-busy", "processing"), ("k-new", "completed")]
