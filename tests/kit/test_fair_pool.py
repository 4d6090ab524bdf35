"""The plain pool hands out connections in the order they were asked for."""

from __future__ import annotations

import asyncio

import asyncpg

from emporium.config import Settings
from emporium.kit.pool import FairPool
from emporium.kit.sql import create_pool, to_libpq_url


async def serve_order(pool: asyncpg.Pool) -> list[str]:
    """One connection, three callers waiting for it, and a newcomer asking on every turn
    of the event loop, as requests read off the sockets do in a burst."""
    served: list[str] = []

    async def caller(name: str) -> None:
        async with pool.acquire() as conn:
            await conn.fetchval("SELECT 1")
            served.append(name)

    first = await pool.acquire()
    waiting = [asyncio.create_task(caller(n)) for n in ("a", "b", "c")]
    await asyncio.sleep(0.05)
    newcomers: list[asyncio.Task[None]] = []

    async def stream() -> None:
        while not all(t.done() for t in waiting) and len(newcomers) < 300:
            newcomers.append(asyncio.create_task(caller(f"n{len(newcomers)}")))
            await asyncio.sleep(0)

    streaming = asyncio.create_task(stream())
    await asyncio.sleep(0)
    await pool.release(first)
    await asyncio.wait_for(asyncio.gather(streaming, *waiting, *newcomers), 30)
    await asyncio.wait_for(asyncio.gather(*newcomers), 30)
    return served


async def test_waiting_callers_are_served_before_later_ones(settings: Settings) -> None:
    pool = await create_pool(to_libpq_url(str(settings.database_url)), 1)
    assert isinstance(pool, FairPool)
    try:
        served = await serve_order(pool)
    finally:
        await pool.close()
    assert served[:4] == ["a", "b", "c", "n0"]
    assert served[3:] == [f"n{i}" for i in range(len(served) - 3)]


async def test_an_acquire_timeout_covers_the_wait_in_line(settings: Settings) -> None:
    pool = await create_pool(to_libpq_url(str(settings.database_url)), 1)
    try:
        held = await pool.acquire()
        try:
            await pool.acquire(timeout=0.05)
        except TimeoutError:
            timed_out = True
        else:
            timed_out = False
        await pool.release(held)
        # The line is free again: the connection is handed out at once.
        async with pool.acquire(timeout=5) as conn:
            assert await conn.fetchval("SELECT 2") == 2
        assert pool.get_idle_size() == 1
    finally:
        await pool.close()
    assert timed_out is True


def lost(conn: asyncpg.pool.PoolConnectionProxy[asyncpg.Record]) -> bool:
    try:
        return conn.is_closed()
    except asyncpg.InterfaceError:  # asyncpg detaches a lost connection from its proxy
        return True


async def test_a_connection_lost_in_use_gives_its_turn_back(settings: Settings) -> None:
    dsn = to_libpq_url(str(settings.database_url))
    pool = await create_pool(dsn, 1)
    admin = await asyncpg.connect(dsn)
    try:
        async with pool.acquire() as conn:
            await admin.execute("SELECT pg_terminate_backend($1)", conn.get_server_pid())
            for _ in range(500):
                if lost(conn):
                    break
                await asyncio.sleep(0.01)
            assert lost(conn) is True
        # The only turn came back with the lost connection: a new one is opened for it.
        async with pool.acquire(timeout=5) as conn:
            assert await conn.fetchval("SELECT 3") == 3
        async with pool.acquire(timeout=5) as conn:
            assert await conn.fetchval("SELECT 4") == 4
    finally:
        await admin.close()
        await pool.close()


async def test_a_caller_asking_again_goes_ahead_of_first_askers(settings: Settings) -> None:
    pool = await create_pool(to_libpq_url(str(settings.database_url)), 1)
    assert isinstance(pool, FairPool)
    served: list[str] = []

    async def first_ask(name: str) -> None:
        async with pool.acquire() as conn:
            served.append(f"{name}:{await conn.fetchval('SELECT 1')}")

    async def ask_again(name: str) -> None:
        conn = await pool.acquire_again()
        try:
            served.append(f"{name}:{await conn.fetchval('SELECT 2')}")
        finally:
            await pool.release(conn)

    try:
        held = await pool.acquire()
        callers = [asyncio.create_task(first_ask(n)) for n in ("a", "b")]
        await asyncio.sleep(0.05)
        callers += [asyncio.create_task(ask_again(n)) for n in ("back1", "back2")]
        await asyncio.sleep(0.05)
        callers.append(asyncio.create_task(first_ask("c")))
        await asyncio.sleep(0.05)
        assert served == []
        await pool.release(held)
        await asyncio.wait_for(asyncio.gather(*callers), 10)
        assert pool.get_idle_size() == 1
    finally:
        await pool.close()
    assert served == ["back1:2", "back2:2", "a:1", "b:1", "c:1"]


async def client_backends(admin: asyncpg.Connection) -> set[int]:
    rows = await admin.fetch(
        "SELECT pid FROM pg_stat_activity WHERE backend_type = 'client backend' AND pid <> $1",
        admin.get_server_pid(),
    )
    return {r["pid"] for r in rows}


async def test_every_connection_is_open_from_the_start(settings: Settings) -> None:
    dsn = to_libpq_url(str(settings.database_url))
    admin = await asyncpg.connect(dsn)
    try:
        before = await client_backends(admin)
        pool = await create_pool(dsn, 3)
        try:
            opened = await client_backends(admin) - before
            assert (pool.get_size(), pool.get_idle_size(), len(opened)) == (3, 3, 3)
            held = [await pool.acquire() for _ in range(3)]
            # The connections handed out are the ones opened at the start.
            assert {c.get_server_pid() for c in held} == opened
            for conn in held:
                await pool.release(conn)
            assert (pool.get_size(), pool.get_idle_size()) == (3, 3)
        finally:
            await pool.close()
        assert await client_backends(admin) - before == set()
    finally:
        await admin.close()
