"""Order lifecycle. Each method runs inside the caller's transaction and only flushes."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.audit import service as audit
from emporium.inventory.reservations import reserve
from emporium.kit.errors import Conflict
from emporium.kit.outbox import record_event
from emporium.kit.sql import Sql
from emporium.models import (
    Cart,
    CartItem,
    Order,
    OrderEvent,
    OrderItem,
    Payment,
    Reservation,
    Role,
    Shipment,
    User,
)
from emporium.order.errors import InvalidTransition, NothingToShip, NotOrderSeller, OrderNotFound
from emporium.order.metrics import ORDER_VALUE, ORDERS
from emporium.order.repository import Answer, OrderRepository, OrderWrites, PlacedLine
from emporium.order.state import CANCELLABLE, OrderStatus, check_transition

CENT = Decimal("0.01")


class CartEmpty(Conflict):
    code = "cart_empty"


class ProductUnavailable(Conflict):
    code = "product_unavailable"


# The cart's lines with their products, and its holds, in one round trip: the cart row
# is locked first (it serialises checkouts of one cart), then its reservations.
_CART = """
WITH c AS MATERIALIZED (SELECT id FROM carts WHERE user_id = $1 FOR UPDATE),
holds AS MATERIALIZED (
    SELECT id, product_id, warehouse_id, quantity FROM reservations
    WHERE cart_id = (SELECT id FROM c) ORDER BY id FOR UPDATE
)
SELECT c.id AS cart_id, ci.product_id, ci.quantity, p.title, p.price, p.seller_id, p.is_active,
    (SELECT coalesce(jsonb_agg(jsonb_build_array(id, product_id, warehouse_id, quantity)
                               ORDER BY id), '[]'::jsonb) FROM holds) AS holds
