"""Stock reservations: units held for a cart line until they are released or expire.

Every change keeps ``stock.reserved`` equal to the live reservations plus the units held
by orders, in the same transaction as the reservation rows. Writers take row locks in one
order so they cannot deadlock each other: the cart, its reservation rows, stock rows (by
product, then warehouse), then cart lines.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from prometheus_client import Counter
from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.audit import service as audit
from emporium.kit.errors import Conflict
from emporium.kit.gate import Gate, shared_call
from emporium.kit.logging import client_ip, correlation_id
from emporium.kit.outbox import record_event, written
from emporium.kit.sql import Sql
from emporium.models import Reservation, Stock, User

RESERVATIONS = Counter(
    "inventory_reservations_total",
    "Reservation rows reserved, released or expired; failed reservation attempts",
    ["status"],
)


class InsufficientStock(Conflict):
    code = "insufficient_stock"

    def __init__(self, detail: Any = None, *, available: int) -> None:
        super().__init__(detail, available=available)
        self.available = available


@dataclass(frozen=True)
class Hold:
    """Units taken out of one reservation (the whole row, or part of it)."""

    reservation_id: int
    cart_id: int
    product_id: int
    warehouse_id: int
    quantity: int


def plan_allocation(free: Sequence[tuple[int, int]], quantity: int) -> list[tuple[int, int]]:
    """Split ``quantity`` over ``(warehouse_id, free units)``: most free first, ties by id."""
    plan: list[tuple[int, int]] = []
    remaining = quantity
    for warehouse_id, available in sorted(free, key=lambda f: (-f[1], f[0])):
        if remaining <= 0:
            break
        take = min(available, remaining)
        if take > 0:
            plan.append((warehouse_id, take))
            remaining -= take
    if remaining > 0:
        raise ValueError("not enough free stock for the plan")
    return plan


async def _adjust_reserved(
    session: AsyncSession,
    product_id: int,
    deltas: dict[int, int],
    *,
    actor: User | None,
    action: str,
) -> None:
    """Add ``deltas[warehouse_id]`` to stock.reserved; audit and announce the change."""
    old: dict[str, int] = {}
    new: dict[str, int] = {}
    for warehouse_id in sorted(deltas):
        delta = deltas[warehouse_id]
        if delta == 0:
            continue
        # Conditional: a reservation can never take more than the row has free.
        reserved = await session.scalar(
            update(Stock)
            .where(
                Stock.product_id == product_id,
                Stock.warehouse_id == warehouse_id,
                Stock.quantity - Stock.reserved >= delta,
            )
            .values(reserved=Stock.reserved + delta)
            .returning(Stock.reserved)
            .execution_options(synchronize_session=False)
        )
        if reserved is None:
            raise RuntimeError(f"stock row {product_id}/{warehouse_id} changed under its lock")
        old[str(warehouse_id)], new[str(warehouse_id)] = reserved - delta, reserved
    if not new:
        return
    audit.record(
        session,
        actor=actor,
        action=action,
        entity_type="product",
        entity_id=product_id,
        old={"reserved": old},
        new={"reserved": new},
    )
    record_event(session, "stock.changed", "product", product_id, {"reserved": new})


# Reserving is one call of the database function stock_reserve (migration 0004): it
# locks the product's stock rows in warehouse order, like every stock writer, then plans
# the split (most free first, ties by warehouse id: plan_allocation), puts the units on
# stock.reserved, creates the reservation rows and, when asked, the cart line units, and
# writes the audit row and outbox event. Short of stock it changes nothing and reports
# what is free.
_RESERVE = "SELECT * FROM stock_reserve($1, $2, $3, $4, $5, $6, $7, $8)"


@dataclass(frozen=True)
class Reserved:
    """One reservation row just created."""

    id: int
    cart_id: int
    product_id: int
    warehouse_id: int
    quantity: int
    reserved_until: datetime


# A product's free units and whether any expired hold could be reclaimed, unlocked.
_PRECHECK = """
SELECT p.is_active,
    (SELECT coalesce(sum(quantity - reserved), 0) FROM stock WHERE product_id = p.id) AS free,
    EXISTS (SELECT 1 FROM reservations
            WHERE product_id = p.id AND reserved_until < now()) AS reclaimable
