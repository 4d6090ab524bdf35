"""Checkout in short transactions, with the payment call outside any of them.

1. Create the order in ``pending_payment``: the cart's reservations become its allocations.
2. Charge at the gateway (authorize and capture in one call), with the order id as the
   gateway's idempotency key.
3. Mark the order paid and take the stock, or on a decline (or a charge that certainly
   did not happen) return the units to the cart. A charge the gateway answered only with
   server errors is first looked up by its key, once, to know which.
A crash between 2 and 3, or a charge whose outcome stays unknown, leaves a
``pending_payment`` order for the reconciler.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import structlog
from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.cart.schemas import MAX_LINE_QUANTITY
from emporium.checkout.batches import CheckoutBatches
from emporium.checkout.idempotency import IdempotencyStore, StoredResponse
from emporium.checkout.schemas import CheckoutRequest
from emporium.kit.db import UnitOfWork
from emporium.kit.logging import client_ip, correlation_id
from emporium.models import Cart, CartItem, IdempotencyKey, Order, OrderItem, User
from emporium.order import refunds, schemas
from emporium.order.errors import InvalidTransition
from emporium.order.metrics import CHECKOUT_ATTEMPTS, CHECKOUT_SUCCESS
from emporium.order.queries import build, serialize
from emporium.order.repository import Answer, Capture
from emporium.order.service import CartEmpty, Checkout, cancelled_during_payment, orders
from emporium.order.state import OrderStatus
from emporium.order.tasks import find_charge
from emporium.payment.errors import PaymentUnavailableError
from emporium.payment.gateway import (
    Card,
    GatewayPayment,
    PaymentDeclined,
    PaymentError,
    PaymentErrored,
    PaymentGateway,
    PaymentNotAttempted,
    PaymentStatus,
    PaymentUnavailable,
)
from emporium.payment.resilience import gateway_retry_after

log = structlog.get_logger(__name__)
# What a 503 says of the cart when the cart had meanwhile filled a line the units went to.
FILLED = f"the units went back to the cart, up to {MAX_LINE_QUANTITY} a line"


def paid_response(order: Order, items: list[OrderItem], card_last4: str) -> dict[str, Any]:
    """The 201 body, built from what the checkout already holds (no read-back)."""
    assert order.paid_at is not None
    timeline = [
        schemas.TimelineEntry(status="pending_payment", note="", at=order.created_at),
        schemas.TimelineEntry(status="paid", note="", at=order.paid_at),
    ]
    payment = schemas.PaymentOut(
        status="captured", amount=order.total, card_last4=card_last4, error_code=None
    )
    return build(order, items, timeline, [], payment).model_dump(mode="json")


@dataclass
class CheckoutService:
    maker: async_sessionmaker[AsyncSession]
    idempotency: IdempotencyStore
    gateway: PaymentGateway
    reservation_ttl: timedelta
    # The usual path (place the order, mark it paid) runs on the plain pool; the rare
    # ones (a decline, a cancellation during payment) on ORM sessions from ``maker``.
    pool: asyncpg.Pool
    # Placing and paying statements under way at once; the rest ride the next ones.
    place_calls: int = 1
    pay_calls: int = 1
    # The one look-up of a charge the gateway answered only with errors.
    lookup_seconds: float = 5.0
    batches: CheckoutBatches = field(init=False)

    def __post_init__(self) -> None:
        self.batches = CheckoutBatches(self.pool, self.place_calls, self.pay_calls)

    async def checkout(self, user: User, key: str, body: CheckoutRequest) -> StoredResponse:
        CHECKOUT_ATTEMPTS.inc()
        payload = body.model_dump(mode="json")
        idem = self.idempotency
        digest = idem.digest(payload)
        fast = await idem.claim_fast(user.id, key, digest)
        if fast.replay is not None:
            return fast.replay
        replay = None
        try:
            if (wait := gateway_retry_after(self.gateway)) is not None:
                replay = await self._while_breaker_open(user, key, digest, wait)
            else:
                # One call claims the key and places the order, committing both or neither.
                checkout = Checkout.now(
                    user,
                    payload["shipping_address"],
                    idempotency_key=key,
                    request_digest=digest,
                    gateway_name=self.gateway.name,
                    card_last4=body.payment.card_number[-4:],
                    reservation_ttl=self.reservation_ttl,
                )
                placement = await self.batches.place(checkout)
                if placement.replay is not None:
                    replay = idem.judge(placement.replay, digest)
                else:
                    assert placement.placed is not None
                    order, gateway_key, items = placement.placed
                    order_id, amount, currency = order.id, order.total, order.currency
        except BaseException:
            if fast.claimed:  # a duplicate must not drop the first request's claim
                await idem.forget(user.id, key)
            raise
        if replay is not None:
            await idem.remember(user.id, key, digest, replay)
            return replay

        card = Card(number=body.payment.card_number, exp=body.payment.exp, cvc=body.payment.cvc)
        charge_id = None  # a free order has nothing to charge
        try:
            if amount > 0:
                captured = await self.gateway.charge(
                    idempotency_key=gateway_key, amount=amount, currency=currency, card=card
                )
                charge_id = captured.id
        except PaymentNotAttempted:
            # Certainly nothing was charged: undo the checkout, as if the breaker had
            # refused it before the order was placed; the same key can be sent again.
            log.warning("checkout.payment_not_attempted", order_id=order_id)
            return await self._give_back(user, key, digest, order_id, "could not be reached")
        except PaymentErrored:
            # Every attempt was answered with an error, none is under way at the gateway:
            # what it holds under the key now is the outcome, so ask rather than leave
            # the buyer to the reconciler.
            answered, found = await self._look_up(gateway_key, order_id)
            if answered and found is None:
                return await self._give_back(user, key, digest, order_id, "failed")
            if found is None or found.status is not PaymentStatus.captured:
                return self._unsettled(order_id)
            charge_id = found.id
        except PaymentUnavailable:
            # The outcome at the gateway is unknown: a request may still be under way there.
            return self._unsettled(order_id)
        except PaymentError as exc:
            # A decline, or a request the gateway refuses outright: no charge was made.
            code = exc.code if isinstance(exc, PaymentDeclined) else "processing_error"
            if not isinstance(exc, PaymentDeclined):
                log.error("checkout.payment_refused", order_id=order_id, error=str(exc))
            try:
                response = await self._declined(user, key, order_id, code)
            except InvalidTransition:
                response = await self._cancelled_meanwhile(user, key, order_id, None)
            await idem.remember(user.id, key, digest, response)
            return response

        # The answer is known before the order is marked paid, so it is stored by the same
        # statement and the stock rows are released as soon as it commits.
        order.status, order.paid_at = OrderStatus.paid.value, datetime.now(UTC)
        response = StoredResponse(201, paid_response(order, items, body.payment.card_number[-4:]))
        try:
            await self.mark_paid(order, charge_id, user, Answer(user.id, key, 201, response.body))
        except InvalidTransition:
            response = await self._cancelled_meanwhile(user, key, order_id, charge_id)
            await idem.remember(user.id, key, digest, response)
        if response.status == 201:
            CHECKOUT_SUCCESS.inc()
        return response

    async def _look_up(self, gateway_key: str, order_id: int) -> tuple[bool, GatewayPayment | None]:
        """Whether the gateway answered a look-up by the order's key, and the payment it
        holds under it; one short request, as the reconciler would make later."""
        try:
            async with asyncio.timeout(self.lookup_seconds):
                return True, await find_charge(self.gateway, gateway_key, once=True)
        except (PaymentError, TimeoutError) as exc:
            log.warning("checkout.payment_lookup_failed", order_id=order_id, error=repr(exc))
            return False, None

    @staticmethod
    def _unsettled(order_id: int) -> StoredResponse:
        """The outcome at the gateway is unknown. The key stays "processing" until the
        reconciler settles the order and records the final answer for replays."""
        log.warning("checkout.payment_unavailable", order_id=order_id)
        return StoredResponse(
            503,
            {
                "error": "payment_unavailable",
                "detail": "the payment service did not answer; the order is settled shortly",
                "order_id": order_id,
            },
        )

    async def _give_back(
        self, user: User, key: str, digest: str, order_id: int, cause: str
    ) -> StoredResponse:
        """Nothing was charged: the units go back to the cart and the key is let go, with a
        503 saying so (raised); or the 409 of an order cancelled meanwhile."""
        try:
            released = await self._not_charged(user, key, order_id)
        except InvalidTransition:
            response = await self._cancelled_meanwhile(user, key, order_id, None)
            await self.idempotency.remember(user.id, key, digest, response)
            return response
        await self.idempotency.forget(user.id, key)
        wait = gateway_retry_after(self.gateway)
        raise PaymentUnavailableError(
            f"the payment service {cause}; nothing was charged and "
            + (FILLED if released else "the cart is as it was"),
            **({} if wait is None else {"retry_after": wait}),
        )

    async def _declined(self, user: User, key: str, order_id: int, code: str) -> StoredResponse:
        """The payment failed: the held units go back to the cart, and the key answers 402."""
        async with UnitOfWork(self.maker) as session:
            await orders.mark_payment_failed(session, order_id, code, user, self.reservation_ttl)
            response = StoredResponse(
                402,
                {
                    "error": "payment_declined",
                    "detail": "the card was declined",
                    "decline_code": code,
                    "order": await self._order(session, order_id),
                },
            )
            await self.idempotency.complete(session, user.id, key, response, order_id)
        return response

    async def _while_breaker_open(
        self, user: User, key: str, digest: str, wait: int
    ) -> StoredResponse:
        """The answer while the breaker is open, given before touching the cart (its
        reservations stay intact).

        A key already used answers as PostgreSQL recorded it: a paid checkout leaves its
        Valkey marker "processing", or the marker has lapsed, so only PostgreSQL knows.
        Otherwise an empty cart is told so (waiting for the gateway would not help), and
        any other cart is told to come back.
        """
        async with self.maker() as session:
            stored = await self.idempotency.stored(session, user.id, key)
            if stored is not None:
                return self.idempotency.judge(stored, digest)
            has_lines = await session.scalar(
                select(CartItem.product_id)
                .join(Cart, Cart.id == CartItem.cart_id)
                .where(Cart.user_id == user.id)
                .limit(1)
            )
        if has_lines is None:
            raise CartEmpty("the cart is empty")
        raise PaymentUnavailableError(
            "the payment service is unavailable; try again later", retry_after=wait
        )

    async def _not_charged(self, user: User, key: str, order_id: int) -> dict[int, int]:
        """The held units go back to the cart and the key is let go, in one transaction;
        returns the units that did not fit back in their lines (released)."""
        async with UnitOfWork(self.maker) as session:
            _, released = await orders.mark_payment_failed(
                session, order_id, "payment_unavailable", user, self.reservation_ttl
            )
            await session.execute(
                delete(IdempotencyKey).where(
                    IdempotencyKey.user_id == user.id, IdempotencyKey.key == key
                )
            )
        return released

    async def _cancelled_meanwhile(
        self, user: User, key: str, order_id: int, charge_id: str | None
    ) -> StoredResponse:
        """The order was cancelled while the card was charged: a charge goes back, and the
        key answers 409 for good."""
        response = StoredResponse(409, cancelled_during_payment(order_id))
        due = None
        async with UnitOfWork(self.maker) as session:
            payment = await orders.payment(session, order_id, lock=True)
            if payment is not None and charge_id is not None:
                due = refunds.owe(payment, charge_id)
            elif payment is not None and payment.status == refunds.VOID_PENDING:
                payment.status = "voided"  # declined: the gateway took nothing
            await self.idempotency.complete(session, user.id, key, response, order_id)
        if due is not None:
            await refunds.settle(self.maker, self.gateway, due, user)
        return response

    async def mark_paid(
        self, order: Order, charge_id: str | None, user: User, answer: Answer
    ) -> None:
        """Mark the order paid, with other checkouts' payments ready at the same time."""
        assert order.paid_at is not None
        capture = Capture(
            order.id, charge_id, user, order.paid_at, answer, correlation_id.get(), client_ip.get()
        )
        await self.batches.pay(capture)

    async def _order(self, session: AsyncSession, order_id: int) -> dict[str, Any]:
        # Declines are rare; read the order back rather than rebuild it.
        order = await session.get(Order, order_id)
        assert order is not None
        return (await serialize(session, order)).model_dump(mode="json")
