from __future__ import annotations

import hashlib
import secrets

from emporium.kit.sql import Sql
from emporium.models import User


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


# Every authenticated request reads its user: one plain statement, no ORM round.
_COLUMNS = ", ".join(User.__table__.columns.keys())


async def _user_where(db: Sql, condition: str, value: object) -> User | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE {condition}", value)
    return None if row is None else User(**dict(row))


async def user_by_id(db: Sql, user_id: int) -> User | None:
    """The user, detached from any session (read-only use)."""
    return await _user_where(db, "id = $1", user_id)


async def user_for_token(db: Sql, token: str) -> User | None:
    if not token or len(token) > 512:
        return None
    return await _user_where(db, "api_token_hash = $1", hash_token(token))
