"""Order lifecycle. Each method runs inside the caller's transaction and only flushes."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

import asyncpg
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.audit import service as audit
from emporium.cart.repository import CartRepository
from emporium.cart.service import give_back
from emporium.inventory.reservations import (
    RESERVATIONS,
    InsufficientStock,
    refuse,
    release_expired,
)
from emporium.kit import jsoncodec
from emporium.kit.errors import Conflict
from emporium.kit.logging import client_ip, correlation_id
from emporium.kit.outbox import record_event, written
from emporium.kit.sql import Sql
from emporium.models import (
    Order,
    OrderEvent,
    OrderItem,
    Payment,
    Reservation,
    Shipment,
    User,
)
from emporium.order import access, refunds
from emporium.order.errors import NothingToShip, OrderNotFound
from emporium.order.metrics import ORDER_VALUE, ORDERS
from emporium.order.refunds import RefundDue
from emporium.order.repository import Answer, Capture, OrderRepository, OrderWrites
from emporium.order.shipping_audit import record_delivered, record_shipped
from emporium.order.state import CANCELLABLE, OrderStatus, check_transition


def cancelled_during_payment(order_id: int) -> dict[str, Any]:
    """A checkout's final answer when its order was cancelled before it was paid."""
    return {
        "error": "order_cancelled",
        "detail": "the order was cancelled during payment",
        "order_id": order_id,
    }


class CartEmpty(Conflict):
    code = "cart_empty"


class ProductUnavailable(Conflict):
    code = "product_unavailable"


# Step 1 of checkout is one call of the database function checkout_place (migration
# 0005): claim the key, lock the cart and its holds, take lapsed holds again, place the
# order. Outside a transaction it commits on its own.
PLACE_SQL = "SELECT * FROM checkout_place($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
PLACE_MANY_SQL = (
    "SELECT * FROM checkout_place_many($1::bigint[], $2::text[], $3::text[], $4::text[],"
    " $5::timestamptz[], $6::timestamptz[], $7, $8::text[], $9::text[], $10::text[])"
    " ORDER BY ordinal"
)


@dataclass(frozen=True)
class Checkout:
    """What placing one checkout's order needs, with the request's correlation id and
    address for the audit trail (taken when it is built, in the request)."""

    user: User
    shipping_address: dict[str, Any]
    idempotency_key: str | None
    request_digest: str | None
    gateway_name: str
    card_last4: str | None
    created: datetime
    until: datetime
    correlation_id: str | None
    ip: str | None

    @classmethod
    def now(
        cls,
        user: User,
        shipping_address: dict[str, Any],
        *,
        idempotency_key: str | None,
        request_digest: str | None,
        gateway_name: str,
        card_last4: str | None,
        reservation_ttl: timedelta,
    ) -> Checkout:
        created = datetime.now(UTC)
        return cls(
            user,
            shipping_address,
            idempotency_key,
            request_digest,
            gateway_name,
            card_last4,
            created,
            created + reservation_ttl,
            correlation_id.get(),
            client_ip.get(),
        )

    def args(self) -> tuple[Any, ...]:
        """checkout_place's arguments."""
        return (
            self.user.id,
            self.idempotency_key,
            self.request_digest,
            jsoncodec.dumps(self.shipping_address),
            self.created,
            self.until,
            self.gateway_name,
            self.card_last4,
            self.correlation_id,
            self.ip,
        )


@dataclass(frozen=True)
class Placement:
    """The placed order, gateway key and items; or the claimed key's row to replay."""

    placed: tuple[Order, str, list[OrderItem]] | None = None
    replay: dict[str, Any] | None = None


@dataclass(frozen=True)
class _Reclaimable:
    """Short of stock, but expired holds of the product could be released."""

    product_id: int
    refused: InsufficientStock


async def _place(db: Sql, args: tuple[Any, ...]) -> asyncpg.Record:
    # Inside a caller's transaction a refusal must not abort it: use a savepoint.
    if db.in_transaction:
        async with db.atomic():
            row = await db.fetchrow(PLACE_SQL, *args)
    else:
        row = await db.fetchrow(PLACE_SQL, *args)
    assert row is not None
    return row


def _refusal(exc: asyncpg.RaiseError) -> Exception | _Reclaimable:
    """The domain error for a refusal raised by checkout_place."""
    if exc.message == "cart_empty":
        return CartEmpty("the cart is empty")
    if exc.message == "product_unavailable":
        return ProductUnavailable(
            "some products are no longer sold", product_ids=json.loads(exc.detail or "[]")
        )
    if exc.message == "insufficient_stock":
        detail = json.loads(exc.detail or "{}")
        refused = refuse(detail["product_id"], detail["available"])
        if detail["reclaimable"]:
            return _Reclaimable(detail["product_id"], refused)
        return refused
    return exc


