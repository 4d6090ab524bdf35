"""Checkout idempotency: a Valkey SET NX fast path, a UNIQUE row in PostgreSQL as the truth.

Same key + same body after completion → the stored response. Same key while the first
request is still running → 409. Same key with another body → 422. Keys live 24 hours.

A first request claims the key in Valkey ("processing"); PostgreSQL records the answer
in the statement that completes the order. A paid checkout does not copy its answer to
Valkey: replays are rare, and the copy cost about 6 % of the app's CPU per order. A
replay that finds the key still "processing" in Valkey is judged by PostgreSQL, and the
answer it gets is then kept in Valkey for the next one.

A body is compared by its fingerprint: an HMAC under the server's secret key, so that a
stored fingerprint cannot be reversed by trying card numbers (a plain hash of a body whose
card is known but for a few digits can be). The CVC is left out: it may not be kept in
any form once the payment is authorized, and a replay with another CVC is the same
purchase. Fingerprints stored before they were keyed were replaced by ``legacy``
(migration 0017); such a key answers as stored whatever the body, until it expires.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
from dataclasses import dataclass
from typing import Any

import structlog
from sqlalchemy import Text, cast, func, select
from sqlalchemy.ext.asyncio import AsyncSession
from valkey.exceptions import ValkeyError

from emporium.kit import jsoncodec
from emporium.kit.cache import Cache
from emporium.kit.errors import Conflict, InvalidInput
from emporium.models import IdempotencyKey
from emporium.order.repository import Answer, OrderWrites

log = structlog.get_logger(__name__)
TTL_SECONDS = 24 * 3600
PROCESSING_TTL_SECONDS = 180


class IdempotencyInProgress(Conflict):
    code = "idempotency_key_in_progress"


class IdempotencyKeyReused(InvalidInput):
    code = "idempotency_key_reused"


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: dict[str, Any]


@dataclass(frozen=True)
class FastClaim:
    """What the Valkey fast path found: an answer to give at once (``replay``), or the
    key claimed by this request (``claimed``), or neither: PostgreSQL judges."""

    replay: StoredResponse | None = None
    claimed: bool = False


FINGERPRINT_PREFIX = "hmac:"


def request_hash(body: dict[str, Any], secret: bytes) -> str:
    """The body's fingerprint, keyed by ``secret``; the CVC is not part of it."""
    payment = body.get("payment")
    if isinstance(payment, dict):
        body = {**body, "payment": {k: v for k, v in payment.items() if k != "cvc"}}
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"), default=str)
    mac = hmac.digest(secret, canonical.encode(), "sha256")
    return FINGERPRINT_PREFIX + base64.urlsafe_b64encode(mac).rstrip(b"=").decode()


class IdempotencyStore:
    def __init__(self, cache: Cache | None, secret: bytes | None = None) -> None:
        self.cache = cache
        self._secret = secret

    def digest(self, body: dict[str, Any]) -> str:
        if self._secret is None:
            raise RuntimeError("this store was built without the secret key")
        return request_hash(body, self._secret)

    def _vkey(self, user_id: int, key: str) -> str:
        prefix = self.cache.prefix if self.cache else ""
        return f"{prefix}idem:{user_id}:{hashlib.sha256(key.encode()).hexdigest()}"

    @staticmethod
    def _judge(
        stored_hash: str, state: str, status: int | None, body: Any, digest: str
    ) -> StoredResponse:
        if stored_hash != digest and stored_hash.startswith(FINGERPRINT_PREFIX):
            raise IdempotencyKeyReused(
                "this Idempotency-Key was used with a different request body"
            )
        if state == "completed" and status is not None:
            if isinstance(body, str):  # checkout_place returns the stored text as written
                body = jsoncodec.loads(body)
            return StoredResponse(status, body or {})
        raise IdempotencyInProgress("a request with this Idempotency-Key is still being processed")

    async def claim_fast(self, user_id: int, key: str, digest: str) -> FastClaim:
        """The Valkey fast path: claim the key, or answer a replay without PostgreSQL.

        Another body under a claimed key is refused here. A "processing" marker lives
        only a few minutes, so one left by a crashed process never blocks the key for
        long; it is also left in place by a paid checkout, so PostgreSQL judges it.
        """
        if self.cache is None:
            return FastClaim()
        try:
            claimed = await self.cache.client.set(
                self._vkey(user_id, key),
                jsoncodec.dumps_bytes({"hash": digest, "state": "processing"}),
                nx=True,
                ex=PROCESSING_TTL_SECONDS,
            )
            if claimed:
                return FastClaim(claimed=True)
            raw = await self.cache.client.get(self._vkey(user_id, key))
        except (ValkeyError, OSError) as exc:
            log.warning("idempotency.cache_unavailable", error=str(exc))
            return FastClaim()
        if raw is None:
            return FastClaim()
        v = jsoncodec.loads(raw)
        if v["state"] == "processing" and v["hash"] == digest:
            return FastClaim()
        return FastClaim(self._judge(v["hash"], v["state"], v.get("status"), v.get("body"), digest))

    def judge(self, row: dict[str, Any], digest: str) -> StoredResponse:
        """What to answer for a key already claimed: its stored response, or an error."""
        return self._judge(row["request_hash"], row["state"], row["status"], row["body"], digest)

    @staticmethod
    async def stored(session: AsyncSession, user_id: int, key: str) -> dict[str, Any] | None:
        """The key's live row in PostgreSQL, shaped for :meth:`judge`; None if unused (or
        expired: checkout_place takes an expired key over)."""
        k = IdempotencyKey
        row = (
            await session.execute(
                select(
                    k.request_hash,
                    k.state,
                    k.response_status.label("status"),
                    # As text, so a replay repeats the stored answer's key order.
                    cast(k.response_body, Text).label("body"),
                ).where(k.user_id == user_id, k.key == key, k.expires_at >= func.now())
            )
        ).one_or_none()
        return None if row is None else dict(row._mapping)

    @staticmethod
    async def complete(
        session: AsyncSession,
        user_id: int,
        key: str,
        response: StoredResponse,
        order_id: int | None,
    ) -> None:
        """Record the response in the caller's transaction (with the order change it reports)."""
        await OrderWrites.from_session(session).answer(
            Answer(user_id, key, response.status, response.body), order_id
        )

    async def remember(self, user_id: int, key: str, digest: str, response: StoredResponse) -> None:
        """After commit: let the fast path replay this response (the rare answers; a paid
        checkout's is in PostgreSQL)."""
        await self._cache_set(
            user_id,
            key,
            {
                "hash": digest,
                "state": "completed",
                "status": response.status,
                "body": response.body,
            },
        )

    async def forget(self, user_id: int, key: str) -> None:
        """Drop the fast-path marker of a request that changed nothing."""
        if self.cache is not None:
            try:
                await self.cache.client.delete(self._vkey(user_id, key))
            except (ValkeyError, OSError) as exc:
                log.warning("idempotency.cache_unavailable", error=str(exc))

    async def _cache_set(self, user_id: int, key: str, value: dict[str, Any]) -> None:
        if self.cache is None:
            return
        try:
            await self.cache.client.set(
                self._vkey(user_id, key), jsoncodec.dumps_bytes(value, default=str), ex=TTL_SECONDS
            )
        except (ValkeyError, OSError) as exc:
            log.warning("idempotency.cache_unavailable", error=str(exc))
