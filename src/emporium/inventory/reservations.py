"""Stock reservations: units held for a cart line until they are released or expire.

Every change keeps ``stock.reserved`` equal to the live reservations plus the units held
by orders, in the same transaction as the reservation rows. Writers take row locks in one
order so they cannot deadlock each other: the cart, its reservation rows, stock rows (by
product, then warehouse), then cart lines.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from prometheus_client import Counter
from sqlalchemy import delete, exists, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.audit import service as audit
from emporium.kit.errors import Conflict
from emporium.kit.outbox import record_event
from emporium.models import CartItem, Reservation, Stock, User

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


async def _lock_free_stock(session: AsyncSession, product_id: int) -> list[tuple[int, int]]:
    # Warehouse order, like every other stock writer: concurrent lockers cannot deadlock.
    rows = await session.execute(
        select(Stock.warehouse_id, Stock.quantity - Stock.reserved)
        .where(Stock.product_id == product_id)
        .order_by(Stock.warehouse_id)
        .with_for_update()
    )
    return [(int(w), int(f)) for w, f in rows.all()]


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


async def reserve(
    session: AsyncSession,
    *,
    cart_id: int,
    product_id: int,
    quantity: int,
    until: datetime,
    actor: User | None = None,
) -> list[Reservation]:
    """Hold ``quantity`` units for a cart line, or raise InsufficientStock changing nothing.

    Expired holds never block a buyer: when stock is short, the product's expired
    reservations are released first and the reservation is tried once more.
    """
    if quantity <= 0:
        raise ValueError("quantity must be positive")
    # Refuse without touching the row locks when a plain read already shows too little
    # and no expired hold could be reclaimed: in a sell-out most buyers end here, and
    # they must not queue behind the buyers who actually get stock.
    row = (
        await session.execute(
            select(
                select(func.coalesce(func.sum(Stock.quantity - Stock.reserved), 0))
                .where(Stock.product_id == product_id)
                .scalar_subquery(),
                exists()
                .where(
                    Reservation.product_id == product_id, Reservation.reserved_until < func.now()
                )
                .correlate(None),
            )
        )
    ).one()
    if int(row[0]) < quantity and not row[1]:
        RESERVATIONS.labels("insufficient").inc()
        raise InsufficientStock(
            f"only {int(row[0])} units of product {product_id} are available",
            available=max(int(row[0]), 0),
        )
    free = await _lock_free_stock(session, product_id)
    available = sum(max(f, 0) for _, f in free)
    if available < quantity and await release_expired(session, product_id=product_id):
        free = await _lock_free_stock(session, product_id)
        available = sum(max(f, 0) for _, f in free)
    if available < quantity:
        RESERVATIONS.labels("insufficient").inc()
        raise InsufficientStock(
            f"only {available} units of product {product_id} are available", available=available
        )
    plan = plan_allocation(free, quantity)
    await _adjust_reserved(
        session, product_id, dict(plan), actor=actor, action="inventory.reserved"
    )
    rows = list(
        await session.scalars(
            insert(Reservation).returning(Reservation, sort_by_parameter_order=True),
            [
                {
                    "cart_id": cart_id,
                    "product_id": product_id,
                    "warehouse_id": warehouse_id,
                    "quantity": units,
                    "reserved_until": until,
                }
                for warehouse_id, units in plan
            ],
        )
    )
    RESERVATIONS.labels("reserved").inc(len(rows))
    return rows


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
    reservations: Sequence[Reservation] | Sequence[int],
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


async def shrink_cart_lines(session: AsyncSession, holds: Sequence[Hold]) -> None:
    """Take released units out of their cart lines; a line left at zero is deleted."""
    per_line: dict[tuple[int, int], int] = defaultdict(int)
    for h in holds:
        per_line[(h.cart_id, h.product_id)] += h.quantity
    for (cart_id, product_id), units in sorted(per_line.items()):
        line = (CartItem.cart_id == cart_id, CartItem.product_id == product_id)
        await session.execute(delete(CartItem).where(*line, CartItem.quantity <= units))
        await session.execute(
            update(CartItem)
            .where(*line, CartItem.quantity > units)
            .values(quantity=CartItem.quantity - units)
            .execution_options(synchronize_session=False)
        )


async def expire_holds(
    session: AsyncSession, *, product_id: int | None = None, limit: int = 500
) -> list[Hold]:
    """Release up to ``limit`` expired reservations and shrink their cart lines.

    ``SKIP LOCKED``: several workers share the work, and rows a cart request is touching
    right now are left to that request.
    """
    stmt = (
        select(Reservation.id)
        .where(Reservation.reserved_until < func.now())
        .order_by(Reservation.id)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    if product_id is not None:
        stmt = stmt.where(Reservation.product_id == product_id)
    ids = list(await session.scalars(stmt))
    holds = await _delete_reservations(session, ids, actor=None, status="expired")
    await shrink_cart_lines(session, holds)
    return holds


async def release_expired(
    session: AsyncSession, *, product_id: int | None = None, limit: int = 500
) -> int:
    """Release expired reservations (one batch); returns how many were released."""
    return len(await expire_holds(session, product_id=product_id, limit=limit))
