"""Statements for orders and the stock movements they cause (atomic SQL, no read-modify-write)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.kit.logging import client_ip, correlation_id
from emporium.kit.outbox import written
from emporium.kit.repository import Repository
from emporium.kit.sql import Sql
from emporium.models import Order, OrderAllocation, Stock


class OrderRepository(Repository):
    async def lock(self, order_id: int) -> Order | None:
        return await self.session.scalar(
            select(Order).where(Order.id == order_id).with_for_update()
        )

    async def allocations(
        self, order_id: int, state: str | None = None
    ) -> Sequence[OrderAllocation]:
        stmt = select(OrderAllocation).where(OrderAllocation.order_id == order_id)
        if state is not None:
            stmt = stmt.where(OrderAllocation.state == state)
        # Stable order: stock rows are always touched in (product, warehouse) order.
        stmt = stmt.order_by(OrderAllocation.product_id, OrderAllocation.warehouse_id)
        return (await self.session.execute(stmt)).scalars().all()

    async def _stock(self, a: OrderAllocation, *, quantity: int, reserved: int) -> None:
        await self.session.execute(
            update(Stock)
            .where(Stock.product_id == a.product_id, Stock.warehouse_id == a.warehouse_id)
            .values(quantity=Stock.quantity + quantity, reserved=Stock.reserved + reserved)
        )

    async def release_held(self, allocations: Sequence[OrderAllocation]) -> None:
        for a in allocations:
            await self._stock(a, quantity=0, reserved=-a.quantity)
            a.state = "released"

    async def restock(self, allocations: Sequence[OrderAllocation]) -> None:
        for a in allocations:
            await self._stock(a, quantity=a.quantity, reserved=0)
            a.state = "restocked"


# Placing an order is one statement: the order, its items and allocations, the payment
# row, the first timeline entry, the audit row and the outbox event, while the cart's
# holds and lines go away. The held units stay in stock.reserved: they now belong to
# the order.
_PLACE = """
WITH o AS (
    INSERT INTO orders (user_id, status, subtotal, shipping_total, total, shipping_address,
                        idempotency_key, created_at, updated_at)
    VALUES ($1::bigint, 'pending_payment', $2::numeric, 0, $2::numeric, $3::text::jsonb,
            $4::text, $5::timestamptz, $5::timestamptz)
    RETURNING id
), items AS (
    INSERT INTO order_items (order_id, product_id, seller_id, title, unit_price, quantity,
                             line_total)
    SELECT o.id, i.* FROM o, unnest($6::bigint[], $7::bigint[], $8::text[], $9::numeric[],
                                    $10::int[], $11::numeric[]) AS i
), allocations AS (
    INSERT INTO order_allocations (order_id, product_id, warehouse_id, quantity)
    SELECT o.id, a.* FROM o, unnest($12::bigint[], $13::bigint[], $14::int[]) AS a
), holds AS (
    DELETE FROM reservations WHERE id = ANY($15::bigint[])
), lines AS (
    DELETE FROM cart_items WHERE cart_id = $16::bigint
), payment AS (
    INSERT INTO payments (order_id, gateway, idempotency_key, status, amount, card_last4)
    SELECT o.id, $17::text, 'order-' || o.id, 'pending', $2::numeric, $18::text FROM o
), timeline AS (
    INSERT INTO order_events (order_id, status, note, actor_user_id, created_at)
    SELECT o.id, 'pending_payment', '', $1::bigint, $5::timestamptz FROM o
), audit AS (
    INSERT INTO audit_logs (actor_user_id, action, entity_type, entity_id, old_values,
                            new_values, correlation_id, ip)
    SELECT $1::bigint, 'order.created', 'order', o.id::text, NULL,
        jsonb_build_object('total', $2::numeric::text, 'items', $19::int), $20::text, $21::text
    FROM o
), event AS (
    INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload)
    SELECT 'order.created', 'order', o.id::text, '{}'::jsonb FROM o
)
SELECT id FROM o
"""

# Paying is one statement: the order moves to paid (only from pending_payment), its
# held allocations are committed and their units leave stock, the payment is captured,
# and the timeline, audit trail and outbox record it all, with the checkout's
# idempotent answer. No row back: the order was not pending. The stock rows are taken
# by a plain UPDATE, relative to their latest version, so it needs no earlier lock;
# rows are visited in (product, warehouse) order, and a deadlock is retried by the
# caller. Run on its own (autocommit), its locks last no longer than the statement.
_PAY = """
WITH o AS MATERIALIZED (SELECT id FROM orders WHERE id = $1::bigint FOR UPDATE),
s AS MATERIALIZED (
    SELECT 1 FROM stock
    WHERE (product_id, warehouse_id) IN (
        SELECT product_id, warehouse_id FROM order_allocations
        WHERE order_id = (SELECT id FROM o) AND state = 'held')
    ORDER BY product_id, warehouse_id
    FOR UPDATE
)
SELECT count(*) FROM s
"""
_PAY = """
WITH o AS (
    UPDATE orders SET status = 'paid', paid_at = $2::timestamptz, updated_at = $2::timestamptz
    WHERE id = $1::bigint AND status = 'pending_payment'
    RETURNING *
), taken AS (
    UPDATE order_allocations SET state = 'committed'
    WHERE order_id = (SELECT id FROM o) AND state = 'held'
    RETURNING product_id, warehouse_id, quantity
), stock_out AS (
    UPDATE stock SET quantity = stock.quantity - t.quantity,
                     reserved = stock.reserved - t.quantity, updated_at = now()
    FROM (SELECT * FROM taken ORDER BY product_id, warehouse_id) t
    WHERE stock.product_id = t.product_id AND stock.warehouse_id = t.warehouse_id
), payment AS (
    UPDATE payments SET status = 'captured', gateway_payment_id = $3::text,
                        updated_at = $2::timestamptz
    WHERE order_id = (SELECT id FROM o) AND status = 'pending'
), timeline AS (
    INSERT INTO order_events (order_id, status, note, actor_user_id, created_at)
    SELECT o.id, 'paid', '', $4::bigint, $2::timestamptz FROM o
), audit AS (
    INSERT INTO audit_logs (actor_user_id, action, entity_type, entity_id, old_values,
                            new_values, correlation_id, ip)
    SELECT $4::bigint, action, entity_type, entity_id, NULL, new_values, $5::text, $6::text
    FROM (
        SELECT 0 AS n, 0::bigint AS p, 0::bigint AS w, 'payment.completed' AS action,
            'order' AS entity_type, o.id::text AS entity_id,
            jsonb_build_object('amount', o.total::text, 'gateway_payment_id', $3::text)
                AS new_values
        FROM o
        UNION ALL
        SELECT 1, t.product_id, t.warehouse_id, 'inventory.adjusted', 'product',
            t.product_id::text,
            jsonb_build_object('warehouse_id', t.warehouse_id, 'quantity', -t.quantity)
        FROM taken t
        ORDER BY 1, 2, 3
    ) rows
), event AS (
    INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload)
    SELECT topic, aggregate_type, aggregate_id, '{}'::jsonb
    FROM (
        SELECT 0 AS n, 0::bigint AS p, 'order.paid' AS topic, 'order' AS aggregate_type,
            o.id::text AS aggregate_id
        FROM o
        UNION ALL
        SELECT DISTINCT 1, t.product_id, 'stock.changed', 'product', t.product_id::text
        FROM taken t
        ORDER BY 1, 2
    ) rows
), answer AS (
    UPDATE idempotency_keys
    SET state = 'completed', response_status = $8::int, response_body = $9::text::jsonb,
        order_id = (SELECT id FROM o)
    WHERE user_id = $7::bigint AND key = $10::text AND state = 'processing'
      AND EXISTS (SELECT 1 FROM o)
)
SELECT * FROM o
"""
_ANSWER = """
UPDATE idempotency_keys
SET state = 'completed', response_status = $3, response_body = $4::text::jsonb, order_id = $5
WHERE user_id = $1 AND key = $2 AND state = 'processing'
"""


@dataclass(frozen=True)
class Answer:
    """The final response to an idempotent request, stored with the change it reports."""

    user_id: int
    key: str
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class PlacedLine:
    product_id: int
    seller_id: int
    title: str
    unit_price: Decimal
    quantity: int
    line_total: Decimal


class OrderWrites:
    """The checkout's hot statements, in plain SQL, on either kind of unit of work."""

    def __init__(self, unit: AsyncSession | Sql) -> None:
        self.unit = unit

    @classmethod
    def from_session(cls, unit: AsyncSession | Sql) -> OrderWrites:
        return cls(unit)

    async def lock(self, order_id: int) -> Order | None:
        """The order, row locked, detached from any session."""
        row = await (await Sql.from_(self.unit)).fetchrow(
            "SELECT * FROM orders WHERE id = $1 FOR UPDATE", order_id
        )
        return None if row is None else Order(**dict(row))

    async def place(
        self,
        *,
        user_id: int,
        total: Decimal,
        shipping_address: dict[str, Any],
        idempotency_key: str | None,
        created_at: datetime,
        lines: Sequence[PlacedLine],
        allocations: Sequence[tuple[int, int, int]],
        reservation_ids: Sequence[int],
        cart_id: int,
        gateway: str,
        card_last4: str | None,
    ) -> int:
        order_id: int = await (await Sql.from_(self.unit)).fetchval(
            _PLACE,
            user_id,
            total,
            json.dumps(shipping_address),
            idempotency_key,
            created_at,
            [line.product_id for line in lines],
            [line.seller_id for line in lines],
            [line.title for line in lines],
            [line.unit_price for line in lines],
            [line.quantity for line in lines],
            [line.line_total for line in lines],
            [a[0] for a in allocations],
            [a[1] for a in allocations],
            [a[2] for a in allocations],
            list(reservation_ids),
            cart_id,
            gateway,
            card_last4,
            sum(line.quantity for line in lines),
            correlation_id.get(),
            client_ip.get(),
        )
        written()
        return order_id

    async def pay(
        self,
        order_id: int,
        gateway_payment_id: str,
        actor_id: int | None,
        at: datetime,
        answer: Answer | None = None,
    ) -> Order | None:
        """Mark a pending order paid (None if it was not pending), answering its key."""
        db = await Sql.from_(self.unit)
        row = await db.fetchrow(
            _PAY,
            order_id,
            at,
            gateway_payment_id,
            actor_id,
            correlation_id.get(),
            client_ip.get(),
            answer.user_id if answer else None,
            answer.status if answer else None,
            json.dumps(answer.body, default=str) if answer else None,
            answer.key if answer else None,
        )
        if row is None:
            return None
        written()
        return Order(**dict(row))

    async def answer(self, answer: Answer, order_id: int | None) -> None:
        """Record the final response of a key still being processed."""
        await (await Sql.from_(self.unit)).execute(
            _ANSWER,
            answer.user_id,
            answer.key,
            answer.status,
            json.dumps(answer.body, default=str),
            order_id,
        )
