"""The payment reconciler: settles orders left in ``pending_payment``.

A crash (or a gateway timeout) between charging and recording leaves such an order. The
reconciler asks the gateway for the payment by the order's idempotency key: a charge is
completed into a paid order; no charge means the order is cancelled and its stock released.
It also retries the refunds of cancelled orders that the gateway could not take at the
time, and watches the payments of orders cancelled before their outcome was known, to
refund a charge that lands late (``order.refunds``).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.checkout.idempotency import IdempotencyStore, StoredResponse
from emporium.kit.cache import Cache
from emporium.kit.db import UnitOfWork
from emporium.kit.jobs import PeriodicJob
from emporium.models import Order, Payment
from emporium.order import refunds
from emporium.order.metrics import CHECKOUT_SUCCESS
from emporium.order.queries import serialize
from emporium.order.service import orders
from emporium.order.state import OrderStatus
from emporium.payment.gateway import GatewayPayment, PaymentError, PaymentGateway, PaymentStatus
from emporium.payment.resilience import look_up

log = structlog.get_logger(__name__)


async def find_charge(
    gateway: PaymentGateway, gateway_key: str, *, once: bool = False
) -> GatewayPayment | None:
    """The payment the gateway holds under an order's key, an authorization captured
    first. ``once``: looked up in one request, even while the breaker is open (a read
    takes nothing); a capture always goes through the breaker."""
    if once:
        charge = await look_up(gateway, gateway_key)
    else:
        charge = await gateway.get_by_idempotency_key(gateway_key)
    if charge is not None and charge.status == PaymentStatus.authorized:
        charge = await gateway.capture(charge.id)
    return charge


class PaymentReconciler(PeriodicJob):
    name = "payment-reconciler"

    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        gateway: PaymentGateway,
        *,
        stale_after: timedelta = timedelta(seconds=90),
        void_horizon: timedelta = timedelta(hours=1),
        interval_seconds: float = 30.0,
        batch: int = 100,
        cache: Cache | None = None,
    ) -> None:
        super().__init__(interval_seconds)
        self.maker = maker
        self.gateway = gateway
        self.stale_after = stale_after
        # How long a cancelled order's payment is watched for a charge that lands late.
        self.void_horizon = void_horizon
        self.batch = batch
        self.idempotency = IdempotencyStore(cache)

    async def _stale(self) -> list[tuple[int, str]]:
        cutoff = datetime.now(UTC) - self.stale_after
        async with self.maker() as session:
            rows = await session.execute(
                select(Order.id, Payment.idempotency_key)
                .join(Payment, Payment.order_id == Order.id)
                .where(Order.status == OrderStatus.pending_payment.value, Order.created_at < cutoff)
                .order_by(Order.id)
                .limit(self.batch)
            )
            return [(oid, key) for oid, key in rows.all()]

    async def settle(self, order_id: int, gateway_key: str) -> str:
        charge = await find_charge(self.gateway, gateway_key)
        async with UnitOfWork(self.maker) as session:
            order = await orders.lock(session, order_id)
            if order.status != OrderStatus.pending_payment.value:
                return order.status  # settled meanwhile by the checkout itself
            if charge is not None and charge.status == PaymentStatus.captured:
                paid = await orders.mark_paid(session, order_id, charge.id, None)
                answer = StoredResponse(
                    201, (await serialize(session, paid)).model_dump(mode="json")
                )
                outcome = OrderStatus.paid.value
                CHECKOUT_SUCCESS.inc()  # the checkout answered 503; its order is paid now
            else:
                answer = StoredResponse(
                    409,
                    {
                        "error": "payment_not_completed",
                        "detail": "the payment did not go through; the order was cancelled",
                        "order_id": order_id,
                    },
                )
                await orders.cancel(
                    session, None, order_id, "payment not completed", answer=answer.body
                )
                outcome = OrderStatus.cancelled.value
            if order.idempotency_key:
                # Replays of the interrupted checkout now get the final answer.
                await IdempotencyStore.complete(
                    session, order.user_id, order.idempotency_key, answer, order_id
                )
        if order.idempotency_key:
            await self.idempotency.forget(order.user_id, order.idempotency_key)
        return outcome

    async def run_once(self) -> dict[str, int]:
        """Settle the stale orders and retry the refunds owed; how many ended how (orders
        by status, refunds as ``refund:<payment status>``)."""
        outcome: dict[str, int] = {}
        for order_id, key in await self._stale():
            try:
                status = await self.settle(order_id, key)
            except PaymentError as exc:  # gateway still down: try again next round
                log.warning("reconciler.gateway_unavailable", order_id=order_id, error=repr(exc))
                continue
            outcome[status] = outcome.get(status, 0) + 1
            log.info("reconciler.settled", order_id=order_id, status=status)
        now = datetime.now(UTC)
        before = now - self.stale_after
        for due in await refunds.owed(self.maker, before=before, limit=self.batch):
            status = await refunds.settle(self.maker, self.gateway, due, None)
            if status != refunds.PENDING:
                outcome[f"refund:{status}"] = outcome.get(f"refund:{status}", 0) + 1
        for watched in await refunds.unsettled(self.maker, before=before, limit=self.batch):
            try:
                status = await refunds.check_void(
                    self.maker, self.gateway, watched, final=watched.since < now - self.void_horizon
                )
            except PaymentError as exc:  # gateway still down: try again next round
                log.warning(
                    "reconciler.gateway_unavailable", order_id=watched.order_id, error=repr(exc)
                )
                continue
            if status != refunds.VOID_PENDING:
                outcome[f"void:{status}"] = outcome.get(f"void:{status}", 0) + 1
        return outcome
