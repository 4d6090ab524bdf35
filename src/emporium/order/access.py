"""What staff may see of an order and do with it.

An admin may see and act on any order. A seller manages only its own products: it sees
an order with an item of its own, and only those items; it ships a warehouse's
allocation only if every unit in it is its own, and delivers or refunds (whole-order
acts) only an order whose every item is its own. An order with nothing of the seller's
is, to that seller, one that does not exist. What a seller is shown of an order it
acted on is its own part: its items and their total, and the shipments of the warehouses
its units come from, without the buyer's payment.
"""

from __future__ import annotations

from decimal import Decimal

from sqlalchemy import ColumnElement, and_, exists, false, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.models import Order, OrderAllocation, OrderItem, Role, User
from emporium.order import schemas
from emporium.order.errors import NotOrderSeller, OrderNotFound


def sold_by(actor: User) -> ColumnElement[bool]:
    """Orders an admin may fulfil (all), or a seller (those with an item of its own)."""
    if actor.role == Role.admin:
        return true()
    if actor.role != Role.seller or actor.seller_id is None:
        return false()
    return exists().where(OrderItem.order_id == Order.id, OrderItem.seller_id == actor.seller_id)


def own_items(actor: User) -> ColumnElement[bool]:
    """The order items the actor may see: all for an admin, its own for a seller."""
    if actor.role == Role.admin:
        return true()
    if actor.role != Role.seller or actor.seller_id is None:
        return false()
    return OrderItem.seller_id == actor.seller_id


def _check_stake(actor: User, order_id: int, sellers: set[int]) -> None:
    # The same answer as for a missing order: a 403 would tell that this one exists.
    if actor.role != Role.seller or actor.seller_id not in sellers:
        raise OrderNotFound(f"order {order_id} does not exist")


def _own_units() -> ColumnElement[bool]:
    return and_(
        OrderAllocation.order_id == OrderItem.order_id,
        OrderAllocation.product_id == OrderItem.product_id,
    )


async def staff_view(session: AsyncSession, actor: User, view: schemas.Order) -> schemas.Order:
    """The order as ``actor`` may see it: whole for an admin, the seller's part for a
    seller (see the module docstring)."""
    if actor.role == Role.admin:
        return view
    rows = (
        await session.execute(
            select(OrderItem.product_id, OrderAllocation.warehouse_id)
            .outerjoin(OrderAllocation, _own_units())
            .where(OrderItem.order_id == view.id, OrderItem.seller_id == actor.seller_id)
        )
    ).all()
    products = {product for product, _ in rows}
    warehouses = {warehouse for _, warehouse in rows if warehouse is not None}
    items = [i for i in view.items if i.product_id in products]
    subtotal = sum((i.line_total for i in items), Decimal("0.00"))
    return view.model_copy(
        update={
            "items": items,
            "subtotal": subtotal,
            "total": subtotal + view.shipping_total,
            "shipments": [s for s in view.shipments if s.warehouse_id in warehouses],
            "payment": None,
        }
    )


async def check_order(session: AsyncSession, actor: User, order_id: int, act: str) -> None:
    """A seller may ``act`` (deliver, refund) on the whole order only if every item is its own."""
    if actor.role == Role.admin:
        return
    sellers = set(
        (
            await session.execute(
                select(OrderItem.seller_id).where(OrderItem.order_id == order_id).distinct()
            )
        ).scalars()
    )
    _check_stake(actor, order_id, sellers)
    if sellers != {actor.seller_id}:
        raise NotOrderSeller(
            f"order {order_id} holds other sellers' products; only an admin may {act} it"
        )


async def check_shipment(
    session: AsyncSession, actor: User, order_id: int, warehouse_id: int
) -> None:
    """A seller may ship a warehouse's allocation only if every unit in it is its own."""
    if actor.role == Role.admin:
        return
    # Each seller of the order with the warehouses its units come from (None: none yet).
    rows = (
        await session.execute(
            select(OrderItem.seller_id, OrderAllocation.warehouse_id)
            .outerjoin(OrderAllocation, _own_units())
            .where(OrderItem.order_id == order_id)
            .distinct()
        )
    ).all()
    _check_stake(actor, order_id, {seller for seller, _ in rows})
    if any(w == warehouse_id and seller != actor.seller_id for seller, w in rows):
        raise NotOrderSeller(
            f"warehouse {warehouse_id}'s shipment of order {order_id} holds other sellers'"
            " products; only an admin may ship it"
        )
