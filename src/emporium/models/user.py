from __future__ import annotations

from enum import StrEnum

from sqlalchemy import BigInteger, CheckConstraint, ForeignKey, Identity, String
from sqlalchemy.orm import Mapped, mapped_column

from emporium.models.base import Base, CreatedAt


class Role(StrEnum):
    customer = "customer"
    seller = "seller"
    admin = "admin"


class User(CreatedAt, Base):
    __tablename__ = "users"
    __table_args__ = (
        CheckConstraint("role IN ('customer', 'seller', 'admin')", name="role_valid"),
        CheckConstraint("role <> 'seller' OR seller_id IS NOT NULL", name="seller_has_seller_id"),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    email: Mapped[str] = mapped_column(String(320), nullable=False, unique=True)
    name: Mapped[str] = mapped_column(String(200), nullable=False, default="")
    role: Mapped[str] = mapped_column(String(20), nullable=False, default=Role.customer)
    seller_id: Mapped[int | None] = mapped_column(
        ForeignKey("sellers.id", ondelete="RESTRICT"), nullable=True
    )
    password_hash: Mapped[str | None] = mapped_column(String(255), nullable=True)
    # SHA-256 of the bearer token; the token itself is never stored.
    api_token_hash: Mapped[str | None] = mapped_column(String(64), nullable=True, unique=True)
