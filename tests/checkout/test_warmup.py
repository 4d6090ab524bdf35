"""A new pooled connection runs the hot statements once, rolled back, before it serves."""

from __future__ import annotations

import uuid
from typing import Any

import asyncpg
from fastapi import FastAPI
from httpx import AsyncClient

from emporium.cart.service import ADD_ITEM_SQL, ADD_ITEMS_SQL
from emporium.checkout.warmup import warm_connection
from emporium.config import Settings
from emporium.kit.sql import create_pool, to_libpq_url
from emporium.main import create_app
from emporium.order.repository import PAY_MANY_SQL
from emporium.order.service import PLACE_MANY_SQL, PLACE_SQL
from tests.conftest import TABLES, _with_db

HOT = {ADD_ITEM_SQL, ADD_ITEMS_SQL, PLACE_SQL, PLACE_MANY_SQL, PAY_MANY_SQL}


async def state(dsn: str) -> dict[str, Any]:
    """Every table's row count, and the stock's totals."""
    conn = await asyncpg.connect(dsn)
    try:
        counts = {t: await conn.fetchval(f"SELECT count(*) FROM {t}") for t in TABLES}
        totals = await conn.fetchrow(
            "SELECT coalesce(sum(quantity), 0) AS q, coalesce(sum(reserved), 0) AS r FROM stock"
        )
    finally:
        await conn.close()
    assert totals is not None
    return {**counts, "stock": (totals["q"], totals["r"])}


async def prepared(conn: Any) -> set[str]:
    rows = await conn.fetch("SELECT statement FROM pg_prepared_statements")
    return {r["statement"] for r in rows}


async def test_warm_up_prepares_the_hot_statements_and_keeps_nothing(
    app: FastAPI, client: AsyncClient, catalog: dict[str, Any], settings: Settings
) -> None:
    dsn = to_libpq_url(str(settings.database_url))
    before = await state(dsn)
    assert (before["products"], before["orders"]) == (9, 0)
    pool = await create_pool(dsn, 2, warm=warm_connection)
    try:
        held = [await pool.acquire() for _ in range(2)]
        for conn in held:
            assert HOT - await prepared(conn) == set()
            assert conn.is_in_transaction() is False
        for conn in held:
            await pool.release(conn)
    finally:
        await pool.close()
    assert await state(dsn) == before
    # The catalog's products still answer as before.
    product = catalog["product"]["sony"]
    r = await client.get(f"/api/v1/products/{product}")
    assert r.status_code == 200


async def test_a_failed_warm_up_leaves_a_usable_cold_connection(settings: Settings) -> None:
    # A database with no schema yet: every warm-up statement fails.
    dsn = to_libpq_url(str(settings.database_url))
    name = f"emporium_bare_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(dsn)
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        pool = await create_pool(_with_db(dsn, name), 1, warm=warm_connection)
        try:
            async with pool.acquire() as conn:
                assert conn.is_in_transaction() is False
                assert HOT & await prepared(conn) == set()
                assert await conn.fetchval("SELECT 41 + 1") == 42
        finally:
            await pool.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def test_the_server_warms_both_pools_before_it_serves(settings: Settings) -> None:
    warm = settings.model_copy(update={"db_warm_up": True})
    application = create_app(warm, background=False)
    async with application.router.lifespan_context(application):
        for pool, size in (
            (application.state.pool, warm.db_pool_size),
            (application.state.checkout_pool, warm.db_checkout_pool_size),
        ):
            held = [await pool.acquire() for _ in range(size)]
            try:
                for conn in held:
                    assert HOT - await prepared(conn) == set()
            finally:
                for conn in held:
                    await pool.release(conn)
