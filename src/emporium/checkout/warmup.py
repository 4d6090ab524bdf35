"""Warming a new database connection before it serves a buyer.

A new PostgreSQL backend compiles the cart and checkout functions, plans their
statements and loads its caches on first use, about ten milliseconds of database CPU for
each of add to cart, placing and paying; asyncpg also prepares each statement once per
connection. A server that opened its pools cold paid all of that in its first rush: a
flash sale right after a start sold out at half the rate of the next one.

:func:`warm_connection` runs those statements once, for a throwaway seller, product,
warehouse and buyer that it creates in a transaction it always rolls back. Nothing it
does is kept, but for the identity values it draws; any failure (a database not
migrated yet, say) leaves the connection as it was, merely cold.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog

from emporium.cart.service import ADD_ITEM_SQL, ADD_ITEMS_SQL
from emporium.order.repository import PAY_MANY_SQL
from emporium.order.service import PLACE_MANY_SQL, PLACE_SQL

log = structlog.get_logger(__name__)

_FIXTURE = """
WITH seller AS (
    INSERT INTO sellers (name, slug) VALUES ('warm-up', $1) RETURNING id
), category AS (
    INSERT INTO categories (name, slug, path, depth) VALUES ('warm-up', $1, $1, 0)
    RETURNING id
), product AS (
    INSERT INTO products (seller_id, category_id, title, description, brand, price)
    SELECT seller.id, category.id, 'warm-up', '', 'warm-up', 1 FROM seller, category
    RETURNING id
), warehouse AS (
    INSERT INTO warehouses (code, name) VALUES ($1, 'warm-up') RETURNING id
), stock AS (
    INSERT INTO stock (product_id, warehouse_id, quantity)
    SELECT product.id, warehouse.id, 3 FROM product, warehouse
), buyer AS (
    INSERT INTO users (email, name, role) VALUES ($1 || '@warm-up.invalid', 'warm-up',
                                                  'customer')
    RETURNING id
)
SELECT buyer.id AS buyer_id, product.id AS product_id FROM buyer, product
"""


async def warm_connection(conn: asyncpg.Connection) -> None:
    """Run add to cart, a rider's add to cart, placing (shared and alone) and paying on
    ``conn``."""
    tag = f"warm-up-{uuid.uuid4().hex}"
    now = datetime.now(UTC)
    until = now + timedelta(minutes=30)
    transaction = conn.transaction()
    await transaction.start()
    try:
        buyer, product = (await conn.fetch(_FIXTURE, tag))[0]
        await conn.fetchval(ADD_ITEM_SQL, buyer, None, None, product, 1, until, 99, tag, None)
        await conn.fetch(
            ADD_ITEMS_SQL, [buyer], [None], [None], product, [1], [until], 99, [tag], [None]
        )
        # Placing as a shared call (several checkouts) and alone; paying is one statement.
        ids, tags = [buyer], [tag]
        placed = await conn.fetchrow(
            PLACE_MANY_SQL,
            ids,
            tags,
            tags,
            ["{}"],
            [now],
            [until],
            "simulated",
            ["4242"],
            tags,
            [None],
        )
        assert placed is not None
        pay = [[placed["placed_id"]], [now], tags, ids, tags, [None], ids, [201], ["{}"], tags]
        await conn.fetch(PAY_MANY_SQL, *pay)
        await conn.fetchval(ADD_ITEM_SQL, buyer, None, None, product, 1, until, 99, tag, None)
        await conn.fetchval(
            PLACE_SQL, buyer, f"{tag}-2", tag, "{}", now, until, "simulated", "4242", tag, None
        )
    except asyncpg.PostgresError as exc:
        log.warning("db.warm_up_failed", error=str(exc))
    finally:
        await transaction.rollback()