FROM c
JOIN cart_items ci ON ci.cart_id = c.id
JOIN products p ON p.id = ci.product_id
ORDER BY ci.product_id
"""


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
        db = await Sql.from_(session)
        lines = await db.fetch(_CART, user.id)
        if not lines:
            raise CartEmpty("the cart is empty")
        cart_id: int = lines[0]["cart_id"]
        unavailable = [line["product_id"] for line in lines if not line["is_active"]]
        if unavailable:
            raise ProductUnavailable("some products are no longer sold", product_ids=unavailable)
        holds: list[tuple[int, int, int, int]] = [
            (int(i), int(p), int(w), int(q)) for i, p, w, q in lines[0]["holds"]
        ]
        held: dict[int, int] = defaultdict(int)
        for _, product_id, _, units in holds:
            held[product_id] += units
        until = datetime.now(UTC) + reservation_ttl
        for line in lines:
            missing = line["quantity"] - held[line["product_id"]]
            if missing > 0:  # a hold lapsed and was reaped: take it again, or fail with 409
                holds += [
                    (r.id, r.product_id, r.warehouse_id, r.quantity)
                    for r in await reserve(
                        db,
                        cart_id=cart_id,
                        product_id=line["product_id"],
                        quantity=missing,
                        until=until,
                    )
                ]
        placed = [
            PlacedLine(
                product_id=line["product_id"],
                seller_id=line["seller_id"],
                title=line["title"],
                unit_price=line["price"],
                quantity=line["quantity"],
                line_total=(line["price"] * line["quantity"]).quantize(CENT),
            )
            for line in lines
        ]
        subtotal = sum((p.line_total for p in placed), Decimal("0.00"))
        per_wh: dict[tuple[int, int], int] = defaultdict(int)
        wanted = {p.product_id: p.quantity for p in placed}
        for _, product_id, warehouse_id, units in holds:
            take = min(units, wanted.get(product_id, 0))
            if take:
                per_wh[(product_id, warehouse_id)] += take
                wanted[product_id] -= take
        now = datetime.now(UTC)
        order_id = await OrderWrites(db).place(
            user_id=user.id,
            total=subtotal,
            shipping_address=shipping_address,
            idempotency_key=idempotency_key,
            created_at=now,
            lines=placed,
            allocations=[(p, w, q) for (p, w), q in sorted(per_wh.items())],
            reservation_ids=[h[0] for h in holds],
            cart_id=cart_id,
            gateway=gateway_name,
            card_last4=card_last4,
        )
        ORDERS.labels(OrderStatus.pending_payment.value).inc()
        order = Order(
            id=order_id,
            created_at=now,
            updated_at=now,
            user_id=user.id,
            status=OrderStatus.pending_payment.value,
            currency="USD",
            subtotal=subtotal,
            shipping_total=Decimal("0.00"),
            total=subtotal,
            shipping_address=shipping_address,
            idempotency_key=idempotency_key,
            paid_at=None,
        )
        items = [
            OrderItem(
                order_id=order_id,
                product_id=p.product_id,
                seller_id=p.seller_id,
                title=p.title,
                unit_price=p.unit_price,
                quantity=p.quantity,
                line_total=p.line_total,
            )
            for p in placed
        ]
        return order, f"order-{order_id}", items

    async def lock(self, session: AsyncSession, order_id: int) -> Order:
        order = await OrderRepository.from_session(session).lock(order_id)
        if order is None:
            raise OrderNotFound(f"order {order_id} does not exist")
        return order

    async def _payment(self, session: AsyncSession, order_id: int) -> Payment | None:
        return await session.scalar(
            select(Payment).where(Payment.order_id == order_id).order_by(Payment.id.desc()).limit(1)
        )

    async def mark_paid(
        self,
        session: AsyncSession | Sql,
        order_id: int,
        gateway_payment_id: str,
        actor: User | None,
        *,
        at: datetime | None = None,
        answer: Answer | None = None,
    ) -> Order:
        """Mark the order paid and take its stock; ``answer`` completes its idempotency key
        in the same statement, so nothing runs between taking the stock and the commit."""
        writes = OrderWrites.from_session(session)
        order = await writes.pay(
            order_id,
            gateway_payment_id,
            actor.id if actor else None,
            at or datetime.now(UTC),
            answer,
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
    ) -> Order:
        """The held units go back to the buyer's cart so another card can be tried."""
        order = await self.lock(session, order_id)
        await self._transition(session, order, OrderStatus.payment_failed, actor, note=code)
        cart = await session.scalar(select(Cart).where(Cart.user_id == order.user_id))
        if cart is None:
            cart = Cart(user_id=order.user_id)
            session.add(cart)
            await session.flush()
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
        for product_id, quantity in per_product.items():
            stmt = insert(CartItem).values(
                cart_id=cart.id, product_id=product_id, quantity=quantity
            )
            await session.execute(
                stmt.on_conflict_do_update(
                    index_elements=[CartItem.cart_id, CartItem.product_id],
                    set_={"quantity": CartItem.quantity + stmt.excluded.quantity},
                )
            )
        payment = await self._payment(session, order.id)
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
        return order

    async def cancel(
        self,
        session: AsyncSession,
        actor: User | None,
        order_id: int,
        note: str,
        expected: str | None = None,
    ) -> Order:
        """Cancel before shipping: held units are released, taken units restocked.

        Any captured payment must already have been voided or refunded by the caller, who
        passes the status it saw as ``expected`` so a concurrent change is refused.
        """
        order = await self.lock(session, order_id)
        if expected is not None and order.status != expected:
            check_transition(order.status, OrderStatus.cancelled)
            raise InvalidTransition(
                f"the order changed to {order.status}; try again", current=order.status
            )
        if order.status not in CANCELLABLE:
            check_transition(order.status, OrderStatus.cancelled)
        was = order.status
        await self._transition(session, order, OrderStatus.cancelled, actor, note=note)
        repo = OrderRepository.from_session(session)
        held = await repo.allocations(order.id, "held")
        await repo.release_held(held)
        self._stock_audit(session, actor, held, "inventory.released", sign=1)
        if was == OrderStatus.paid.value:
            taken = await repo.allocations(order.id, "committed")
            await repo.restock(taken)
            self._stock_audit(session, actor, taken, "inventory.adjusted", sign=1)
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
        return order

    async def check_seller(self, session: AsyncSession, actor: User, order: Order) -> None:
        if actor.role == Role.admin:
            return
        sellers = set(
            (
                await session.execute(
                    select(OrderItem.seller_id).where(OrderItem.order_id == order.id)
                )
            ).scalars()
        )
        if actor.role != Role.seller or actor.seller_id not in sellers:
            raise NotOrderSeller("only an admin or a seller of this order may do that")

    async def ship(
        self, session: AsyncSession, actor: User, order_id: int, warehouse_id: int, tracking: str
    ) -> Order:
        order = await self.lock(session, order_id)
        await self.check_seller(session, actor, order)
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
        session.add(
            Shipment(order_id=order.id, warehouse_id=warehouse_id, tracking_number=tracking)
        )
        done = allocated <= shipped | {warehouse_id}
        target = OrderStatus.shipped if done else OrderStatus.partially_shipped
        if target.value != order.status:
            await self._transition(session, order, target, actor, note=tracking)
        else:
            await self._event(session, order, target, actor, note=tracking)
        await session.flush()
        return order

    async def deliver(self, session: AsyncSession, actor: User, order_id: int) -> Order:
        order = await self.lock(session, order_id)
        await self.check_seller(session, actor, order)
        await self._transition(session, order, OrderStatus.delivered, actor)
        for shipment in (
            await session.execute(select(Shipment).where(Shipment.order_id == order.id))
        ).scalars():
            shipment.delivered_at = datetime.now(UTC)
        await session.flush()
        return order

    async def refund(
        self, session: AsyncSession, actor: User, order_id: int, *, restock: bool
    ) -> Order:
        """Delivered → refunded. The caller refunds the payment at the gateway first."""
        order = await self.lock(session, order_id)
        if order.status != OrderStatus.delivered.value:
            check_transition(order.status, OrderStatus.refunded)
        await self._transition(session, order, OrderStatus.refunded, actor)
        if restock:
            repo = OrderRepository.from_session(session)
            taken = await repo.allocations(order.id, "committed")
            await repo.restock(taken)
            self._stock_audit(session, actor, taken, "inventory.adjusted", sign=1)
        payment = await self._payment(session, order.id)
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