class OrderService:
    async def _event(
        self,
        session: AsyncSession,
        order: Order,
        status: OrderStatus,
        actor: User | None,
        note: str = "",
        at: datetime | None = None,
    ) -> None:
        # Timestamps are set here so a response built from memory matches the stored rows.
        session.add(
            OrderEvent(
                order_id=order.id,
                status=status.value,
                note=note,
                actor_user_id=actor.id if actor else None,
                created_at=at or datetime.now(UTC),
            )
        )
        ORDERS.labels(status.value).inc()

    async def _transition(
        self,
        session: AsyncSession,
        order: Order,
        target: OrderStatus,
        actor: User | None,
        note: str = "",
    ) -> None:
        check_transition(order.status, target)
        order.status = target.value
        await self._event(session, order, target, actor, note)
        record_event(session, f"order.{target.value}", "order", order.id)

    async def create_from_cart(
        self,
        session: AsyncSession | Sql,
        user: User,
        shipping_address: dict[str, Any],
        *,
        idempotency_key: str | None,
        gateway_name: str,
        card_last4: str | None,
        reservation_ttl: timedelta,
    ) -> tuple[Order, str, list[OrderItem]]:
        """Turn the cart's reservations into the order's allocations (step 1 of checkout).

        Returns the order, the payment's gateway idempotency key, and the items.
        """
        checkout = Checkout.now(
            user,
            shipping_address,
            idempotency_key=idempotency_key,
            request_digest=None,
            gateway_name=gateway_name,
            card_last4=card_last4,
            reservation_ttl=reservation_ttl,
        )
        placement = await self.place(await Sql.from_(session), checkout)
        assert placement.placed is not None
        return placement.placed

    async def place(self, db: Sql, checkout: Checkout) -> Placement:
        """Place one checkout's order, first claiming its idempotency key when it has a
        request digest; a key already claimed comes back as ``replay``."""
        args = checkout.args()
        try:
            row = await _place(db, args)
        except asyncpg.RaiseError as exc:
            refusal = _refusal(exc)
            if not isinstance(refusal, _Reclaimable):
                raise refusal from None
            # Expired holds never block a buyer: release the product's and try once
            # more, in one transaction, so a refusal leaves even those as they were.
            try:
                async with db.atomic():
                    if not await release_expired(db, product_id=refusal.product_id):
                        raise refusal.refused from None
                    row = await _place(db, args)
            except asyncpg.RaiseError as again:
                refusal = _refusal(again)
                raise (refusal.refused if isinstance(refusal, _Reclaimable) else refusal) from None
        return self._placed(row, checkout)

    async def place_many(self, db: Sql, checkouts: Sequence[Checkout]) -> list[Placement | None]:
        """Place several checkouts' orders in one call, one outcome each in order; a
        refused one gets None and nothing of it stays: :meth:`place` alone says why."""
        todo = sorted(range(len(checkouts)), key=lambda n: checkouts[n].user.id)
        (gateway,) = {c.gateway_name for c in checkouts}
        columns = list(zip(*(checkouts[n].args() for n in todo), strict=True))
        rows = await db.fetch(PLACE_MANY_SQL, *columns[:6], gateway, *columns[7:])
        outcomes: list[Placement | None] = [None] * len(checkouts)
        for row in rows:
            n = todo[row["ordinal"] - 1]
            if row["error"] is None:
                outcomes[n] = self._placed(row, checkouts[n])
        return outcomes

    def _placed(self, row: asyncpg.Record, checkout: Checkout) -> Placement:
        if row["replay"] is not None:
            return Placement(replay=row["replay"])
        written()
        if row["rereserved"]:
            RESERVATIONS.labels("reserved").inc(row["rereserved"])
        ORDERS.labels(OrderStatus.pending_payment.value).inc()
        order_id: int = row["placed_id"]
        total: Decimal = row["placed_total"]
        now = checkout.created
        # Transient instances without the instrumented constructor (several times the cost).
        order = Order.from_row(
            {
                "id": order_id,
                "created_at": now,
                "updated_at": now,
                "user_id": checkout.user.id,
                "status": OrderStatus.pending_payment.value,
                "currency": "USD",
                "subtotal": total,
                "shipping_total": Decimal("0.00"),
                "total": total,
                "shipping_address": checkout.shipping_address,
                "idempotency_key": checkout.idempotency_key,
                "paid_at": None,
            }
        )
        items = [
            OrderItem.from_row(
                {
                    "order_id": order_id,
                    "product_id": i["product_id"],
                    "seller_id": i["seller_id"],
                    "title": i["title"],
                    "unit_price": Decimal(i["unit_price"]),
                    "quantity": i["quantity"],
                    "line_total": Decimal(i["line_total"]),
                }
            )
            for i in row["placed_items"]
        ]
        return Placement(placed=(order, f"order-{order_id}", items))

    async def lock(self, session: AsyncSession, order_id: int) -> Order:
        order = await OrderRepository.from_session(session).lock(order_id)
        if order is None:
            raise OrderNotFound(f"order {order_id} does not exist")
        return order

    async def payment(
        self, session: AsyncSession, order_id: int, *, lock: bool = False
    ) -> Payment | None:
        """The order's latest payment; row locked with ``lock``."""
        stmt = select(Payment).where(Payment.order_id == order_id)
        stmt = stmt.order_by(Payment.id.desc()).limit(1)
        return await session.scalar(stmt.with_for_update() if lock else stmt)

    async def mark_paid(
        self,
        session: AsyncSession | Sql,
        order_id: int,
        gateway_payment_id: str | None,
        actor: User | None,
        *,
        at: datetime | None = None,
        answer: Answer | None = None,
    ) -> Order:
        """Mark the order paid and take its stock; ``answer`` completes its idempotency key
        in the same statement, so nothing runs between taking the stock and the commit."""
        writes = OrderWrites.from_session(session)
        at = at or datetime.now(UTC)
        order = await writes.pay(
            Capture(
                order_id,
                gateway_payment_id,
                actor,
                at,
                answer,
                correlation_id.get(),
                client_ip.get(),
            )
        )
        if order is None:
            order = await writes.lock(order_id)
            if order is None:
                raise OrderNotFound(f"order {order_id} does not exist")
            if order.status == OrderStatus.paid.value:
                if answer is not None:
                    await writes.answer(answer, order_id)
                return order  # a redelivered success is a no-op
            check_transition(order.status, OrderStatus.paid)
            raise AssertionError("unreachable: only pending_payment orders can be paid")
        ORDERS.labels(OrderStatus.paid.value).inc()
        ORDER_VALUE.observe(float(order.total))
        return order

    async def pay_many(self, db: Sql, payments: Sequence[Capture]) -> list[Order | None]:
        """Mark several pending orders paid in one statement. An order that was not
        pending gets None: :meth:`mark_paid` alone then says why."""
        paid = await OrderWrites(db).pay_many(payments)
        for order in paid:
            if order is not None:
                ORDERS.labels(OrderStatus.paid.value).inc()
                ORDER_VALUE.observe(float(order.total))
        return paid

    def _stock_audit(
        self, session: AsyncSession, actor: User | None, allocations: Any, action: str, sign: int
    ) -> None:
        for a in allocations:
            audit.record(
                session,
                actor=actor,
                action=action,
                entity_type="product",
                entity_id=a.product_id,
                old=None,
                new={"warehouse_id": a.warehouse_id, "quantity": sign * a.quantity},
            )
            record_event(session, "stock.changed", "product", a.product_id)

    async def mark_payment_failed(
        self,
        session: AsyncSession,
        order_id: int,
        code: str,
        actor: User | None,
        reservation_ttl: timedelta,
    ) -> tuple[Order, dict[int, int]]:
        """The held units go back to the buyer's cart so another card can be tried, each
        line up to the line limit; also returns the units past it, released per product."""
        order = await self.lock(session, order_id)
        await self._transition(session, order, OrderStatus.payment_failed, actor, note=code)
        # Locked: the room left in each line must not change before the units fill it.
        cart = await CartRepository.from_session(session).for_user(order.user_id)
        repo = OrderRepository.from_session(session)
        allocations = await repo.allocations(order.id, "held")
        until = datetime.now(UTC) + reservation_ttl
        per_product: dict[int, int] = defaultdict(int)
        for a in allocations:
            session.add(
                Reservation(
                    cart_id=cart.id,
                    product_id=a.product_id,
                    warehouse_id=a.warehouse_id,
                    quantity=a.quantity,
                    reserved_until=until,
                )
            )
            per_product[a.product_id] += a.quantity
            a.state = "returned"
        released = await give_back(session, cart.id, per_product, actor=actor)
        payment = await self.payment(session, order.id)
        if payment is not None:
            payment.status, payment.error_code = "failed", code
        audit.record(
            session,
            actor=actor,
            action="payment.failed",
            entity_type="order",
            entity_id=order.id,
            old=None,
            new={"code": code},
        )
        await session.flush()
        return order, released

    async def cancel(
        self,
        session: AsyncSession,
        actor: User | None,
        order_id: int,
        note: str,
        answer: dict[str, Any] | None = None,
    ) -> tuple[Order, RefundDue | None]:
        """Cancel before shipping: held units are released, taken units restocked.

        A captured charge becomes owed back: the caller settles the returned refund at the
        gateway once this has committed (``order.refunds``), so the refund follows a
        cancel that happened, never one a concurrent shipment beat. An order cancelled
        while its payment is under way gets its checkout's final answer (``answer``, by
        default 409 ``order_cancelled``), and its payment is watched for a charge that
        lands later (``void_pending``).
        """
        order = await self.lock(session, order_id)
        if order.status not in CANCELLABLE:
            check_transition(order.status, OrderStatus.cancelled)
        was = order.status
        await self._transition(session, order, OrderStatus.cancelled, actor, note=note)
        repo = OrderRepository.from_session(session)
        held = await repo.allocations(order.id, "held")
        await repo.release_held(held)
        self._stock_audit(session, actor, held, "inventory.released", sign=1)
        due = None
        payment = await self.payment(session, order.id)
        if was == OrderStatus.paid.value:
            taken = await repo.allocations(order.id, "committed")
            await repo.restock(taken)
            self._stock_audit(session, actor, taken, "inventory.adjusted", sign=1)
            if payment is not None and payment.status == "captured":
                due = refunds.owe(payment)
        else:
            if payment is not None and payment.status == "pending":
                # Unknown at the gateway yet: the reconciler refunds a charge that lands.
                payment.status = refunds.VOID_PENDING
            if order.idempotency_key:
                body = answer or cancelled_during_payment(order.id)
                await OrderWrites.from_session(session).answer(
                    Answer(order.user_id, order.idempotency_key, 409, body), order.id
                )
        audit.record(
            session,
            actor=actor,
            action="order.cancelled",
            entity_type="order",
            entity_id=order.id,
            old={"status": was},
            new={"status": "cancelled"},
        )
        await session.flush()
        return order, due

    async def ship(
        self, session: AsyncSession, actor: User, order_id: int, warehouse_id: int, tracking: str
    ) -> Order:
        order = await self.lock(session, order_id)
        await access.check_shipment(session, actor, order.id, warehouse_id)
        if order.status not in (OrderStatus.paid.value, OrderStatus.partially_shipped.value):
            check_transition(order.status, OrderStatus.shipped)
        allocated = {
            a.warehouse_id
            for a in await OrderRepository.from_session(session).allocations(order.id, "committed")
        }
        shipped = set(
            (
                await session.execute(
                    select(Shipment.warehouse_id).where(Shipment.order_id == order.id)
                )
            ).scalars()
        )
        if warehouse_id not in allocated - shipped:
            raise NothingToShip(f"nothing left to ship from warehouse {warehouse_id}")
        shipment = Shipment(order_id=order.id, warehouse_id=warehouse_id, tracking_number=tracking)
        session.add(shipment)
        was = order.status
        done = allocated <= shipped | {warehouse_id}
        target = OrderStatus.shipped if done else OrderStatus.partially_shipped
        if target.value != order.status:
            await self._transition(session, order, target, actor, note=tracking)
        else:
            await self._event(session, order, target, actor, note=tracking)
        record_shipped(session, actor, order, was, shipment)
        await session.flush()
        return order

    async def deliver(self, session: AsyncSession, actor: User, order_id: int) -> Order:
        order = await self.lock(session, order_id)
        await access.check_order(session, actor, order.id, "deliver")
        await self._transition(session, order, OrderStatus.delivered, actor)
        for shipment in (
            await session.execute(select(Shipment).where(Shipment.order_id == order.id))
        ).scalars():
            shipment.delivered_at = datetime.now(UTC)
        record_delivered(session, actor, order)
        await session.flush()
        return order

    async def refund(
        self, session: AsyncSession, actor: User, order_id: int, *, restock: bool
    ) -> Order:
        """Delivered → refunded. The caller refunds the payment at the gateway first."""
        order = await self.lock(session, order_id)
        await access.check_order(session, actor, order.id, "refund")
        if order.status != OrderStatus.delivered.value:
            check_transition(order.status, OrderStatus.refunded)
        await self._transition(session, order, OrderStatus.refunded, actor)
        if restock:
            repo = OrderRepository.from_session(session)
            taken = await repo.allocations(order.id, "committed")
            await repo.restock(taken)
            self._stock_audit(session, actor, taken, "inventory.adjusted", sign=1)
        payment = await self.payment(session, order.id)
        if payment is not None:
            payment.status = "refunded"
        audit.record(
            session,
            actor=actor,
            action="order.refunded",
            entity_type="order",
            entity_id=order.id,
            old={"status": "delivered"},
            new={"status": "refunded", "restock": restock},
        )
        await session.flush()
        return order


orders = OrderService()
