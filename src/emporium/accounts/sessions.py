"""Login sessions in Valkey: ``session:<sha256 of token>`` → user id, with a TTL.

Only the token's hash is used as the key, so a dump of Valkey does not hand out
working sessions (the same rule as API tokens in the database).
"""

from __future__ import annotations

import structlog
from starlette.requests import HTTPConnection
from valkey.exceptions import ValkeyError

from emporium.auth.service import hash_token, new_token
from emporium.kit.cache import Cache
from emporium.kit.errors import AppError

log = structlog.get_logger(__name__)

SESSION_COOKIE = "emporium_session"
# Login sessions are told apart from API tokens by their prefix, so a request is looked
# up in one store only: Valkey for a session, PostgreSQL for an API token.
SESSION_PREFIX = "ses_"


def is_session_token(token: str) -> bool:
    return token.startswith(SESSION_PREFIX)


MAX_TOKEN_LENGTH = 512


class SessionStoreUnavailable(AppError):
    status_code = 503
    code = "session_store_unavailable"


class SessionStore:
    def __init__(self, cache: Cache, ttl_seconds: int) -> None:
        self.cache = cache
        self.ttl_seconds = ttl_seconds

    def key(self, token: str) -> str:
        return f"{self.cache.prefix}session:{hash_token(token)}"

    async def create(self, user_id: int) -> str:
        token = SESSION_PREFIX + new_token()
        try:
            await self.cache.client.set(self.key(token), str(user_id), ex=self.ttl_seconds)
        except (ValkeyError, OSError) as exc:
            log.warning("session.create_failed", error=str(exc))
            raise SessionStoreUnavailable("sessions are unavailable, try again shortly") from exc
        return token

    async def user_id(self, token: str) -> int | None:
        """The session's user id, or None (also when Valkey is unreachable: fail closed)."""
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return None
        try:
            raw = await self.cache.client.get(self.key(token))
        except (ValkeyError, OSError) as exc:
            log.warning("session.lookup_failed", error=str(exc))
            return None
        if raw is None:
            return None
        value = raw.decode() if isinstance(raw, bytes) else str(raw)
        return int(value) if value.isascii() and value.isdigit() else None

    async def delete(self, token: str) -> None:
        if not token or len(token) > MAX_TOKEN_LENGTH:
            return
        try:
            await self.cache.client.delete(self.key(token))
        except (ValkeyError, OSError) as exc:
            log.warning("session.delete_failed", error=str(exc))
            raise SessionStoreUnavailable("sessions are unavailable, try again shortly") from exc


def session_store(conn: HTTPConnection) -> SessionStore | None:
    cache: Cache | None = getattr(conn.app.state, "cache", None)
    if cache is None:
        return None
    return SessionStore(cache, conn.app.state.settings.session_ttl_seconds)
