"""Audit rows for an order's shipments and its delivery, written with the changes."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from emporium.audit import service as audit
from emporium.models import Order, Shipment, User
from emporium.order.state import OrderStatus


def record_shipped(
    session: AsyncSession, actor: User, order: Order, was: str, shipment: Shipment
) -> None:
    """One row per shipment: an order shipped from two warehouses gets two."""
    audit.record(
        session,
        actor=actor,
        action="order.shipped",
        entity_type="order",
        entity_id=order.id,
        old={"status": was},
        new={
            "status": order.status,
            "warehouse_id": shipment.warehouse_id,
            "tracking_number": shipment.tracking_number,
        },
    )


def record_delivered(session: AsyncSession, actor: User, order: Order) -> None:
    audit.record(
        session,
        actor=actor,
        action="order.delivered",
        entity_type="order",
        entity_id=order.id,
        old={"status": OrderStatus.shipped.value},
        new={"status": order.status},
    )
