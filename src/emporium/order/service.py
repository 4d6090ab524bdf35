"""Order lifecycle. Each method runs inside the caller's transaction and only flushes."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.audit import service as audit
from emporium.inventory.reservations import reserve
from emporium.kit.errors import Conflict
from emporium.kit.outbox import record_event
from emporium.models import (
    Cart,
    CartItem,
    Order,
    OrderAllocation,
    OrderEvent,
    OrderItem,
    Payment,
    Product,
    Reservation,
    Role,
    Shipment,
    User,
)
from emporium.order.errors import InvalidTransition, NothingToShip, NotOrderSeller, OrderNotFound
from emporium.order.metrics import ORDER_VALUE, ORDERS
from emporium.order.repository import OrderRepository
from emporium.order.state import CANCELLABLE, OrderStatus, check_transition

CENT = Decimal("0.01")


class CartEmpty(Conflict):
    code = "cart_empty"


class ProductUnavailable(Conflict):
    code = "product_unavailable"


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
        session: AsyncSession,
        user: User,
        shipping_address: dict[str, Any],
        *,
        idempotency_key: str | None,
        gateway_name: str,
        card_last4: str | None,
        reservation_ttl: timedelta,
    ) -> tuple[Order, Payment, list[OrderItem]]:
        """Turn the cart's reservations into the order's allocations (step 1 of checkout)."""
        # Locking the cart row serialises checkouts of the same cart.
        rows = (
            await session.execute(
                select(Cart.id, CartItem, Product)
                .join(CartItem, CartItem.cart_id == Cart.id)
                .join(Product, Product.id == CartItem.product_id)
                .where(Cart.user_id == user.id)
                .order_by(CartItem.product_id)
                .with_for_update(of=Cart)
            )
        ).all()
        if not rows:
            raise CartEmpty("the cart is empty")
        cart_id = rows[0][0]
        lines = [(item, product) for _, item, product in rows]
        unavailable = [p.id for _, p in lines if not p.is_active]
        if unavailable:
            raise ProductUnavailable("some products are no longer sold", product_ids=unavailable)
        reservations = list(
            (
                await session.execute(
                    select(Reservation)
                    .where(Reservation.cart_id == cart_id)
                    .order_by(Reservation.id)
                    .with_for_update()
                )
            ).scalars()
        )
        held: dict[int, int] = defaultdict(int)
        for r in reservations:
            held[r.product_id] += r.quantity
        until = datetime.now(UTC) + reservation_ttl
        for item, _ in lines:
            missing = item.quantity - held[item.product_id]
            if missing > 0:  # a hold lapsed and was reaped: take it again, or fail with 409
                reservations += await reserve(
                    session,
                    cart_id=cart_id,
                    product_id=item.product_id,
                    quantity=missing,
                    until=until,
                )
        subtotal = sum(
            ((p.price * item.quantity).quantize(CENT) for item, p in lines), Decimal("0.00")
        )
        now = datetime.now(UTC)
        order = Order(
            created_at=now,
            updated_at=now,
            user_id=user.id,
            status=OrderStatus.pending_payment.value,
            subtotal=subtotal,
            shipping_total=Decimal("0.00"),
            total=subtotal,
            shipping_address=shipping_address,
            idempotency_key=idempotency_key,
        )
        session.add(order)
        await session.flush()
        items = [
            OrderItem(
                order_id=order.id,
                product_id=p.id,
                seller_id=p.seller_id,
                title=p.title,
                unit_price=p.price,
                quantity=item.quantity,
                line_total=(p.price * item.quantity).quantize(CENT),
            )
            for item, p in lines
        ]
        session.add_all(items)
        per_wh: dict[tuple[int, int], int] = defaultdict(int)
        wanted = {item.product_id: item.quantity for item, _ in lines}
        for r in reservations:
            take = min(r.quantity, wanted.get(r.product_id, 0))
            if take:
                per_wh[(r.product_id, r.warehouse_id)] += take
                wanted[r.product_id] -= take
        session.add_all(
            OrderAllocation(order_id=order.id, product_id=p, warehouse_id=w, quantity=q)
            for (p, w), q in sorted(per_wh.items())
        )
        # The held units stay in stock.reserved: they now belong to the order, not the cart.
        await session.execute(
            text(
                "WITH gone AS (DELETE FROM reservations WHERE id = ANY(:ids)) "
                "DELETE FROM cart_items WHERE cart_id = :cart_id"
            ),
            {"ids": [r.id for r in reservations], "cart_id": cart_id},
        )
        payment = Payment(
            order_id=order.id,
            gateway=gateway_name,
            idempotency_key=f"order-{order.id}",
            status="pending",
            amount=order.total,
            card_last4=card_last4,
        )
        session.add(payment)
        await self._event(session, order, OrderStatus.pending_payment, user, at=now)
        audit.record(
            session,
            actor=user,
            action="order.created",
            entity_type="order",
            entity_id=order.id,
            old=None,
            new={"total": order.total, "items": sum(i.quantity for i, _ in lines)},
        )
        record_event(session, "order.created", "order", order.id)
        await session.flush()
        return order, payment, items

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
        self, session: AsyncSession, order_id: int, gateway_payment_id: str, actor: User | None
    ) -> Order:
        now = datetime.now(UTC)
        order = await session.scalar(
            update(Order)
            .where(Order.id == order_id, Order.status == OrderStatus.pending_payment.value)
            .values(status=OrderStatus.paid.value, paid_at=now, updated_at=now)
            .returning(Order)
        )
        if order is None:
            order = await self.lock(session, order_id)
            if order.status == OrderStatus.paid.value:
                return order  # a redelivered success is a no-op
            check_transition(order.status, OrderStatus.paid)
        await self._event(session, order, OrderStatus.paid, actor, at=now)
        record_event(session, "order.paid", "order", order.id)
        allocations = await OrderRepository.from_session(session).take_all_held(order.id)
        await session.execute(
            update(Payment)
            .where(Payment.order_id == order.id, Payment.status == "pending")
            .values(status="captured", gateway_payment_id=gateway_payment_id, updated_at=now)
        )
        audit.record(
            session,
            actor=actor,
            action="payment.completed",
            entity_type="order",
            entity_id=order.id,
            old=None,
            new={"amount": order.total, "gateway_payment_id": gateway_payment_id},
        )
        self._stock_audit(session, actor, allocations, "inventory.adjusted", sign=-1)
        ORDER_VALUE.observe(float(order.total))
        await session.flush()
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
