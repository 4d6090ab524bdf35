from __future__ import annotations

import hashlib
import secrets

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from emporium.models import User


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


async def user_for_token(session: AsyncSession, token: str) -> User | None:
    if not token or len(token) > 512:
        return None
    return await session.scalar(select(User).where(User.api_token_hash == hash_token(token)))
