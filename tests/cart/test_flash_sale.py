"""A flash sale: 200 buyers in 4 OS processes race for 50 units in two warehouses."""

from __future__ import annotations

import asyncio
import multiprocessing
import secrets
import time
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.cart.repository import CartRepository
from emporium.cart.service import hash_cart_token
from emporium.config import Settings
from emporium.inventory.reservations import InsufficientStock, reserve
from emporium.kit.db import UnitOfWork, create_engine, create_sessionmaker
from emporium.models import Reservation
from tests.cart import flash_stock, stock_rows

PROCESSES = 4
BUYERS_PER_PROCESS = 50


async def _buyers(database_url: str, product_id: int, start_at: float) -> tuple[int, int]:
    # Each process has its own engine; 10 connections each keeps 4 processes well within
    # the server's connection limit while every buyer still waits on the same rows.
    engine = create_engine(database_url, pool_size=10)
    maker = create_sessionmaker(engine)

    async def buy() -> bool:
        async with UnitOfWork(maker) as session:
            cart = await CartRepository.from_session(session).create_guest(
                hash_cart_token(secrets.token_urlsafe(16))
            )
            try:
                await reserve(
                    session,
                    cart_id=cart.id,
                    product_id=product_id,
                    quantity=1,
                    until=datetime.now(UTC) + timedelta(minutes=30),
                )
            except InsufficientStock:
                return False
        return True

    try:
        await asyncio.sleep(max(0.0, start_at - time.time()))
        results = await asyncio.gather(*(buy() for _ in range(BUYERS_PER_PROCESS)))
    finally:
        await engine.dispose()
    return sum(results), len(results) - sum(results)


def _process(database_url: str, product_id: int, start_at: float) -> tuple[int, int]:
    return asyncio.run(_buyers(database_url, product_id, start_at))


async def test_flash_sale_sells_exactly_the_stock(
    settings: Settings, catalog: dict[str, Any], maker: async_sessionmaker[AsyncSession]
) -> None:
    assert settings.database_url
    cable, w1, w2 = await flash_stock(maker, catalog)
    ctx = multiprocessing.get_context("spawn")
    started = time.monotonic()
    # Processes start staggered; they all begin buying at the same wall-clock instant.
    start_at = time.time() + 4.0
    with ctx.Pool(PROCESSES) as pool:
        results = await asyncio.to_thread(
            pool.starmap,
            _process,
            [(settings.database_url, cable, start_at)] * PROCESSES,
        )
    elapsed = time.monotonic() - started
    sold = sum(ok for ok, _ in results)
    refused = sum(no for _, no in results)
    assert (sold, refused) == (50, 150), results
    assert await stock_rows(maker, cable) == [(w1, 30, 30), (w2, 20, 20)]
    async with maker() as s:
        held = dict(
            (
                await s.execute(
                    select(Reservation.warehouse_id, func.sum(Reservation.quantity))
                    .where(Reservation.product_id == cable)
                    .group_by(Reservation.warehouse_id)
                )
            ).all()
        )
        rows = await s.scalar(select(func.count()).select_from(Reservation))
    assert (held, rows) == ({w1: 30, w2: 20}, 50)
    assert elapsed < 60
