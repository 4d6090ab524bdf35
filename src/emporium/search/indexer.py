"""Keeping the search index in step with the catalog.

The outbox dispatcher hands product and stock events to ``SearchIndexer``; it reloads
the affected products and upserts or deletes their documents (idempotent, so redelivery
is harmless). ``rebuild`` makes a new index generation from a consistent snapshot and
switches to it atomically; events newer than the snapshot are replayed afterwards.
"""

from __future__ import annotations

import asyncio
import queue
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime, timedelta

import asyncpg
import structlog
from sqlalchemy import func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception_type, wait_exponential

from emporium.kit.cache import Cache
from emporium.kit.db import transaction
from emporium.models import OutboxEvent
from emporium.search.documents import available_units, count_active, iter_all_docs, load_docs
from emporium.search.engine import SearchDoc, SearchIndex

log = structlog.get_logger(__name__)

PRODUCT_TOPICS = ("product.created", "product.updated", "product.deleted", "stock.changed")
# Transactions that were still open when a rebuild took its snapshot commit later with
# lower event ids; replaying a recent window as well catches them.
REPLAY_WINDOW = timedelta(minutes=1)
KNOWN_CAPACITY = 100_000
WATERMARK_INTERVAL = 1.0


def product_ids(events: Sequence[OutboxEvent]) -> set[int]:
    return {
        int(e.aggregate_id)
        for e in events
        if e.aggregate_type == "product" and e.topic in PRODUCT_TOPICS and e.aggregate_id.isdigit()
    }


class SearchIndexer:
    def __init__(
        self,
        index: SearchIndex,
        maker: async_sessionmaker[AsyncSession],
        pool: asyncpg.Pool,
        cache: Cache | None = None,
    ) -> None:
        self.index = index
        self.maker = maker
        self.pool = pool
        self.cache = cache
        self._generation: str | None = None
        # The documents this process wrote to the index. Most stock events (a
        # reservation, a sale) leave a product's document as it was, and rewriting it
        # would cost an index commit per batch.
        self._known: OrderedDict[int, SearchDoc] = OrderedDict()
        self._watermark_at = 0.0

    async def _settled(self, stock_only: Sequence[int], free: dict[int, int]) -> set[int]:
        """Of these products, those whose document already has the right in-stock flag."""
        flag = {i: free.get(i, 0) > 0 for i in stock_only}
        settled = {i for i in stock_only if i in self._known and self._known[i].in_stock == flag[i]}
        unknown = [i for i in stock_only if i not in self._known]
        if unknown:
            indexed = await asyncio.to_thread(self.index.in_stock, unknown)
            settled.update(i for i in unknown if indexed.get(i) == flag[i])
        return settled

    def _remember(self, docs: Sequence[SearchDoc], gone: Sequence[int]) -> None:
        for doc in docs:
            self._known[doc.id] = doc
            self._known.move_to_end(doc.id)
        for i in gone:
            self._known.pop(i, None)
        while len(self._known) > KNOWN_CAPACITY:
            self._known.popitem(last=False)

    async def apply(self, ids: set[int], stock_only: set[int] | None = None) -> None:
        """Bring these products' documents up to date; ``stock_only``: of them, those
        whose only changes were to stock."""
        if not ids:
            return
        # A stock event can only flip a document's in-stock flag. Free units, compared
        # with the flag the document has (as this process wrote it, or else as the index
        # holds it), say whether that happened: most reservations and sales leave it as
        # it was, and only the others need the whole document loaded and rewritten.
        stock = sorted(stock_only or ())
        free: dict[int, int] = {}
        if stock:
            async with transaction(self.pool, single=True) as db:
                free = await available_units(db, stock)
        stale = ids - await self._settled(stock, free)
        docs: dict[int, SearchDoc] = {}
        if stale:
            async with self.maker() as session:
                docs = await load_docs(session, stale)
        gone = sorted(stale - docs.keys())
        changed = [d for i, d in docs.items() if self._known.get(i) != d]
        if changed:
            await asyncio.to_thread(self.index.upsert, changed)
        if gone:
            await asyncio.to_thread(self.index.delete, gone)
        self._remember(changed, gone)
        await self._drop_cached(ids)

    async def _drop_cached(self, ids: set[int]) -> None:
        # The product pages' cached copies (availability included) are dropped here,
        # not by each request that changed stock, so cart changes cost no Valkey call.
        if self.cache is not None and ids:
            await self.cache.delete(*(f"product:{i}" for i in sorted(ids)))

    async def handle(self, events: Sequence[OutboxEvent]) -> None:
        ids = product_ids(events)
        if not await asyncio.to_thread(self.index.exists):
            # A first build is pending; its snapshot plus the replay on first sight of the
            # new generation cover these events. The cached pages cannot wait for it.
            await self._drop_cached(ids)
            return
        await self.check_generation()
        other = product_ids([e for e in events if e.topic != "stock.changed"])
        await self.apply(ids, ids - other)
        # The watermark only bounds the replay after a restart or rebuild (replays are
        # harmless), so it is written at most once a second, not once per batch.
        now = time.monotonic()
        if now - self._watermark_at >= WATERMARK_INTERVAL:
            self._watermark_at = now
            top = max(e.id for e in events)
            if top > self.index.watermark():
                await asyncio.to_thread(self.index.set_watermark, top)

    async def check_generation(self) -> None:
        """After a rebuild elsewhere, replay what happened since its snapshot."""
        generation = await asyncio.to_thread(self.index.generation)
        if generation == self._generation:
            return
        self._known.clear()  # a new generation holds the rebuild's documents
        first = self._generation is None
        self._generation = generation
        watermark = self.index.watermark()
        since = datetime.now(UTC) - REPLAY_WINDOW
        async with self.maker() as session:
            stmt = select(OutboxEvent).where(OutboxEvent.topic.in_(PRODUCT_TOPICS))
            stmt = stmt.where(
                OutboxEvent.id > watermark
                if first
                else or_(OutboxEvent.id > watermark, OutboxEvent.created_at > since)
            )
            events = list((await session.execute(stmt.order_by(OutboxEvent.id))).scalars())
        if events:
            log.info("search.replay", generation=generation, events=len(events))
            await self.apply(product_ids(events))
            await asyncio.to_thread(self.index.set_watermark, max(e.id for e in events))


