from __future__ import annotations

from decimal import Decimal

from sqlalchemy import CheckConstraint, Numeric, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from emporium.models.base import Base, Timestamps


class SimulatedPayment(Timestamps, Base):
    """A payment as the built-in simulated gateway records it (``payment/ledger.py``).

    It stands in for a card gateway's own records, so nothing refers to it. UNLOGGED
    (migration 0012): cheap to write, kept across a clean shutdown, emptied by a crash."""

    __tablename__ = "simulated_payments"
    __table_args__ = (
        UniqueConstraint("idempotency_key"),
        CheckConstraint(
            "refunded_amount >= 0 AND refunded_amount <= amount", name="refund_within_amount"
        ),
        {"prefixes": ["UNLOGGED"]},
    )

    id: Mapped[str] = mapped_column(String(40), primary_key=True)
    idempotency_key: Mapped[str] = mapped_column(String(255), nullable=False)
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False)
    card_last4: Mapped[str] = mapped_column(String(4), nullable=False)
    decline_code: Mapped[str | None] = mapped_column(String(50), nullable=True)
    refunded_amount: Mapped[Decimal] = mapped_column(Numeric(14, 2), nullable=False)
