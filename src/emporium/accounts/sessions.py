"""Login sessions in Valkey: ``session:<sha256 of token>`` → user id, with a TTL.

Only the token's hash is used as the key, so a dump of Valkey does not hand out
working sessions (the same rule as API tokens in the database). Each user's session
hashes are also listed in the set ``user_sessions:<user id>``, so that a password
change or "log out everywhere" can end them all. Sessions from before those lists
existed are listed once by ``SessionStore.list_unlisted`` (``accounts.tasks``).
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import cast

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


# Ends every session listed for a user but one (ARGV[1], a hash or ""), atomically, so
# a login at the same moment is either ended or kept listed, never lost from the list.
_REVOKE = """
local ended = 0
for _, digest in ipairs(redis.call('SMEMBERS', KEYS[1])) do
  if digest ~= ARGV[1] then
    ended = ended + redis.call('DEL', ARGV[2] .. digest)
    redis.call('SREM', KEYS[1], digest)
  end
end
return ended
"""


# Lists each session key in KEYS under its owner (ARGV[1] is the lists' key prefix,
# ARGV[2] the sessions'); a list lives as long as the longest session on it.
_LIST = """
local listed = 0
for _, key in ipairs(KEYS) do
  local owner = redis.call('GET', key)
  local left = redis.call('PTTL', key)
  if owner and left > 0 then
    local list = ARGV[1] .. owner
    listed = listed + redis.call('SADD', list, string.sub(key, #ARGV[2] + 1))
    if redis.call('PTTL', list) < left then redis.call('PEXPIRE', list, left) end
  end
end
return listed
"""
LIST_BATCH = 500


class SessionStore:
    def __init__(self, cache: Cache, ttl_seconds: int) -> None:
        self.cache = cache
        self.ttl_seconds = ttl_seconds

    def key(self, token: str) -> str:
        return self._session_key(hash_token(token))

    def _session_key(self, digest: str) -> str:
        return f"{self.cache.prefix}session:{digest}"

    def _user_key(self, user_id: int | str) -> str:
        return f"{self.cache.prefix}user_sessions:{user_id}"

    async def create(self, user_id: int) -> str:
        token = SESSION_PREFIX + new_token()
        digest = hash_token(token)
        try:
            async with self.cache.client.pipeline(transaction=True) as pipe:
                pipe.set(self._session_key(digest), str(user_id), ex=self.ttl_seconds)
                pipe.sadd(self._user_key(user_id), digest)
                # The newest session outlives the others, so the list lives as long as it.
                pipe.expire(self._user_key(user_id), self.ttl_seconds)
                await pipe.execute()
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
        digest = hash_token(token)
        try:
            owner = await self.cache.client.getdel(self._session_key(digest))
            if owner is not None:
                user_id = owner.decode() if isinstance(owner, bytes) else str(owner)
                await cast(Awaitable[int], self.cache.client.srem(self._user_key(user_id), digest))
        except (ValkeyError, OSError) as exc:
            log.warning("session.delete_failed", error=str(exc))
            raise SessionStoreUnavailable("sessions are unavailable, try again shortly") from exc

    async def end_all(self, user_id: int, *, keep: str | None = None) -> int:
        """End every session of ``user_id`` except ``keep`` (a token); how many ended.

        Sessions from before the per-user lists are found once ``list_unlisted`` has run.
        """
        spared = hash_token(keep) if keep and is_session_token(keep) else ""
        try:
            ended = await cast(
                Awaitable[int],
                self.cache.client.eval(
                    _REVOKE, 1, self._user_key(user_id), spared, self._session_key("")
                ),
            )
        except (ValkeyError, OSError) as exc:
            log.warning("session.end_all_failed", error=str(exc))
            raise SessionStoreUnavailable("sessions are unavailable, try again shortly") from exc
        return int(ended)

    @property
    def _listed_marker(self) -> str:
        return f"{self.cache.prefix}sessions_listed"

    async def list_unlisted(self) -> int | None:
        """List every session under its user, once per Valkey database: how many were
        missing from their lists, or None when a previous run finished the work.

        Sessions created before the lists existed could not be ended by a password
        change; this finds them by scanning the session keys. Safe to run in several
        processes at once (adding to a set twice changes nothing)."""
        client = self.cache.client
        if await client.exists(self._listed_marker):
            return None
        sessions, lists = self._session_key(""), self._user_key("")
        listed, batch = 0, []
        async for key in client.scan_iter(match=sessions + "*", count=LIST_BATCH):
            batch.append(key.decode() if isinstance(key, bytes) else str(key))
            if len(batch) == LIST_BATCH:
                listed += await self._list(batch, lists, sessions)
                batch = []
        if batch:
            listed += await self._list(batch, lists, sessions)
        await client.set(self._listed_marker, "1")
        return listed

    async def _list(self, keys: list[str], lists: str, sessions: str) -> int:
        call = self.cache.client.eval(_LIST, len(keys), *keys, lists, sessions)
        return int(await cast(Awaitable[int], call))


def session_store(conn: HTTPConnection) -> SessionStore | None:
    cache: Cache | None = getattr(conn.app.state, "cache", None)
    if cache is None:
        return None
    return SessionStore(cache, conn.app.state.settings.session_ttl_seconds)
