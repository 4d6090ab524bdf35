from __future__ import annotations

import hashlib
import secrets
import time
from collections.abc import Callable
from typing import Any

from cachetools import TTLCache

from emporium.kit.gate import Gate, shared_call
from emporium.kit.sql import Sql
from emporium.models import User


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(32)


# A user is read with one plain statement, no ORM round.
_COLUMNS = ", ".join(User.__table__.columns.keys())
USER_CACHE_SIZE = 10_000
MAX_TOKEN_LENGTH = 512


class UserCache:
    """Users read in the last few seconds: by API-token hash, and by id for sessions.

    Every authenticated request needs its caller, and reading the user each time is a
    database round trip per request. Rows are kept, not User objects, so every request
    gets an instance of its own. Unknown tokens and ids are not kept: a token created a
    moment ago works at once. A token removed or moved to another user in the database,
    or a removed user, keeps working for at most ``seconds`` in each server process; the
    API itself changes none of them. A login session is still looked up in Valkey on
    every request, so logout ends it at once.
    """

    def __init__(
        self,
        seconds: float,
        size: int = USER_CACHE_SIZE,
        timer: Callable[[], float] = time.monotonic,
    ) -> None:
        self._rows: TTLCache[str, dict[str, Any]] | None = (
            TTLCache(size, seconds, timer=timer) if seconds > 0 else None
        )

    def get(self, key: str) -> dict[str, Any] | None:
        return None if self._rows is None else self._rows.get(key)

    def put(self, key: str, row: dict[str, Any]) -> None:
        if self._rows is not None:
            self._rows[key] = row


async def _row_where(db: Sql, condition: str, value: object) -> dict[str, Any] | None:
    row = await db.fetchrow(f"SELECT {_COLUMNS} FROM users WHERE {condition}", value)
    return None if row is None else dict(row)


async def _cached_row(
    db: Sql, cache: UserCache | None, key: str, condition: str, value: object
) -> dict[str, Any] | None:
    row = cache.get(key) if cache is not None else None
    if row is None:
        row = await _row_where(db, condition, value)
        if row is not None and cache is not None:
            cache.put(key, row)
    return row


async def user_by_id(db: Sql, user_id: int, cache: UserCache | None = None) -> User | None:
    """The user, detached from any session (read-only use)."""
    row = await _cached_row(db, cache, f"id:{user_id}", "id = $1", user_id)
    return None if row is None else User.from_row(row)


def _token_digest(token: str) -> str | None:
    return hash_token(token) if token and len(token) <= MAX_TOKEN_LENGTH else None


def cached_token_user(token: str, cache: UserCache) -> User | None:
    """The token's user if the cache holds it; None says only "not cached"."""
    digest = _token_digest(token)
    row = cache.get(f"token:{digest}") if digest is not None else None
    return None if row is None else User.from_row(row)


async def user_for_token(db: Sql, token: str, cache: UserCache | None = None) -> User | None:
    digest = _token_digest(token)
    if digest is None:
        return None
    key = f"token:{digest}"
    row = cache.get(key) if cache is not None else None
    if row is None:
        row = await _token_row(db, digest)
        if row is not None and cache is not None:
            cache.put(key, row)
    return None if row is None else User.from_row(row)


# One token lookup at a time per process: callers who come while one is on its way wait
# for the next, which reads all their tokens in one statement. A burst of new callers (a
# sale's buyers) then costs a read per turn rather than per caller, and each read is
# sent after its callers arrived, so a token created a moment ago is found.
_token_reads = Gate()
_TOKEN_READ_RIDERS = 100
_BY_TOKENS = f"SELECT {_COLUMNS} FROM users WHERE api_token_hash = ANY($1::text[])"


async def _token_row(db: Sql, digest: str) -> dict[str, Any] | None:
    async def read(digests: list[str]) -> list[dict[str, Any] | None]:
        if len(digests) == 1:
            return [await _row_where(db, "api_token_hash = $1", digests[0])]
        rows = await db.fetch(_BY_TOKENS, digests)
        by_digest = {row["api_token_hash"]: dict(row) for row in rows}
        return [by_digest.get(d) for d in digests]

    if _token_reads.busy(None):
        await db.pause()
    found: dict[str, Any] | None = await shared_call(
        _token_reads, None, digest, read, _TOKEN_READ_RIDERS
    )
    return found