FROM products p WHERE p.id = $1
"""


async def precheck(db: Sql, product_id: int) -> tuple[int, bool]:
    """Free units of a product and whether any expired hold could be reclaimed (no locks)."""
    row = await db.fetchrow(_PRECHECK, product_id)
    return (0, False) if row is None else (int(row["free"]), bool(row["reclaimable"]))


async def refuse_if_sold_out(db: Sql, product_id: int, quantity: int) -> None:
    """For a product this process saw sold out: refuse after one read, with no lock and
    no transaction, when the units are not there and no expired hold could free them.

    Buyers who come while such a read is on its way wait for the next one, which answers
    them all: it is sent after each of them arrived, so its answer is as fresh as one of
    their own, and a flood of refusals costs a read per turn rather than per buyer."""
    if not seen_sold_out(product_id):
        return

    async def read(quantities: list[int]) -> list[asyncpg.Record | None]:
        return [await db.fetchrow(_PRECHECK, product_id)] * len(quantities)

    if glances.busy(product_id):
        await db.pause()
    row = await shared_call(glances, product_id, quantity, read, GLANCE_RIDERS)
    if row is not None and row["is_active"] and row["free"] < quantity and not row["reclaimable"]:
        raise refuse(product_id, row["free"])


# One read of a sold-out product's stock at a time per process; the buyers who come
# meanwhile share the next.
glances = Gate()
GLANCE_RIDERS = 1000


# Products this process lately saw with no free stock. For them, add to cart reads the
# free stock on its own first and turns a buyer away without opening a transaction: in a
# sell-out, refusals then cost two statements and leave the loop to the buyers who pay.
# The hint only picks the path; every answer comes from the database.
SOLD_OUT_HINT_SECONDS = 5.0
_sold_out: dict[int, float] = {}


def seen_sold_out(product_id: int) -> bool:
    seen = _sold_out.get(product_id)
    return seen is not None and time.monotonic() - seen < SOLD_OUT_HINT_SECONDS


def _note_free(product_id: int, free: int) -> None:
    if free > 0:
        _sold_out.pop(product_id, None)
        return
    if len(_sold_out) >= 10_000:
        _sold_out.clear()
    _sold_out[product_id] = time.monotonic()


def note_reserved(product_id: int, reservations: int, free_after: int) -> None:
    _note_free(product_id, free_after)
    RESERVATIONS.labels("reserved").inc(reservations)


def refuse(product_id: int, available: int) -> InsufficientStock:
    """The 409 for a buyer turned away, noting the product as sold out when it is."""
    _note_free(product_id, available)
    RESERVATIONS.labels("insufficient").inc()
    return InsufficientStock(
        f"only {available} units of product {product_id} are available",
        available=max(available, 0),
    )


async def reserve(
    session: AsyncSession | Sql,
    *,
    cart_id: int,
    product_id: int,
    quantity: int,
    until: datetime,
    actor: User | None = None,
) -> list[Reserved]:
    """Hold ``quantity`` units for a cart line, or raise InsufficientStock changing nothing.

    Expired holds never block a buyer: when stock is short, the product's expired
    reservations are released first and the reservation is tried once more.
    """
    rows, _ = await reserve_units(
        session, cart_id=cart_id, product_id=product_id, quantity=quantity, until=until, actor=actor
    )
    return rows


async def reserve_units(
    session: AsyncSession | Sql,
    *,
    cart_id: int,
    product_id: int,
    quantity: int,
    until: datetime,
    actor: User | None = None,
    checked: tuple[int, bool] | None = None,
) -> tuple[list[Reserved], int]:
    """:func:`reserve`, also returning the product's free units left afterwards.

    ``checked`` is a :func:`precheck` result the caller already has.
    """
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    db = await Sql.from_(session)
    # Refuse without touching the row locks when a plain read already shows too little
    # and no expired hold could be reclaimed: in a sell-out most buyers end here, and
    # they must not queue behind the buyers who actually get stock.
    free_units, reclaimable = checked if checked is not None else await precheck(db, product_id)
    if free_units < quantity and not reclaimable:
        raise refuse(product_id, free_units)
    args = (
        product_id,
        quantity,
        cart_id,
        until,
        actor.id if actor else None,
        correlation_id.get(),
        client_ip.get(),
        0,  # no cart line units: cart_add_item writes those itself
    )
    rows = await db.fetch(_RESERVE, *args)
    if not rows[0]["planned"] and await release_expired(db, product_id=product_id):
        rows = await db.fetch(_RESERVE, *args)
    available: int = rows[0]["available"]
    if not rows[0]["planned"]:
        raise refuse(product_id, available)
    if rows[0]["updated"] != rows[0]["planned"]:
        raise RuntimeError(f"stock of product {product_id} changed under its lock")
    written()
    note_reserved(product_id, len(rows), available - quantity)
    return [
        Reserved(
            r["id"], cart_id, product_id, r["warehouse_id"], r["quantity"], r["reserved_until"]
        )
        for r in rows
    ], available - quantity


async def _return_units(session: AsyncSession, holds: Sequence[Hold], actor: User | None) -> None:
    per_product: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for h in holds:
        per_product[h.product_id][h.warehouse_id] -= h.quantity
    for product_id in sorted(per_product):
        await _adjust_reserved(
            session,
            product_id,
            dict(per_product[product_id]),
            actor=actor,
            action="inventory.released",
        )


async def _delete_reservations(
    session: AsyncSession, ids: Sequence[int], *, actor: User | None, status: str
) -> list[Hold]:
    holds = await _delete_rows(session, ids)
    await _return_units(session, holds, actor)
    RESERVATIONS.labels(status).inc(len(holds))
    return holds


async def _delete_rows(session: AsyncSession, ids: Sequence[int]) -> list[Hold]:
    if not ids:
        return []
    # Only rows this statement deleted are returned to stock, so a row released
    # concurrently (reaper and user at once) is never returned twice.
    rows = (
        await session.execute(
            delete(Reservation)
            .where(Reservation.id.in_(sorted(set(ids))))
            .returning(
                Reservation.id,
                Reservation.cart_id,
                Reservation.product_id,
                Reservation.warehouse_id,
                Reservation.quantity,
            )
            .execution_options(synchronize_session=False)
        )
    ).all()
    return [Hold(*(int(v) for v in row)) for row in rows]


async def release(
    session: AsyncSession,
    reservations: Sequence[Reserved] | Sequence[int],
    *,
    actor: User | None = None,
) -> list[Hold]:
    """Delete the reservations and return their units to stock (cart lines are the caller's)."""
    ids = [r if isinstance(r, int) else r.id for r in reservations]
    return await _delete_reservations(session, ids, actor=actor, status="released")


async def release_units(
    session: AsyncSession,
    *,
    cart_id: int,
    product_id: int,
    quantity: int,
    actor: User | None = None,
) -> list[Hold]:
    """Release ``quantity`` units of a cart line's reservations, newest first."""
    rows = (
        await session.execute(
            select(Reservation.id, Reservation.warehouse_id, Reservation.quantity)
            .where(Reservation.cart_id == cart_id, Reservation.product_id == product_id)
            .order_by(Reservation.created_at.desc(), Reservation.id.desc())
            .with_for_update()
        )
    ).all()
    remaining = quantity
    whole: list[int] = []
    partial: Hold | None = None
    for reservation_id, warehouse_id, units in rows:
        if remaining <= 0:
            break
        if units <= remaining:
            whole.append(reservation_id)
            remaining -= units
        else:
            partial = Hold(reservation_id, cart_id, product_id, warehouse_id, remaining)
            remaining = 0
    holds = await _delete_rows(session, whole)
    if partial is not None:
        await session.execute(
            update(Reservation)
            .where(Reservation.id == partial.reservation_id)
            .values(quantity=Reservation.quantity - partial.quantity)
            .execution_options(synchronize_session=False)
        )
        holds.append(partial)
    await _return_units(session, holds, actor)
    RESERVATIONS.labels("released").inc(len(holds))
    return holds


# Expiry takes a batch of expired holds (SKIP LOCKED: several workers share the work,
# and holds a cart request is touching are left to it), then locks what they touch, in
# the global order (stock rows by product and warehouse, then cart lines), and finally,
# in a statement that sees those rows as locked, gives the units back to stock, audits
# and announces each product, and takes the units out of their cart lines (a line left
# at zero goes).
_EXPIRED = """
SELECT id FROM reservations
WHERE reserved_until < now() AND ($2::bigint IS NULL OR product_id = $2::bigint)
ORDER BY id LIMIT $1::int
FOR UPDATE SKIP LOCKED
"""
_LOCK_TOUCHED = """
WITH held AS (SELECT cart_id, product_id, warehouse_id FROM reservations WHERE id = ANY($1)),
stock_rows AS MATERIALIZED (
    SELECT 1 FROM stock
    WHERE (product_id, warehouse_id) IN (SELECT product_id, warehouse_id FROM held)
    ORDER BY product_id, warehouse_id FOR UPDATE
), line_rows AS MATERIALIZED (
    SELECT 1 FROM cart_items
    WHERE (cart_id, product_id) IN (SELECT cart_id, product_id FROM held)
    ORDER BY cart_id, product_id FOR UPDATE
)
SELECT (SELECT count(*) FROM stock_rows), (SELECT count(*) FROM line_rows)
"""
_EXPIRE = """
WITH gone AS (
    DELETE FROM reservations WHERE id = ANY($1)
    RETURNING id, cart_id, product_id, warehouse_id, quantity
), per_row AS (
    SELECT product_id, warehouse_id, sum(quantity)::int AS units FROM gone GROUP BY 1, 2
), returned AS (
    UPDATE stock SET reserved = stock.reserved - p.units, updated_at = now()
    FROM per_row p
    WHERE stock.product_id = p.product_id AND stock.warehouse_id = p.warehouse_id
    RETURNING stock.product_id, stock.warehouse_id, stock.reserved, p.units
), audit AS (
    INSERT INTO audit_logs
        (actor_user_id, action, entity_type, entity_id, old_values, new_values,
         correlation_id, ip)
    SELECT NULL, 'inventory.released', 'product', product_id::text,
        jsonb_build_object('reserved', jsonb_object_agg(warehouse_id::text, reserved + units)),
        jsonb_build_object('reserved', jsonb_object_agg(warehouse_id::text, reserved)),
        $2::text, $3::text
    FROM returned GROUP BY product_id ORDER BY product_id
), event AS (
    INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload)
    SELECT 'stock.changed', 'product', product_id::text,
        jsonb_build_object('reserved', jsonb_object_agg(warehouse_id::text, reserved))
    FROM returned GROUP BY product_id ORDER BY product_id
), lines AS (
    SELECT ci.cart_id, ci.product_id, ci.quantity, g.units
    FROM cart_items ci
    JOIN (SELECT cart_id, product_id, sum(quantity)::int AS units FROM gone GROUP BY 1, 2) g
      ON g.cart_id = ci.cart_id AND g.product_id = ci.product_id
), emptied AS (
    DELETE FROM cart_items ci USING lines l
    WHERE ci.cart_id = l.cart_id AND ci.product_id = l.product_id AND l.quantity <= l.units
), shrunk AS (
    UPDATE cart_items ci SET quantity = l.quantity - l.units FROM lines l
    WHERE ci.cart_id = l.cart_id AND ci.product_id = l.product_id AND l.quantity > l.units
)
SELECT id, cart_id, product_id, warehouse_id, quantity FROM gone ORDER BY id
"""


async def expire_holds(
    db: AsyncSession | Sql, *, product_id: int | None = None, limit: int = 500
) -> list[Hold]:
    """Release up to ``limit`` expired reservations and shrink their cart lines."""
    sql = await Sql.from_(db)
    ids = [r["id"] for r in await sql.fetch(_EXPIRED, limit, product_id)]
    if not ids:
        return []
    await sql.fetchrow(_LOCK_TOUCHED, ids)
    rows = await sql.fetch(_EXPIRE, ids, correlation_id.get(), client_ip.get())
    written()
    RESERVATIONS.labels("expired").inc(len(rows))
    return [Hold(*r) for r in rows]


async def release_expired(
    db: AsyncSession | Sql, *, product_id: int | None = None, limit: int = 500
) -> int:
    """Release expired reservations (one batch); returns how many were released."""
    return len(await expire_holds(db, product_id=product_id, limit=limit))
