"""The idempotency-key purger: deletes keys whose 24 hours are over.

An expired key can already be claimed again (checkout takes it over in place), but a key
nobody reuses would otherwise stay for ever, stored response and all: at a million orders
a day, a million rows a day.
"""

from __future__ import annotations

import structlog
from prometheus_client import Counter
from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.kit.db import UnitOfWork
from emporium.kit.jobs import PeriodicJob

log = structlog.get_logger(__name__)

IDEMPOTENCY_KEYS_PURGED = Counter(
    "idempotency_keys_purged_total", "Idempotency keys deleted after they expired"
)

# SKIP LOCKED: several workers may purge at once, and a key being taken over is left alone.
_PURGE = text(
    """
    WITH gone AS (
        SELECT id FROM idempotency_keys WHERE expires_at < now()
        LIMIT :batch FOR UPDATE SKIP LOCKED
    )
    DELETE FROM idempotency_keys k USING gone WHERE k.id = gone.id
    """
)


class IdempotencyKeyPurger(PeriodicJob):
    name = "idempotency-key-purger"

    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        *,
        interval_seconds: float = 60.0,
        batch: int = 1000,
    ) -> None:
        super().__init__(interval_seconds)
        self._maker = maker
        self._batch = batch

    async def run_once(self) -> int:
        """Delete every expired key, batch by batch; returns how many."""
        total = 0
        while True:
            async with UnitOfWork(self._maker) as session:
                result = await session.execute(_PURGE, {"batch": self._batch})
            deleted = int(getattr(result, "rowcount", 0) or 0)
            total += deleted
            if deleted < self._batch:
                break
        if total:
            IDEMPOTENCY_KEYS_PURGED.inc(total)
            log.info("idempotency.keys_purged", keys=total)
        return total
