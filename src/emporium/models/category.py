from __future__ import annotations

from sqlalchemy import BigInteger, ForeignKey, Identity, Index, Integer, String, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from emporium.models.base import Base, CreatedAt


class Category(CreatedAt, Base):
    """A node of the category tree. ``path`` is the materialised id path ("/1/5/12/")."""

    __tablename__ = "categories"
    __table_args__ = (
        UniqueConstraint("parent_id", "name", name="uq_categories_parent_id_name"),
        Index("ix_categories_path_pattern", "path", postgresql_ops={"path": "text_pattern_ops"}),
    )

    id: Mapped[int] = mapped_column(BigInteger, Identity(), primary_key=True)
    parent_id: Mapped[int | None] = mapped_column(
        ForeignKey("categories.id", ondelete="RESTRICT"), nullable=True, index=True
    )
    name: Mapped[str] = mapped_column(String(200), nullable=False)
    slug: Mapped[str] = mapped_column(String(255), nullable=False, unique=True)
    path: Mapped[str] = mapped_column(String(1000), nullable=False, default="")
    depth: Mapped[int] = mapped_column(Integer, nullable=False, default=0)
