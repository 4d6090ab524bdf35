"""Statements for orders and the stock movements they cause (atomic SQL, no read-modify-write)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.kit import jsoncodec
from emporium.kit.outbox import written
from emporium.kit.repository import Repository
from emporium.kit.sql import Sql
from emporium.models import Order, OrderAllocation, Stock, User


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


# Paying is one statement, for one order or several (one row of the arrays each, order
# ids ascending): the order moves to paid (only from pending_payment), its
# held allocations are committed and their units leave stock, the payment is captured,
# and the timeline, audit trail and outbox record it all, with the checkout's
# idempotent answer. No row back: the order was not pending. The stock rows are taken
# by a plain UPDATE, relative to their latest version, so it needs no earlier lock;
# rows are visited in (product, warehouse) order, and a deadlock is retried by the
# caller. Run on its own (autocommit), its locks last no longer than the statement.
# No stock.changed event: quantity and reserved fall together, so what a buyer can add
# to a cart (quantity - reserved) is what it was; order.paid reports the units leaving.
# Two orders may take units from the same stock row, so the units are summed per row
# first: an UPDATE ... FROM changes a row once, whatever it joins. Without an answer
# (NULL user and key) no idempotency key is touched.
PAY_MANY_SQL = """
WITH p AS (
    SELECT * FROM unnest($1::bigint[], $2::timestamptz[], $3::text[], $4::bigint[],
                         $5::text[], $6::text[], $7::bigint[], $8::int[], $9::text[],
                         $10::text[])
        AS p(id, at, charge, actor, cid, ip, answer_user, answer_status, answer_body,
             answer_key)
), o AS (
    UPDATE orders SET status = 'paid', paid_at = p.at, updated_at = p.at
    FROM p WHERE orders.id = p.id AND orders.status = 'pending_payment'
    RETURNING orders.*
), taken AS (
    UPDATE order_allocations SET state = 'committed'
    WHERE order_id IN (SELECT id FROM o) AND state = 'held'
    RETURNING order_id, product_id, warehouse_id, quantity
), stock_out AS (
    UPDATE stock SET quantity = stock.quantity - t.quantity,
                     reserved = stock.reserved - t.quantity, updated_at = now()
    FROM (
        SELECT product_id, warehouse_id, sum(quantity)::int AS quantity FROM taken
        GROUP BY product_id, warehouse_id ORDER BY product_id, warehouse_id
    ) t
    WHERE stock.product_id = t.product_id AND stock.warehouse_id = t.warehouse_id
), payment AS (
    UPDATE payments SET status = 'captured', gateway_payment_id = p.charge,
                        updated_at = p.at
    FROM o JOIN p ON p.id = o.id
    WHERE payments.order_id = o.id AND payments.status = 'pending'
), timeline AS (
    INSERT INTO order_events (order_id, status, note, actor_user_id, created_at)
    SELECT o.id, 'paid', '', p.actor, p.at FROM o JOIN p ON p.id = o.id ORDER BY o.id
), audit AS (
    INSERT INTO audit_logs (actor_user_id, action, entity_type, entity_id, old_values,
                            new_values, correlation_id, ip)
    SELECT p.actor, action, entity_type, entity_id, NULL, new_values, p.cid, p.ip
    FROM (
        SELECT o.id AS order_id, 0 AS n, 0::bigint AS pr, 0::bigint AS w,
            'payment.completed' AS action, 'order' AS entity_type, o.id::text AS entity_id,
            jsonb_build_object('amount', o.total::text, 'gateway_payment_id', p.charge)
                AS new_values
        FROM o JOIN p ON p.id = o.id
        UNION ALL
        SELECT t.order_id, 1, t.product_id, t.warehouse_id, 'inventory.adjusted',
            'product', t.product_id::text,
            jsonb_build_object('warehouse_id', t.warehouse_id, 'quantity', -t.quantity)
        FROM taken t
    ) rows JOIN p ON p.id = rows.order_id
    ORDER BY rows.order_id, rows.n, rows.pr, rows.w
), event AS (
    INSERT INTO outbox (topic, aggregate_type, aggregate_id, payload)
    SELECT 'order.paid', 'order', o.id::text, '{}'::jsonb FROM o ORDER BY o.id
), answer AS (
    UPDATE idempotency_keys k
    SET state = 'completed', response_status = p.answer_status,
        response_body = p.answer_body::json, order_id = o.id
    FROM o JOIN p ON p.id = o.id
    WHERE k.user_id = p.answer_user AND k.key = p.answer_key AND k.state = 'processing'
)
SELECT * FROM o
"""
_ANSWER = """
UPDATE idempotency_keys
SET state = 'completed', response_status = $3, response_body = $4::text::json, order_id = $5
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
class Capture:
    """A captured charge to record: what :meth:`OrderWrites.pay_many` needs per order,
    including the request's correlation id and address for the audit trail."""

    order_id: int
    gateway_payment_id: str | None  # None for a free order: nothing was charged
    actor: User | None
    at: datetime
    answer: Answer | None
    correlation_id: str | None
    ip: str | None


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
        return None if row is None else Order.from_row(dict(row))

    async def pay(self, capture: Capture) -> Order | None:
        """Mark a pending order paid (None if it was not pending), answering its key."""
        return (await self.pay_many([capture]))[0]

    async def pay_many(self, payments: Sequence[Capture]) -> list[Order | None]:
        """:meth:`pay` for several orders in one statement; one outcome each, in order."""
        todo = sorted(payments, key=lambda p: p.order_id)
        rows = await (await Sql.from_(self.unit)).fetch(
            PAY_MANY_SQL,
            [p.order_id for p in todo],
            [p.at for p in todo],
            [p.gateway_payment_id for p in todo],
            [p.actor.id if p.actor else None for p in todo],
            [p.correlation_id for p in todo],
            [p.ip for p in todo],
            [p.answer.user_id if p.answer else None for p in todo],
            [p.answer.status if p.answer else None for p in todo],
            [jsoncodec.dumps(p.answer.body, default=str) if p.answer else None for p in todo],
            [p.answer.key if p.answer else None for p in todo],
        )
        if rows:
            written()
        paid = {row["id"]: Order.from_row(dict(row)) for row in rows}
        return [paid.get(p.order_id) for p in payments]

    async def answer(self, answer: Answer, order_id: int | None) -> None:
        """Record the final response of a key still being processed."""
        await (await Sql.from_(self.unit)).execute(
            _ANSWER,
            answer.user_id,
            answer.key,
            answer.status,
            jsoncodec.dumps(answer.body, default=str),
            order_id,
        )
