"""The order state machine: every allowed transition, in one place."""

from __future__ import annotations

from enum import StrEnum

from emporium.order.errors import InvalidTransition


class OrderStatus(StrEnum):
    pending_payment = "pending_payment"
    payment_failed = "payment_failed"
    paid = "paid"
    partially_shipped = "partially_shipped"
    shipped = "shipped"
    delivered = "delivered"
    cancelled = "cancelled"
    refunded = "refunded"


S = OrderStatus
TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    S.pending_payment: frozenset({S.paid, S.payment_failed, S.cancelled}),
    S.payment_failed: frozenset(),
    S.paid: frozenset({S.partially_shipped, S.shipped, S.cancelled}),
    S.partially_shipped: frozenset({S.shipped}),
    S.shipped: frozenset({S.delivered}),
    S.delivered: frozenset({S.refunded}),
    S.cancelled: frozenset(),
    S.refunded: frozenset(),
}
CANCELLABLE = frozenset({S.pending_payment, S.paid})


def check_transition(current: str, target: OrderStatus) -> None:
    if target not in TRANSITIONS[OrderStatus(current)]:
        raise InvalidTransition(
            f"an order cannot go from {current} to {target.value}",
            current=current,
            target=target.value,
        )
