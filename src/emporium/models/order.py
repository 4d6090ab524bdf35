from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    BigInteger,
    CheckConstraint,
    DateTime,
    ForeignKey,
    Identity,
    Index,
    Integer,
    Numeric,
    String,
    UniqueConstraint,
    func,
    text,
)
from sqlalchemy.dialects.postgresql import JSON, JSONB
from sqlalchemy.orm import Mapped, mapped_column

from emporium.models.base import Base, CreatedAt, Timestamps

ORDER_STATUSES = (
    "pending_payment",
    "payment_failed",
    "paid",
    "partially_shipped",
    "shipped",
    "delivered",
    "cancelled",
    "refunded",
)


class Order(Timestamps, Base):
    __tablename__ = "orders"
    __table_args__ = (
        CheckConstraint(
            "status IN (" + ", ".join(f"'{s}'" for s in ORDER_STATUSES) + ")", name="status_valid"
        ),
        CheckConstraint("total >= 0", name="total_non_negative"),
        Index("ix_orders_user_id_id", "user_id", "id"),
        # The reconciler's: only orders not yet settled have an entry.
        Index(
            "ix_orders_pending_payment",
            "created_at",
            postgresql_where=text("status = 'pending_payment'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(
        ForeignKey("users.id", ondelete="RESTRICT"), nullable=False
    )
    status: Mapped[str] = mapped_column(String(30), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False, server_default="USD")
    subtotal: Mapped[Decimal] = mapped_column(Numeric(14, 2), nullable=False)
    shipping_total: Mapped[Decimal] = mapped_column(
        Numeric(14, 2), nullable=False, server_default="0"
    )
    total: Mapped[Decimal] = mapped_column(Numeric(14, 2), nullable=False)
    shipping_address: Mapped[dict[str, Any]] = mapped_column(JSONB, nullable=False)
    idempotency_key: Mapped[str | None] = mapped_column(String(255), nullable=True)
    paid_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class OrderItem(Base):
    """A line with the product's title and price snapshotted at checkout."""

    __tablename__ = "order_items"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        # A seller's orders to fulfil, newest first.
        Index("ix_order_items_seller_id_order_id", "seller_id", "order_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[int] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True
    )
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="RESTRICT"), nullable=False
    )
    seller_id: Mapped[int] = mapped_column(
        ForeignKey("sellers.id", ondelete="RESTRICT"), nullable=False
    )
    title: Mapped[str] = mapped_column(String(500), nullable=False)
    unit_price: Mapped[Decimal] = mapped_column(Numeric(12, 2), nullable=False)
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    line_total: Mapped[Decimal] = mapped_column(Numeric(14, 2), nullable=False)


class OrderAllocation(Base):
    """Units of an order held (then taken) from one warehouse."""

    __tablename__ = "order_allocations"
    __table_args__ = (
        CheckConstraint("quantity > 0", name="quantity_positive"),
        # Also the index for lookups by order: it leads with order_id.
        UniqueConstraint(
            "order_id", "product_id", "warehouse_id", name="uq_order_allocations_line"
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[int] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False
    )
    product_id: Mapped[int] = mapped_column(
        ForeignKey("products.id", ondelete="RESTRICT"), nullable=False
    )
    warehouse_id: Mapped[int] = mapped_column(
        ForeignKey("warehouses.id", ondelete="RESTRICT"), nullable=False
    )
    quantity: Mapped[int] = mapped_column(Integer, nullable=False)
    # "held" counts in stock.reserved; "committed" has left stock.quantity; "released" neither.
    state: Mapped[str] = mapped_column(String(20), nullable=False, server_default="held")


class OrderEvent(CreatedAt, Base):
    """The order's timeline: every status change, append-only."""

    __tablename__ = "order_events"

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[int] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True
    )
    status: Mapped[str] = mapped_column(String(30), nullable=False)
    note: Mapped[str] = mapped_column(String(500), nullable=False, server_default="")
    actor_user_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)


class Shipment(CreatedAt, Base):
    __tablename__ = "shipments"
    __table_args__ = (UniqueConstraint("order_id", "warehouse_id", name="uq_shipments_order_wh"),)

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[int] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True
    )
    warehouse_id: Mapped[int] = mapped_column(
        ForeignKey("warehouses.id", ondelete="RESTRICT"), nullable=False
    )
    tracking_number: Mapped[str] = mapped_column(String(100), nullable=False)
    delivered_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Payment(Timestamps, Base):
    __tablename__ = "payments"
    __table_args__ = (
        UniqueConstraint("idempotency_key", name="uq_payments_idempotency_key"),
        CheckConstraint("amount >= 0", name="amount_non_negative"),
        # The payments still to settle after a cancel, for the reconciler (migration 0018).
        Index(
            "ix_payments_unsettled",
            "updated_at",
            postgresql_where=text("status IN ('refund_pending', 'void_pending')"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    order_id: Mapped[int] = mapped_column(
        ForeignKey("orders.id", ondelete="CASCADE"), nullable=False, index=True
    )
    gateway: Mapped[str] = mapped_column(String(50), nullable=False)
    idempotency_key: Mapped[str] = mapped_column(String(255), nullable=False)
    gateway_payment_id: Mapped[str | None] = mapped_column(String(100), nullable=True)
    # pending | captured | failed | void_pending | voided | refund_pending | refunded |
    # refund_failed
    status: Mapped[str] = mapped_column(String(20), nullable=False)
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2), nullable=False)
    currency: Mapped[str] = mapped_column(String(3), nullable=False, server_default="USD")
    card_last4: Mapped[str | None] = mapped_column(String(4), nullable=True)
    error_code: Mapped[str | None] = mapped_column(String(50), nullable=True)


class IdempotencyKey(CreatedAt, Base):
    """Durable record of a checkout request, keyed per user."""

    __tablename__ = "idempotency_keys"
    __table_args__ = (
        UniqueConstraint("user_id", "key", name="uq_idempotency_keys_user_key"),
        Index("ix_idempotency_keys_expires_at", "expires_at", postgresql_using="brin"),
        # Completing a key writes the answer into its row: room to do it on its page.
        {"postgresql_with": {"fillfactor": 70}},
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), nullable=False)
    key: Mapped[str] = mapped_column(String(255), nullable=False)
    request_hash: Mapped[str] = mapped_column(String(64), nullable=False)
    # processing | completed
    state: Mapped[str] = mapped_column(String(20), nullable=False, server_default="processing")
    response_status: Mapped[int | None] = mapped_column(Integer, nullable=True)
    # json, not jsonb: a replay must repeat the first answer's text, key order included.
    response_body: Mapped[dict[str, Any] | None] = mapped_column(JSON, nullable=True)
    order_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True)
    expires_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True),
        nullable=False,
        server_default=func.now() + text("interval '24 hours'"),
    )
