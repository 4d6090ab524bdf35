from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any, Self, cast

from sqlalchemy import DateTime, MetaData, func
from sqlalchemy.orm import DeclarativeBase, Mapped, configure_mappers, mapped_column

NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """A transient instance holding a row's column values, read by plain SQL.

        The instrumented constructor costs about ten times as much, which shows on the
        hot paths (the caller of every request, the order being paid).
        """
        mapper = cls.__mapper__
        if not mapper.configured:  # the constructor would configure the mappers first
            configure_mappers()
        instance = cast(Self, mapper.class_manager.new_instance())
        instance.__dict__.update(row)
        return instance


class CreatedAt:
    created_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), nullable=False
    )


class Timestamps(CreatedAt):
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now(), nullable=False
    )
