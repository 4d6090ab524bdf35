"""The reservation reaper: returns expired holds to stock and shrinks their cart lines."""

from __future__ import annotations

import asyncio
import contextlib

import structlog
from prometheus_client import Counter
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from emporium.catalog.endpoints import product_cache_key
from emporium.inventory.reservations import expire_holds
from emporium.kit.cache import Cache
from emporium.kit.db import UnitOfWork

log = structlog.get_logger(__name__)

CART_ABANDONMENTS = Counter(
    "cart_abandonments_total", "Carts whose reservations expired and were released"
)


class ReservationReaper:
    def __init__(
        self,
        maker: async_sessionmaker[AsyncSession],
        *,
        interval_seconds: float = 10.0,
        batch: int = 500,
        cache: Cache | None = None,
    ) -> None:
        self._maker = maker
        self._interval = interval_seconds
        self._batch = batch
        self._cache = cache
        self._task: asyncio.Task[None] | None = None
        self.last_error: str | None = None

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

    async def _run(self) -> None:
        while True:
            try:
                await self.run_once()
                self.last_error = None
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                self.last_error = repr(exc)
                log.exception("cart.reaper_failed")
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="reservation-reaper")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()
