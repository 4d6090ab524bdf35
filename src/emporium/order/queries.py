"""Reading orders: scoped to their owner (or an admin), serialised with timeline and shipments."""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.catalog.service import decode_cursor, encode_cursor
from emporium.models import Order, OrderEvent, OrderItem, Payment, Role, Shipment, User
from emporium.order import schemas
from emporium.order.errors import OrderNotFound


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
        shipments=[
            schemas.ShipmentOut(
                warehouse_id=s.warehouse_id,
                tracking_number=s.tracking_number,
                shipped_at=s.created_at,
                delivered_at=s.delivered_at,
            )
            for s in shipments
        ],
        payment=payment,
        created_at=order.created_at,
        paid_at=order.paid_at,
    )


async def serialize(session: AsyncSession, order: Order) -> schemas.Order:
    items = (
        await session.execute(
            select(OrderItem).where(OrderItem.order_id == order.id).order_by(OrderItem.id)
        )
    ).scalars()
    events = (
        await session.execute(
            select(OrderEvent).where(OrderEvent.order_id == order.id).order_by(OrderEvent.id)
        )
    ).scalars()
    shipments = (
        await session.execute(
            select(Shipment).where(Shipment.order_id == order.id).order_by(Shipment.id)
        )
    ).scalars()
    payment = await session.scalar(
        select(Payment).where(Payment.order_id == order.id).order_by(Payment.id.desc()).limit(1)
    )
    return build(
        order,
        items,
        (schemas.TimelineEntry(status=e.status, note=e.note, at=e.created_at) for e in events),
        shipments,
        schemas.PaymentOut(
            status=payment.status,
            amount=payment.amount,
            card_last4=payment.card_last4,
            error_code=payment.error_code,
        )
        if payment
        else None,
    )


async def get_visible(session: AsyncSession, actor: User, order_id: int) -> Order:
    """Another user's order is indistinguishable from a missing one."""
    order = await session.get(Order, order_id)
    if order is None or (order.user_id != actor.id and actor.role != Role.admin):
        raise OrderNotFound(f"order {order_id} does not exist")
    return order


async def page(
    session: AsyncSession, actor: User, cursor: str | None, limit: int
) -> schemas.OrderPage:
    # Newest first; the cursor is the last id seen.
    before = decode_cursor(cursor) or 2**63 - 1
    rows = list(
        (
            await session.execute(
                select(Order)
                .where(Order.user_id == actor.id, Order.id < before)
                .order_by(Order.id.desc())
                .limit(limit + 1)
            )
        ).scalars()
    )
    items = [await serialize(session, o) for o in rows[:limit]]
    return schemas.OrderPage(
        items=items, next_cursor=encode_cursor(rows[limit - 1].id) if len(rows) > limit else None
    )


async def get_visible_for_staff(session: AsyncSession, actor: User, order_id: int) -> Order:
    """Staff see any order id; existence is checked here, rights by the service."""
    order = await session.get(Order, order_id)
    if order is None:
        raise OrderNotFound(f"order {order_id} does not exist")
    return order
