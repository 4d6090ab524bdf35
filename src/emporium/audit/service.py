"""The immutable audit trail: who changed what, with old and new values."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from emporium.kit.logging import client_ip, correlation_id
from emporium.models import AuditLog, User


def _jsonable(values: dict[str, Any] | None) -> dict[str, Any] | None:
    if values is None:
        return None
    return {
        k: (str(v) if not isinstance(v, (str, int, float, bool, type(None), list, dict)) else v)
        for k, v in values.items()
    }


def record(
    session: AsyncSession,
    *,
    actor: User | None,
    action: str,
    entity_type: str,
    entity_id: int | str,
    old: dict[str, Any] | None,
    new: dict[str, Any] | None,
) -> None:
    session.add(
        AuditLog(
            actor_user_id=actor.id if actor else None,
            action=action,
            entity_type=entity_type,
            entity_id=str(entity_id),
            old_values=_jsonable(old),
            new_values=_jsonable(new),
            correlation_id=correlation_id.get(),
            ip=client_ip.get(),
        )
    )
