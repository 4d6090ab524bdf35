"""Refunds owed by cancelled orders, settled at the gateway after the cancel commits.

A cancel commits first: the order's row lock decides it against a concurrent shipment,
so money goes back only for an order that really is cancelled. The captured payment is
then ``refund_pending``, and the refund runs outside any transaction. One the gateway
cannot take now stays pending for the reconciler to retry; one it refuses becomes
``refund_failed``, with an audit row and an error in the log, for an operator to settle.

An order cancelled while its payment was under way (the buyer cancelled after a timeout,
or the reconciler found no charge) may still be charged: a request the gateway took late.
Its payment is ``void_pending`` and the reconciler asks the gateway about it round after
round: a charge found is refunded (voided if only authorized); after the watch's horizon,
or when the gateway says it declined, the payment is ``voided``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.audit import service as audit
from emporium.kit.db import UnitOfWork
from emporium.models import Payment, User
from emporium.order.metrics import REFUNDS
from emporium.payment.gateway import (
    PaymentError,
    PaymentGateway,
    PaymentNotFound,
    PaymentStatus,
    PaymentUnavailable,
)

log = structlog.get_logger(__name__)

PENDING, REFUNDED, FAILED = "refund_pending", "refunded", "refund_failed"
VOID_PENDING, VOIDED = "void_pending", "voided"


@dataclass(frozen=True)
class RefundDue:
    payment_id: int
    order_id: int
    charge: str


def owe(payment: Payment, charge: str | None = None) -> RefundDue | None:
    """Mark a payment's captured charge as owed back (in the caller's transaction); None
    when nothing was charged (a free order), whose payment is then void."""
    charge = charge or payment.gateway_payment_id
    if charge is None:
        payment.status = "voided"
        return None
    payment.gateway_payment_id, payment.status = charge, PENDING
    return RefundDue(payment.id, payment.order_id, charge)


async def owed(
    maker: async_sessionmaker[AsyncSession], *, before: datetime, limit: int
) -> list[RefundDue]:
    """Refunds still pending since before ``before``, oldest first."""
    async with maker() as session:
        rows = await session.execute(
            select(Payment.id, Payment.order_id, Payment.gateway_payment_id)
            .where(Payment.status == PENDING, Payment.updated_at < before)
            .order_by(Payment.updated_at)
            .limit(limit)
        )
        return [RefundDue(pid, oid, charge) for pid, oid, charge in rows.all() if charge]


async def settle(
    maker: async_sessionmaker[AsyncSession],
    gateway: PaymentGateway,
    due: RefundDue,
    actor: User | None,
) -> str:
    """Refund the charge at the gateway and record the outcome; returns the payment's
    status: ``refunded``, ``refund_failed``, or ``refund_pending`` to try again later."""
    reason = None
    try:
        await gateway.refund(due.charge)  # the gateway refunds a charge once, however asked
        status = REFUNDED
    except PaymentUnavailable as exc:
        log.warning("refund.gateway_unavailable", order_id=due.order_id, error=repr(exc))
        return PENDING
    except PaymentError as exc:
        status = FAILED
        reason = "payment_not_found" if isinstance(exc, PaymentNotFound) else "payment_refused"
        log.error("refund.refused", order_id=due.order_id, reason=reason, error=str(exc))
    async with UnitOfWork(maker) as session:
        payment = await session.get(Payment, due.payment_id, with_for_update=True)
        if payment is None or payment.status != PENDING:
            return payment.status if payment is not None else status  # settled meanwhile
        payment.status, payment.error_code = status, reason
        audit.record(
            session,
            actor=actor,
            action=f"payment.{status}",
            entity_type="order",
            entity_id=due.order_id,
            old={"status": PENDING},
            new={"status": status, "amount": payment.amount, "reason": reason},
        )
    REFUNDS.labels(status).inc()
    return status


@dataclass(frozen=True)
class Watched:
    """A cancelled order's payment whose outcome at the gateway is not known yet."""

    payment_id: int
    order_id: int
    key: str
    since: datetime


async def unsettled(
    maker: async_sessionmaker[AsyncSession], *, before: datetime, limit: int
) -> list[Watched]:
    """Watched payments not looked at since before ``before``, longest unseen first."""
    async with maker() as session:
        rows = await session.execute(
            select(Payment.id, Payment.order_id, Payment.idempotency_key, Payment.created_at)
            .where(Payment.status == VOID_PENDING, Payment.updated_at < before)
            .order_by(Payment.updated_at)
            .limit(limit)
        )
        return [Watched(*row) for row in rows.all()]


async def check_void(
    maker: async_sessionmaker[AsyncSession],
    gateway: PaymentGateway,
    watched: Watched,
    *,
    final: bool,
) -> str:
    """Ask the gateway about a watched payment and settle what it says; returns the
    payment's status (``void_pending`` while nothing is known and ``final`` is false)."""
    charge = await gateway.get_by_idempotency_key(watched.key)
    if charge is not None and charge.status == PaymentStatus.authorized:
        charge = await gateway.void(charge.id)
    async with UnitOfWork(maker) as session:
        payment = await session.get(Payment, watched.payment_id, with_for_update=True)
        if payment is None or payment.status != VOID_PENDING:
            return payment.status if payment is not None else VOIDED  # settled meanwhile
        due = None
        if charge is not None and charge.status == PaymentStatus.captured:
            log.warning("payment.late_charge", order_id=watched.order_id, charge=charge.id)
            due = owe(payment, charge.id)
        elif charge is not None and charge.status == PaymentStatus.refunded:
            payment.gateway_payment_id, payment.status = charge.id, REFUNDED
        elif charge is not None or final:
            # Declined or voided at the gateway, or nothing came within the horizon.
            payment.status = VOIDED
        else:
            payment.updated_at = datetime.now(UTC)  # looked at: the others come first
        status = payment.status
    if due is not None:
        return await settle(maker, gateway, due, None)
    return status
