"""A lazy unit of work on the plain pool holds a connection only while it needs one."""

from __future__ import annotations

import asyncio

import asyncpg

from emporium.config import Settings
from emporium.kit.db import transaction
from emporium.kit.sql import Sql, create_pool, to_libpq_url


def in_use(pool: asyncpg.Pool) -> int:
    return pool.get_size() - pool.get_idle_size()


async def test_a_paused_unit_of_work_gives_its_connection_back_until_its_next_statement(
    settings: Settings,
) -> None:
    pool = await create_pool(to_libpq_url(str(settings.database_url)), 2)
    try:
        async with transaction(pool, lazy=True) as db:
            assert (await db.fetchval("SELECT 1"), in_use(pool)) == (1, 1)
            await db.pause()
            assert in_use(pool) == 0
            assert (await db.fetchval("SELECT 2"), in_use(pool)) == (2, 1)
            await db.begin()
            pid = await db.fetchval("SELECT pg_backend_pid()")
            # Inside its transaction the unit of work keeps its connection.
            await db.pause()
            assert (await db.fetchval("SELECT pg_backend_pid()"), in_use(pool)) == (pid, 1)
            assert db.in_transaction is True
        assert in_use(pool) == 0
        async with transaction(pool, lazy=True) as db:
            await db.pause()
        assert in_use(pool) == 0
    finally:
        await pool.close()


async def test_a_paused_unit_of_work_that_fails_leaves_nothing_behind(settings: Settings) -> None:
    pool = await create_pool(to_libpq_url(str(settings.database_url)), 1)
    try:
        try:
            async with transaction(pool, lazy=True) as db:
                await db.pause()
                await db.begin()
                await db.execute("CREATE TEMP TABLE scratch (n int)")
                await db.execute("INSERT INTO scratch VALUES (1)")
                raise LookupError("refused")
        except LookupError:
            pass
        assert in_use(pool) == 0
        async with pool.acquire() as conn:
            # The same (only) connection: the transaction was rolled back, and its
            # temporary table with it.
            assert await conn.fetchval("SELECT to_regclass('pg_temp.scratch')") is None
    finally:
        await pool.close()


async def test_back_from_a_pause_it_goes_ahead_of_new_units_of_work(settings: Settings) -> None:
    pool = await create_pool(to_libpq_url(str(settings.database_url)), 1)
    served: list[str] = []

    async def newcomer() -> None:
        async with transaction(pool, lazy=True) as other:
            served.append(await other.fetchval("SELECT 'newcomer'"))

    async def resume(db: Sql) -> None:
        served.append(await db.fetchval("SELECT 'resumed'"))

    try:
        async with transaction(pool, lazy=True) as db:
            await db.pause()
            held = await pool.acquire()
            first = asyncio.create_task(newcomer())
            await asyncio.sleep(0.05)
            back = asyncio.create_task(resume(db))
            await asyncio.sleep(0.05)
            assert served == []
            await pool.release(held)
            await asyncio.wait_for(back, 10)
        await asyncio.wait_for(first, 10)
        assert in_use(pool) == 0
    finally:
        await pool.close()
    assert served == ["resumed", "newcomer"]
