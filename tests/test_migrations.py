"""The migrations, end to end, on a database of their own."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from typing import Any

import asyncpg
import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.ext.asyncio import create_async_engine

from emporium.kit.embedded import to_asyncpg_url
from emporium.kit.migrate import alembic_config, upgrade
from emporium.models import Base
from tests.conftest import _admin_dsn, _with_db

NAME = f"emporium_migrations_{os.environ.get('PYTEST_XDIST_WORKER', 'main')}"


@pytest.fixture
def scratch() -> Iterator[str]:
    admin = _admin_dsn()

    async def run(sql: str) -> None:
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(sql)
        finally:
            await conn.close()

    asyncio.run(run(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)'))
    asyncio.run(run(f'CREATE DATABASE "{NAME}"'))
    try:
        yield _with_db(admin, NAME)
    finally:
        asyncio.run(run(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)'))


async def _query(dsn: str, sql: str) -> list[asyncpg.Record]:
    conn = await asyncpg.connect(dsn)
    try:
        return list(await conn.fetch(sql))
    finally:
        await conn.close()


def _state(dsn: str) -> tuple[str | None, list[str], str | None]:
    """(revision, public tables, checkout_place's DELETE of reservations)."""

    async def read() -> tuple[str | None, list[str], str | None]:
        tables = [
            r["tablename"]
            for r in await _query(
                dsn, "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1"
            )
        ]
        rows = (
            await _query(dsn, "SELECT version_num FROM alembic_version")
            if "alembic_version" in tables
            else []
        )
        version = rows[0]["version_num"] if rows else None
        source = await _query(dsn, "SELECT prosrc FROM pg_proc WHERE proname = 'checkout_place'")
        delete = None
        if source:
            lines = str(source[0]["prosrc"]).splitlines()
            delete = next(ln.strip() for ln in lines if "DELETE FROM reservations" in ln)
        return version, tables, delete

    return asyncio.run(read())


def _functions(dsn: str, name: str) -> int:
    rows = asyncio.run(_query(dsn, f"SELECT count(*) AS n FROM pg_proc WHERE proname = '{name}'"))
    return int(rows[0]["n"])


def _per_order_checks(dsn: str) -> tuple[bool, bool, bool]:
    """(the allocations' order_id index exists, cart_add_item looks for expired holds
    before it refuses, checkout_place asks for the cart's lines apart)."""

    async def read() -> tuple[bool, bool, bool]:
        index = await _query(
            dsn, "SELECT 1 FROM pg_indexes WHERE indexname = 'ix_order_allocations_order_id'"
        )
        add = await _query(dsn, "SELECT prosrc FROM pg_proc WHERE proname = 'cart_add_item'")
        place = await _query(dsn, "SELECT prosrc FROM pg_proc WHERE proname = 'checkout_place'")
        return (
            bool(index),
            "v_reclaimable :=" in str(add[0]["prosrc"]),
            "NOT EXISTS (SELECT 1 FROM cart_items" in str(place[0]["prosrc"]),
        )

    return asyncio.run(read())


def _orders_index_and_fillfactor(dsn: str) -> tuple[list[str], list[str] | None]:
    """(the orders' indexes, idempotency_keys' storage options)."""

    async def read() -> tuple[list[str], list[str] | None]:
        indexes = await _query(
            dsn, "SELECT indexdef FROM pg_indexes WHERE tablename = 'orders' ORDER BY indexname"
        )
        options = await _query(
            dsn, "SELECT reloptions FROM pg_class WHERE relname = 'idempotency_keys'"
        )
        return [str(r["indexdef"]) for r in indexes], options[0]["reloptions"]

    return asyncio.run(read())


def _answer_storage(dsn: str) -> tuple[str, bool]:
    """(idempotency_keys.response_body's type, whether checkout_place returns it as text)."""

    async def read() -> tuple[str, bool]:
        column = await _query(
            dsn,
            "SELECT data_type FROM information_schema.columns"
            " WHERE table_name = 'idempotency_keys' AND column_name = 'response_body'",
        )
        source = await _query(dsn, "SELECT prosrc FROM pg_proc WHERE proname = 'checkout_place'")
        as_text = "'body', k.response_body::text)" in str(source[0]["prosrc"])
        return str(column[0]["data_type"]), as_text

    return asyncio.run(read())


ORDERS_INDEXES_0010 = [
    "CREATE UNIQUE INDEX pk_orders ON public.orders USING btree (id)",
    "CREATE INDEX ix_orders_status_updated_at ON public.orders USING btree (status, updated_at)",
    "CREATE INDEX ix_orders_user_id_id ON public.orders USING btree (user_id, id)",
]
ORDERS_INDEXES_0011 = [
    "CREATE INDEX ix_orders_pending_payment ON public.orders USING btree (created_at)"
    " WHERE ((status)::text = 'pending_payment'::text)",
    "CREATE INDEX ix_orders_user_id_id ON public.orders USING btree (user_id, id)",
    "CREATE UNIQUE INDEX pk_orders ON public.orders USING btree (id)",
]


ORDER_ITEMS_INDEXES_0015 = [
    "CREATE INDEX ix_order_items_order_id ON public.order_items USING btree (order_id)",
    "CREATE UNIQUE INDEX pk_order_items ON public.order_items USING btree (id)",
]
ORDER_ITEMS_INDEXES_0016 = sorted(
    [
        *ORDER_ITEMS_INDEXES_0015,
        "CREATE INDEX ix_order_items_seller_id_order_id"
        " ON public.order_items USING btree (seller_id, order_id)",
    ]
)


def _order_items_indexes(dsn: str) -> list[str]:
    rows = asyncio.run(
        _query(dsn, "SELECT indexdef FROM pg_indexes WHERE tablename = 'order_items' ORDER BY 1")
    )
    return [r["indexdef"] for r in rows]


UNSETTLED_0018 = [
    "CREATE INDEX ix_payments_unsettled ON public.payments USING btree (updated_at)"
    " WHERE ((status)::text = ANY ((ARRAY['refund_pending'::character varying,"
    " 'void_pending'::character varying])::text[]))"
]


def _unsettled_index(dsn: str) -> list[str]:
    rows = asyncio.run(
        _query(
            dsn,
            "SELECT indexdef FROM pg_indexes WHERE indexname = 'ix_payments_unsettled' ORDER BY 1",
        )
    )
    return [r["indexdef"] for r in rows]


def _withdrawn_lines_unavailable(dsn: str) -> bool:
    """Whether cart_add_item's lines show no units free for a withdrawn product."""
    rows = asyncio.run(_query(dsn, "SELECT prosrc FROM pg_proc WHERE proname = 'cart_add_item'"))
    return "CASE WHEN lp.is_active" in str(rows[0]["prosrc"])


def test_migrations_downgrade_and_upgrade_again(scratch: str) -> None:
    url = to_asyncpg_url(scratch)
    cfg = alembic_config(url)
    upgrade(url)
    version, tables, delete = _state(scratch)
    assert version == "0019"
    assert _withdrawn_lines_unavailable(scratch)
    assert _unsettled_index(scratch) == UNSETTLED_0018
    assert _order_items_indexes(scratch) == ORDER_ITEMS_INDEXES_0016
    assert _functions(scratch, "checkout_place_many") == 1
    assert _answer_storage(scratch) == ("json", True)
    assert len(tables) == 19
    assert "simulated_payments" not in tables
    assert _orders_index_and_fillfactor(scratch) == (ORDERS_INDEXES_0011, ["fillfactor=70"])

    command.downgrade(cfg, "0018")
    assert _state(scratch) == ("0018", tables, delete)
    assert not _withdrawn_lines_unavailable(scratch)
    assert _per_order_checks(scratch) == (False, False, False)
    assert _unsettled_index(scratch) == UNSETTLED_0018

    command.downgrade(cfg, "0017")
    assert _state(scratch) == ("0017", tables, delete)
    assert _unsettled_index(scratch) == []

    command.downgrade(cfg, "0016")
    assert _state(scratch) == ("0016", tables, delete)

    command.downgrade(cfg, "0015")
    assert _state(scratch) == ("0015", tables, delete)
    assert _order_items_indexes(scratch) == ORDER_ITEMS_INDEXES_0015

    command.downgrade(cfg, "0014")
    assert _state(scratch) == ("0014", tables, delete)
    assert _functions(scratch, "checkout_place_many") == 0

    command.downgrade(cfg, "0013")
    assert _state(scratch) == ("0013", tables, delete)
    assert _answer_storage(scratch) == ("jsonb", False)

    command.downgrade(cfg, "0012")  # the simulated gateway's table, as 0012 left it
    assert _state(scratch) == ("0012", sorted([*tables, "simulated_payments"]), delete)
    unlogged = asyncio.run(
        _query(scratch, "SELECT relpersistence FROM pg_class WHERE relname = 'simulated_payments'")
    )
    assert [r["relpersistence"] for r in unlogged] == [b"u"]  # "char" comes as bytes

    command.downgrade(cfg, "0011")
    assert _state(scratch) == ("0011", tables, delete)
    assert _orders_index_and_fillfactor(scratch) == (ORDERS_INDEXES_0011, ["fillfactor=70"])

    command.downgrade(cfg, "0010")
    assert _state(scratch) == ("0010", tables, delete)
    assert _orders_index_and_fillfactor(scratch) == (sorted(ORDERS_INDEXES_0010), None)
    assert _functions(scratch, "cart_add_items") == 1
    assert (
        delete == "DELETE FROM reservations WHERE cart_id = v_cart AND id IN (SELECT id FROM holds)"
    )
    assert _per_order_checks(scratch) == (False, False, False)

    command.downgrade(cfg, "0009")
    assert _state(scratch) == ("0009", tables, delete)
    assert _per_order_checks(scratch) == (True, True, True)

    command.downgrade(cfg, "0008")
    assert _state(scratch) == ("0008", tables, delete)
    assert _functions(scratch, "cart_add_items") == 0

    command.downgrade(cfg, "0007")
    assert _state(scratch) == (
        "0007",
        tables,
        "DELETE FROM reservations WHERE id IN (SELECT id FROM holds)",
    )

    command.downgrade(cfg, "base")
    assert _state(scratch) == (None, ["alembic_version"], None)

    upgrade(url)
    assert _state(scratch) == ("0019", tables, delete)
    assert _withdrawn_lines_unavailable(scratch)
    assert _unsettled_index(scratch) == UNSETTLED_0018
    assert _order_items_indexes(scratch) == ORDER_ITEMS_INDEXES_0016
    assert _functions(scratch, "checkout_place_many") == 1
    assert _answer_storage(scratch) == ("json", True)
    assert _orders_index_and_fillfactor(scratch) == (ORDERS_INDEXES_0011, ["fillfactor=70"])
    assert _functions(scratch, "cart_add_items") == 1
    assert _per_order_checks(scratch) == (False, False, False)


def test_0017_replaces_unkeyed_fingerprints_only(scratch: str) -> None:
    url = to_asyncpg_url(scratch)
    command.upgrade(alembic_config(url), "0016")
    plain = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08"
    keyed = "hmac:1vGk0mNQn3Sx0xS7kq2fJjZl6mIh5h6fXUbq0bqj0bQ"

    async def fill() -> None:
        conn = await asyncpg.connect(scratch)
        try:
            user = await conn.fetchval(
                "INSERT INTO users (email, name, role) VALUES ('a@example.com', 'A', 'customer')"
                " RETURNING id"
            )
            await conn.executemany(
                "INSERT INTO idempotency_keys (user_id, key, request_hash) VALUES ($1, $2, $3)",
                [(user, "old", plain), (user, "new", keyed)],
            )
        finally:
            await conn.close()

    asyncio.run(fill())
    upgrade(url)
    rows = asyncio.run(_query(scratch, "SELECT key, request_hash FROM idempotency_keys ORDER BY 1"))
    assert [tuple(r) for r in rows] == [("new", keyed), ("old", "legacy")]


def test_models_match_the_migrated_schema(scratch: str) -> None:
    """The ORM's tables, columns, indexes and constraints are what the migrations built."""
    url = to_asyncpg_url(scratch)
    upgrade(url)

    async def diff() -> list[Any]:
        engine = create_async_engine(url)
        try:
            async with engine.connect() as conn:
                return await conn.run_sync(
                    lambda sync: compare_metadata(MigrationContext.configure(sync), Base.metadata)
                )
        finally:
            await engine.dispose()

    assert asyncio.run(diff()) == []
