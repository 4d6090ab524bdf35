"""Login attempts, counted in Valkey per account, per account and address, and per address.

Each attempt is counted before its password is checked (``INCR``, one atomic step), so
parallel guesses cannot slip past a limit together. Within ``login_window_seconds`` of
the first attempt, past ``login_max_failures`` for one email from one address, or
``login_max_failures_per_account`` for one email from anywhere, or
``login_max_attempts_per_ip`` from one address, the answer is 429
``too_many_login_attempts`` with ``Retry-After``, whatever the password: guessing stops,
and a refused guess tells nothing. An attacker guessing from one address thus locks the
account for that address only: its owner, elsewhere, still logs in; guessing from many
addresses meets the account-wide limit. A successful login clears its count for the
address and gives its attempt back to the account-wide and address counts, so one
office behind one address can still log in all day. Windows are fixed from their first
attempt: attempts while refused do not extend them.

Registrations are limited the same way per client address
(``registration_max_per_ip`` within ``registration_window_seconds``), so that one
address cannot fill the user table.

If Valkey cannot be reached the attempt is let through; a login then fails anyway, when
it creates its session there.
"""

from __future__ import annotations

import hashlib
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import cast

import structlog
from prometheus_client import Counter
from starlette.requests import HTTPConnection
from valkey.exceptions import ValkeyError

from emporium.kit.cache import Cache
from emporium.kit.errors import AppError

log = structlog.get_logger(__name__)
REFUSED = Counter(
    "emporium_auth_attempts_refused_total",
    "Logins and registrations refused for too many attempts",
    ["action"],
)

# DECR only a count that still exists: one that expired meanwhile must not come back
# as -1 without a TTL.
_GIVE_BACK = "if redis.call('EXISTS', KEYS[1]) == 1 then return redis.call('DECR', KEYS[1]) end"


class TooManyLoginAttempts(AppError):
    status_code = 429
    code = "too_many_login_attempts"


class TooManyRegistrations(AppError):
    status_code = 429
    code = "too_many_registrations"


async def _count(cache: Cache, limits: list[tuple[str, int]], window_seconds: int) -> int | None:
    """Count one attempt under each key; the seconds to wait if any key is over its
    limit, else None (also when Valkey cannot be reached)."""
    try:
        async with cache.client.pipeline(transaction=False) as pipe:
            for key, _ in limits:
                pipe.incr(key)
                pipe.expire(key, window_seconds, nx=True)
                pipe.ttl(key)
            replies = await pipe.execute()
    except (ValkeyError, OSError) as exc:
        log.warning("attempt_limit.unavailable", error=str(exc))
        return None
    waits = [
        int(replies[3 * i + 2])
        for i, (_, limit) in enumerate(limits)
        if int(replies[3 * i]) > limit
    ]
    return max(1, *waits) if waits else None


# Count an attempt under the address's keys (KEYS[2..], limits ARGV[3..]) and, only if
# none refuses it, under the account's (KEYS[1], limit ARGV[2]); one atomic step, so
# parallel guesses cannot slip past a limit together. Returns the seconds to wait, or 0.
_STAGED = """
local window, wait = tonumber(ARGV[1]), 0
local function bump(key, limit)
    local n = redis.call('INCR', key)
    if redis.call('TTL', key) < 0 then redis.call('EXPIRE', key, window) end
    if n > tonumber(limit) then wait = math.max(wait, redis.call('TTL', key), 1) end
end
for i = 2, #KEYS do bump(KEYS[i], ARGV[i + 1]) end
if wait == 0 then bump(KEYS[1], ARGV[2]) end
return wait
"""


@dataclass(frozen=True)
class LoginThrottle:
    cache: Cache
    max_failures: int
    max_per_account: int
    max_per_ip: int
    window_seconds: int

    def _email_key(self, email: str) -> str:
        digest = hashlib.sha256(email.encode()).hexdigest()
        return f"{self.cache.prefix}login:email:{digest}"

    def _pair_key(self, email: str, ip: str | None) -> str:
        return f"{self._email_key(email)}:ip:{ip or '-'}"

    def _ip_key(self, ip: str) -> str:
        return f"{self.cache.prefix}login:ip:{ip}"

    async def attempt(self, email: str, ip: str | None) -> None:
        """Count this attempt, or refuse it with TooManyLoginAttempts."""
        keys = [self._email_key(email), self._pair_key(email, ip)]
        limits = [self.max_per_account, self.max_failures]
        if ip:
            keys.append(self._ip_key(ip))
            limits.append(self.max_per_ip)
        args = [str(n) for n in (self.window_seconds, *limits)]
        try:
            call = self.cache.client.eval(_STAGED, len(keys), *keys, *args)
            wait = int(await cast(Awaitable[int], call))
        except (ValkeyError, OSError) as exc:
            log.warning("attempt_limit.unavailable", error=str(exc))
            return
        if wait:
            log.warning("login_throttle.refused", retry_after=wait)
            REFUSED.labels("login").inc()
            raise TooManyLoginAttempts("too many failed logins; try again later", retry_after=wait)

    async def succeeded(self, email: str, ip: str | None) -> None:
        try:
            async with self.cache.client.pipeline(transaction=False) as pipe:
                pipe.delete(self._pair_key(email, ip))
                pipe.eval(_GIVE_BACK, 1, self._email_key(email))
                if ip:
                    pipe.eval(_GIVE_BACK, 1, self._ip_key(ip))
                await pipe.execute()
        except (ValkeyError, OSError) as exc:
            log.warning("login_throttle.unavailable", error=str(exc))


def login_throttle(conn: HTTPConnection) -> LoginThrottle | None:
    cache: Cache | None = getattr(conn.app.state, "cache", None)
    if cache is None:
        return None
    settings = conn.app.state.settings
    return LoginThrottle(
        cache,
        max_failures=settings.login_max_failures,
        max_per_account=settings.login_max_failures_per_account,
        max_per_ip=settings.login_max_attempts_per_ip,
        window_seconds=settings.login_window_seconds,
    )


async def count_registration(conn: HTTPConnection, ip: str | None) -> None:
    """Count a registration from ``ip``, or refuse it with TooManyRegistrations."""
    cache: Cache | None = getattr(conn.app.state, "cache", None)
    if cache is None or not ip:
        return
    settings = conn.app.state.settings
    key = f"{cache.prefix}register:ip:{ip}"
    limits = [(key, settings.registration_max_per_ip)]
    retry_after = await _count(cache, limits, settings.registration_window_seconds)
    if retry_after is not None:
        log.warning("registration_limit.refused", retry_after=retry_after)
        REFUSED.labels("register").inc()
        raise TooManyRegistrations(
            "too many accounts created from this address; try again later",
            retry_after=retry_after,
        )
