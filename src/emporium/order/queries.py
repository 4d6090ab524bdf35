"""Reading orders: scoped to their owner (or an admin), serialised with timeline and
shipments; for fulfillment, scoped to their sellers (or an admin), by warehouse, a
seller seeing only its own products' units."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import distinct_on
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.catalog.service import decode_cursor, encode_cursor
from emporium.models import (
    Order,
    OrderAllocation,
    OrderEvent,
    OrderItem,
    Payment,
    Role,
    Shipment,
    User,
)
from emporium.order import access, schemas
from emporium.order.errors import OrderNotFound


def _shipment(s: Shipment) -> schemas.ShipmentOut:
    return schemas.ShipmentOut(
        warehouse_id=s.warehouse_id,
        tracking_number=s.tracking_number,
        shipped_at=s.created_at,
        delivered_at=s.delivered_at,
    )


def build(
    order: Order,
    items: Iterable[OrderItem],
    timeline: Iterable[schemas.TimelineEntry],
    shipments: Iterable[Shipment],
    payment: schemas.PaymentOut | None,
) -> schemas.Order:
    return schemas.Order(
        id=order.id,
        status=order.status,
        currency=order.currency,
        subtotal=order.subtotal,
        shipping_total=order.shipping_total,
        total=order.total,
        shipping_address=order.shipping_address,
        items=[schemas.OrderItem.model_validate(i) for i in items],
        timeline=list(timeline),
        shipments=[_shipment(s) for s in shipments],
        payment=payment,
        created_at=order.created_at,
        paid_at=order.paid_at,
    )


async def serialize(session: AsyncSession, order: Order) -> schemas.Order:
    return (await serialize_many(session, [order]))[0]


async def serialize_many(session: AsyncSession, orders: Sequence[Order]) -> list[schemas.Order]:
    """The orders with their items, timelines, shipments and latest payments: four
    queries for any number of orders, not four per order."""
    ids = [o.id for o in orders]
    if not ids:
        return []
    items: dict[int, list[OrderItem]] = defaultdict(list)
    for item in (
        await session.execute(
            select(OrderItem).where(OrderItem.order_id.in_(ids)).order_by(OrderItem.id)
        )
    ).scalars():
        items[item.order_id].append(item)
    timelines: dict[int, list[schemas.TimelineEntry]] = defaultdict(list)
    for e in (
        await session.execute(
            select(OrderEvent).where(OrderEvent.order_id.in_(ids)).order_by(OrderEvent.id)
        )
    ).scalars():
        timelines[e.order_id].append(
            schemas.TimelineEntry(status=e.status, note=e.note, at=e.created_at)
        )
    shipments: dict[int, list[Shipment]] = defaultdict(list)
    for s in (
        await session.execute(
            select(Shipment).where(Shipment.order_id.in_(ids)).order_by(Shipment.id)
        )
    ).scalars():
        shipments[s.order_id].append(s)
    payments = {
        p.order_id: schemas.PaymentOut(
            status=p.status, amount=p.amount, card_last4=p.card_last4, error_code=p.error_code
        )
        for p in (
            await session.execute(
                select(Payment)
                .where(Payment.order_id.in_(ids))
                .order_by(Payment.order_id, Payment.id.desc())
                .ext(distinct_on(Payment.order_id))  # the latest payment of each
            )
        ).scalars()
    }
    return [
        build(o, items[o.id], timelines[o.id], shipments[o.id], payments.get(o.id)) for o in orders
    ]


async def get_visible(session: AsyncSession, actor: User, order_id: int) -> Order:
    """Another user's order is indistinguishable from a missing one."""
    order = await session.get(Order, order_id)
    if order is None or (order.user_id != actor.id and actor.role != Role.admin):
        raise OrderNotFound(f"order {order_id} does not exist")
    return order


