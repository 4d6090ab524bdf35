"""The reservation reaper: returns expired holds to stock and shrinks their cart lines."""

from __future__ import annotations

import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.catalog.endpoints import product_cache_key
from emporium.inventory.reservations import expire_holds
from emporium.kit.cache import Cache
from emporium.kit.db import UnitOfWork
from emporium.kit.jobs import PeriodicJob

log = structlog.get_logger(__name__)

CART_ABANDONMENTS = Counter(
    "cart_abandonments_total", "Carts whose reservations expired and were released"
)


class ReservationReaper(PeriodicJob):
    name = "reservation-reaper"

    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        *,
        interval_seconds: float = 10.0,
        batch: int = 500,
        cache: Cache | None = None,
    ) -> None:
        super().__init__(interval_seconds)
        self._maker = maker
        self._batch = batch
        self._cache = cache

    async def run_once(self) -> int:
        """Release every expired reservation, batch by batch; returns how many."""
        total = 0
        carts: set[int] = set()
        products: set[int] = set()
        while True:
            # One transaction per batch: a failure loses at most one batch's progress.
            async with UnitOfWork(self._maker) as session:
                holds = await expire_holds(session, limit=self._batch)
            if not holds:
                break
            total += len(holds)
            carts.update(h.cart_id for h in holds)
            products.update(h.product_id for h in holds)
        if carts:
            CART_ABANDONMENTS.inc(len(carts))
            log.info("cart.reservations_expired", reservations=total, carts=len(carts))
        if products and self._cache is not None:
            await self._cache.delete(*(product_cache_key(p) for p in sorted(products)))
        return total
