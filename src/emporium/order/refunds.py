"""Refunds owed by cancelled orders, settled at the gateway after the cancel commits.

A cancel commits first: the order's row lock decides it against a concurrent shipment,
so money goes back only for an order that really is cancelled. The captured payment is
then ``refund_pending``, and the refund runs outside any transaction. One the gateway
cannot take now stays pending for the reconciler to retry; one it refuses becomes
``refund_failed``, with an audit row and an error in the log, for an operator to settle.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

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
    PaymentUnavailable,
)

log = structlog.get_logger(__name__)

PENDING, REFUNDED, FAILED = "refund_pending", "refunded", "refund_failed"


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
