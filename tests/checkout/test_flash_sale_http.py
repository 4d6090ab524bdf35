"""A flash sale over HTTP: 200 buyers in 4 OS processes, a server of 2 processes, 50 units.

Every buyer adds one unit to the cart and, if that worked, checks out with a good card.
"""

from __future__ import annotations

import asyncio
import hashlib
import multiprocessing
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.config import Settings
from tests.cart import flash_stock, stock_rows
from tests.checkout.helpers import ADDRESS
from tests.server import serve

PROCESSES = 4
BUYERS_PER_PROCESS = 50
CARD = {"card_number": "4242424242424242", "exp": "12/30", "cvc": "123"}


async def _buyers(base: str, tokens: list[str], product_id: int, start_at: float) -> list[str]:
    async def buy(client: httpx.AsyncClient, token: str) -> str:
        headers = {"Authorization": f"Bearer {token}"}
        r = await client.post(
            "/api/v1/cart/items", json={"product_id": product_id, "quantity": 1}, headers=headers
        )
        if r.status_code != 200:
            return f"add {r.status_code} {r.json().get('error')}"
        r = await client.post(
            "/api/v1/checkout",
            json={"shipping_address": ADDRESS, "payment": CARD},
            headers={**headers, "Idempotency-Key": uuid.uuid4().hex},
        )
        return f"checkout {r.status_code}"

    limits = httpx.Limits(max_connections=len(tokens))
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=60) as client:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        return list(await asyncio.gather(*(buy(client, t) for t in tokens)))


def _process(base: str, tokens: list[str], product_id: int, start_at: float) -> list[str]:
    return asyncio.run(_buyers(base, tokens, product_id, start_at))


async def test_flash_sale_over_http_sells_exactly_the_stock(
    settings: Settings,
    catalog: dict[str, Any],
    maker: async_sessionmaker[AsyncSession],
    tmp_path: Path,
) -> None:
    cable, w1, w2 = await flash_stock(maker, catalog)
    tokens = [f"flash-{i}-{uuid.uuid4().hex}" for i in range(PROCESSES * BUYERS_PER_PROCESS)]
    async with maker() as s, s.begin():
        for i, token in enumerate(tokens):
            await s.execute(
                text(
                    "INSERT INTO users (email, name, role, api_token_hash)"
                    " VALUES (:e, 'buyer', 'customer', :h)"
                ),
                {"e": f"buyer{i}@flash.test", "h": hashlib.sha256(token.encode()).hexdigest()},
            )
    ctx = multiprocessing.get_context("spawn")
    with serve(settings, tmp_path / "data", workers=2) as base, ctx.Pool(PROCESSES) as pool:
        start_at = time.time() + 3.0  # every process starts buying at the same instant
        shares = [(base, tokens[i::PROCESSES], cable, start_at) for i in range(PROCESSES)]
        results = await asyncio.to_thread(pool.starmap, _process, shares)
    outcomes = Counter(o for share in results for o in share)
    assert outcomes == {"checkout 201": 50, "add 409 insufficient_stock": 150}
    # Sold means gone from stock: quantity and reserved both went down.
    assert await stock_rows(maker, cable) == [(w1, 0, 0), (w2, 0, 0)]
    async with maker() as s:
        paid = (
            await s.execute(
                text(
                    "SELECT count(*), sum(a.quantity) FROM orders o"
                    " JOIN order_allocations a ON a.order_id = o.id AND a.state = 'committed'"
                    " WHERE o.status = 'paid' AND a.product_id = :p"
                ),
                {"p": cable},
            )
        ).one()
        left = await s.scalar(text("SELECT count(*) FROM reservations"))
    assert (tuple(paid), left) == ((50, 50), 0)