async def _put(
    q: queue.Queue[list[SearchDoc] | None], item: list[SearchDoc] | None, build: asyncio.Task[str]
) -> None:
    # A failed build stops consuming; never block forever on a full queue.
    while not build.done():
        try:
            q.put_nowait(item)
            return
        except queue.Full:
            await asyncio.sleep(0.01)


def _drain(q: queue.Queue[list[SearchDoc] | None]) -> Iterator[SearchDoc]:
    while (batch := q.get()) is not None:
        yield from batch


async def rebuild(
    maker: async_sessionmaker[AsyncSession],
    index: SearchIndex,
    on_total: Callable[[int], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
) -> tuple[str, int]:
    """Build a new generation from a REPEATABLE READ snapshot and switch to it."""
    q: queue.Queue[list[SearchDoc] | None] = queue.Queue(maxsize=4)
    async with maker() as session:
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        watermark = int(
            await session.scalar(select(func.coalesce(func.max(OutboxEvent.id), 0))) or 0
        )
        total = await count_active(session)
        if on_total:
            on_total(total)
        build = asyncio.create_task(
            asyncio.to_thread(index.build_generation, _drain(q), watermark, on_progress)
        )
        try:
            async for batch in iter_all_docs(session):
                await _put(q, batch, build)
                if build.done():
                    break
        finally:
            await _put(q, None, build)
        generation = await build
    log.info("search.rebuilt", generation=generation, documents=total, watermark=watermark)
    return generation, total


def _build_failed(state: RetryCallState) -> None:
    error = state.outcome.exception() if state.outcome else None
    wait = state.next_action.sleep if state.next_action else 0.0
    log.error(
        "search.first_build_failed",
        attempt=state.attempt_number,
        retry_in_s=wait,
        error=repr(error),
    )


async def first_build(
    maker: async_sessionmaker[AsyncSession], index: SearchIndex, first_wait: float = 1.0
) -> tuple[str, int]:
    """The index's first build at start-up, tried until it succeeds.

    Until it is done searches fall back to PostgreSQL and readiness reports the index
    down: a build that failed once (the database still starting, a full disk) and was
    never tried again would leave the server unready for good.
    """
    async for attempt in AsyncRetrying(
        retry=retry_if_exception_type(Exception),
        wait=wait_exponential(multiplier=first_wait, max=60),
        before_sleep=_build_failed,
        reraise=True,
    ):
        with attempt:
            return await rebuild(maker, index)
    raise AssertionError("unreachable: tenacity retries until the build succeeds")