async def page(
    session: AsyncSession,
    actor: User,
    statuses: Sequence[str] | None,
    cursor: str | None,
    limit: int,
) -> schemas.OrderPage:
    # Newest first; the cursor is the last id seen.
    before = decode_cursor(cursor) or 2**63 - 1
    query = select(Order).where(Order.user_id == actor.id, Order.id < before)
    if statuses:
        query = query.where(Order.status.in_(statuses))
    rows = list((await session.execute(query.order_by(Order.id.desc()).limit(limit + 1))).scalars())
    items = await serialize_many(session, rows[:limit])
    return schemas.OrderPage(
        items=items, next_cursor=encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    )


async def get_visible_for_staff(session: AsyncSession, actor: User, order_id: int) -> Order:
    """An order a seller has no item in is, to it, indistinguishable from a missing one;
    what it may do with the others is for the service to say."""
    order = await session.scalar(select(Order).where(Order.id == order_id, access.sold_by(actor)))
    if order is None:
        raise OrderNotFound(f"order {order_id} does not exist")
    return order


async def fulfillment_page(
    session: AsyncSession,
    actor: User,
    statuses: Sequence[str],
    cursor: str | None,
    limit: int,
) -> schemas.FulfillmentPage:
    # Newest first, as the buyer's list: recent orders are the ones still to ship.
    before = decode_cursor(cursor) or 2**63 - 1
    rows = list(
        (
            await session.execute(
                select(Order)
                .where(Order.status.in_(statuses), Order.id < before, access.sold_by(actor))
                .order_by(Order.id.desc())
                .limit(limit + 1)
            )
        ).scalars()
    )
    return schemas.FulfillmentPage(
        items=await _fulfillment(session, actor, rows[:limit]),
        next_cursor=encode_cursor(rows[limit - 1].id) if len(rows) > limit else None,
    )


async def fulfillment_order(
    session: AsyncSession, actor: User, order_id: int
) -> schemas.FulfillmentOrder:
    """Another seller's order is indistinguishable from a missing one."""
    order = await get_visible_for_staff(session, actor, order_id)
    return (await _fulfillment(session, actor, [order]))[0]


async def _fulfillment(
    session: AsyncSession, actor: User, orders: Sequence[Order]
) -> list[schemas.FulfillmentOrder]:
    """The orders' units by warehouse: for a seller only its own products' units, and only
    the warehouses (with their shipments) that hold some."""
    if not orders:
        return []
    ids = [o.id for o in orders]
    titles = {
        (r.order_id, r.product_id): r.title
        for r in await session.execute(
            select(OrderItem.order_id, OrderItem.product_id, OrderItem.title).where(
                OrderItem.order_id.in_(ids), access.own_items(actor)
            )
        )
    }
    lines: dict[int, dict[int, list[schemas.FulfillmentLine]]] = defaultdict(dict)
    for a in await session.execute(
        select(
            OrderAllocation.order_id,
            OrderAllocation.warehouse_id,
            OrderAllocation.product_id,
            OrderAllocation.quantity,
        )
        .where(OrderAllocation.order_id.in_(ids), OrderAllocation.state == "committed")
        .order_by(OrderAllocation.warehouse_id, OrderAllocation.product_id)
    ):
        if (a.order_id, a.product_id) not in titles:
            continue  # another seller's product
        lines[a.order_id].setdefault(a.warehouse_id, []).append(
            schemas.FulfillmentLine(
                product_id=a.product_id,
                title=titles[a.order_id, a.product_id],
                quantity=a.quantity,
            )
        )
    shipments = {
        (s.order_id, s.warehouse_id): _shipment(s)
        for s in (
            await session.execute(select(Shipment).where(Shipment.order_id.in_(ids)))
        ).scalars()
    }
    return [
        schemas.FulfillmentOrder(
            id=o.id,
            status=o.status,
            shipping_address=o.shipping_address,
            created_at=o.created_at,
            paid_at=o.paid_at,
            warehouses=[
                schemas.FulfillmentWarehouse(
                    warehouse_id=w, lines=ls, shipment=shipments.get((o.id, w))
                )
                for w, ls in lines[o.id].items()
            ],
        )
        for o in orders
    ]
